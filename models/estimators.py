"""Gradient estimators for the SBN: one class per estimator, as in research/rebar.

``SBN`` holds the hyperparameters, the hard pass and the optimisers; each subclass
overrides ``_gradients`` (the model-parameter gradient it estimates, to be minimised,
and the objective its control variates minimise). Sign convention: every gradient here
is of the loss -ELBO.

Noise: the training graph's only randomness is ``u`` [N, n_layer*n_hidden], a
placeholder whose default draws fresh uniforms; the hard, relaxed and conditional
samples all come from it (the conditional one through ``u_to_v``).
"""

import math

from common.tfcompat import tf
from models import sbn

sg = tf.stop_gradient


def vectorize(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def center(x):
    """Leave-one-out: x_i - mean of the others."""
    n = tf.cast(tf.shape(x)[0], tf.float32)
    return x - (tf.reduce_sum(x) - x) / (n - 1.0)


def u_to_v(logits, u, b):
    """Conditional uniform for z~ ~ p(z | b), with the same value as u (common random numbers)
    but the gradient of the conditional reparameterisation."""
    up = tf.sigmoid(-logits)  # b = 1 iff u > up
    v1 = sg(tf.clip_by_value((u - up) / tf.maximum(1.0 - up, 1e-8), 0.0, 1.0))
    v0 = sg(tf.clip_by_value(u / tf.maximum(up, 1e-8), 0.0, 1.0))
    v = tf.where(b > 0.5, v1 * (1.0 - up) + up, v0 * up)
    return v + sg(u - v)


def relax(z, logits, temperature, muprop_relaxation):
    """sigma_lambda(z); with the reference's MuProp shift unless muprop_relaxation=False (plain Concrete)."""
    x = z / temperature
    if muprop_relaxation:
        x += logits * temperature / (temperature + 1.0)
    return tf.sigmoid(x)


class SBN:
    """REINFORCE with the leave-one-out baseline over the batch."""

    def __init__(self, hp, mean_xs=None):
        self.hp = hp = sbn.check_hparams(hp)
        L, H, D = hp["n_layer"], hp["n_hidden"], hp["n_input"]
        self.n_rows = N = hp["batch_size"] * hp["n_samples"]
        self.net = sbn.Net(hp, mean_xs)
        self.x = tf.placeholder(tf.float32, [hp["batch_size"], D], name="x")
        self.xr = tf.tile(self.x, [hp["n_samples"], 1])
        self.u = tf.placeholder_with_default(tf.random_uniform([N, L * H]), [N, L * H], name="u")
        self.us = tf.split(self.u, L, axis=1)
        self.hard = self.net.elbo(self.xr, sbn.hard_sampler(self.us))
        self.f = self.hard["f"]
        self.model_vars = sbn.model_variables()
        self.etas = []
        self.logs = {"elbo": tf.reduce_mean(self.f)}
        grads, objective = self._gradients()
        self.grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.model_vars)]
        self.grad_vec = vectorize(self.grads)
        names = {v.op.name for v in self.model_vars}
        self.extra_vars = [v for v in tf.trainable_variables() if v.op.name not in names]
        self.extra_grads = self._extra_gradients(objective)
        self._optimizers()

    # --- what estimators override ---------------------------------------------------
    def _gradients(self):
        """-> (gradients of -ELBO for self.model_vars, objective for the control variates or None)"""
        ls = center(self.f)
        loss = -tf.reduce_mean(sg(ls) * tf.add_n(self.hard["logq"]) + self.hard["logp"])
        return tf.gradients(loss, self.model_vars), None

    def _extra_gradients(self, objective):
        if objective is None or not self.extra_vars:
            return []
        return [(g, v) for g, v in zip(tf.gradients(objective, self.extra_vars), self.extra_vars) if g is not None]

    # --- shared ---------------------------------------------------------------------
    def _optimizers(self):
        hp = self.hp
        self.global_step = tf.train.get_or_create_global_step()
        g, g2 = self.grad_vec, tf.square(self.grad_vec)
        ema = tf.train.ExponentialMovingAverage(0.999)
        deps = self.grads + [g for g, _ in self.extra_grads] + list(self.logs.values())
        with tf.control_dependencies(deps):  # every gradient and log reads pre-update values
            model_opt = tf.train.AdamOptimizer(hp["learning_rate"], beta2=hp["beta2"])
            ops = [model_opt.apply_gradients(zip(self.grads, self.model_vars), self.global_step)]
            extra_ops = []
            if self.extra_grads:
                extra_opt = tf.train.AdamOptimizer(10 * hp["learning_rate"], beta2=hp["beta2"])
                extra_ops = [extra_opt.apply_gradients(self.extra_grads)]
            ops.append(ema.apply([g, g2]))
        self.train_op = tf.group(ops + extra_ops)
        # control variates only, model fixed (the variance comparison's warm-up)
        self.extra_op = tf.group(extra_ops) if extra_ops else tf.no_op()
        self.grad_variance = tf.reduce_mean(ema.average(g2) - tf.square(ema.average(g)))
        self.temperature = self.logs.get("temperature", tf.constant(float("nan")))

    def baseline(self):
        return self.net.baseline(self.xr)

    def scalar(self, name, init=0.0):
        with tf.variable_scope("cv", reuse=tf.AUTO_REUSE):
            return tf.get_variable(name, [], initializer=tf.constant_initializer(init))


