"""Gradient variance of every SBN estimator at the same parameters (the REBAR paper's comparison).

All estimators get the same model parameters (a checkpoint, or one shared untrained
init) and the same batch of real training images. What differs is each estimator's own
control variates (baselines, etas, temperature): they are first trained for --cv_steps
steps on random training batches with the model parameters frozen (each estimator's
second Adam, 10x lr; the reference trains them alongside the model). Then the gradient
of -ELBO w.r.t. the model parameters is drawn --draws times with fresh noise on the fixed
batch; the reported number is log of the per-parameter variance averaged over parameters
(the reference's "log grad variance"), over all parameters and over the recognition
network q alone (the generative network's gradient is the same backprop term for every
unbiased estimator). Concrete is biased: its variance is not comparable on equal terms.

Every task (hparam task: sbn, sp, omni) is measured on its own training data; with
dynamic_b, on one fixed binarisation of the float training images. For sp the generative
part is the single layer p_{n_layer-1} (p_prior is unused: its gradient is 0 and counts in
the "all parameters" mean).

Writes OUT/variance.json and OUT/variance.png; prints a table.

Example:
  python train/rebar_variance.py --data_path $DATA_DIR --ckpt runs/rebar --out runs/rebar/variance
"""

import hashlib
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from common import fsio
from common.cli import add_data_dir, add_device, add_force, add_output, tool_parser
from common.errors import UserError, cli, run
from common.tfcompat import session_config, tf
from data_tools import datasets
from models import estimators, sbn
from train import runinfo
from train.train_rebar import ASCEND_HPARAMS, binarize, load_task_data

LABELS = {
    "REINFORCE": "SBN",
    "NVIL": "SBNNVIL",
    "MuProp": "SBNMuProp",
    "Concrete": "SBNGumbel",
    "REBAR": "SBNRebar",
    "DynamicREBAR": "SBNDynamicRebar",
}
SHARED = ("mean_xs", "train_bias")


def _graph(hp, name, mean_xs, seed):
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(seed)
        m = estimators.build(dict(hp, model=LABELS[name]), mean_xs)
        init = tf.global_variables_initializer()
        shared = {v.op.name: v for v in tf.global_variables() if v.op.name in SHARED}
    return g, m, init, shared


def measure(
    hp, train, params=None, estimators_=tuple(LABELS), draws=200, cv_steps=200, seed=0, device="cpu", progress=True
):
    """{label: {log_variance, log_variance_q, ...}} at the model parameters ``params``
    ({variable name: array}; None: the first estimator's init, shared by all)."""
    rng = np.random.RandomState(seed)
    bs = hp["batch_size"]
    batch = train[rng.choice(len(train), bs, replace=False)].astype(np.float32)
    mean_xs = train.mean(0).astype(np.float32)
    out = {}
    for name in estimators_:
        g, m, init, shared = _graph(hp, name, mean_xs, seed)
        with tf.Session(graph=g, config=session_config(device)) as s:
            s.run(init)
            params, digest = _load_params(s, m, shared, params, hp)
            t0 = time.time()
            if m.extra_grads:
                for _ in tqdm(
                    range(cv_steps),
                    desc=f"{name}: control variates",
                    file=sys.stderr,
                    leave=False,
                    disable=not progress,
                ):
                    s.run(m.extra_op, {m.x: train[rng.choice(len(train), bs, replace=False)].astype(np.float32)})
            stats = _variance(s, m, batch, draws, f"{name}: draws" if progress else None)
            out[name] = {"estimator": LABELS[name], **stats, "seconds": time.time() - t0, "params_sha256": digest}
    return out


def _load_params(s, m, shared, params, hp):
    """Load ``params`` (None: take this session's init) into the model's and the shared
    variables; (the params, sha256 of what the session holds now: every estimator must be
    measured at the same parameters)."""
    tvars = {v.op.name: v for v in m.model_vars}
    tvars.update(shared)
    if params is None:
        params = dict(zip(tvars, s.run(list(tvars.values()))))
    for k, v in tvars.items():
        if k not in params:
            raise UserError(
                f"parameters have no variable {k!r} (expected those of n_layer="
                f"{hp['n_layer']}, nonlinear={hp['nonlinear']})"
            )
        v.load(params[k], s)
    names = sorted(tvars)
    digest = hashlib.sha256(
        b"".join(np.ascontiguousarray(a).tobytes() for a in s.run([tvars[k] for k in names]))
    ).hexdigest()
    return params, digest


