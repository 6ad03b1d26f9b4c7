"""Sigmoid belief net (SBN): hyperparameters, network, inference graph.

Shapes and names follow tensorflow/models research/rebar (``p_prior``, ``q_0/weights``,
..., ``p_0/biases``) so etas print in the reference's order. Unlike the reference, the
training-data statistics ``mean_xs`` and ``train_bias`` are non-trainable variables, so
they travel in the checkpoint, and every uniform draw is a graph input.
The estimators that train it live in models/estimators.py.

Tasks, as the reference's: ``sbn`` (binarized MNIST) and ``omni`` (Omniglot) model the
whole image, f = log p(x,b) - log q(b|x); ``sp`` (structured prediction) models the
bottom half given the top half: q(b|x_top) has n_layer stochastic layers and the
generator is the single layer p_{n_layer-1} from the last of them to the 392 bottom
pixels (the reference's erratum), so f = log p(x_bottom|b), a lower bound on
log p(x_bottom|x_top) whose K-sample version tightens towards it.
"""

import math
import re

import numpy as np

from common.errors import UserError
from common.tfcompat import tf
from models import IO

GRAPHS = ("forward",)
TASKS = ("sbn", "sp", "omni")
ESTIMATORS = ("SBN", "SBNNVIL", "SBNSimpleMuProp", "SBNMuProp", "SBNGumbel", "SBNRebar", "SBNDynamicRebar")
DEFAULTS = dict(
    model="SBNGumbel",
    n_hidden=200,
    n_input=784,
    n_layer=1,
    nonlinear=False,
    learning_rate=0.001,
    temperature=0.5,
    n_samples=1,
    batch_size=24,
    trial=1,
    muprop_relaxation=True,
    dynamic_b=False,
    quadratic=True,
    beta2=0.99999,
    task="sbn",
)
# hparams that change the variables (and so the checkpoint); the rest may change on resume
STRUCTURE = ("model", "n_hidden", "n_input", "n_layer", "nonlinear", "n_samples", "batch_size", "quadratic", "task")
MODEL_VARS = re.compile(r"^(p_prior|[qp]_\d+)")
HE_INIT = tf.variance_scaling_initializer(scale=2.0, mode="fan_in", distribution="truncated_normal")


# --- hyperparameters -----------------------------------------------------------


def _convert(key, text):
    kind = type(DEFAULTS[key])
    if kind is bool:
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ValueError("expected true or false")
    return kind(text.strip())