class SBNNVIL(SBN):
    """f - c(x), c trained on (f - c)^2 with the second (10x lr) Adam."""

    def _gradients(self):
        c = self.baseline()
        loss = -tf.reduce_mean(sg(self.f - c) * tf.add_n(self.hard["logq"]) + self.hard["logp"])
        return tf.gradients(loss, self.model_vars), tf.reduce_mean(tf.square(sg(self.f) - c))


class SBNSimpleMuProp(SBN):
    """Baseline eta*f(mu) + c(x), mu the mean-field pass."""

    def _gradients(self):
        fmu = self.net.elbo(self.xr, sbn.mean_sampler)["f"]
        eta = 2 * tf.sigmoid(self.scalar("eta"))
        ls = self.f - eta * fmu - self.baseline()
        loss = -tf.reduce_mean(sg(ls) * tf.add_n(self.hard["logq"]) + self.hard["logp"])
        self.logs["muELBO"] = tf.reduce_mean(fmu)
        return tf.gradients(loss, self.model_vars), tf.reduce_mean(tf.square(ls))


class SBNMuProp(SBN):
    """Per layer: baseline eta0*f(mu) + eta1*grad f(mu).(b - mu) + c(x), plus its analytic mean."""

    def _gradients(self):
        mu = self.net.elbo(self.xr, sbn.mean_sampler)
        fmu, c = mu["f"], self.baseline()
        eta0, eta1 = (2 * tf.sigmoid(self.scalar(n)) for n in ("eta0", "eta1"))
        dmu = tf.gradients(tf.reduce_sum(fmu), mu["samples"])  # total derivative through later layers
        score, analytic, objective = [], [], []
        for i, (b, m, d) in enumerate(zip(self.hard["samples"], mu["samples"], dmu)):
            lin = tf.reduce_sum(sg(d) * (b - sg(m)), -1)
            ls = self.f - eta0 * fmu - eta1 * lin - c
            score.append(sg(ls) * self.hard["logq"][i])
            analytic.append(tf.reduce_sum(sg(eta1 * d) * tf.sigmoid(self.hard["logits"][i]), -1))
            objective.append(tf.square(ls))
        loss = -tf.reduce_mean(tf.add_n(score) + self.hard["logp"] + tf.add_n(analytic))
        self.logs["muELBO"] = tf.reduce_mean(fmu)
        return tf.gradients(loss, self.model_vars), tf.reduce_mean(tf.add_n(objective))


class SBNGumbel(SBN):
    """Concrete relaxation: minimise -ELBO of relaxed samples (biased)."""

    def _gradients(self):
        t = self.hp["temperature"]
        self.logs["temperature"] = tf.constant(t)
        soft = self.net.elbo(self.xr, self.relaxed_sampler(t, tilde=False, first=0))["f"]
        self.logs["softELBO"] = tf.reduce_mean(soft)
        return tf.gradients(-tf.reduce_mean(soft), self.model_vars), None

    def relaxed_sampler(self, temperature, tilde, first):
        """Layers < first hard, layers >= first relaxed (sigma_lambda(z), or of z~ when tilde)."""

        def sampler(i, logits):
            u = self.us[i]
            z = logits + sbn.logit(u)
            b = sg(tf.cast(z > 0, tf.float32))
            if i < first:
                return b
            if tilde:
                z = logits + sbn.logit(u_to_v(logits, u, b))
            return relax(z, logits, temperature, self.hp["muprop_relaxation"])

        return sampler