def _variance(s, m, batch, draws, desc):
    """The statistics of ``draws`` gradients of -ELBO on the fixed batch (fresh noise each)."""
    sizes = [int(np.prod(v.shape)) for v in m.model_vars]
    q = np.concatenate([np.full(n, v.op.name.startswith("q_")) for n, v in zip(sizes, m.model_vars)])
    s1 = s2 = 0.0
    for _ in tqdm(range(draws), desc=desc, file=sys.stderr, leave=False, disable=desc is None):
        gv = s.run(m.grad_vec, {m.x: batch}).astype(np.float64)
        s1, s2 = s1 + gv, s2 + gv * gv
    mean = s1 / draws
    var = np.maximum(s2 / draws - mean**2, 0) * draws / (draws - 1)
    logs = s.run(m.logs, {m.x: batch})
    return {
        "log_variance": float(np.log(var.mean())),
        "log_variance_q": float(np.log(var[q].mean())),
        "log_variance_p": float(np.log(var[~q].mean())),
        "mean_grad_norm": float(np.linalg.norm(mean)),
        "elbo": float(logs["elbo"]),
        "temperature": float(logs["temperature"]) if "temperature" in logs else None,
        "etas_mean": float(np.mean(logs["etas"])) if "etas" in logs else None,
    }


def params_from_checkpoint(ckpt):
    r = tf.train.load_checkpoint(ckpt)
    return {k: r.get_tensor(k) for k in r.get_variable_to_shape_map()}


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, [results[n]["log_variance"] for n in names], 0.4, label="all parameters")
    ax.bar(x + 0.2, [results[n]["log_variance_q"] for n in names], 0.4, label="recognition net q")
    ax.set_xticks(x)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("log mean per-parameter gradient variance")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


@cli
def main(argv=None):
    ap = tool_parser(None, __doc__)
    add_data_dir(ap, dest="data_path", default=datasets.default_data_dir())
    ap.add_argument("--ckpt", help="training folder or checkpoint prefix (default: untrained init from --hparams)")
    ap.add_argument("--hparams", default=ASCEND_HPARAMS, help="model shape when no --ckpt (default %(default)r)")
    add_output(ap, "--out", dest="out", required=True, help="folder for variance.json and variance.png")
    ap.add_argument("--estimators", default=",".join(LABELS), help="comma-separated subset of %(default)s")
    ap.add_argument("--draws", type=int, default=200, help="gradient draws per estimator")
    ap.add_argument("--cv_steps", type=int, default=200, help="control-variate training steps per estimator")
    add_device(ap)
    ap.add_argument("--seed", type=int, default=0)
    add_force(ap, help="overwrite an existing variance.json")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.estimators.split(",") if n.strip()]
    bad = [n for n in names if n not in LABELS]
    if bad or not names:
        raise UserError(f"--estimators: unknown {bad}; expected a subset of {', '.join(LABELS)}")
    if a.draws < 2:
        raise UserError(f"--draws must be >= 2, got {a.draws}")
    out_json = os.path.join(a.out, "variance.json")
    fsio.refuse_overwrite(out_json, a.force)
    params, step = None, None
    if a.ckpt:
        ckpt, info = runinfo.resolve(a.ckpt)
        runinfo.expect_model(info, "rebar")
        hp, params, step = sbn.check_hparams(info["config"]), params_from_checkpoint(ckpt), info["checkpoint_step"]
    else:
        hp = sbn.parse_hparams(a.hparams)
    train = load_task_data(a.data_path, hp)[0]
    if hp["dynamic_b"]:  # one binarisation of the float images, fixed for every estimator
        train = binarize(a.seed, 0, train)
    res = measure(hp, train, params, names, a.draws, a.cv_steps, a.seed, a.device)
    where = f"checkpoint step {step}" if a.ckpt else "untrained init"
    print(
        f"gradient variance at {where}, task={hp['task']}, n_layer={hp['n_layer']}, batch {hp['batch_size']}, "
        f"{a.draws} draws, control variates trained {a.cv_steps} steps"
    )
    print(f"{'estimator':<14}{'log var (all)':>14}{'log var (q)':>13}{'ELBO':>11}")
    for n, r in res.items():
        print(f"{n:<14}{r['log_variance']:>14.3f}{r['log_variance_q']:>13.3f}{r['elbo']:>11.2f}")
    fsio.write_json(
        out_json,
        {
            "where": where,
            "checkpoint": a.ckpt,
            "hparams": hp,
            "draws": a.draws,
            "cv_steps": a.cv_steps,
            "seed": a.seed,
            "results": res,
        },
    )
    title = f"SBN task={hp['task']} gradient variance at {where} ({a.draws} draws)"
    plot(res, os.path.join(a.out, "variance.png"), title)
    print(f"wrote {out_json} and variance.png")
    return 0


if __name__ == "__main__":
    run(main)
