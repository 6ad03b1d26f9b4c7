"""Train a sigmoid belief net on binarized MNIST with REBAR (or NVIL, MuProp, Concrete, REINFORCE).

The research/rebar trainer (Tucker et al. 2017), ported to TF1 graph mode on TF 2.x:
same --hparams string, names and defaults; static batch (the last partial batch of an
epoch is dropped, as the Ascend port does). Differences: the training noise is drawn on
the host from (--seed, step) and the batch order from (--seed, epoch), so a resumed run
continues exactly; checkpoints carry mean_xs/train_bias; an explicit final checkpoint.

Tasks (hparam task), with the reference's data: sbn (binarized MNIST), sp (the bottom
half of a binarized MNIST digit given its top half), omni (Omniglot chardata.mat, binarised
with the reference's seed). dynamic_b=true trains on float images re-binarised every
batch (uniform < x), from float MNIST (sbn, sp) or Omniglot's floats (omni), drawn from
(--seed, step); valid and test stay as the reference has them (MNIST's fixed binarisation;
Omniglot's floats).

Writes under --working_dir: model.ckpt-<step>, config.json (train/runinfo.py),
metrics.jsonl (one JSON record a line, every one with "step" and "kind":
train | epoch | eval), curve.png.

Example:
  python train/train_rebar.py --data_path $DATA_DIR --working_dir runs/rebar \\
      --hparams "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn" --steps 20000
"""

import contextlib
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from common import fsio
from common.cli import add_data_dir, add_device, add_output, tool_parser
from common.errors import UserError, cli, run
from common.tfcompat import tf
from data_tools import datasets
from models import estimators, sbn, sbn_spec
from train import distributed, runguard, runinfo, worker
from train.worker import make_session_config

ASCEND_HPARAMS = "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn"
METRICS = runguard.METRICS
CURVE = "curve.png"


def parse_args(argv):
    ap = tool_parser(None, __doc__)
    ap.add_argument(
        "--hparams",
        default=ASCEND_HPARAMS,
        help=f"comma-separated k=v over the reference defaults; keys: {', '.join(sbn.DEFAULTS)} (default %(default)r)",
    )
    add_data_dir(
        ap,
        dest="data_path",  # the reference trainer's name; config.json records it under it
        default=datasets.default_data_dir(),
        help="DATA_DIR or its binarized_mnist/ folder (default: env DATA_DIR or data/)",
    )
    add_output(
        ap, "--working_dir", dest="working_dir", default="/tmp/rebar", help="checkpoints, config.json, metrics.jsonl"
    )
    ap.add_argument("--steps", type=int, default=2000000, help="train until this global step")
    ap.add_argument("--eval_freq", type=int, default=10, help="evaluate valid+test every N epochs (0: only at the end)")
    ap.add_argument("--log_every", type=int, default=500, help="a train record every N steps")
    ap.add_argument("--eval_samples", type=int, default=100, help="K of the IWAE-K bound (K>100: multiple of 100)")
    ap.add_argument("--eval_limit", type=int, default=0, help="evaluate on the first N images of each split (0: all)")
    ap.add_argument("--save_secs", type=float, default=600, help="checkpoint at least this often")
    ap.add_argument(
        "--save_every_steps",
        type=int,
        default=5000,
        help="also checkpoint every N steps (0: off); 5000 steps of SBNDynamicRebar take ~4 min here",
    )
    ap.add_argument(
        "--load_params",
        type=int,
        choices=(0, 1),
        default=None,
        help="1: resume from the newest checkpoint (required); 0: refuse a folder holding one; "
        "default: resume when there is one",
    )
    add_device(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--deterministic", action="store_true", help="bitwise-repeatable runs: one intra/inter-op thread (slower)"
    )
    distributed.add_flags(ap)
    a = ap.parse_args(argv)
    for k in ("steps", "log_every", "eval_samples"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(a, k)}")
    runguard.check_nonneg(
        seed=a.seed, save_every_steps=a.save_every_steps, eval_freq=a.eval_freq, eval_limit=a.eval_limit
    )
    if a.eval_samples > 100 and a.eval_samples % 100:
        raise UserError(f"--eval_samples above 100 must be a multiple of 100 (chunks of 100), got {a.eval_samples}")
    return a


# --- evaluation ----------------------------------------------------------------


