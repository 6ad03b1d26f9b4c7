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
import json
import os
import sys
import time

import numpy as np

from common import fsio
from common.cli import add_data_dir, add_device, add_output, tool_parser
from common.errors import UserError, cli, run
from common.log import log
from common.tfcompat import device_names, session_config, tf
from data_tools import datasets
from models import realnvp
from train import distributed, runguard, runinfo

EVAL_BATCH = 100
ADAM = {"beta1": 0.95, "beta2": 0.9995, "epsilon": 1e-8}
METRICS = "metrics.jsonl"

EXAMPLE = """example:
  python train/train_realnvp.py --data_url $DATA_DIR --train_url runs/realnvp --config small \\
      --max_steps 300 --batch_size 32
  # resume it, 300 more steps:
  python train/train_realnvp.py --data_url $DATA_DIR --train_url runs/realnvp --load_params 1 --max_steps 600
"""


def parser():
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
    a("--precision_mode", default="allow_fp32_to_fp16", help="NPU precision mode (--device npu)")
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


def make_session_config(
    device, n_devices=1, precision_mode="allow_fp32_to_fp16", check_bridge=True, deterministic=False
):
    config = session_config(device, n_devices=n_devices, precision_mode=precision_mode, check_bridge=check_bridge)
    if deterministic:  # per-session pools: the process-wide ones are sized by the first session
        config.intra_op_parallelism_threads = 1
        config.inter_op_parallelism_threads = 1
        config.use_per_session_threads = True
    return config


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


def prepro(x_uint8):
    return (x_uint8.astype(np.float32) - 127.5) / 127.5


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
        avg = [tf.add_n(list(g)) / n_towers for g in zip(*grads)]
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
        if adam_eps_inside:
            opt = EpsInsideAdam(tf.cast(self.lr, tf.float32), **ADAM)
        else:
            opt = tf.train.AdamOptimizer(tf.cast(self.lr, tf.float32), **ADAM)
        # No update before every gradient is computed: the variables are ref variables, so a
        # gradient op still reading W (e.g. the weight-norm gain's gradient) after W's ApplyAdam
        # would see the new W -- a race that made runs differ from each other.
        with tf.control_dependencies([tf.group(*avg)]):
            self.train_op = opt.apply_gradients(zip(avg, self.params), global_step=self.global_step)
        self.grads = avg
        self.bpd = bpds[0] if n_towers == 1 else tf.concat(bpds, 0)
        self.config, self.shape = config, shape

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


def _append(path, rec):
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def _read_metrics(path):
    return runguard.read_metrics(path)


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
        if cluster is not None and not cluster.is_chief:
            return _train(a, cluster)  # writes nothing into --train_url: no folder, no lock
        os.makedirs(a.train_url, exist_ok=True)
        with runguard.FolderLock(a.train_url):
            return _train(a, cluster)


def _model_config(a, chief):
    """(config dict, checkpoint to resume or None) -- the chief's folder decides."""
    ckpt = runinfo.latest(a.train_url) if os.path.isdir(a.train_url) else None
    metrics = os.path.join(a.train_url, METRICS)
    if not chief:  # a worker follows the chief's folder when it sees it (one host or a shared disk)
        if a.load_params and os.path.isfile(os.path.join(a.train_url, runinfo.CONFIG)):
            return realnvp.get_config(runinfo.load(a.train_url)["config"]), None
        return realnvp.get_config(a.config), None
    if a.load_params:
        if ckpt is None:
            raise UserError(f"{a.train_url}: --load_params 1 but no checkpoint in this folder")
        info = runinfo.load(a.train_url)
        if info["model"] != "realnvp":
            raise UserError(f"{info['_path']}: expected model 'realnvp', found {info['model']!r}")
        runinfo.check_readable(ckpt)
        runguard.read_metrics(metrics)  # a corrupt metrics.jsonl stops the run before any work
        return realnvp.get_config(info["config"]), ckpt
    if ckpt is not None:
        raise UserError(
            f"{a.train_url}: already holds checkpoint {os.path.basename(ckpt)}; "
            "pass --load_params 1 to resume or choose another --train_url"
        )
    if os.path.isfile(metrics):
        raise UserError(
            f"{metrics}: results without a checkpoint; refusing to overwrite (use another --train_url or remove it)"
        )
    return realnvp.with_options(
        a.config,
        scale_init=_scale_init(a.scale_init),
        scale_param=a.scale_param,
        gain_init=a.gain_init,
        mask_phase=a.mask_phase,
    ), None


