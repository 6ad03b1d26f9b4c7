"""A tiny RealNVP-shaped frozen model (x, u -> z, logdet, bpd) for tests and the bench.

Same preprocessing and bits/dim as the real model, one affine coupling on 4x4x3 images,
so conversion and verification run in seconds. ``fragile=True`` scales the coupling's
log-scale so ``exp`` overflows fp16 (> 65504) while fp32 is fine: the precision
doctor's test case.
"""

import os

import numpy as np

from common.tfcompat import tf
from freeze.signature import Signature, Tensor

ALPHA = 1e-5


def build(batch, hw=4, fragile=False, slogdet=False, cast=False, seed=0):
    """Build in the current graph; returns (inputs, outputs) tensors."""
    shape = [batch, hw, hw, 3]
    x = tf.placeholder(tf.float32, shape, name="x")
    u = tf.placeholder(tf.float32, shape, name="u")
    y = ((x * 0.5 + 0.5) * 255.0 + u) / 256.0
    p = y * (1 - ALPHA) + ALPHA / 2
    logdet0 = tf.reduce_sum(-tf.log(p) - tf.log(1 - p), axis=[1, 2, 3])
    h = tf.log(p) - tf.log(1 - p)
    rng = np.random.RandomState(seed)
    w = tf.get_variable("w", initializer=(rng.randn(3, 3, 3, 6) * 0.2).astype(np.float32))
    st = tf.nn.conv2d(h, w, [1, 1, 1, 1], "SAME")
    s, t = tf.split(st, 2, axis=3)
    s = tf.tanh(s) * (20.0 if fragile else 1.0)
    e = tf.exp(s, name="scale_exp")
    if fragile:  # softplus written by hand: exp's output leaves fp16's range, log brings it back
        s = tf.log(1.0 + e, name="soft_log") - 6.0
        e = tf.exp(s * 0.1)
        s = s * 0.1
    z = h * e + t
    if cast:  # a Cast of the graph's own (bool -> float), as the SBN's hard samples have
        z = z * tf.cast(x > -2.0, tf.float32)
    logdet = logdet0 + tf.reduce_sum(s, axis=[1, 2, 3])
    if slogdet:  # LogMatrixDeterminant: no tf2onnx handler
        logdet = logdet + tf.linalg.slogdet(h[:, :3, :3, 0])[1]
    d = hw * hw * 3
    bpd = 8 + (0.5 * tf.reduce_sum(z * z, axis=[1, 2, 3]) + 0.5 * d * np.log(2 * np.pi) - logdet) / (d * np.log(2))
    outs = [tf.identity(z, "z"), tf.identity(logdet, "logdet"), tf.identity(bpd, "bpd")]
    return [x, u], outs


def write(out_dir, stem="tiny", batch=2, **kw):
    """Freeze the tiny model to out_dir/stem.pb with its signature; returns the .pb path."""
    g = tf.Graph()
    with g.as_default():
        inputs, outputs = build(batch, **kw)
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            gd = tf.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), [t.op.name for t in outputs])
    os.makedirs(out_dir, exist_ok=True)
    pb = os.path.join(out_dir, stem + ".pb")
    with open(pb, "wb") as f:
        f.write(gd.SerializeToString())
    t = lambda v, layout="ND": Tensor(v.op.name, v.name, v.shape.as_list(), "float32", layout)  # noqa: E731
    hw = inputs[0].shape.as_list()[1]
    Signature(
        "realnvp",
        "forward",
        batch,
        [t(v, "NHWC") for v in inputs],
        [t(v) for v in outputs],
        config={"image_shape": [hw, hw, 3], "num_scales": 2, "n_blocks": 1, "n_features": 4, "alpha": ALPHA},
        precision_mode="force_fp32",
        artifact={"file": stem + ".pb", "kind": "pb"},
    ).save(os.path.join(out_dir, stem + ".json"))
    return pb


def feed(signature, seed=0):
    """Valid inputs: pixels in [-1, 1] on the 1/127.5 grid, uniforms in (0, 1)."""
    rng = np.random.RandomState(seed)
    x = signature.input("x")
    u = signature.input("u")
    return {
        "x": (rng.randint(0, 256, x.shape) / 127.5 - 1).astype(np.float32),
        "u": rng.uniform(0, 1, u.shape).astype(np.float32),
    }
