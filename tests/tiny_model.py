"""The tiny frozen models the tests make on the fly (seconds, no data), each with its signature.

RealNVP-shaped, ``write`` / ``feed``: x, u -> z, logdet, bpd with the real model's
preprocessing and bits/dim and one affine coupling on 4x4x3 images; the card says model
"realnvp", so the RealNVP spec's metrics apply. ``fragile=True`` scales the coupling's
log-scale so ``exp`` overflows fp16 (> 65504) while fp32 is fine: the precision doctor's
case. ``slogdet=True`` adds an op tf2onnx cannot convert, ``cast=True`` a Cast of the graph's own.

Conv + tanh, ``tiny_model`` / ``write_bins``: x, u -> y, s, frozen once per process with an
ONNX copy, for the runner and msame CLI tests and bench/bench_runner.py's per-file overhead.
"""

import functools
import os
import tempfile

import numpy as np

ALPHA = 1e-5  # the RealNVP-shaped model's pixel squeeze
B, H, W, C, F = 2, 6, 6, 3, 4  # the conv + tanh model: batch, height, width, channels in, features


def _freeze_to(g, output_ops, pb):
    """Initialise ``g``'s variables, freeze them into constants, write ``pb``; the GraphDef."""
    from common.tfcompat import tf

    with g.as_default(), tf.Session(graph=g) as sess:
        sess.run(tf.global_variables_initializer())
        gd = tf.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), output_ops)
    os.makedirs(os.path.dirname(pb), exist_ok=True)
    with open(pb, "wb") as f:
        f.write(gd.SerializeToString())
    return gd


def build(batch, hw=4, fragile=False, slogdet=False, cast=False, seed=0):
    """The RealNVP-shaped model in the current graph; returns (inputs, outputs) tensors."""
    from common.tfcompat import tf

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
    """Freeze the RealNVP-shaped model to out_dir/stem.pb with its signature out_dir/stem.json
    (``kw``: ``build``'s options); returns the .pb path."""
    from common.tfcompat import tf
    from freeze.signature import Signature, Tensor

    g = tf.Graph()
    with g.as_default():
        inputs, outputs = build(batch, **kw)
    pb = os.path.join(out_dir, stem + ".pb")
    _freeze_to(g, [t.op.name for t in outputs], pb)
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
    """Valid inputs of the RealNVP-shaped model: pixels in [-1, 1] on the 1/127.5 grid,
    uniforms in (0, 1)."""
    rng = np.random.RandomState(seed)
    x = signature.input("x")
    u = signature.input("u")
    return {
        "x": (rng.randint(0, 256, x.shape) / 127.5 - 1).astype(np.float32),
        "u": rng.uniform(0, 1, u.shape).astype(np.float32),
    }


@functools.lru_cache(maxsize=None)
def tiny_model():
    """The conv + tanh model, {"pb", "onnx", "json", "dir"}: y = tanh(conv3x3(x) + u)
    [B,H,W,F], s = sum(y) [B]."""
    import tf2onnx

    from common.tfcompat import tf
    from freeze.signature import Signature, Tensor

    d = tempfile.mkdtemp(prefix="tiny_model_")
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [B, H, W, C], name="x")
        u = tf.placeholder(tf.float32, [B, H, W, F], name="u")
        k = tf.get_variable("k", [3, 3, C, F], initializer=tf.random_normal_initializer(seed=1))
        y = tf.identity(tf.tanh(tf.nn.conv2d(x, k, [1, 1, 1, 1], "SAME") + u), name="y")
        tf.identity(tf.reduce_sum(y, axis=[1, 2, 3]), name="s")
    pb = os.path.join(d, "tiny.pb")
    gd = _freeze_to(g, ["y", "s"], pb)
    sig = Signature(
        "tiny",
        "forward",
        B,
        [Tensor("x", "x:0", [B, H, W, C], layout="NHWC"), Tensor("u", "u:0", [B, H, W, F])],
        [Tensor("y", "y:0", [B, H, W, F]), Tensor("s", "s:0", [B])],
    )
    sig = sig.save(os.path.join(d, "tiny.json"))
    proto, _ = tf2onnx.convert.from_graph_def(gd, input_names=["x:0", "u:0"], output_names=["y:0", "s:0"], opset=13)
    onnx = os.path.join(d, "tiny.onnx")
    with open(onnx, "wb") as f:
        f.write(proto.SerializeToString())
    return {"pb": pb, "onnx": onnx, "json": sig.path, "dir": d}


def write_bins(folder, n, seed=0, names=None):
    """n batches of the conv + tanh model's (x, u) as folder/x/<name>.bin and
    folder/u/<name>.bin; returns the feeds."""
    rng = np.random.RandomState(seed)
    feeds = []
    for i in range(n):
        name = names[i] if names else f"b{i:03d}.bin"
        feed = {"x": rng.randn(B, H, W, C).astype(np.float32), "u": rng.rand(B, H, W, F).astype(np.float32)}
        for k, a in feed.items():
            os.makedirs(os.path.join(folder, k), exist_ok=True)
            a.tofile(os.path.join(folder, k, name))
        feeds.append(feed)
    return feeds