class SBNRebar(SBNGumbel):
    """REBAR at a fixed temperature: REINFORCE with c(x) and the relaxed control variate
    eta*[f(s(z~)) s - grad f(s(z)) + grad f(s(z~))], eta = 2 sigmoid(w) per variable,
    eta and c trained to minimise mean(g^2) (= Var g + const, g unbiased)."""

    def make_temperature(self):
        return tf.constant(self.hp["temperature"])

    def _gradients(self):
        hp, hard = self.hp, self.hard
        lam = self.make_temperature()
        self.logs["temperature"] = tf.reduce_mean(lam)
        c = self.baseline()
        f_loss = -tf.reduce_mean((sg(self.f) - c) * tf.add_n(hard["logq"]) + hard["logp"])
        # quadratic: one control variate per layer l, layers < l hard, only log q_l scored
        firsts = range(hp["n_layer"]) if hp["quadratic"] else [0]
        cv, self.tilde_terms = [], []
        for first in firsts:
            soft = self.net.elbo(self.xr, self.relaxed_sampler(lam, False, first))["f"]
            tilde = self.net.elbo(self.xr, self.relaxed_sampler(lam, True, first))["f"]
            score = hard["logq"][first] if hp["quadratic"] else tf.add_n(hard["logq"])
            cv.append(sg(tilde) * score - soft + tilde)
            self.tilde_terms.append((tilde, score))
        gf = tf.gradients(f_loss, self.model_vars)
        gcv = tf.gradients(tf.reduce_mean(tf.add_n(cv)), self.model_vars)
        self.etas = [2 * tf.sigmoid(self.scalar("eta/" + v.op.name)) for v in self.model_vars]
        self.logs["etas"] = tf.stack(self.etas)
        grads = [_add(a, e, b) for a, e, b in zip(gf, self.etas, gcv)]
        self.g = vectorize([tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.model_vars)])
        return grads, tf.reduce_mean(tf.square(self.g))


def _add(a, eta, b):
    if b is None:
        return a
    return eta * b if a is None else a + eta * b


class SBNDynamicRebar(SBNRebar):
    """REBAR with the temperature learned by the same variance objective. The score term's
    coefficient f(s_lambda(z~)) is stop-gradiented, so its d/dlog(lambda) is added by hand."""

    def make_temperature(self):
        with tf.variable_scope("cv", reuse=tf.AUTO_REUSE):
            self.log_temperature = tf.get_variable(
                "pre_temperature_variable",
                [],
                trainable=False,
                initializer=tf.constant_initializer(math.log(self.hp["temperature"])),
            )
        # tiled per row, so d f_n / d log(lambda) comes out per example
        self.log_temp_rows = tf.tile(tf.reshape(self.log_temperature, [1]), [self.n_rows])
        return tf.exp(self.log_temp_rows)[:, None]

    def _extra_gradients(self, objective):
        extra = super()._extra_gradients(objective)
        auto = tf.gradients(objective, self.log_temperature)[0]
        reinf = None
        for tilde, score in self.tilde_terms:
            d = tf.gradients(tf.reduce_sum(tilde), self.log_temp_rows)[0]
            r = tf.gradients(tf.reduce_mean(sg(d) * score), self.model_vars)
            r = [tf.zeros_like(v) if g is None else e * g for g, e, v in zip(r, self.etas, self.model_vars)]
            reinf = r if reinf is None else [a + b for a, b in zip(reinf, r)]
        by_hand = tf.reduce_mean(2.0 * sg(self.g) * vectorize(reinf))
        grad_t = by_hand if auto is None else auto + by_hand
        return extra + [(grad_t, self.log_temperature)]


CLASSES = {c.__name__: c for c in (SBN, SBNNVIL, SBNSimpleMuProp, SBNMuProp, SBNGumbel, SBNRebar, SBNDynamicRebar)}


def build(hp, mean_xs=None):
    """The estimator named by hp['model'], built in the current graph."""
    hp = sbn.check_hparams(hp)
    return CLASSES[hp["model"]](hp, mean_xs)
