"""RealNVP building blocks: weight-normed conv, per-image normalisation, masks, coupling.

Each flow step is ``fn(name, z, logdet, ..., reverse=False) -> (z, logdet)`` under one
variable scope and holds both directions (Glow style). Variables are created with
``tf.get_variable`` in the dtype of the input, so the same code builds a float64 graph
(used by the numerical-Jacobian test).

The graph is written with few ops (building it, and its gradient, costs about a
millisecond per op in TF's Python layer, and the gradient of a broadcasting op costs
several): each activation is centred once, the weight-norm gain multiplies the
kernel rather than the activations, and the coupling's masks are applied to l and m
only (masked entries then give exp(0) = 1 and + 0: the same numbers as the
reference's b*x + (1-b)*(...) form).
"""
import numpy as np

from common.tfcompat import tf

EPS = 1e-6
INIT_SCALE = 0.1  # std of the initial log-scale and shift after the data-dependent init


def image_norm(h):
    """Normalise each image by the mean/variance of its own H,W,C (no batch coupling)."""
    c = h - tf.reduce_mean(h, [1, 2, 3], keepdims=True)
    return c * tf.rsqrt(tf.reduce_mean(tf.square(c), [1, 2, 3], keepdims=True) + EPS)


def conv(name, h, out_ch, k, init_std=None):
    """SAME conv, no bias, weight norm over the whole kernel: w / ||w||_F * g.

    ``init_std`` (data-dependent init): set g so the output has that std on this batch;
    the returned output already uses the new g."""
    with tf.variable_scope(name):
        dt = h.dtype.base_dtype
        w = tf.get_variable("W", [k, k, int(h.shape[-1]), out_ch], dt,
                            initializer=tf.glorot_uniform_initializer())
        g = tf.get_variable("g", [], dt, initializer=tf.ones_initializer())
        inv_norm = tf.rsqrt(tf.reduce_sum(tf.square(w)))
        if init_std is None:  # the scalar gain folded into the kernel: one broadcast op fewer
            return tf.nn.conv2d(h, w * (g * inv_norm), [1, 1, 1, 1], "SAME")
        v = tf.nn.conv2d(h, w * inv_norm, [1, 1, 1, 1], "SAME")
        g_new = init_std * tf.rsqrt(tf.reduce_mean(tf.square(v)) + EPS)
        with tf.control_dependencies([tf.assign(g, g_new)]):
            return v * g_new


def dropout(h, p, seed):
    """Dropout from a stateless RNG keyed by ``seed`` (an int [2] tensor): reproducible on resume.
    ``p`` may be a scalar tensor; at p = 0 it is exactly the identity."""
    keep = tf.random.stateless_uniform(tf.shape(h), seed, dtype=h.dtype) >= p
    return h * tf.cast(keep, h.dtype) / (1.0 - p)


def st_net(x, n_blocks, n_features, init=False, dropout_p=0.0, seed=None):
    """s/t ResNet (taesungp layout, per-image normalisation): -> (l, m), each shaped like x."""
    c = int(x.shape[-1])
    h = tf.nn.relu(image_norm(conv("in", image_norm(x), n_features, 1)))
    skip = h
    for i in range(n_blocks):
        with tf.variable_scope(f"block{i}"):
            h = tf.nn.relu(image_norm(conv("conv0", skip, n_features, 3)))
            if isinstance(dropout_p, tf.Tensor) or dropout_p > 0:
                h = dropout(h, dropout_p, seed + tf.constant([0, 1 + i], seed.dtype))
            h = image_norm(conv("conv1", h, n_features, 3))
            skip = h = tf.nn.relu(h + skip)
    out = conv("out", h, 2 * c, 1, init_std=1.0 if init else None)
    t = tf.tanh(out)
    scale = tf.get_variable("tanh_scale", [], x.dtype.base_dtype, initializer=tf.zeros_initializer())
    if init:  # near-identity start: l and m get std INIT_SCALE on the init batch
        s_new = INIT_SCALE * tf.rsqrt(tf.reduce_mean(tf.square(t)) + EPS)
        with tf.control_dependencies([tf.assign(scale, s_new)]):
            t = tf.identity(t * s_new)
    else:
        t = t * scale
    return tf.split(t, 2, axis=3)


def checkerboard(h, w, c, parity):
    """[1,H,W,C] mask: 2x2 unit [[0,1],[1,0]] tiled (parity 0) or its complement (parity 1)."""
    m = (np.add.outer(np.arange(h), np.arange(w)) + 1 + parity) % 2
    return np.repeat(m[None, :, :, None], c, axis=3).astype(np.float32)


def channel(h, w, c, parity):
    """[1,H,W,C] mask: ones on the first C/2 channels (parity 0) or the last C/2 (parity 1)."""
    m = np.zeros([1, h, w, c], np.float32)
    if parity == 0:
        m[..., : c // 2] = 1
    else:
        m[..., c // 2:] = 1
    return m


def coupling(name, z, logdet, mask, n_blocks, n_features, reverse=False, init=False,
             dropout_p=0.0, seed=None):
    """Affine coupling: y = x*b + (1-b)*(x*exp(l) + m), (l, m) = f(x*b); logdet += sum l.

    l and m are zero where b = 1, so this is computed as y = x*exp(l) + m (and x = (y - m)*exp(-l)):
    the same values, fewer ops."""
    with tf.variable_scope(name):
        dt = z.dtype.base_dtype
        l, m = st_net(z * tf.constant(mask, dt), n_blocks, n_features, init, dropout_p, seed)
        free = tf.constant(1 - mask, dt)
        l, m = l * free, m * free
        sum_l = tf.reduce_sum(l, [1, 2, 3])
        if not reverse:
            return z * tf.exp(l) + m, logdet + sum_l
        return (z - m) * tf.exp(-l), logdet - sum_l


def squeeze(name, z, logdet, reverse=False):
    with tf.name_scope(name):
        return (tf.nn.depth_to_space(z, 2) if reverse else tf.nn.space_to_depth(z, 2)), logdet
