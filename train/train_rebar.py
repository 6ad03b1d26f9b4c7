"""Train a sigmoid belief net on binarized MNIST with REBAR (or NVIL, MuProp, Concrete, REINFORCE).

The research/rebar trainer (Tucker et al. 2017), ported to TF1 graph mode on TF 2.x:
same --hparams string, names and defaults; static batch (the last partial batch of an
epoch is dropped, as the Ascend port does). Differences: the training noise is drawn on
the host from (--seed, step) and the batch order from (--seed, epoch), so a resumed run
continues exactly; checkpoints carry mean_xs/train_bias; an explicit final checkpoint.

Writes under --working_dir: model.ckpt-<step>, config.json (train/runinfo.py),
metrics.jsonl (one JSON record a line, every one with "step" and "kind":
train | epoch | eval), curve.png.

Example:
  python train/train_rebar.py --data_path $DATA_DIR --working_dir runs/rebar \\
      --hparams "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn" --steps 20000
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from tqdm import tqdm

from common import fsio
from common.errors import UserError, cli, run
from common.tfcompat import session_config, tf
from data_tools import datasets
from models import estimators, sbn
from train import runinfo

ASCEND_HPARAMS = "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn"
METRICS = "metrics.jsonl"
CURVE = "curve.png"


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hparams", default=ASCEND_HPARAMS,
                    help=f"comma-separated k=v over the reference defaults; keys: {', '.join(sbn.DEFAULTS)} "
                         f"(default %(default)r)")
    ap.add_argument("--data_path", default=datasets.default_data_dir(),
                    help="DATA_DIR or its binarized_mnist/ folder (default: env DATA_DIR or data/)")
    ap.add_argument("--working_dir", default="/tmp/rebar", help="checkpoints, config.json, metrics.jsonl")
    ap.add_argument("--steps", type=int, default=2000000, help="train until this global step")
    ap.add_argument("--eval_freq", type=int, default=10, help="evaluate valid+test every N epochs (0: only at the end)")
    ap.add_argument("--log_every", type=int, default=500, help="a train record every N steps")
    ap.add_argument("--eval_samples", type=int, default=100, help="K of the IWAE-K bound (K>100: multiple of 100)")
    ap.add_argument("--eval_limit", type=int, default=0, help="evaluate on the first N images of each split (0: all)")
    ap.add_argument("--save_secs", type=float, default=600, help="checkpoint at least this often")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu", "npu"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for k in ("steps", "log_every", "eval_samples"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(a, k)}")
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
            tf.random_uniform(tf.stack([tf.shape(self.x)[0], self.chunk, W])), [None, self.chunk, W], name="eval_u")
        self.log_weights = net.log_weights(self.x, self.u)

    def log_weights_for(self, sess, x, u=None):
        """[B, K] log weights; u [B, K, W] fixes the noise (else fresh draws, K = self.samples)."""
        K = self.samples if u is None else u.shape[1]
        out = []
        for k in range(0, K, self.chunk):
            feed = {self.x: x} if u is None else {self.x: x, self.u: u[:, k:k + self.chunk]}
            out.append(sess.run(self.log_weights, feed))
        return np.concatenate(out, 1)

    def bounds(self, sess, xs, batch=5, desc=None):
        """Mean single-sample ELBO and IWAE-K over images xs (batches of `batch` images, as the reference)."""
        elbo, iwae = [], []
        for i in tqdm(range(0, len(xs), batch), desc=desc, leave=False, file=sys.stderr, disable=desc is None):
            lw = self.log_weights_for(sess, xs[i:i + batch].astype(np.float32)).astype(np.float64)
            elbo.append(lw.mean(1))
            iwae.append(np.logaddexp.reduce(lw, axis=1) - math.log(lw.shape[1]))
        return float(np.concatenate(elbo).mean()), float(np.concatenate(iwae).mean())


# --- records -------------------------------------------------------------------

def describe(r):
    if r["kind"] == "eval":
        return (f"step {r['step']} {r['split'].upper()}: ELBO {r['elbo']:.4f}  IWAE-{r['samples']} {r['iwae']:.4f}"
                f"  ({r['n_images']} images)")
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
    def __init__(self, working_dir, resume_step):
        self.path = os.path.join(working_dir, METRICS)
        self.records = []
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.records = [r for r in map(json.loads, filter(str.strip, f)) if r["step"] <= resume_step]
            fsio.write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def add(self, **r):
        r = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in r.items()}
        self.records.append(r)
        with open(self.path, "a") as f:
            f.write(json.dumps(r) + "\n")
        print(describe(r), flush=True)


def plot_curve(records, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, style in (("train", dict(lw=0.8, alpha=0.6, label="train ELBO (log window)")),
                        ("epoch", dict(marker=".", label="train ELBO (epoch mean)"))):
        rs = [r for r in records if r["kind"] == kind]
        if rs:
            ax.plot([r["step"] for r in rs], [r["elbo"] for r in rs], **style)
    for split in ("valid", "test"):
        for key, m in (("elbo", "o"), ("iwae", "^")):
            rs = [r for r in records if r["kind"] == "eval" and r["split"] == split]
            if rs:
                ax.plot([r["step"] for r in rs], [r[key] for r in rs], m + "-" if len(rs) > 1 else m,
                        label=f"{split} {key.upper()}" + (f"-{rs[0]['samples']}" if key == "iwae" else ""))
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


def check_resume(info, hp, working_dir):
    old = sbn.check_hparams(info["config"]) if info["model"] == "rebar" else None
    if old is None:
        raise UserError(f"{info['_path']}: working_dir holds a {info['model']!r} model, not 'rebar'; "
                        "use another --working_dir")
    diff = {k: (old[k], hp[k]) for k in sbn.STRUCTURE if old[k] != hp[k]}
    if diff:
        raise UserError(f"{info['_path']}: cannot resume with different {', '.join(diff)} "
                        f"(checkpoint has {', '.join(f'{k}={v[0]}' for k, v in diff.items())}, "
                        f"--hparams gives {', '.join(f'{k}={v[1]}' for k, v in diff.items())})")


@cli
def main(argv=None):
    with tf.Graph().as_default():
        return train(parse_args(argv))


def train(a):
    hp = sbn.parse_hparams(a.hparams)
    wd = a.working_dir
    ckpt = tf.train.latest_checkpoint(wd) if os.path.isdir(wd) else None
    if ckpt:
        info = runinfo.load(wd)
        check_resume(info, hp, wd)
    elif os.path.isfile(os.path.join(wd, METRICS)):
        raise UserError(f"{os.path.join(wd, METRICS)}: results without a checkpoint; refusing to overwrite "
                        "(use another --working_dir or remove it)")
    train_x = datasets.load_binarized_mnist(a.data_path, "train")
    valid = datasets.load_binarized_mnist(a.data_path, "valid")
    test = datasets.load_binarized_mnist(a.data_path, "test")
    if a.eval_limit:
        valid, test = valid[:a.eval_limit], test[:a.eval_limit]
    mean_xs = train_x.mean(0).astype(np.float32)
    bs = hp["batch_size"]
    steps_per_epoch = len(train_x) // bs
    if steps_per_epoch < 1:
        raise UserError(f"{a.data_path}: {len(train_x)} training images, fewer than batch_size={bs}")
    os.makedirs(wd, exist_ok=True)

    tf.set_random_seed(a.seed)
    model = estimators.build(hp, mean_xs)
    ev = Evaluator(model.net, a.eval_samples)
    saver = tf.train.Saver(max_to_keep=3)
    sess = tf.Session(config=session_config(a.device))
    try:
        sess.run(tf.global_variables_initializer())
        step = 0
        if ckpt:
            saver.restore(sess, ckpt)
            step = int(sess.run(model.global_step))
            print(f"resumed from {ckpt} at step {step}", flush=True)
        metrics = Metrics(wd, step)
        train_flags = {k: v for k, v in vars(a).items()}
        data_stats = {"dataset": "binarized_mnist", "n_train": len(train_x), "n_valid": len(valid),
                      "n_test": len(test), "mean_pixel": float(mean_xs.mean()),
                      "mean_xs": "in the checkpoint (variables mean_xs, train_bias)"}
        title = f"SBN {hp['model']} n_layer={hp['n_layer']} {'nonlinear' if hp['nonlinear'] else 'linear'} lr={hp['learning_rate']}"

        def save(at):
            path = saver.save(sess, os.path.join(wd, runinfo.CKPT_PREFIX), global_step=at)
            runinfo.save(wd, "rebar", hp, train=train_flags, data_stats=data_stats, step=at,
                         hparams=sbn.format_hparams(hp))
            return path

        def evaluate(at):
            for split, xs in (("valid", valid), ("test", test)):
                elbo, iwae = ev.bounds(sess, xs, desc=f"eval {split}")
                metrics.add(step=at, kind="eval", split=split, elbo=elbo, iwae=iwae, samples=a.eval_samples,
                            n_images=len(xs))

        if step >= a.steps:
            print(f"{wd}: already at step {step} >= --steps {a.steps}; nothing to do", flush=True)
            return 0
        N, W = model.n_rows, sbn.noise_width(hp)
        fetch = {"train": model.train_op, "logs": model.logs, "gv": model.grad_variance}
        window, epoch_acc, last_save, t0, t_window = [], [], time.time(), time.time(), time.time()
        order, feed = None, None
        bar = tqdm(total=a.steps, initial=step, desc="train", file=sys.stderr, leave=False, mininterval=2)
        while step < a.steps:
            epoch, j = divmod(step, steps_per_epoch)
            if order is None or j == 0:
                order = batch_order(a.seed, epoch, len(train_x))
            feed = {model.x: train_x[order[j * bs:(j + 1) * bs]].astype(np.float32), model.u: noise(a.seed, step, (N, W))}
            out = sess.run(fetch, feed)
            logs = out["logs"]
            if not (np.isfinite(logs["elbo"]) and np.isfinite(out["gv"])):
                bar.close()
                last = tf.train.latest_checkpoint(wd)
                raise UserError(f"training diverged at step {step} (ELBO {logs['elbo']}, grad variance {out['gv']}); "
                                f"last good checkpoint kept: {last or 'none saved yet'}")
            step += 1
            bar.update(1)
            rec = dict(elbo=float(logs["elbo"]), gv=float(out["gv"]),
                       temperature=float(logs["temperature"]) if "temperature" in logs else None,
                       etas=[float(e) for e in logs["etas"]] if "etas" in logs else None)
            window.append(rec)
            epoch_acc.append(rec)
            if step % a.log_every == 0:
                now = time.time()
                metrics.add(**summary(window, step, epoch, "train"), steps_per_sec=len(window) / (now - t_window))
                window, t_window = [], now
            if j == steps_per_epoch - 1:
                metrics.add(**summary(epoch_acc, step, epoch, "epoch"), n_steps=len(epoch_acc))
                epoch_acc = []
                if a.eval_freq and (epoch + 1) % a.eval_freq == 0 and step < a.steps:
                    if healthy(sess, model, feed, step):
                        save(step)
                        last_save = time.time()
                    evaluate(step)
            if time.time() - last_save > a.save_secs and healthy(sess, model, feed, step):
                save(step)
                last_save = time.time()
        bar.close()
        if not healthy(sess, model, feed, step):
            raise UserError(f"training diverged after step {step} (ELBO is not finite); last good checkpoint "
                            f"kept: {tf.train.latest_checkpoint(wd) or 'none saved yet'}")
        path = save(step)
        print(f"saved {path} ({time.time() - t0:.0f}s)", flush=True)
        evaluate(step)
        plot_curve(metrics.records, os.path.join(wd, CURVE), title)
        print(f"wrote {os.path.join(wd, METRICS)} and {os.path.join(wd, CURVE)}", flush=True)
        return 0
    finally:
        sess.close()


def summary(recs, step, epoch, kind):
    r = dict(step=step, kind=kind, epoch=epoch, elbo=float(np.mean([x["elbo"] for x in recs])),
             log_grad_variance=float(np.log(np.mean([x["gv"] for x in recs]))))
    if recs[0]["temperature"] is not None:
        r["temperature"] = float(np.mean([x["temperature"] for x in recs]))
    if recs[0]["etas"] is not None:
        r["etas"] = [float(e) for e in np.mean([x["etas"] for x in recs], 0)]
    return r


def healthy(sess, model, feed, step):
    """The parameters about to be saved still give a finite ELBO on the last batch."""
    return feed is None or bool(np.isfinite(sess.run(model.logs["elbo"], feed)))


if __name__ == "__main__":
    run(main)