def parse_hparams(text, base=None):
    """``"model=SBNRebar,n_layer=2"`` -> full hparams dict over DEFAULTS (or ``base``)."""
    hp = dict(base or DEFAULTS)
    for item in filter(None, (s.strip() for s in (text or "").split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in DEFAULTS:
            raise UserError(f"--hparams: unknown item {item!r}; valid keys are {', '.join(DEFAULTS)}")
        try:
            hp[key] = _convert(key, value)
        except ValueError:
            raise UserError(
                f"--hparams: {key}={value!r} is not a valid {type(DEFAULTS[key]).__name__} (default {DEFAULTS[key]!r})"
            ) from None
    return check_hparams(hp)


def check_hparams(hp):
    unknown = sorted(set(hp) - set(DEFAULTS))
    if unknown:
        raise UserError(f"hparams: unknown keys {unknown}; valid keys are {', '.join(DEFAULTS)}")
    hp = dict(DEFAULTS, **hp)
    if hp["model"] not in ESTIMATORS:
        raise UserError(f"hparams: model={hp['model']!r}; expected one of {', '.join(ESTIMATORS)}")
    if hp["task"] not in TASKS:
        raise UserError(
            f"hparams: task={hp['task']!r}; expected sbn (binarized MNIST), sp (its bottom half given "
            "the top half) or omni (Omniglot)"
        )
    if hp["n_input"] != 784:
        raise UserError(f"hparams: n_input={hp['n_input']}; MNIST and Omniglot images have 784 pixels")
    for k, lo in (("n_hidden", 1), ("n_layer", 1), ("n_samples", 1), ("batch_size", 2)):
        if hp[k] < lo:
            raise UserError(f"hparams: {k}={hp[k]}; expected an integer >= {lo}")
    for k in ("learning_rate", "temperature"):
        if not hp[k] > 0:
            raise UserError(f"hparams: {k}={hp[k]}; expected a positive number")
    if not 0 < hp["beta2"] < 1:
        raise UserError(f"hparams: beta2={hp['beta2']}; expected 0 < beta2 < 1")
    return hp


def format_hparams(hp):
    return ",".join(f"{k}={hp[k]}" for k in DEFAULTS)


# --- network -------------------------------------------------------------------


def dense(name, x, n_out):
    with tf.variable_scope(name, reuse=tf.AUTO_REUSE):
        w = tf.get_variable("weights", [int(x.shape[-1]), n_out], initializer=HE_INIT)
        b = tf.get_variable("biases", [n_out], initializer=tf.zeros_initializer())
    return tf.matmul(x, w) + b


def transformation(name, x, n_out, nonlinear):
    if nonlinear:
        x = tf.tanh(dense(name + "_nonlinear_1", x, 200))
        x = tf.tanh(dense(name + "_nonlinear_2", x, 200))
    return dense(name, x, n_out)


def binary_log_likelihood(y, logits):
    """sum_j y log sigmoid(l) + (1-y) log(1-sigmoid(l)); also applied to relaxed y (as the reference)."""
    return tf.reduce_sum(y * logits - tf.nn.softplus(logits), -1)


def logit(u):
    return tf.log(tf.maximum(u, 1e-8)) - tf.log(tf.maximum(1.0 - u, 1e-8))


def hard_sampler(us):
    """b = [logit(theta) + logit(u) > 0], i.e. u > 1 - theta: a Bernoulli(theta) draw from u."""
    return lambda i, logits: tf.stop_gradient(tf.cast(logits + logit(us[i]) > 0, tf.float32))


def mean_sampler(i, logits):
    return tf.sigmoid(logits)


class Net:
    """The SBN's variables and its passes; one recognition network serves hard, relaxed,
    mean-field and conditional samples through the ``sampler(layer, logits)`` argument."""

    def __init__(self, hp, mean_xs=None):
        self.hp = hp
        H, D = hp["n_hidden"], hp["n_input"]
        with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
            self.p_prior = tf.get_variable("p_prior", [H], initializer=tf.zeros_initializer())
            m = np.zeros(D, np.float32) if mean_xs is None else np.asarray(mean_xs, np.float32)
            bias = np.log(np.clip(m, 0.001, 0.999)) - np.log1p(-np.clip(m, 0.001, 0.999))
            self.mean_xs = tf.get_variable("mean_xs", [D], initializer=tf.constant_initializer(m), trainable=False)
            self.train_bias = tf.get_variable(
                "train_bias", [D], trainable=False, initializer=tf.constant_initializer(bias.astype(np.float32))
            )

    def split(self, t):
        """(top, bottom) halves along the last axis (rows 0-13 and 14-27 of a 28x28 digit)."""
        half = self.hp["n_input"] // 2
        return t[..., :half], t[..., half:]

    def recognition(self, x, sampler):
        h = x - self.mean_xs
        if self.hp["task"] == "sp":  # q sees the observed top half only
            h = self.split(h)[0]
        logits, samples = [], []
        for i in range(self.hp["n_layer"]):
            lg = transformation(f"q_{i}", h, self.hp["n_hidden"], self.hp["nonlinear"])
            s = sampler(i, lg)
            logits.append(lg)
            samples.append(s)
            h = 2.0 * s - 1.0
        return logits, samples

    def generator(self, x, samples):
        """log p(x, b) per row: prior on the top layer, then p_{L-1} ... p_0; for sp,
        log p(x_bottom | b_{L-1}) through p_{L-1} alone."""
        L = self.hp["n_layer"]
        if self.hp["task"] == "sp":
            bottom = self.split(x)[1]
            lg = transformation(f"p_{L - 1}", 2.0 * samples[-1] - 1.0, int(bottom.shape[-1]), self.hp["nonlinear"])
            return binary_log_likelihood(bottom, lg + self.split(self.train_bias)[1])
        logp = binary_log_likelihood(samples[-1], self.p_prior)
        for i in reversed(range(L)):
            n_out = self.hp["n_hidden"] if i else self.hp["n_input"]
            lg = transformation(f"p_{i}", 2.0 * samples[i] - 1.0, n_out, self.hp["nonlinear"])
            if i == 0:
                lg += self.train_bias
            logp += binary_log_likelihood(samples[i - 1] if i else x, lg)
        return logp

    def elbo(self, x, sampler):
        """One pass: f = log p(x,b) - log q(b|x) per row, with its parts."""
        logits, samples = self.recognition(x, sampler)
        logq = [binary_log_likelihood(s, lg) for s, lg in zip(samples, logits)]
        logp = self.generator(x, samples)
        f = logp if self.hp["task"] == "sp" else logp - tf.add_n(logq)  # sp: q is the model's own prior
        return dict(f=f, logp=logp, logq=logq, logits=logits, samples=samples)

    def baseline(self, x):
        """Input-dependent baseline c(x): centered x -> 100 tanh -> 1 (NVIL, MuProp, REBAR)."""
        h = tf.tanh(dense("baseline/hidden", x - self.mean_xs, 100))
        return tf.squeeze(dense("baseline/out", h, 1), -1)

    def log_weights(self, x, u):
        """x [B, D], u [B, K, L*H] -> log p(x,b) - log q(b|x) [B, K]; image b's samples use u[b]."""
        K = int(u.shape[1])
        xr = tf.reshape(tf.tile(x[:, None, :], [1, K, 1]), [-1, self.hp["n_input"]])
        us = tf.split(tf.reshape(u, [-1, int(u.shape[2])]), self.hp["n_layer"], axis=1)
        return tf.reshape(self.elbo(xr, hard_sampler(us))["f"], [-1, K])


def model_variables():
    return [v for v in tf.trainable_variables() if MODEL_VARS.match(v.op.name)]


def noise_width(hp):
    return hp["n_layer"] * hp["n_hidden"]


def bounds(log_weights, name_prefix=""):
    K = int(log_weights.shape[1])
    elbo = tf.identity(tf.reduce_mean(log_weights, 1), name=name_prefix + "elbo")
    iwae = tf.identity(tf.reduce_logsumexp(log_weights, 1) - math.log(K), name=name_prefix + "iwae")
    return elbo, iwae


# --- inference contract (models/__init__.py) -----------------------------------


def inference_graph(config, batch, graph="forward", samples=100):
    if graph not in GRAPHS:
        raise UserError(f"model 'rebar' has no graph {graph!r}; graphs are {list(GRAPHS)}")
    hp = check_hparams(config)
    net = Net(hp)
    D = hp["n_input"]
    if hp["task"] == "sp":
        top = tf.placeholder(tf.float32, [batch, D // 2], name="x_top")
        bottom = tf.placeholder(tf.float32, [batch, D - D // 2], name="x_bottom")
        x = tf.concat([top, bottom], 1)
        inputs = [
            IO(top, "ND", f"observed top half of a binarized MNIST digit (rows 0-13), {{0,1}}, [B, {D // 2}]"),
            IO(bottom, "ND", f"its bottom half (rows 14-27), the pixels scored, [B, {D - D // 2}]"),
        ]
        what = "log p(x_bottom|b), b ~ q(b|x_top),"
    else:
        x = tf.placeholder(tf.float32, [batch, D], name="x")
        data = "binarized Omniglot" if hp["task"] == "omni" else "binarized MNIST"
        inputs = [IO(x, "ND", f"{data} images, float32 in {{0,1}}, [B, {D}]")]
        what = "log p(x,b) - log q(b|x)"
    u = tf.placeholder(tf.float32, [batch, samples, noise_width(hp)], name="u")
    lw = tf.identity(net.log_weights(x, u), name="log_weights")
    elbo, iwae = bounds(lw)
    inputs.append(
        IO(u, "ND", f"uniform (0,1) noise, [B, K={samples}, n_layer*n_hidden]; the K samples of image b use u[b]")
    )
    outputs = [
        IO(lw, "ND", f"{what} per sample [B, K] (nats)"),
        IO(elbo, "ND", "single-sample ELBO per image: mean over K of log_weights (nats)"),
        IO(iwae, "ND", f"importance-weighted bound IWAE-{samples} per image (nats)"),
    ]
    return inputs, outputs


def example_feed(config, batch, graph="forward", rng=None, samples=100):
    hp = check_hparams(config)
    rng = rng or np.random.RandomState(0)
    x = (rng.uniform(size=(batch, hp["n_input"])) < 0.2).astype(np.float32)
    u = rng.uniform(1e-6, 1 - 1e-6, size=(batch, samples, noise_width(hp))).astype(np.float32)
    if hp["task"] == "sp":
        half = hp["n_input"] // 2
        return {"x_top": x[:, :half], "x_bottom": x[:, half:], "u": u}
    return {"x": x, "u": u}
