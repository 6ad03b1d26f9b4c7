"""Small TF1 models written the way users write them (they import nothing of this project):
a ``[None, 8, 8, 3]`` input, tf.train.Saver checkpoints, and one pitfall of freezing each.

``build(pitfall, folder)`` trains 3 Adam steps and saves; returns the freeze flags that
fit it ({"source": [...], "input_shape": ..., "outputs": ..., "defaults": ...}).
"""

import os

# isort: off
import common.userframeworks  # noqa: F401  (tf-slim and tf.keras on TF 2.21: first, as in a user's script)
import numpy as np
import tensorflow.compat.v1 as tf

# isort: on

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


# --- nets teams bring: TF-Slim and tf.keras, trained the way their scripts do -------------
# Each ``train_*`` is a user's training script in small (32x32 inputs, a few blocks, 2 steps
# of random CIFAR-sized data) and returns the README's freeze flags for it. They need the
# `user-models` extra and ``import common.userframeworks`` first (README "TF-Slim and Keras
# models"), exactly as a user's script does.

NET_HW, NET_CLASSES = 32, 10


def _user_data(n=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.uniform(-1, 1, (n, NET_HW, NET_HW, C)).astype(np.float32), rng.randint(0, NET_CLASSES, n)


def _slim_net(kind, images, is_training):
    """slim resnet_v1 (2 bottleneck blocks) or the first inception_v1 blocks with a dropout head;
    returns (logits, predictions) as slim's end_points give them ([N, 1, 1, classes])."""
    import tf_slim as slim
    from tf_slim.nets import inception_v1, resnet_v1

    if kind == "resnet":
        blocks = [
            resnet_v1.resnet_v1_block("block1", base_depth=4, num_units=1, stride=2),
            resnet_v1.resnet_v1_block("block2", base_depth=8, num_units=1, stride=1),
        ]
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            logits, ends = resnet_v1.resnet_v1(
                images, blocks, num_classes=NET_CLASSES, is_training=is_training, scope="resnet_v1_small"
            )
        return logits, ends["predictions"]
    with slim.arg_scope(inception_v1.inception_v1_arg_scope()):
        with slim.arg_scope([slim.batch_norm, slim.dropout], is_training=is_training):
            net, _ = inception_v1.inception_v1_base(images, final_endpoint="Mixed_3b", scope="InceptionV1")
            net = tf.reduce_mean(net, [1, 2], keepdims=True, name="global_pool")
            net = slim.dropout(net, 0.8, scope="Dropout_0b")
            logits = slim.conv2d(net, NET_CLASSES, [1, 1], activation_fn=None, normalizer_fn=None, scope="Logits")
    return logits, slim.softmax(logits, scope="Predictions")


def train_slim(folder, kind="resnet", is_training="placeholder"):
    """A slim training script: ``is_training`` a placeholder_with_default(False) fed True while
    training, or the Python bool True (the graph the Saver's .meta then holds is training mode)."""
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(0)
        images = tf.placeholder(tf.float32, [None, NET_HW, NET_HW, C], name="images")
        labels = tf.placeholder(tf.int64, [None], name="labels")
        switch = tf.placeholder_with_default(False, [], name="is_training") if is_training == "placeholder" else True
        logits, predictions = _slim_net(kind, images, switch)
        loss = tf.losses.sparse_softmax_cross_entropy(labels, tf.squeeze(logits, [1, 2]))
        step = tf.train.get_or_create_global_step()
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):  # moving averages
            train = tf.train.AdamOptimizer(1e-3).minimize(loss, global_step=step)
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            for i in range(2):
                x, y = _user_data(seed=i)
                feed = {images: x, labels: y}
                if is_training == "placeholder":
                    feed[switch] = True
                s.run(train, feed)
            tf.train.Saver().save(s, os.path.join(folder, "model.ckpt"), global_step=step)
    return {
        "source": ["--input_checkpoint", folder],
        "outputs": predictions.op.name,
        "defaults": "is_training:false" if is_training == "placeholder" else "",
    }


def export_slim_inference(train_folder, folder, kind="resnet"):
    """The README's fix for a Python-bool training graph: rebuild with is_training=False,
    restore the trained variables, save again."""
    g = tf.Graph()
    with g.as_default():
        images = tf.placeholder(tf.float32, [None, NET_HW, NET_HW, C], name="images")
        _, predictions = _slim_net(kind, images, False)
        with tf.Session() as s:
            tf.train.Saver().restore(s, tf.train.latest_checkpoint(train_folder))
            tf.train.Saver().save(s, os.path.join(folder, "model.ckpt"))
    return {"source": ["--input_checkpoint", folder], "outputs": predictions.op.name, "defaults": ""}


def _keras_model(kind):
    K = tf.keras
    if kind == "mobilenet":  # v1 at its smallest (v2: twice the batch norms, twice the freeze time)
        return K.applications.MobileNet(input_shape=(NET_HW, NET_HW, C), alpha=0.25, weights=None, classes=NET_CLASSES)
    return K.Sequential(
        [
            K.layers.Conv2D(8, 3, padding="same", input_shape=(NET_HW, NET_HW, C), name="conv"),
            K.layers.BatchNormalization(name="bn"),
            K.layers.ReLU(name="relu"),
            K.layers.MaxPooling2D(4, name="pool"),
            K.layers.Flatten(name="flat"),
            K.layers.Dropout(0.3, name="drop"),
            K.layers.Dense(NET_CLASSES, activation="softmax", name="probs"),
        ]
    )


def train_keras(folder, kind="sequential", save="checkpoint"):
    """A tf.keras (Keras 2, graph mode) script: compile, fit, then a tf.train.Saver checkpoint of
    Keras' session, or a SavedModel whose signature names the output ``probs``."""
    g = tf.Graph()
    with g.as_default():
        tf.set_random_seed(0)
        model = _keras_model(kind)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        x, y = _user_data(16)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        s = tf.keras.backend.get_session()
        if save == "saved_model":
            d = os.path.join(folder, "export")
            tf.saved_model.simple_save(s, d, inputs={"images": model.input}, outputs={"probs": model.output})
            return {"source": ["--input_saved_model_dir", d], "outputs": "probs", "input": "images", "defaults": ""}
        tf.train.Saver().save(s, os.path.join(folder, "model.ckpt"))
    return {
        "source": ["--input_checkpoint", folder],
        "outputs": model.output.op.name,
        "input": model.input.op.name,
        "defaults": "",
    }
