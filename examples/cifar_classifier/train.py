"""A CIFAR-10 classifier written the way a research team writes one in TensorFlow 1.

It knows nothing of ascend-road: it is the kind of model a team brings to the road (see
"Bring your own model" in the README). What makes such graphs hard to freeze is here on
purpose: a ``[None, 32, 32, 3]`` input, batch norm switched between batch statistics and
moving averages by an ``is_training`` placeholder through ``tf.cond``, dropout whose rate
is a ``placeholder_with_default``, an int64 ``argmax`` output, summaries, an optimizer and
its own ``tf.train.Saver``.

Pixels are RGB, NHWC, float32 ``(pixel - 127.5) / 127.5`` (img2bin: -f RGB -a NHWC
-t float32 -m "[127.5,127.5,127.5]" -c "[0.00784313725490196,...]").

    python examples/cifar_classifier/train.py --data_dir $DATA_DIR --train_dir runs/classifier \
        --max_seconds 60
"""

import argparse
import os
import pickle
import sys
import time

import numpy as np
import tensorflow.compat.v1 as tf

tf.disable_v2_behavior()


def load(data_dir, names):
    xs, ys = [], []
    for n in names:
        with open(os.path.join(data_dir, "cifar-10-batches-py", n), "rb") as f:
            d = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(d[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.asarray(d[b"labels"], np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def preprocess(pixels):
    return (pixels.astype(np.float32) - np.float32(127.5)) * np.float32(1 / 127.5)


def conv(x, name, n_out, stride=1):
    with tf.variable_scope(name):
        w = tf.get_variable("w", [3, 3, int(x.shape[-1]), n_out], initializer=tf.variance_scaling_initializer(2.0))
        return tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME")


def batch_norm(x, is_training, name, decay=0.9):
    with tf.variable_scope(name):
        n = int(x.shape[-1])
        gamma = tf.get_variable("gamma", [n], initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", [n], initializer=tf.zeros_initializer())
        mean = tf.get_variable("moving_mean", [n], initializer=tf.zeros_initializer(), trainable=False)
        var = tf.get_variable("moving_variance", [n], initializer=tf.ones_initializer(), trainable=False)

        def train():
            y, m, v = tf.nn.fused_batch_norm(x, gamma, beta, is_training=True)
            updates = [tf.assign(mean, decay * mean + (1 - decay) * m), tf.assign(var, decay * var + (1 - decay) * v)]
            with tf.control_dependencies(updates):
                return tf.identity(y)

        def infer():
            return tf.nn.fused_batch_norm(x, gamma, beta, mean=mean, variance=var, is_training=False)[0]

        return tf.cond(is_training, train, infer)


def network(images, is_training, drop_rate):
    h = images
    for i, (width, stride) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2)]):
        h = tf.nn.relu(batch_norm(conv(h, f"conv{i}", width, stride), is_training, f"bn{i}"))
    h = tf.reduce_mean(h, axis=[1, 2])
    h = tf.nn.dropout(h, rate=drop_rate)
    w = tf.get_variable("fc/w", [int(h.shape[-1]), 10], initializer=tf.glorot_uniform_initializer())
    b = tf.get_variable("fc/b", [10], initializer=tf.zeros_initializer())
    return tf.matmul(h, w) + b


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data_dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--train_dir", required=True)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--max_seconds", type=float, default=60.0)
    ap.add_argument("--max_steps", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x_train, y_train = load(a.data_dir, [f"data_batch_{i}" for i in range(1, 6)])
    x_test, y_test = load(a.data_dir, ["test_batch"])
    tf.set_random_seed(a.seed)
    rng = np.random.RandomState(a.seed)

    images = tf.placeholder(tf.float32, [None, 32, 32, 3], name="images")
    labels = tf.placeholder(tf.int64, [None], name="labels")
    is_training = tf.placeholder(tf.bool, [], name="is_training")
    drop_rate = tf.placeholder_with_default(0.0, [], name="drop_rate")
    logits = tf.identity(network(images, is_training, drop_rate), name="logits")
    tf.nn.softmax(logits, name="probs")
    pred = tf.argmax(logits, axis=1, name="pred")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    correct = tf.reduce_sum(tf.cast(tf.equal(pred, labels), tf.int64))
    tf.summary.scalar("loss", loss)
    step = tf.train.get_or_create_global_step()
    train_op = tf.train.AdamOptimizer(2e-3).minimize(loss, global_step=step)
    summaries = tf.summary.merge_all()
    saver = tf.train.Saver(max_to_keep=2)

    os.makedirs(a.train_dir, exist_ok=True)
    writer = tf.summary.FileWriter(a.train_dir)
    t0 = time.time()
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        i = 0
        while i < a.max_steps and time.time() - t0 < a.max_seconds:
            idx = rng.randint(0, len(x_train), a.batch_size)
            batch = x_train[idx]
            flip = rng.rand(len(batch)) < 0.5
            batch[flip] = batch[flip, :, ::-1]
            _, l, s, i = sess.run(
                [train_op, loss, summaries, step],
                {images: preprocess(batch), labels: y_train[idx], is_training: True, drop_rate: 0.3},
            )
            if i % 50 == 0:
                writer.add_summary(s, i)
                print(f"step {i} loss {l:.3f} ({time.time() - t0:.0f} s)", flush=True)
        acc = sum(
            sess.run(
                correct, {images: preprocess(x_test[k : k + 256]), labels: y_test[k : k + 256], is_training: False}
            )
            for k in range(0, len(x_test), 256)
        ) / len(x_test)
        path = saver.save(sess, os.path.join(a.train_dir, "model.ckpt"), global_step=i)
    writer.close()
    print(f"step {i}: test accuracy {acc:.4f} on {len(x_test)} images; saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
