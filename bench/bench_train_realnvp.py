"""RealNVP training speed (images/s, small and paper configs) and forward FLOPs per image."""

import time

import numpy as np


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


def profiler_flops(config="paper"):
    """tf.profiler's float-op count of the batch-1 forward graph (conv and elementwise ops)."""
    from common.tfcompat import tf
    from models import realnvp

    g = tf.Graph()
    with g.as_default():
        realnvp.inference_graph(config, 1)
        opts = tf.profiler.ProfileOptionBuilder.float_operation()
        opts["output"] = "none"
        return int(tf.profiler.profile(g, options=opts).total_float_ops)


def train_speed(data_dir, config, batch, steps=3):
    from common.tfcompat import session_config, tf
    from data_tools import datasets
    from models import realnvp
    from train.train_realnvp import TrainGraph, prepro

    images = datasets.load("cifar10", "train", data_dir)[:batch]
    x = prepro(images)
    u = np.random.RandomState(0).uniform(0, 1, x.shape).astype(np.float32)
    with tf.Graph().as_default():
        g = TrainGraph(realnvp.get_config(config), batch, eval_head=False)
        with tf.Session(config=session_config("cpu")) as s:
            s.run(tf.global_variables_initializer())
            feed = {g.x: x, g.u: u, g.seed: [0, 0]}
            s.run(g.train_op, feed)  # warm-up
            t = time.time()
            for _ in range(steps):
                s.run(g.train_op, feed)
            dt = (time.time() - t) / steps
    return {"batch": batch, "steps": steps, "seconds_per_step": round(dt, 4), "images_per_s": round(batch / dt, 2)}


def run(data_dir):
    flops = forward_flops_per_image("paper")
    try:
        prof = profiler_flops("paper")
    except Exception as e:  # the cross-check is optional
        prof = f"unavailable ({type(e).__name__})"
    return {
        "train_small": train_speed(data_dir, "small", 32, steps=5),
        "train_paper": train_speed(data_dir, "paper", 12, steps=2),
        "forward_flops_per_image_paper": flops,
        "forward_gmac_per_image_paper": round(flops / 2e9, 3),
        "tf_profiler_flops_per_image_paper": prof,
        "note": "CPU (2 cores, shared); analytic FLOPs count convolutions only (2 x MAC)",
    }
