"""A tiny frozen model made on the fly (conv + tanh, inputs x and u), its signature and an
ONNX copy, shared by the runner and msame CLI tests (built once per test process)."""

import functools
import os
import tempfile

import numpy as np

B, H, W, C, F = 2, 6, 6, 3, 4


@functools.lru_cache(maxsize=None)
def tiny_model():
    """{"pb", "onnx", "json", "dir"}: y = tanh(conv3x3(x) + u) [B,H,W,F], s = sum(y) [B]."""
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
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            gd = tf.graph_util.convert_variables_to_constants(s, g.as_graph_def(), ["y", "s"])
    pb = os.path.join(d, "tiny.pb")
    with open(pb, "wb") as f:
        f.write(gd.SerializeToString())
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
    """n batches of (x, u) as folder/x/<name>.bin and folder/u/<name>.bin; returns the feeds."""
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