class Evaluator:
    """log_weights of a dynamic batch of images, K samples at a time (chunk), sharing the model's variables."""

    def __init__(self, net, samples):
        self.samples, self.chunk = samples, min(samples, 100)
        W = sbn.noise_width(net.hp)
        self.x = tf.placeholder(tf.float32, [None, net.hp["n_input"]], name="eval_x")
        self.u = tf.placeholder_with_default(
            tf.random_uniform(tf.stack([tf.shape(self.x)[0], self.chunk, W])), [None, self.chunk, W], name="eval_u"
        )
        self.log_weights = net.log_weights(self.x, self.u)

    def log_weights_for(self, sess, x, u=None):
        """[B, K] log weights; u [B, K, W] fixes the noise (else fresh draws, K = self.samples)."""
        K = self.samples if u is None else u.shape[1]
        out = []
        for k in range(0, K, self.chunk):
            feed = {self.x: x} if u is None else {self.x: x, self.u: u[:, k : k + self.chunk]}
            out.append(sess.run(self.log_weights, feed))
        return np.concatenate(out, 1)

    def bounds(self, sess, xs, batch=5, desc=None):
        """Mean single-sample ELBO and IWAE-K over images xs (batches of `batch` images, as the reference)."""
        elbo, iwae = [], []
        for i in tqdm(range(0, len(xs), batch), desc=desc, leave=False, file=sys.stderr, disable=desc is None):
            lw = self.log_weights_for(sess, xs[i : i + batch].astype(np.float32)).astype(np.float64)
            elbo.append(lw.mean(1))
            iwae.append(np.logaddexp.reduce(lw, axis=1) - math.log(lw.shape[1]))
        return float(np.concatenate(elbo).mean()), float(np.concatenate(iwae).mean())


# --- records -------------------------------------------------------------------


def describe(r):
    if r["kind"] == "eval":
        return (
            f"step {r['step']} {r['split'].upper()}: ELBO {r['elbo']:.4f}  IWAE-{r['samples']} {r['iwae']:.4f}"
            f"  ({r['n_images']} images)"
        )
    s = f"step {r['step']} epoch {r['epoch']} {r['kind']}: train ELBO {r['elbo']:.4f}"
    if r.get("temperature") is not None:
        s += f"  temperature {r['temperature']:.4f}"
    s += f"  log grad var {r['log_grad_variance']:.3f}"
    if r.get("etas"):
        s += "  etas [" + " ".join(f"{e:.4f}" for e in r["etas"]) + "]"
    if r.get("steps_per_sec"):
        s += f"  {r['steps_per_sec']:.1f} steps/s"
    return s


class Metrics:
    """metrics.jsonl: the records up to the resumed step are kept, later ones dropped; only the
    chief (``write``) writes, every worker keeps its records for the curve."""

    def __init__(self, working_dir, resume_step, write=True):
        self.path = os.path.join(working_dir, METRICS)
        self.write = write
        self.records = []
        if write and os.path.isfile(self.path):
            self.records = runguard.truncate_metrics(self.path, resume_step)

    def add(self, **r):
        r = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()}
        self.records.append(r)
        if self.write:
            runguard.append_metrics(self.path, r)
            print(describe(r), flush=True)


