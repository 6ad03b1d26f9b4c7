"""RealNVP training speed (images/s, small and paper configs), FLOPs per image, and the
training loop's FLOP rate against an sgemm (issue #24).

How FLOPs are counted: analytically per convolution, 2 x MACs from the conv shapes (what
the runner's forward rate uses too). A training step costs 3 x the forward convolutions:
the forward conv, the gradient w.r.t. its input (Conv2DBackpropInput) and w.r.t. its
filter (Conv2DBackpropFilter), each with the forward's MAC count. TF's profiler
(``tf.compat.v1.profiler``, float_ops of the whole training graph, with TF's registered
formulas for the three conv ops plus the elementwise ops and Adam) is recorded beside it,
and ``one_layer_check`` compares the two on a single conv layer.
"""

import contextlib
import time

import numpy as np

from bench import stats


def forward_flops_per_image(config="paper"):
    """Analytic conv FLOPs (2 x MACs) of one forward pass, from the conv shapes."""
    from models import realnvp

    c = realnvp.get_config(config)
    h, w, ch = c["image_shape"]
    nb, f = c["n_blocks"], c["n_features"]

    def coupling(hh, ww, cc):  # 1x1 in, 2*nb 3x3, 1x1 out to 2C
        return hh * ww * (cc * f + 2 * nb * 9 * f * f + f * 2 * cc)

    macs = 3 * coupling(h, w, ch) + 3 * coupling(h // 2, w // 2, 4 * ch) + 4 * coupling(h // 2, w // 2, 2 * ch)
    return 2 * macs


def train_flops_per_image(config="paper"):
    """Analytic conv FLOPs of one training step per image: forward, grad-input, grad-filter."""
    return 3 * forward_flops_per_image(config)


def _profile(graph):
    from common.tfcompat import tf

    opts = tf.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    return int(tf.profiler.profile(graph, options=opts).total_float_ops)


def profiler_flops(config="paper"):
    """tf.profiler's float-op count of the batch-1 forward graph (conv and elementwise ops)."""
    from common.tfcompat import tf
    from models import realnvp

    g = tf.Graph()
    with g.as_default():
        realnvp.inference_graph(config, 1)
    return _profile(g)


def one_layer_check(n=12, hw=16, cin=64, cout=64):
    """One 3x3 conv with the gradients of a loss w.r.t. its input and filter: the profiler's
    float ops of that graph (the three convs and the loss's reduce_sum) and the analytic
    3 x 2 x MACs of the convs alone."""
    from common.tfcompat import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [n, hw, hw, cin])
        w = tf.placeholder(tf.float32, [3, 3, cin, cout])
        tf.gradients(tf.reduce_sum(tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME")), [x, w])
    macs = n * hw * hw * 9 * cin * cout
    prof = _profile(g)
    return {
        "shape_n_h_w_cin_cout": [n, hw, hw, cin, cout],
        "profiler_float_ops": prof,
        "analytic_3x2xMAC": 6 * macs,
        "profiler_over_analytic": round(prof / (6 * macs), 6),
    }


@contextlib.contextmanager
def training_steps(data_dir, config, batch):
    """A function ``steps -> seconds per step`` of the real training step (TrainGraph's
    train_op on CIFAR-10 images), in one warmed-up session; ``graph`` for the profiler."""
    from common.tfcompat import session_config, tf
    from data_tools import datasets
    from models import realnvp
    from train.train_realnvp import TrainGraph, prepro

    x = prepro(datasets.load("cifar10", "train", data_dir)[:batch])
    u = np.random.RandomState(0).uniform(0, 1, x.shape).astype(np.float32)
    with tf.Graph().as_default() as graph:
        g = TrainGraph(realnvp.get_config(config), batch, eval_head=False)
        with tf.Session(config=session_config("cpu")) as s:
            s.run(tf.global_variables_initializer())
            feed = {g.x: x, g.u: u, g.seed: [0, 0]}
            s.run(g.train_op, feed)  # warm-up

            def timed(steps):
                t = time.perf_counter()
                for _ in range(steps):
                    s.run(g.train_op, feed)
                return (time.perf_counter() - t) / steps

            yield timed, graph


def train_speed(data_dir, config, batch, steps=3):
    """Seconds per step and images/s of ``steps`` training steps after a warm-up."""
    with training_steps(data_dir, config, batch) as (timed, _):
        dt = timed(steps)
    return {"batch": batch, "steps": steps, "seconds_per_step": round(dt, 4), "images_per_s": round(batch / dt, 2)}


def run(data_dir, smoke=False, rounds=5):
    """small: images/s over ``rounds`` chunks of 5 steps; paper: chunks of 3 steps interleaved
    with an sgemm on TF's thread count (every core; the session's threads idle between steps)."""
    import os

    rounds = 2 if smoke else rounds
    small_b, paper_b = 32, 12
    with training_steps(data_dir, "small", small_b) as (timed, _):
        load = stats.Load()
        small = []
        for _ in range(rounds):
            with load.watch():
                small.append(small_b / timed(5))
    figures = {
        "train_small_images_per_s": stats.figure(
            small, "images/s", load, "all_cores", "train small", f"RealNVP training step, small config, batch {small_b}"
        )
    }
    flops_img = train_flops_per_image("paper")
    threads = os.cpu_count()
    with training_steps(data_dir, "paper", paper_b) as (timed, graph), stats.blas_threads(threads):
        prof_step = _profile(graph)
        s, loads = stats.interleave(
            {"train": lambda: paper_b / timed(1 if smoke else 3), "sgemm": lambda: stats.sgemm_flops() / 1e9}, rounds
        )
        blas = stats.blas_info()
    train_gf = [ips * flops_img / 1e9 for ips in s["train"]]
    both = stats.Load.merged(loads["train"], loads["sgemm"])
    figures.update(
        train_paper_images_per_s=stats.figure(
            s["train"],
            "images/s",
            loads["train"],
            "all_cores",
            "train paper",
            f"RealNVP training step, paper config, batch {paper_b}",
        ),
        train_paper_gflops=stats.figure(
            train_gf,
            "GFLOP/s",
            loads["train"],
            "all_cores",
            "train paper GFLOP/s",
            "RealNVP training step FLOP rate, paper config (analytic conv FLOPs: 3 x forward)",
        ),
        train_paper_fraction_of_sgemm=stats.figure(
            stats.ratios(train_gf, s["sgemm"]),
            "fraction",
            both,
            "all_cores",
            "train paper/sgemm",
            "RealNVP training step FLOP rate over sgemm, same run (per-round ratio)",
        ),
        sgemm_gflops=stats.figure(
            s["sgemm"],
            "GFLOP/s",
            loads["sgemm"],
            "all_cores",
            "sgemm (train)",
            f"sgemm 2048 beside the training step ({blas.get('core')} kernel, {threads} threads)",
        ),
    )
    return {
        "figures": figures,
        "rounds": rounds,
        "threads": threads,
        "forward_flops_per_image_paper": forward_flops_per_image("paper"),
        "forward_gmac_per_image_paper": round(forward_flops_per_image("paper") / 2e9, 3),
        "tf_profiler_forward_flops_per_image_paper": profiler_flops("paper"),
        "train_flops_per_image_paper": flops_img,
        "tf_profiler_train_flops_per_image_paper": prof_step / paper_b,
        "profiler_over_analytic_train": round(prof_step / paper_b / flops_img, 4),
        "one_layer_check": one_layer_check(),
        "flop_counting": __doc__.split("\n\n")[1].replace("\n", " "),
    }
