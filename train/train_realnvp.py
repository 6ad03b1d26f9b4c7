"""Train RealNVP on CIFAR-10 (flags of the Ascend RealNVP port, plus --config/--max_steps/--device).

Writes into --train_url: model.ckpt-<step> checkpoints + config.json (train/runinfo),
metrics.jsonl, TensorBoard events, samples.png and learning_curve.png.

Optimiser: tf.train.AdamOptimizer with beta1 0.95, beta2 0.9995, eps 1e-8 -- the
moments taesungp/real-nvp (PixelCNN++ heritage) trained this model with -- on the mean
per-image bits/dim of the batch (as the Ascend port; the reference's summed nats differ
only by a constant factor Adam is invariant to). lr = lr0 * lr_decay^global_step, read
from the checkpointed global step, so a resumed run continues the exact schedule. Data
order (a permutation per epoch from --seed), dequantisation noise (per step) and
dropout (stateless, per step) are all functions of (seed, step): resuming with
--load_params 1 gives the same parameters as an uninterrupted run -- bit for bit with
--deterministic (one intra- and one inter-op thread, and TF's op determinism where the
TF version has it: multi-threaded CPU kernels do not add up in a fixed order, so two
ordinary runs drift apart by float rounding, amplified by Adam's division by tiny
second moments).

Graph size is kept to what the run needs: test bits/dim are computed by the training
tower itself (dropout off, batches padded to --batch_size: an image's bpd does not
depend on its batch-mates), the init pass only in a fresh run, the sample decoder only
for the final picture. Each extra flow copy costs seconds of graph construction.
"""

import contextlib
import os
import sys
import time

import numpy as np

from common import fsio
from common.cli import add_data_dir, add_device, add_output, tool_parser
from common.errors import UserError, cli, run
from common.log import log
from common.tfcompat import device_names, tf
from data_tools import datasets
from freeze.signature import PRECISION_MODES
from models import realnvp
from models.realnvp_spec import pixels_to_input as prepro  # uint8 pixels -> x in [-1, 1]
from train import distributed, runguard, runinfo, worker
from train.worker import make_session_config

EVAL_BATCH = 100
ADAM = {"beta1": 0.95, "beta2": 0.9995, "epsilon": 1e-8}
METRICS = runguard.METRICS

EXAMPLE = """example:
  python train/train_realnvp.py --data_url $DATA_DIR --train_url runs/realnvp --config small \\
      --max_steps 300 --batch_size 32
  # resume it, 300 more steps:
  python train/train_realnvp.py --data_url $DATA_DIR --train_url runs/realnvp --load_params 1 --max_steps 600
"""