def plot_curve(records, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, style in (
        ("train", dict(lw=0.8, alpha=0.6, label="train ELBO (log window)")),
        ("epoch", dict(marker=".", label="train ELBO (epoch mean)")),
    ):
        rs = [r for r in records if r["kind"] == kind]
        if rs:
            ax.plot([r["step"] for r in rs], [r["elbo"] for r in rs], **style)
    for split in ("valid", "test"):
        for key, m in (("elbo", "o"), ("iwae", "^")):
            rs = [r for r in records if r["kind"] == "eval" and r["split"] == split]
            if rs:
                ax.plot(
                    [r["step"] for r in rs],
                    [r[key] for r in rs],
                    m + "-" if len(rs) > 1 else m,
                    label=f"{split} {key.upper()}" + (f"-{rs[0]['samples']}" if key == "iwae" else ""),
                )
    vals = [r["elbo"] for r in records if r["kind"] in ("train", "epoch")]
    if len(vals) > 4:
        ax.set_ylim(np.percentile(vals, 10) - 5, max(r.get("iwae", r["elbo"]) for r in records) + 5)
    ax.set_xlabel("step")
    ax.set_ylabel("nats per image")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


# --- training ------------------------------------------------------------------


def noise(seed, step, shape):
    return np.random.RandomState([seed, step]).uniform(size=shape).astype(np.float32)


def batch_order(seed, epoch, n):
    return np.random.RandomState([seed, epoch, 1]).permutation(n)


def binarize(seed, step, x):
    """dynamic_b: a fresh binarisation of float images, as the reference's (rand < x), drawn
    from (seed, step) so a resumed run draws the same."""
    return (np.random.RandomState([seed, step, 2]).uniform(size=x.shape) < x).astype(np.float32)


def load_task_data(data_path, hp):
    """(train, valid, test) as the reference's datasets.load_data gives them for hp's task and
    dynamic_b: train float in [0,1] when dynamic_b, else {0,1}."""
    float_train = hp["dynamic_b"]
    if hp["task"] == "omni":
        splits = datasets.omniglot_splits(data_path, binarize=not float_train)
        return tuple(splits[s] for s in datasets.MNIST_SPLITS)
    train = datasets.load_mnist_float(data_path) if float_train else datasets.load_binarized_mnist(data_path, "train")
    return (train,) + tuple(datasets.load_binarized_mnist(data_path, s) for s in ("valid", "test"))


def check_resume(info, hp):
    """A 'rebar' checkpoint resumes only with the same model structure."""
    old = sbn.check_hparams(info["config"])
    diff = {k: (old[k], hp[k]) for k in sbn.STRUCTURE if old[k] != hp[k]}
    if diff:
        raise UserError(
            f"{info['_path']}: cannot resume with different {', '.join(diff)} "
            f"(checkpoint has {', '.join(f'{k}={v[0]}' for k, v in diff.items())}, "
            f"--hparams gives {', '.join(f'{k}={v[1]}' for k, v in diff.items())})"
        )


class Acc:
    """Running sums of the per-step records (a log window or an epoch): means of sums added in
    step order, so a resumed run, restoring the sums from config.json, writes the same records."""

    def __init__(self, d=None):
        d = d or {}
        self.n = int(d.get("n", 0))
        self.elbo, self.gv = float(d.get("elbo", 0.0)), float(d.get("gv", 0.0))
        self.temperature = d.get("temperature")
        self.etas = d.get("etas")

    def add(self, rec):
        self.n += 1
        self.elbo += rec["elbo"]
        self.gv += rec["gv"]
        if rec["temperature"] is not None:
            self.temperature = (self.temperature or 0.0) + rec["temperature"]
        if rec["etas"] is not None:
            self.etas = rec["etas"] if self.etas is None else [a + b for a, b in zip(self.etas, rec["etas"])]

    def state(self):
        return {"n": self.n, "elbo": self.elbo, "gv": self.gv, "temperature": self.temperature, "etas": self.etas}


def summary(acc, step, epoch, kind):
    r = dict(step=step, kind=kind, epoch=epoch, elbo=acc.elbo / acc.n, log_grad_variance=float(np.log(acc.gv / acc.n)))
    if acc.temperature is not None:
        r["temperature"] = acc.temperature / acc.n
    if acc.etas is not None:
        r["etas"] = [e / acc.n for e in acc.etas]
    return r


def build_model(hp, mean_xs, coll=None):
    """The estimator; with collectives, its data-parallel version: the model gradients and logs
    are the means over workers, and the control variates' gradients are those of the variance of
    the *global* gradient G (d mean(G^2)/d theta = mean over workers of the product of G with
    each worker's d g_k/d theta: a vector-Jacobian product per worker, then one more all-reduce)."""
    if coll is None:
        return estimators.build(hp, mean_xs)
    cls = estimators.CLASSES[hp["model"]]
    if cls is estimators.SBN:
        raise UserError(
            "--hparams model=SBN: its leave-one-out baseline couples the whole batch, so it does "
            "not split over workers; use SBNNVIL, SBNMuProp, SBNRebar or SBNDynamicRebar, or one worker"
        )

    class DataParallel(cls):
        def _gradients(self):
            grads, objective = super()._gradients()
            self.local_grads, self.local_logs = grads, dict(self.logs)
            grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.model_vars)]
            keys = sorted(self.logs)
            red = coll.allreduce_mean(grads + [self.logs[k] for k in keys])
            self.logs = dict(zip(keys, red[len(grads) :]))
            return red[: len(grads)], objective  # the base class vectorizes them into grad_vec = G

        def _extra_gradients(self, objective):
            with tf.name_scope("data_parallel"):
                if isinstance(self, estimators.SBNRebar):
                    extra = self._variance_gradients()
                else:  # per-example means: the workers' mean is the global batch's
                    extra = super()._extra_gradients(objective)
                if not extra:
                    return extra
                red = coll.allreduce_mean([g for g, _ in extra])
                return list(zip(red, [v for _, v in extra]))

        def _variance_gradients(self):
            G = self.grad_vec
            w = 2.0 * G / float(G.shape.num_elements())
            extra = [
                (g, v)
                for g, v in zip(tf.gradients(self.g, self.extra_vars, grad_ys=w), self.extra_vars)
                if g is not None
            ]
            if not isinstance(self, estimators.SBNDynamicRebar):
                return extra
            auto = tf.gradients(self.g, self.log_temperature, grad_ys=w)[0]
            reinf = None
            for tilde, score in self.tilde_terms:  # as SBNDynamicRebar, with the global gradient
                d = tf.gradients(tf.reduce_sum(tilde), self.log_temp_rows)[0]
                r = tf.gradients(tf.reduce_mean(estimators.sg(d) * score), self.model_vars)
                r = [tf.zeros_like(v) if g is None else e * g for g, e, v in zip(r, self.etas, self.model_vars)]
                reinf = r if reinf is None else [a + b for a, b in zip(reinf, r)]
            by_hand = tf.reduce_mean(2.0 * estimators.sg(G) * estimators.vectorize(reinf))
            return extra + [(by_hand if auto is None else auto + by_hand, self.log_temperature)]

    DataParallel.__name__ = cls.__name__
    return DataParallel(sbn.check_hparams(hp), mean_xs)


