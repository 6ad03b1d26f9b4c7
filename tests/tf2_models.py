"""Small models saved the way a TF 2.x script does when it only calls
``tf.compat.v1.disable_eager_execution()``: control flow v2 (If, Case, While nodes with
functions in the library) and resource variables. Run as a script, in a fresh process
(the test process runs TF with v2 behaviour off):

    python tests/tf2_models.py KIND FOLDER

writes FOLDER/model.ckpt-2 (+ .meta), for ``bn`` also FOLDER/export (a SavedModel), and
FOLDER/expected.npz: two input batches ``x`` (x and -x) and the ``logits`` this script's
own session gives for each in inference mode (the reference the frozen graph must equal).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

v1 = tf.compat.v1
v1.disable_eager_execution()  # and nothing else: control flow v2 and resource variables stay on

H, W, C, CLASSES, BATCH = 8, 8, 3, 5, 4
KINDS = ("bn", "flow", "bad", "noisy")


def _var(name, shape, stddev=0.3):
    return v1.get_variable(name, shape, initializer=v1.random_normal_initializer(stddev=stddev, seed=len(name)))


def _bn_net(x):
    """Batch norm switched by tf.cond on is_training, dropout switched by tf.cond, a
    tf.switch_case on a mode with a default (all constant once is_training is folded) and a
    tf.function call."""
    is_training = v1.placeholder_with_default(True, [], name="is_training")
    mode = v1.placeholder_with_default(1, [], name="mode")
    h = tf.nn.conv2d(x, _var("conv/w", [3, 3, C, 6]), 1, "SAME")
    scale = v1.get_variable("bn/scale", [6], initializer=v1.ones_initializer())
    offset = v1.get_variable("bn/offset", [6], initializer=v1.zeros_initializer())
    mean = v1.get_variable("bn/moving_mean", [6], initializer=v1.zeros_initializer(), trainable=False)
    var = v1.get_variable("bn/moving_variance", [6], initializer=v1.ones_initializer(), trainable=False)

    def train():
        y, m, v = v1.nn.fused_batch_norm(h, scale, offset, is_training=True)
        with tf.control_dependencies([v1.assign(mean, 0.9 * mean + 0.1 * m), v1.assign(var, 0.9 * var + 0.1 * v)]):
            return tf.identity(y)

    def infer():
        return v1.nn.fused_batch_norm(h, scale, offset, mean=mean, variance=var, is_training=False)[0]

    h = tf.cond(is_training, train, infer, name="bn_cond")
    h = tf.cond(is_training, lambda: tf.nn.dropout(h, rate=0.5), lambda: h, name="dropout_cond")
    h = tf.switch_case(mode, [lambda: h, lambda: tf.nn.relu(h)], name="act_case")
    h = tf.function(lambda t: t * 2.0 - 1.0)(h)  # a tf.function called in the graph: a PartitionedCall
    flat = tf.reshape(h, [-1, H * W * 6])
    return tf.identity(tf.matmul(flat, _var("fc/w", [H * W * 6, CLASSES], 0.1)), name="logits"), {is_training: False}


def _flow_net(x, kind="flow"):
    """An If on a real input and a tf.while_loop, both reading variables in their functions
    (``bad``: the loop holds an op tf2onnx lacks; ``noisy``: the If's branch a dropout)."""
    flat = tf.reshape(x, [-1, H * W * C])
    h = tf.matmul(flat, _var("fc1/w", [H * W * C, CLASSES], 0.1))
    a = _var("a", [CLASSES])
    then = (lambda: tf.nn.dropout(h * a, rate=0.5)) if kind == "noisy" else (lambda: h * a)
    h = tf.cond(tf.reduce_sum(x) > 0, then, lambda: h - a, name="sign_cond")
    b = _var("b", [CLASSES, CLASSES], 0.5)

    def body(i, v):
        v = tf.tanh(tf.matmul(v, b))
        return i + 1, (tf.math.igamma(2.0, tf.abs(v) + 1.0, name="igamma") if kind == "bad" else v)

    _, h = tf.while_loop(lambda i, v: i < 3, body, [tf.constant(0), h], name="loop")
    return tf.identity(h, name="logits"), {}


def build(kind, folder):
    os.makedirs(folder, exist_ok=True)
    v1.set_random_seed(0)
    x = v1.placeholder(tf.float32, [None, H, W, C], name="images")
    logits, infer_feed = _bn_net(x) if kind == "bn" else _flow_net(x, kind)
    rng = np.random.RandomState(0)
    if kind in ("bn", "flow"):  # gradients through If, Case and While (built before the first run, as TF2 needs)
        labels = v1.placeholder(tf.int64, [None], name="labels")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train = v1.train.AdamOptimizer(1e-2).minimize(loss)
    sess = v1.Session()
    sess.run(v1.global_variables_initializer())
    for _ in range(2 if kind in ("bn", "flow") else 0):  # moving averages move, weights change
        sess.run(train, {x: rng.uniform(-1, 1, (BATCH, H, W, C)), labels: rng.randint(0, CLASSES, BATCH)})
    v1.train.Saver().save(sess, os.path.join(folder, "model.ckpt"), global_step=2)
    if kind == "bn":
        b = v1.saved_model.builder.SavedModelBuilder(os.path.join(folder, "export"))
        b.add_meta_graph_and_variables(sess, [v1.saved_model.tag_constants.SERVING])
        b.save()
    xs = rng.uniform(-1, 1, (BATCH, H, W, C)).astype(np.float32) + 0.1
    xs = np.stack([xs, -xs])  # the If on sum(x) > 0 takes each branch once
    ys = np.stack([sess.run(logits, {x: b, **infer_feed}) for b in xs])
    np.savez(os.path.join(folder, "expected.npz"), x=xs, logits=ys)
    ops = sorted({n.op for n in sess.graph.as_graph_def().node})
    print(" ".join(ops))


if __name__ == "__main__":
    build(sys.argv[1], sys.argv[2])