def parser():
    """The trainer's flags, one call a flag: long only because there are many of them."""
    ap = tool_parser(None, __doc__.split("\n\n")[0], EXAMPLE)
    a = ap.add_argument
    add_data_dir(
        ap,
        dest="data_url",  # the Ascend port's name; config.json records it under it
        default=datasets.default_data_dir(),
        help="DATA_DIR holding cifar-10-batches-py/, or that folder itself (default $DATA_DIR or data/)",
    )
    add_output(
        ap,
        "--train_url",
        dest="train_url",
        default="out/",
        help="output folder: checkpoints, config.json, logs, pictures",
    )
    a("--data_set", default="cifar", help="dataset; only 'cifar' (CIFAR-10) is supported")
    a("--save_interval", type=int, default=2, help="epochs between checkpoints (and at the end)")
    a(
        "--save_every_steps",
        type=int,
        default=200,
        help="also checkpoint every N steps (0: off); 200 steps of the small config at batch 32 take ~1.5 min here",
    )
    a("--load_params", type=int, choices=(0, 1), default=0, help="1: resume from the newest checkpoint in --train_url")
    a("--learning_rate", type=float, default=0.001, help="initial learning rate")
    a("--lr_decay", type=float, default=0.999995, help="learning-rate decay per step")
    a("--batch_size", type=int, default=12, help="images per step (split over --nr_gpu towers)")
    a(
        "--init_batch_size",
        type=int,
        default=100,
        help="images for the data-dependent init pass (0: no init pass, identity start)",
    )
    a(
        "--dropout_p",
        type=float,
        default=0.0,
        help="dropout in the s/t nets while training (the reference's 0.5 was never used)",
    )
    a("--max_epochs", type=int, default=5000, help="stop after this many epochs")
    a("--max_steps", type=int, default=0, help="stop after this global step (0: no limit)")
    a("--nr_gpu", "--num_gpus", dest="nr_gpu", type=int, default=1, help="towers; each batch is split over them")
    a("--sample_batch_size", type=int, default=16, help="images in the sample grid")
    a("--seed", type=int, default=1, help="seed for init, data order, noise and dropout")
    a("--config", default="small", choices=sorted(realnvp.CONFIGS), help="model size")
    a("--log_every", type=int, default=50, help="steps between train-bpd records")
    a("--test_images", type=int, default=0, help="test images evaluated (0: the whole test set)")
    a("--eval_every", type=int, default=0, help="steps between extra test-bpd records (0: per epoch and at the end)")
    add_device(ap)
    a(
        "--precision_mode",
        default="allow_fp32_to_fp16",
        choices=PRECISION_MODES,
        help="NPU precision mode (--device npu)",
    )
    a(
        "--deterministic",
        action="store_true",
        help="bitwise-repeatable runs: one intra/inter-op thread and TF op determinism (slower)",
    )
    distributed.add_flags(ap)
    # ablation switches of issue #14 (docs/realnvp_ablations.md); the defaults are today's model
    a("--scale_init", default=None, help="tanh-scale init: ddi (default), ref (U(+-sqrt3)) or a number")
    a(
        "--scale_param",
        default=None,
        choices=("scalar", "wn_vector"),
        help="tanh scale: scalar or weight-normed 1-vector",
    )
    a("--gain_init", default=None, choices=("one", "ref"), help="weight-norm gains: 1 or U(+-sqrt3)")
    a("--mask_phase", default=None, choices=("ours", "ref"), help="checkerboard phase")
    a(
        "--loss",
        default="bpd_mean",
        choices=("bpd_mean", "nats_sum"),
        help="minimised loss: mean bits/dim, or the reference's summed nats over the batch",
    )
    a(
        "--adam_eps_inside",
        action="store_true",
        help="the reference's Adam: m_hat / sqrt(v_hat + eps) instead of TF's m_hat / (sqrt(v_hat) + eps)",
    )
    return ap


def _scale_init(v):
    if v is None or v in ("ddi", "ref"):
        return v
    try:
        return float(v)
    except ValueError:
        raise UserError(f"--scale_init must be ddi, ref or a number, got {v!r}") from None


class EpsInsideAdam:
    """Adam as the reference's (PixelCNN++) adam_updates: lr * m_hat / sqrt(v_hat + eps), with bias
    correction from the global step. Its moments are variables, so they are checkpointed and a
    resumed run continues exactly."""

    def __init__(self, lr, beta1, beta2, epsilon):
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, epsilon

    def apply_gradients(self, grads_and_vars, global_step):
        t = tf.cast(global_step, tf.float32) + 1.0
        c1, c2 = 1.0 - tf.pow(self.b1, t), 1.0 - tf.pow(self.b2, t)
        ups = []
        for g, v in grads_and_vars:
            name = v.op.name
            m = tf.get_variable(name + "/adam_m", v.shape, v.dtype.base_dtype, tf.zeros_initializer(), trainable=False)
            s = tf.get_variable(name + "/adam_v", v.shape, v.dtype.base_dtype, tf.zeros_initializer(), trainable=False)
            m_t = tf.assign(m, self.b1 * m + (1 - self.b1) * g)
            s_t = tf.assign(s, self.b2 * s + (1 - self.b2) * tf.square(g))
            ups.append(tf.assign_sub(v, self.lr * (m_t / c1) * tf.rsqrt(s_t / c2 + self.eps)))
        with tf.control_dependencies(ups):
            return tf.assign_add(global_step, 1)


@contextlib.contextmanager
def op_determinism(on=True):
    """TF's op determinism (TF >= 2.8) for the duration of a run, then the previous state
    (the switch is process-wide). TF 1.15 has no such switch: there single threads are it."""
    try:
        from tensorflow.python.framework import config as tfconfig

        enable, disable = tfconfig.enable_op_determinism, tfconfig.disable_op_determinism
        was = tfconfig.is_op_determinism_enabled()
    except (ImportError, AttributeError):
        on = False
    if not on or was:
        yield
        return
    enable()
    try:
        yield
    finally:
        disable()