def _train(a, cluster=None):
    chief = cluster is None or cluster.is_chief
    workers = 1 if cluster is None else cluster.n
    rank = 0 if cluster is None else cluster.index
    config, ckpt = _model_config(a, chief)
    sess_config = make_session_config(a.device, a.nr_gpu, a.precision_mode, deterministic=a.deterministic)
    coll = watchdog = None
    if cluster is not None:
        cluster.start(cluster.session_config(sess_config))
        coll = distributed.make_collectives(cluster, a.device)
        watchdog = distributed.Watchdog(cluster)

    train_x = datasets.load("cifar10", "train", a.data_url)
    test_x = datasets.load("cifar10", "test", a.data_url)
    if list(train_x.shape[1:]) != list(config["image_shape"]):
        raise UserError(f"{a.data_url}: images are {list(train_x.shape[1:])}, config wants {config['image_shape']}")
    b = a.batch_size
    gb = b * workers  # the global batch: worker k takes rows k*b:(k+1)*b of each
    spe = len(train_x) // gb
    if spe == 0:
        raise UserError(
            f"{a.data_url}: {len(train_x)} training images, fewer than the global batch {gb} "
            f"(--batch_size {b} x {workers} workers)"
        )
    stats = {
        "dataset": "cifar10",
        "train_images": int(len(train_x)),
        "test_images": int(len(test_x)),
        "steps_per_epoch": spe,
        "preprocessing": "(x_uint8 - 127.5) / 127.5",
        "pixel_mean": float(train_x.mean()),
        "pixel_std": float(train_x.std()),
    }
    if workers > 1:
        stats.update(workers=workers, global_batch=gb)
    max_steps = a.max_epochs * spe if not a.max_steps else min(a.max_steps, a.max_epochs * spe)
    if cluster is not None and chief:
        print(
            f"{cluster!r}: global batch {gb} = --batch_size {b} x {workers} workers; "
            f"--learning_rate {a.learning_rate} applies to the mean gradient of the global batch",
            flush=True,
        )

    tf.set_random_seed(a.seed + 7919 * rank)  # each worker its own init: the chief's is broadcast
    with tf.device(cluster.device if cluster is not None else None):
        g = TrainGraph(
            config,
            b,
            a.nr_gpu,
            a.device,
            a.learning_rate,
            a.lr_decay,
            a.dropout_p,
            collectives=coll,
            loss=a.loss,
            adam_eps_inside=a.adam_eps_inside,
        )
        sync = coll.broadcast_from_chief(tf.global_variables()) if coll is not None else None
        saver = tf.train.Saver(tf.global_variables(), max_to_keep=5, save_relative_paths=True)
    metrics_path = os.path.join(a.train_url, METRICS)
    writer = tf.summary.FileWriter(a.train_url) if chief else None
    sess = tf.Session(cluster.target if cluster is not None else "", config=sess_config)
    resume = {}

    def save(step):
        if not g.params_finite(sess):
            raise UserError(
                f"parameters are not finite at step {step}; not saving "
                f"(last good checkpoint: {runinfo.latest(a.train_url)})"
            )
        path = saver.save(
            sess, os.path.join(a.train_url, runinfo.CKPT_PREFIX), global_step=step, write_meta_graph=False
        )
        runinfo.save(
            a.train_url,
            "realnvp",
            config,
            train=vars(a),
            data_stats=stats,
            step=step,
            adam=ADAM,
            resume=dict(resume, step=step),
        )
        return path

    if chief and ckpt is not None:
        try:
            saver.restore(sess, ckpt)
        except tf.errors.OpError as e:
            raise UserError(
                f"{ckpt}: cannot restore ({type(e).__name__}: {str(e).strip().splitlines()[0][:160]}); "
                "expected a checkpoint of this model and config"
            ) from None
    else:
        sess.run(tf.global_variables_initializer())
        if chief and a.init_batch_size:
            with tf.device(cluster.device if cluster is not None else None):
                g.add_init()
            rng = np.random.RandomState([a.seed, 0, 4])
            x0 = prepro(train_x[rng.permutation(len(train_x))[: a.init_batch_size]])
            sess.run(g.init_bpd, {g.x_init: x0, g.u_init: rng.uniform(0, 1, x0.shape).astype(np.float32)})
    if sync is not None:  # every worker starts from the chief's values (fresh init or checkpoint)
        distributed.run_collective(sess, sync, None, cluster, watchdog, "start (broadcast of the chief's variables)")
    step = int(sess.run(g.global_step))
    epoch_sum, epoch_n = 0.0, 0
    window_sum, window_n = 0.0, 0  # the train losses since the last train record (its train_bpd_mean)
    if ckpt is not None:
        # records past the restored step belong to the lost tail of the interrupted run
        runguard.truncate_metrics(metrics_path, step)
        st = runinfo.load(a.train_url).get("resume") or {}
        if st.get("step") == step:  # the running epoch mean, so the epoch record is the uninterrupted one
            epoch_sum, epoch_n = float(st.get("epoch_loss_sum", 0.0)), int(st.get("epoch_loss_n", 0))
            window_sum, window_n = float(st.get("window_loss_sum", 0.0)), int(st.get("window_loss_n", 0))
        log.info(f"resumed {ckpt} at step {step}")
    elif step == 0:
        test_bpd = evaluate(sess, g, test_x, a.seed, a.test_images)
        if chief:
            save(0)  # before any record: a folder with results always has a checkpoint to resume
            _append(metrics_path, {"step": 0, "kind": "start", "test_bpd": test_bpd})
    last_saved = step

    from tqdm import tqdm

    order, order_epoch = None, None
    t0 = time.time()
    with (
        runguard.Interrupts() as stop,
        tqdm(total=max_steps, initial=step, desc="realnvp", unit="step", file=sys.stderr, disable=not chief) as bar,
    ):
        while step < max_steps:
            epoch, i = divmod(step, spe)
            if order_epoch != epoch:
                order, order_epoch = epoch_order(a.seed, epoch, len(train_x)), epoch
            rows = order[i * gb : (i + 1) * gb][rank * b : (rank + 1) * b]
            x = prepro(train_x[rows])
            u = step_noise(a.seed, step, (gb,) + x.shape[1:])[rank * b : (rank + 1) * b]
            feed = {g.x: x, g.u: u, g.seed: [a.seed, step], g.stop: float(bool(stop.signum))}
            fetch = [g.train_op, g.loss, g.lr, g.stop_all]
            if cluster is None:
                _, loss, lr, stop_all = sess.run(fetch, feed)
            else:
                _, loss, lr, stop_all = distributed.run_collective(
                    sess, fetch, feed, cluster, watchdog, f"step {step + 1}"
                )
            if not np.isfinite(loss):
                raise UserError(
                    f"training diverged: loss is {loss} at step {step + 1}; stopped without "
                    f"saving (last good checkpoint: {runinfo.latest(a.train_url)})"
                )
            step += 1
            epoch_sum += float(loss)
            epoch_n += 1
            window_sum += float(loss)
            window_n += 1
            resume.update(
                epoch_loss_sum=epoch_sum, epoch_loss_n=epoch_n, window_loss_sum=window_sum, window_loss_n=window_n
            )
            bar.update(1)
            bar.set_postfix(bpd=f"{loss:.3f}")
            if step % a.log_every == 0 and chief:
                # train_bpd_mean: the mean since the last record (carried across a resume)
                _append(
                    metrics_path,
                    {
                        "step": step,
                        "kind": "train",
                        "train_bpd": float(loss),
                        "train_bpd_mean": window_sum / window_n,
                        "lr": float(lr),
                        "seconds": round(time.time() - t0, 2),
                    },
                )
                writer.add_summary(
                    tf.Summary(
                        value=[
                            tf.Summary.Value(tag="train_bpd", simple_value=float(loss)),
                            tf.Summary.Value(tag="lr", simple_value=float(lr)),
                        ]
                    ),
                    step,
                )
                bar.write(f"step {step} train bpd {loss:.4f} lr {lr:.3g}", file=sys.stdout)
                sys.stdout.flush()
            if step % a.log_every == 0:
                window_sum, window_n = 0.0, 0
                resume.update(window_loss_sum=0.0, window_loss_n=0)
            if a.eval_every and step % a.eval_every == 0 and step % spe and step != max_steps:
                test_bpd = evaluate(sess, g, test_x, a.seed, a.test_images)  # every worker: they stay in step
                if chief:
                    _append(metrics_path, {"step": step, "kind": "eval", "test_bpd": test_bpd})
            if step % spe == 0:
                test_bpd = evaluate(sess, g, test_x, a.seed, a.test_images)
                if chief:
                    _append(
                        metrics_path,
                        {
                            "step": step,
                            "kind": "epoch",
                            "epoch": step // spe,
                            "train_bpd": epoch_sum / epoch_n,
                            "test_bpd": test_bpd,
                        },
                    )
                    writer.add_summary(
                        tf.Summary(value=[tf.Summary.Value(tag="test_bpd", simple_value=test_bpd)]), step
                    )
                epoch_sum, epoch_n = 0.0, 0
                resume.update(epoch_loss_sum=0.0, epoch_loss_n=0)
                if chief and (step // spe) % a.save_interval == 0:
                    save(step)
                    last_saved = step
            if chief and a.save_every_steps and step % a.save_every_steps == 0 and last_saved != step:
                save(step)
                last_saved = step
            if stop.signum or stop_all > 0:
                if not chief:
                    raise (
                        stop.error(
                            f"stopped at step {step} with the other workers; the chief saved the "
                            f"checkpoint (continue with --load_params 1)"
                        )
                        if stop.signum
                        else runguard.Interrupted(
                            f"stopped at step {step}: another worker was interrupted; the chief "
                            "saved the checkpoint (continue with --load_params 1)",
                            15,
                        )
                    )
                path = save(step) if last_saved != step else runinfo.latest(a.train_url)
                msg = f"interrupted at step {step}; checkpoint saved: {path} (continue with --load_params 1)"
                raise stop.error(msg) if stop.signum else runguard.Interrupted(f"a worker was interrupted: {msg}", 15)
    if not chief:
        sess.close()
        print(f"{cluster!r}: done at step {step}", flush=True)
        return 0
    if last_saved != step:
        save(step)
    test_bpd = evaluate(sess, g, test_x, a.seed, a.test_images)
    _append(metrics_path, {"step": step, "kind": "end", "test_bpd": test_bpd})
    writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag="test_bpd", simple_value=test_bpd)]), step)
    writer.close()
    samples, curve = write_pictures(sess, g, a.train_url, a.sample_batch_size, a.seed, _read_metrics(metrics_path))
    sess.close()
    print(
        f"test bpd {test_bpd:.4f} at step {step}\n"
        f"checkpoint: {runinfo.latest(a.train_url)}\n"
        f"logs: {metrics_path} (TensorBoard: tensorboard --logdir {a.train_url})\n"
        f"pictures: {samples} {curve}"
    )


if __name__ == "__main__":
    run(main)