@cli
def main(argv=None):
    a = parse_args(argv)
    cluster = distributed.from_args(a, device=a.device)
    with tf.Graph().as_default():
        return runguard.run_in_folder(a.working_dir, cluster, lambda: train(a, cluster))


def train(a, cluster=None):
    w = worker.Worker(cluster)
    hp = sbn.parse_hparams(a.hparams)
    ckpt = None
    if w.chief:
        ckpt, _ = runguard.checkpoint_to_resume(
            a.working_dir,
            a.load_params,
            "rebar",
            "--working_dir",
            "pass --load_params 1 (or nothing) to resume, or choose another --working_dir",
            check=lambda info: check_resume(info, hp),
        )
    w.start(make_session_config(a.device, deterministic=a.deterministic), a.device)
    run = Training(a, w, hp, ckpt)
    try:
        return run.train()
    finally:
        run.sess.close()


class Training:
    """One run: the data, the model and the session; restore or init, the step loop with its
    records, evaluations and checkpoints (written by the chief only), and the end.

    The running sums of the log window and the epoch are checkpointed (``resume`` in
    config.json), so a resumed run writes the records of an uninterrupted one."""

    def __init__(self, a, w, hp, ckpt):
        self.a, self.w, self.hp, self.ckpt, self.wd = a, w, hp, ckpt, a.working_dir
        self._load_data()
        w.set_seed(a.seed)
        with w.device():
            self.model = build_model(hp, self.mean_xs, w.coll)
            self.ev = Evaluator(self.model.net, a.eval_samples)
            self.sync = w.broadcast_op()
            self.saver = tf.train.Saver(max_to_keep=3, save_relative_paths=True)
        self.sess = w.open_session()
        self.feed = None  # the last step's: healthy() checks the parameters on it

    def _load_data(self):
        a, hp, w = self.a, self.hp, self.w
        self.train_x, self.valid, self.test = load_task_data(a.data_path, hp)
        if a.eval_limit:
            self.valid, self.test = self.valid[: a.eval_limit], self.test[: a.eval_limit]
        self.mean_xs = self.train_x.mean(0).astype(np.float32)
        self.gb, self.steps_per_epoch = w.global_batch(
            len(self.train_x), hp["batch_size"], a.data_path, "batch_size", f"learning_rate {hp['learning_rate']}"
        )
        self.data_stats = {
            "dataset": sbn_spec.SPEC.dataset_of(hp),
            "task": hp["task"],
            "dynamic_b": hp["dynamic_b"],
            "n_train": len(self.train_x),
            "n_valid": len(self.valid),
            "n_test": len(self.test),
            "mean_pixel": float(self.mean_xs.mean()),
            "mean_xs": "in the checkpoint (variables mean_xs, train_bias)",
        }
        if w.n > 1:
            self.data_stats.update(workers=w.n, global_batch=self.gb)
        kind = "nonlinear" if hp["nonlinear"] else "linear"
        self.title = f"SBN {hp['model']} task={hp['task']} n_layer={hp['n_layer']} {kind} lr={hp['learning_rate']}" + (
            " dynamic_b" if hp["dynamic_b"] else ""
        )

    # --- checkpoints and records -----------------------------------------------------------
    def save(self, at):
        path = self.saver.save(self.sess, os.path.join(self.wd, runinfo.CKPT_PREFIX), global_step=at)
        runinfo.save(
            self.wd,
            "rebar",
            self.hp,
            train=dict(vars(self.a)),
            data_stats=self.data_stats,
            step=at,
            hparams=sbn.format_hparams(self.hp),
            resume={"step": at, "window": self.window.state(), "epoch": self.epoch_acc.state()},
        )
        self.last_save, self.last_saved_step = time.time(), at
        return path

    def evaluate(self, at):
        for split, xs in (("valid", self.valid), ("test", self.test)):
            elbo, iwae = self.ev.bounds(self.sess, xs, desc=f"eval {split}" if self.w.chief else None)
            self.metrics.add(
                step=at, kind="eval", split=split, elbo=elbo, iwae=iwae, samples=self.a.eval_samples, n_images=len(xs)
            )

    def healthy(self):
        """The parameters about to be saved still give a finite ELBO on the last batch (this worker's
        part of it: no collective op, so the chief can check alone)."""
        model = self.model
        return self.feed is None or bool(
            np.isfinite(self.sess.run(getattr(model, "local_logs", model.logs)["elbo"], self.feed))
        )

    # --- the run ---------------------------------------------------------------------------
    def restore_or_init(self):
        """Init, then the chief's checkpoint; every worker takes the chief's variables; the
        records and running sums up to the restored step."""
        sess, ckpt = self.sess, self.ckpt
        sess.run(tf.global_variables_initializer())
        if ckpt:
            worker.restore(sess, self.saver, ckpt, "a checkpoint of this model")
        self.w.broadcast(self.sync)
        self.step = int(sess.run(self.model.global_step))
        if ckpt:
            print(f"resumed from {ckpt} at step {self.step}", flush=True)
        self.metrics = Metrics(self.wd, self.step, write=self.w.chief)
        st = runinfo.resume_state(self.wd, self.step) if ckpt else {}
        self.window, self.epoch_acc = Acc(st.get("window")), Acc(st.get("epoch"))

    def train(self):
        a, w = self.a, self.w
        self.restore_or_init()
        if self.step >= a.steps:
            print(f"{self.wd}: already at step {self.step} >= --steps {a.steps}; nothing to do", flush=True)
            return 0
        if w.chief and not self.ckpt:
            self.save(self.step)  # before any record: a folder with results always has a checkpoint to resume
        # grad_variance reads the EMA the train op updates, in no fixed order within one run:
        # read it after the step, so the records are the same in every run
        self.fetch = {"train": self.model.train_op, "logs": self.model.logs}
        self.stop_in = None
        if w.cluster is not None:
            self.stop_in = tf.placeholder_with_default(0.0, [], name="stop")
            self.fetch["stop"] = w.coll.allreduce_mean([self.stop_in])[0]
        self.last_save, self.t0, self.t_window = time.time(), time.time(), time.time()
        self.last_saved_step = self.step
        self.order = None
        self.loop()
        return self.finish()

    def loop(self):
        a = self.a
        bar = tqdm(
            total=a.steps,
            initial=self.step,
            desc="train",
            file=sys.stderr,
            leave=False,
            mininterval=2,
            disable=not self.w.chief,
        )
        with runguard.Interrupts() as stop, contextlib.closing(bar):  # (an error line gets its own line)
            while self.step < a.steps:
                epoch, j = divmod(self.step, self.steps_per_epoch)
                out = self.train_step(epoch, j, stop)
                bar.update(1)
                self.records_and_saves(epoch, j)
                self.w.stop_if_signalled(stop, out.get("stop", 0), self.step, self.save_on_stop)

    def train_step(self, epoch, j, stop):
        """One step on this worker's share of the global batch, added to the running sums."""
        a, w, model, step = self.a, self.w, self.model, self.step
        if self.order is None or j == 0:
            self.order = batch_order(a.seed, epoch, len(self.train_x))
        bs, gb, ns, W = self.hp["batch_size"], self.gb, self.hp["n_samples"], sbn.noise_width(self.hp)
        rows = w.share(self.order[j * gb : (j + 1) * gb], bs)
        u = noise(a.seed, step, (ns * gb, W))
        if w.n > 1:  # rows are [sample, image]: this worker's images of every sample
            u = u.reshape(ns, gb, W)[:, w.rank * bs : (w.rank + 1) * bs].reshape(model.n_rows, W)
        x = self.train_x[rows].astype(np.float32)
        if self.hp["dynamic_b"]:  # the global batch's draw, this worker's rows of it
            x = w.share(binarize(a.seed, step, self.train_x[self.order[j * gb : (j + 1) * gb]]), bs)
        self.feed = {model.x: x, model.u: u}
        if self.stop_in is not None:
            self.feed[self.stop_in] = float(bool(stop.signum))
        out = w.run(self.fetch, self.feed, f"step {step + 1}")
        out["gv"] = self.sess.run(model.grad_variance)
        logs = out["logs"]
        if not (np.isfinite(logs["elbo"]) and np.isfinite(out["gv"])):
            last = runinfo.latest(self.wd) if w.chief else None
            raise UserError(
                f"training diverged at step {step} (ELBO {logs['elbo']}, grad variance {out['gv']}); "
                f"last good checkpoint kept: {last or 'none saved yet'}"
            )
        self.step += 1
        rec = dict(
            elbo=float(logs["elbo"]),
            gv=float(out["gv"]),
            temperature=float(logs["temperature"]) if "temperature" in logs else None,
            etas=[float(e) for e in logs["etas"]] if "etas" in logs else None,
        )
        self.window.add(rec)
        self.epoch_acc.add(rec)
        return out

    def records_and_saves(self, epoch, j):
        """A train record every --log_every steps, an epoch record at each epoch's end (an
        evaluation every --eval_freq epochs, after a checkpoint); checkpoints every --save_secs
        and every --save_every_steps (the chief's, of healthy parameters only)."""
        a, step, chief = self.a, self.step, self.w.chief
        if step % a.log_every == 0:
            now = time.time()
            self.metrics.add(
                **summary(self.window, step, epoch, "train"), steps_per_sec=self.window.n / (now - self.t_window)
            )
            self.window, self.t_window = Acc(), now
        if j == self.steps_per_epoch - 1:
            self.metrics.add(**summary(self.epoch_acc, step, epoch, "epoch"), n_steps=self.epoch_acc.n)
            self.epoch_acc = Acc()
            if a.eval_freq and (epoch + 1) % a.eval_freq == 0 and step < a.steps:
                if chief and self.healthy():
                    self.save(step)
                self.evaluate(step)
        due = time.time() - self.last_save > a.save_secs or (a.save_every_steps and step % a.save_every_steps == 0)
        if chief and self.last_saved_step != step and due and self.healthy():
            self.save(step)

    def save_on_stop(self):
        if self.last_saved_step != self.step:
            if not self.healthy():
                raise UserError(
                    f"interrupted at step {self.step} with a non-finite ELBO; not saved (last good "
                    f"checkpoint: {runinfo.latest(self.wd) or 'none'})"
                )
            self.save(self.step)
        return runinfo.latest(self.wd)

    def finish(self):
        """The chief's last checkpoint, evaluation and curve; another worker evaluates with it."""
        step, wd = self.step, self.wd
        if not self.healthy():
            raise UserError(
                f"training diverged after step {step} (ELBO is not finite); last good checkpoint "
                f"kept: {(runinfo.latest(wd) if self.w.chief else None) or 'none saved yet'}"
            )
        if not self.w.chief:
            self.evaluate(step)
            print(f"{self.w.cluster!r}: done at step {step}", flush=True)
            return 0
        path = self.save(step)
        print(f"saved {path} ({time.time() - self.t0:.0f}s)", flush=True)
        self.evaluate(step)
        plot_curve(self.metrics.records, os.path.join(wd, CURVE), self.title)
        print(f"wrote {os.path.join(wd, METRICS)} and {os.path.join(wd, CURVE)}", flush=True)
        return 0


if __name__ == "__main__":
    run(main)