def step_noise(seed, step, shape):
    return np.random.RandomState([seed, step, 1]).uniform(0, 1, shape).astype(np.float32)


def epoch_order(seed, epoch, n):
    return np.random.RandomState([seed, epoch, 0]).permutation(n)


class TrainGraph:
    """The training graph: towers and Adam; init and sample heads (sharing the variables) on demand.

    ``bpd`` (per image, the towers' outputs in batch order) doubles as the evaluation head:
    fed with ``dropout`` 0 (the default when no dropout is trained) it is the plain model.
    ``eval_head`` is accepted for compatibility and ignored."""

    def __init__(
        self,
        config,
        batch_size,
        n_towers=1,
        device="cpu",
        lr0=1e-3,
        lr_decay=0.999995,
        dropout_p=0.0,
        eval_head=None,
        collectives=None,
        loss="bpd_mean",
        adam_eps_inside=False,
    ):
        if batch_size % n_towers:
            raise UserError(f"--batch_size {batch_size} must be divisible by --nr_gpu {n_towers}")
        shape = list(config["image_shape"])
        self.batch_size = batch_size
        self.x = tf.placeholder(tf.float32, [batch_size] + shape, name="x_train")
        self.u = tf.placeholder(tf.float32, [batch_size] + shape, name="u_train")
        self.seed = tf.placeholder(tf.int64, [2], name="dropout_seed")
        task = collectives.cluster.index if collectives is not None else 0
        # a tensor only when dropout is trained: without it the graph has no dropout ops at all
        self.dropout = (
            tf.placeholder_with_default(tf.constant(dropout_p, tf.float32), [], name="dropout_p")
            if dropout_p > 0
            else None
        )
        self.global_step = tf.train.get_or_create_global_step()
        self.lr = lr0 * tf.pow(tf.constant(lr_decay, tf.float64), tf.cast(self.global_step, tf.float64))
        bpds, avg = self._towers(config, device, n_towers, task)
        if loss == "nats_sum":  # the reference's loss: summed nats = mean bpd * batch * D * ln 2
            k = batch_size * float(np.prod(shape)) * np.log(2.0)
            avg = [g * k for g in avg]
        elif loss != "bpd_mean":
            raise UserError(f"unknown loss {loss!r}; expected bpd_mean or nats_sum")
        # a flag any worker raises (a signal) reaches all of them in the same all-reduce
        self.stop = tf.placeholder_with_default(tf.constant(0.0), [], name="stop")
        self.stop_all = self.stop
        if collectives is not None:  # the mean over workers of the gradients and the loss: one all-reduce
            *avg, self.loss, self.stop_all = collectives.allreduce_mean(avg + [self.loss, self.stop])
        self.train_op = self._update(avg, adam_eps_inside)
        self.grads = avg
        self.bpd = bpds[0] if n_towers == 1 else tf.concat(bpds, 0)
        self.config, self.shape = config, shape

    def _towers(self, config, device, n_towers, task):
        """Each tower's per-image bpd on its slice of the batch, and the gradients of the mean
        loss averaged over the towers (``self.loss`` their mean loss)."""
        losses, grads, bpds = [], [], []
        for i, (d, x, u) in enumerate(
            zip(device_names(device, n_towers), tf.split(self.x, n_towers), tf.split(self.u, n_towers))
        ):
            with tf.device(d), tf.name_scope(f"tower{i}"):
                _, _, bpd = realnvp.encode(
                    x,
                    u,
                    config,
                    dropout_p=0.0 if self.dropout is None else self.dropout,
                    seed=self.seed + tf.constant([0, 100000 * (i + n_towers * task)], tf.int64),
                )
                bpds.append(bpd)
                losses.append(tf.reduce_mean(bpd))
                self.params = tf.trainable_variables(realnvp.SCOPE)
                grads.append(tf.gradients(losses[-1], self.params))
        self.loss = tf.add_n(losses) / n_towers
        return bpds, [tf.add_n(list(g)) / n_towers for g in zip(*grads)]

    def _update(self, avg, adam_eps_inside):
        if adam_eps_inside:
            opt = EpsInsideAdam(tf.cast(self.lr, tf.float32), **ADAM)
        else:
            opt = tf.train.AdamOptimizer(tf.cast(self.lr, tf.float32), **ADAM)
        # No update before every gradient is computed: the variables are ref variables, so a
        # gradient op still reading W (e.g. the weight-norm gain's gradient) after W's ApplyAdam
        # would see the new W -- a race that made runs differ from each other.
        with tf.control_dependencies([tf.group(*avg)]):
            return opt.apply_gradients(zip(avg, self.params), global_step=self.global_step)

    def params_finite(self, sess):
        return all(np.isfinite(v).all() for v in sess.run(self.params))

    def eval_bpd(self, sess, x, u):
        """Per-image bpd of any number of images, without dropout, through the training tower
        (chunks of batch_size, the last one padded; padding rows never touch the real ones)."""
        n, b, out = len(x), self.batch_size, []
        for i in range(0, n, b):
            xs, us = x[i : i + b], u[i : i + b]
            k = len(xs)
            if k < b:
                xs = np.concatenate([xs, np.repeat(xs[:1], b - k, 0)])
                us = np.concatenate([us, np.repeat(us[:1], b - k, 0)])
            feed = {self.x: xs, self.u: us, self.seed: [0, 0]}
            if self.dropout is not None:
                feed[self.dropout] = 0.0
            out.append(sess.run(self.bpd, feed)[:k])
        return np.concatenate(out)

    # built only when needed: every flow copy costs seconds of graph construction
    def add_init(self):
        self.x_init = tf.placeholder(tf.float32, [None] + self.shape, name="x_init")
        self.u_init = tf.placeholder(tf.float32, [None] + self.shape, name="u_init")
        self.init_bpd = realnvp.encode(self.x_init, self.u_init, self.config, init=True)[2]

    def add_sample(self):
        self.z_sample = tf.placeholder(tf.float32, [None] + realnvp.latent_shape(self.config), name="z_sample")
        self.x_sample = realnvp.decode(self.z_sample, self.config)


