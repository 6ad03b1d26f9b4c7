"""Small TF1 models written the way users write them (they import nothing of this project):
a ``[None, 8, 8, 3]`` input, tf.train.Saver checkpoints, and one pitfall of freezing each.

``build(pitfall, folder)`` trains 3 Adam steps and saves; returns the freeze flags that
fit it ({"source": [...], "input_shape": ..., "outputs": ..., "defaults": ...}).
"""

import os

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()  # TF1 graphs, as the users' scripts (and TF 1.15 on Ascend) build them

H = W = 8
C = 3
CLASSES = 5

PITFALLS = (
    "dynamic_batch",
    "placeholder_with_default",
    "cond_is_training",
    "batch_norm",
    "int64_output",
    "saved_model",
    "frozen_pb",
)
ERRORS = ("random_op", "unconvertible_op")


def _conv(x, name, n_out):
    w = tf.get_variable(
        name + "/w", [3, 3, int(x.shape[-1]), n_out], initializer=tf.random_normal_initializer(stddev=0.3, seed=1)
    )
    b = tf.get_variable(name + "/b", [n_out], initializer=tf.zeros_initializer())
    return tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME") + b


def _dense(x, name, n_out):
    w = tf.get_variable(
        name + "/w", [int(x.shape[-1]), n_out], initializer=tf.random_normal_initializer(stddev=0.1, seed=2)
    )
    b = tf.get_variable(name + "/b", [n_out], initializer=tf.zeros_initializer())
    return tf.matmul(x, w) + b


def _batch_norm(h, is_training):
    """Batch statistics in training, moving averages in inference, switched by tf.cond."""
    n = int(h.shape[-1])
    scale = tf.get_variable("bn/scale", [n], initializer=tf.ones_initializer())
    offset = tf.get_variable("bn/offset", [n], initializer=tf.zeros_initializer())
    mean = tf.get_variable("bn/moving_mean", [n], initializer=tf.zeros_initializer(), trainable=False)
    var = tf.get_variable("bn/moving_variance", [n], initializer=tf.ones_initializer(), trainable=False)

    def train():
        y, m, v = tf.nn.fused_batch_norm(h, scale, offset, is_training=True)
        with tf.control_dependencies([tf.assign(mean, 0.9 * mean + 0.1 * m), tf.assign(var, 0.9 * var + 0.1 * v)]):
            return tf.identity(y)

    def infer():
        return tf.nn.fused_batch_norm(h, scale, offset, mean=mean, variance=var, is_training=False)[0]

    return tf.cond(is_training, train, infer)


def _network(pitfall, images):
    defaults = {}
    h = tf.nn.relu(_conv(images, "conv1", 6))
    if pitfall in ("cond_is_training", "batch_norm", "saved_model", "frozen_pb"):
        is_training = tf.placeholder(tf.bool, [], name="is_training")
        defaults["is_training"] = "false"
        # (a user's own frozen .pb keeps a plain tf.cond: freezing assign ops in a cond branch
        # gives a GraphDef that TensorFlow itself cannot import)
        h = (
            _batch_norm(h, is_training)
            if pitfall in ("batch_norm", "saved_model")
            else tf.cond(is_training, lambda: h * 0.5, lambda: h)
        )
    if pitfall in ("placeholder_with_default", "saved_model"):
        drop_rate = tf.placeholder_with_default(0.3, [], name="drop_rate")
        defaults["drop_rate"] = "0"
        h = tf.nn.dropout(h, rate=drop_rate)
    if pitfall == "random_op":
        h = h + tf.random_normal(tf.shape(h), stddev=0.01, name="noise")
    if pitfall == "unconvertible_op":
        h = tf.bitcast(tf.bitcast(h, tf.int32), tf.float32, name="roundtrip")
    flat = tf.reshape(h, [-1, H * W * 6])
    logits = tf.identity(_dense(flat, "fc", CLASSES), name="logits")
    tf.nn.softmax(logits, name="probs")
    outputs = ["logits", "probs"]
    if pitfall in ("int64_output", "frozen_pb", "saved_model", "batch_norm"):
        tf.argmax(logits, 1, name="pred")  # int64
        outputs.append("pred")
    return logits, outputs, defaults


def build(pitfall, folder):
    """Train a few steps and save; returns what freeze needs to know of the model."""
    os.makedirs(folder, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float32, [None, H, W, C], name="images")
        labels = tf.placeholder(tf.int64, [None], name="labels")
        logits, outputs, defaults = _network(pitfall, images)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        tf.summary.scalar("loss", loss)
        step = tf.train.get_or_create_global_step()
        train = tf.train.AdamOptimizer(1e-2).minimize(loss, global_step=step)
        feed_train = {}
        if "is_training" in defaults:
            feed_train[g.get_tensor_by_name("is_training:0")] = True
        rng = np.random.RandomState(0)
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            for _ in range(3):
                feed = {images: rng.uniform(-1, 1, (4, H, W, C)), labels: rng.randint(0, CLASSES, 4)}
                feed.update(feed_train)
                s.run(train, feed)
            if pitfall == "saved_model":
                d = os.path.join(folder, "export")
                b = tf.saved_model.builder.SavedModelBuilder(d)
                b.add_meta_graph_and_variables(s, [tf.saved_model.tag_constants.SERVING])
                b.save()
                source = ["--input_saved_model_dir", d]
            elif pitfall == "frozen_pb":
                gd = tf.graph_util.convert_variables_to_constants(s, g.as_graph_def(), outputs)
                p = os.path.join(folder, "frozen.pb")
                with open(p, "wb") as f:
                    f.write(gd.SerializeToString())
                source = ["--input_graph", p]
            else:
                tf.train.Saver().save(s, os.path.join(folder, "model.ckpt"), global_step=step)
                source = ["--input_checkpoint", folder]
    return {
        "source": source,
        "input_shape": f"images:4,{H},{W},{C}",
        "outputs": ",".join(outputs),
        "defaults": ";".join(f"{k}:{v}" for k, v in defaults.items()),
    }