def evaluate(sess, g, images, seed, limit=0):
    """Mean test bpd with fixed per-batch noise (the same numbers every call)."""
    n = len(images) if not limit else min(limit, len(images))
    out = []
    for b, i in enumerate(range(0, n, EVAL_BATCH)):
        x = prepro(images[i : min(n, i + EVAL_BATCH)])
        u = np.random.RandomState([seed, b, 2]).uniform(0, 1, x.shape).astype(np.float32)
        out.append(g.eval_bpd(sess, x, u))
    return float(np.mean(np.concatenate(out)))


def write_pictures(sess, g, train_url, n_samples, seed, metrics):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g.add_sample()
    z = np.random.RandomState([seed, 3]).standard_normal([n_samples] + g.z_sample.shape.as_list()[1:])
    x = sess.run(g.x_sample, {g.z_sample: z.astype(np.float32)})
    cols = int(np.ceil(np.sqrt(n_samples)))
    rows = int(np.ceil(n_samples / cols))
    h, w, c = x.shape[1:]
    grid = np.ones([rows * (h + 1) + 1, cols * (w + 1) + 1, c], np.float32)
    for k, img in enumerate(x):
        r, q = divmod(k, cols)
        grid[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = img * 0.5 + 0.5
    samples = os.path.join(train_url, "samples.png")
    with fsio.atomic_path(samples) as tmp:
        plt.imsave(tmp, np.clip(grid, 0, 1), format="png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, kinds, style in (("train_bpd", ("train",), "-"), ("test_bpd", ("start", "eval", "epoch", "end"), "o-")):
        pts = [(r["step"], r[key]) for r in metrics if key in r and r.get("kind") in kinds]
        if pts:
            ax.plot(*zip(*pts), style, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.legend()
    ax.grid(alpha=0.3)
    curve = os.path.join(train_url, "learning_curve.png")
    with fsio.atomic_path(curve) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return samples, curve


def _check_args(a):
    if a.data_set != "cifar":
        raise UserError(f"--data_set {a.data_set!r}: only 'cifar' (CIFAR-10) is supported")
    for k in ("batch_size", "nr_gpu", "save_interval", "log_every", "sample_batch_size", "max_epochs"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(a, k)}")
    runguard.check_nonneg(
        seed=a.seed,
        max_steps=a.max_steps,
        save_every_steps=a.save_every_steps,
        init_batch_size=a.init_batch_size,
        test_images=a.test_images,
    )
    if a.eval_every < 0:
        raise UserError(f"--eval_every must be >= 0, got {a.eval_every}")
    if not 0 <= a.dropout_p < 1:
        raise UserError(f"--dropout_p must be in [0, 1), got {a.dropout_p}")


@cli
def main(argv=None):
    a = parser().parse_args(argv)
    _check_args(a)
    cluster = distributed.from_args(a, device=a.device)
    with tf.Graph().as_default(), op_determinism(a.deterministic):
        return runguard.run_in_folder(a.train_url, cluster, lambda: _train(a, cluster))


def _model_config(a, chief):
    """(config dict, checkpoint to resume or None) -- the chief's folder decides."""
    if not chief:  # a worker follows the chief's folder when it sees it (one host or a shared disk)
        if a.load_params and os.path.isfile(os.path.join(a.train_url, runinfo.CONFIG)):
            return realnvp.get_config(runinfo.load(a.train_url)["config"]), None
        return realnvp.get_config(a.config), None
    ckpt, info = runguard.checkpoint_to_resume(
        a.train_url,
        a.load_params,
        "realnvp",
        "--train_url",
        "pass --load_params 1 to resume or choose another --train_url",
    )
    if ckpt is not None:
        return realnvp.get_config(info["config"]), ckpt
    return realnvp.with_options(
        a.config,
        scale_init=_scale_init(a.scale_init),
        scale_param=a.scale_param,
        gain_init=a.gain_init,
        mask_phase=a.mask_phase,
    ), None


def _train(a, cluster=None):
    w = worker.Worker(cluster)
    config, ckpt = _model_config(a, w.chief)
    w.start(make_session_config(a.device, a.nr_gpu, a.precision_mode, deterministic=a.deterministic), a.device)
    run = Training(a, w, config, ckpt)
    run.restore_or_init()
    run.loop()
    return run.finish()


class Training:
    """One run: the data, the graph and the session; restore or init, the step loop with its
    records, evaluations and checkpoints (written by the chief only), and the end.

    The running train-loss sums of the epoch and of the log window are checkpointed
    (``resume`` in config.json), so a resumed run writes the records of an uninterrupted one."""

    def __init__(self, a, w, config, ckpt):
        self.a, self.w, self.config, self.ckpt = a, w, config, ckpt
        self._load_data()
        w.set_seed(a.seed)
        with w.device():
            self.g = TrainGraph(
                config,
                a.batch_size,
                a.nr_gpu,
                a.device,
                a.learning_rate,
                a.lr_decay,
                a.dropout_p,
                collectives=w.coll,
                loss=a.loss,
                adam_eps_inside=a.adam_eps_inside,
            )
            self.sync = w.broadcast_op()
            self.saver = tf.train.Saver(tf.global_variables(), max_to_keep=5, save_relative_paths=True)
        self.metrics_path = os.path.join(a.train_url, METRICS)
        self.writer = tf.summary.FileWriter(a.train_url) if w.chief else None
        self.sess = w.open_session()
        self.resume = {}  # the running sums saved with each checkpoint

    def _load_data(self):
        a = self.a
        self.train_x = datasets.load("cifar10", "train", a.data_url)
        self.test_x = datasets.load("cifar10", "test", a.data_url)
        if list(self.train_x.shape[1:]) != list(self.config["image_shape"]):
            raise UserError(
                f"{a.data_url}: images are {list(self.train_x.shape[1:])}, config wants {self.config['image_shape']}"
            )
        n = len(self.train_x)
        self.gb, self.spe = self.w.global_batch(
            n, a.batch_size, a.data_url, "--batch_size", f"--learning_rate {a.learning_rate}"
        )
        self.stats = {
            "dataset": "cifar10",
            "train_images": int(n),
            "test_images": int(len(self.test_x)),
            "steps_per_epoch": self.spe,
            "preprocessing": "(x_uint8 - 127.5) / 127.5",
            "pixel_mean": float(self.train_x.mean()),
            "pixel_std": float(self.train_x.std()),
        }
        if self.w.n > 1:
            self.stats.update(workers=self.w.n, global_batch=self.gb)
        self.max_steps = a.max_epochs * self.spe if not a.max_steps else min(a.max_steps, a.max_epochs * self.spe)

    # --- checkpoints and records (the chief's) -----------------------------------------
    def save(self, step):
        if not self.g.params_finite(self.sess):
            raise UserError(
                f"parameters are not finite at step {step}; not saving "
                f"(last good checkpoint: {runinfo.latest(self.a.train_url)})"
            )
        path = self.saver.save(
            self.sess, os.path.join(self.a.train_url, runinfo.CKPT_PREFIX), global_step=step, write_meta_graph=False
        )
        runinfo.save(
            self.a.train_url,
            "realnvp",
            self.config,
            train=vars(self.a),
            data_stats=self.stats,
            step=step,
            adam=ADAM,
            resume=dict(self.resume, step=step),
        )
        self.last_saved = step
        return path

    def record(self, rec, **summaries):
        runguard.append_metrics(self.metrics_path, rec)
        if summaries:
            value = [tf.Summary.Value(tag=k, simple_value=v) for k, v in summaries.items()]
            self.writer.add_summary(tf.Summary(value=value), rec["step"])

    def test_bpd(self):
        return evaluate(self.sess, self.g, self.test_x, self.a.seed, self.a.test_images)

    # --- the run -------------------------------------------------------------------------
    def restore_or_init(self):
        """The chief's checkpoint, or a fresh init (the chief's data-dependent init pass);
        then every worker takes the chief's variables. A fresh run saves step 0 first."""
        a, w, g, sess = self.a, self.w, self.g, self.sess
        if w.chief and self.ckpt is not None:
            worker.restore(sess, self.saver, self.ckpt, "a checkpoint of this model and config")
        else:
            sess.run(tf.global_variables_initializer())
            if w.chief and a.init_batch_size:
                with w.device():
                    g.add_init()
                rng = np.random.RandomState([a.seed, 0, 4])
                x0 = prepro(self.train_x[rng.permutation(len(self.train_x))[: a.init_batch_size]])
                sess.run(g.init_bpd, {g.x_init: x0, g.u_init: rng.uniform(0, 1, x0.shape).astype(np.float32)})
        w.broadcast(self.sync)
        self.step = step = int(sess.run(g.global_step))
        self.epoch_sum, self.epoch_n = 0.0, 0
        self.window_sum, self.window_n = 0.0, 0  # the train losses since the last train record (its train_bpd_mean)
        if self.ckpt is not None:
            # records past the restored step belong to the lost tail of the interrupted run
            runguard.truncate_metrics(self.metrics_path, step)
            st = runinfo.resume_state(a.train_url, step)
            if st:  # the running epoch mean, so the epoch record is the uninterrupted one
                self.epoch_sum, self.epoch_n = float(st.get("epoch_loss_sum", 0.0)), int(st.get("epoch_loss_n", 0))
                self.window_sum, self.window_n = float(st.get("window_loss_sum", 0.0)), int(st.get("window_loss_n", 0))
            log.info(f"resumed {self.ckpt} at step {step}")
        elif step == 0:
            test_bpd = self.test_bpd()
            if w.chief:
                self.save(0)  # before any record: a folder with results always has a checkpoint to resume
                runguard.append_metrics(self.metrics_path, {"step": 0, "kind": "start", "test_bpd": test_bpd})
        self.last_saved = step

    def loop(self):
        from tqdm import tqdm

        self.order, self.order_epoch = None, None
        self.t0 = time.time()
        chief = self.w.chief
        bar = tqdm(
            total=self.max_steps, initial=self.step, desc="realnvp", unit="step", file=sys.stderr, disable=not chief
        )
        with runguard.Interrupts() as stop, bar:
            while self.step < self.max_steps:
                loss, lr, stop_all = self.train_step(float(bool(stop.signum)))
                bar.update(1)
                bar.set_postfix(bpd=f"{loss:.3f}")
                if self.step % self.a.log_every == 0:
                    self.log(loss, lr, bar)
                self.evaluate_and_save()
                self.w.stop_if_signalled(stop, stop_all, self.step, self.save_on_stop)

    def train_step(self, stop_flag):
        """One step on this worker's share of the global batch; (loss, lr, stop flag of all workers)."""
        a, g, b, step = self.a, self.g, self.a.batch_size, self.step
        epoch, i = divmod(step, self.spe)
        if self.order_epoch != epoch:
            self.order, self.order_epoch = epoch_order(a.seed, epoch, len(self.train_x)), epoch
        x = prepro(self.train_x[self.w.share(self.order[i * self.gb : (i + 1) * self.gb], b)])
        u = self.w.share(step_noise(a.seed, step, (self.gb,) + x.shape[1:]), b)
        feed = {g.x: x, g.u: u, g.seed: [a.seed, step], g.stop: stop_flag}
        _, loss, lr, stop_all = self.w.run([g.train_op, g.loss, g.lr, g.stop_all], feed, f"step {step + 1}")
        if not np.isfinite(loss):
            raise UserError(
                f"training diverged: loss is {loss} at step {step + 1}; stopped without "
                f"saving (last good checkpoint: {runinfo.latest(a.train_url)})"
            )
        self.step += 1
        self.epoch_sum += float(loss)
        self.epoch_n += 1
        self.window_sum += float(loss)
        self.window_n += 1
        self.resume.update(
            epoch_loss_sum=self.epoch_sum,
            epoch_loss_n=self.epoch_n,
            window_loss_sum=self.window_sum,
            window_loss_n=self.window_n,
        )
        return loss, lr, stop_all

    def log(self, loss, lr, bar):
        """The chief's train record; train_bpd_mean: the mean since the last record (carried across a resume)."""
        if self.w.chief:
            rec = {
                "step": self.step,
                "kind": "train",
                "train_bpd": float(loss),
                "train_bpd_mean": self.window_sum / self.window_n,
                "lr": float(lr),
                "seconds": round(time.time() - self.t0, 2),
            }
            self.record(rec, train_bpd=float(loss), lr=float(lr))
            bar.write(f"step {self.step} train bpd {loss:.4f} lr {lr:.3g}", file=sys.stdout)
            sys.stdout.flush()
        self.window_sum, self.window_n = 0.0, 0
        self.resume.update(window_loss_sum=0.0, window_loss_n=0)

    def evaluate_and_save(self):
        """Test bpd every --eval_every steps and at each epoch's end (every worker evaluates: they
        stay in step); checkpoints every --save_interval epochs and every --save_every_steps."""
        a, step, spe, chief = self.a, self.step, self.spe, self.w.chief
        if a.eval_every and step % a.eval_every == 0 and step % spe and step != self.max_steps:
            test_bpd = self.test_bpd()
            if chief:
                self.record({"step": step, "kind": "eval", "test_bpd": test_bpd})
        if step % spe == 0:
            test_bpd = self.test_bpd()
            if chief:
                rec = {
                    "step": step,
                    "kind": "epoch",
                    "epoch": step // spe,
                    "train_bpd": self.epoch_sum / self.epoch_n,
                    "test_bpd": test_bpd,
                }
                self.record(rec, test_bpd=test_bpd)
            self.epoch_sum, self.epoch_n = 0.0, 0
            self.resume.update(epoch_loss_sum=0.0, epoch_loss_n=0)
            if chief and (step // spe) % a.save_interval == 0:
                self.save(step)
        if chief and a.save_every_steps and step % a.save_every_steps == 0 and self.last_saved != step:
            self.save(step)

    def save_on_stop(self):
        return self.save(self.step) if self.last_saved != self.step else runinfo.latest(self.a.train_url)

    def finish(self):
        """The chief's last checkpoint, end record and pictures; another worker just stops."""
        a, step = self.a, self.step
        if not self.w.chief:
            self.sess.close()
            print(f"{self.w.cluster!r}: done at step {step}", flush=True)
            return 0
        if self.last_saved != step:
            self.save(step)
        test_bpd = self.test_bpd()
        self.record({"step": step, "kind": "end", "test_bpd": test_bpd}, test_bpd=test_bpd)
        self.writer.close()
        records = runguard.read_metrics(self.metrics_path)
        samples, curve = write_pictures(self.sess, self.g, a.train_url, a.sample_batch_size, a.seed, records)
        self.sess.close()
        print(
            f"test bpd {test_bpd:.4f} at step {step}\n"
            f"checkpoint: {runinfo.latest(a.train_url)}\n"
            f"logs: {self.metrics_path} (TensorBoard: tensorboard --logdir {a.train_url})\n"
            f"pictures: {samples} {curve}"
        )


if __name__ == "__main__":
    run(main)
