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
SQRT3 = float(np.sqrt(3.0))

# Switches for the learning-speed ablations of issue #14 (docs/realnvp_ablations.md). They
# live in the model config (config.json), so a frozen graph is built the way it was trained
# (a config without them gets these defaults; only scale_param and mask_phase change the graph).
# The default scale_init is 1.0 since issue #14: with "ddi" (the earlier default) the tanh scale
# started near 0.16 and, growing ~1e-3 per Adam step, capped |l| (the coupling's log-scale)
# for hundreds of steps; that cap was what made this port learn slower than the reference.
#   scale_init  "ddi": the init pass sets the tanh scale so l, m have RMS INIT_SCALE (0 without it),
#               after setting the output conv's gain for unit-RMS pre-tanh activations;
#               "ref": the reference's draw, U(-sqrt3, sqrt3); a number: that constant. With these
#               the init pass (if any) sets the output gain so l, m have RMS ~INIT_SCALE instead
#               (pre-tanh RMS INIT_SCALE/|scale|: tanh in its linear range, |l| can reach |scale|)
#   scale_param "scalar": one variable; "wn_vector": the reference's weight-normed 1-vector v/|v|*g
#   gain_init   "one": weight-norm gains start at 1; "ref": U(-sqrt3, sqrt3) like the reference
#               (the init pass still overwrites the output conv's gain)
#   mask_phase  "ours": checkerboard parity 0 conditions on (i+j) even; "ref": on (i+j) odd, the
#               reference's checkerboard0. "ours" stays the default: configs of existing checkpoints
#               do not record the phase, and the measured effect on learning was within seed noise
DEFAULT_OPTS = {"scale_init": 1.0, "scale_param": "scalar", "gain_init": "one", "mask_phase": "ours"}


def image_norm(h):
    """Normalise each image by the mean/variance of its own H,W,C (no batch coupling)."""
    c = h - tf.reduce_mean(h, [1, 2, 3], keepdims=True)
    return c * tf.rsqrt(tf.reduce_mean(tf.square(c), [1, 2, 3], keepdims=True) + EPS)


def _gain_initializer(gain_init):
    return tf.ones_initializer() if gain_init == "one" else tf.random_uniform_initializer(-SQRT3, SQRT3)


def conv(name, h, out_ch, k, init_std=None, gain_init="one"):
    """SAME conv, no bias, weight norm over the whole kernel: w / ||w||_F * g.

    ``init_std`` (data-dependent init): set g so the output has that std on this batch;
    the returned output already uses the new g."""
    with tf.variable_scope(name):
        dt = h.dtype.base_dtype
        w = tf.get_variable("W", [k, k, int(h.shape[-1]), out_ch], dt, initializer=tf.glorot_uniform_initializer())
        g = tf.get_variable("g", [], dt, initializer=_gain_initializer(gain_init))
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


def opts_of(config):
    """The ablation switches of a model config (DEFAULT_OPTS where a key is absent), checked."""
    o = {k: config.get(k, v) for k, v in DEFAULT_OPTS.items()}
    si = o["scale_init"]
    if not (si in ("ddi", "ref") or (isinstance(si, (int, float)) and not isinstance(si, bool))):
        raise ValueError(f"scale_init must be 'ddi', 'ref' or a number, found {si!r}")
    for k, allowed in (
        ("scale_param", ("scalar", "wn_vector")),
        ("gain_init", ("one", "ref")),
        ("mask_phase", ("ours", "ref")),
    ):
        if o[k] not in allowed:
            raise ValueError(f"{k} must be one of {allowed}, found {o[k]!r}")
    return o


def tanh_scale(dt, opts):
    """The learned scale of tanh (a scalar tensor) and, for the init pass, an assign(value) function
    or None when the scale is not data-dependent."""
    si = opts["scale_init"]
    if si == "ddi":
        init = tf.zeros_initializer()
    elif si == "ref":
        init = tf.random_uniform_initializer(-SQRT3, SQRT3)
    else:
        init = tf.constant_initializer(float(si))
    if opts["scale_param"] == "scalar":
        scale = tf.get_variable("tanh_scale", [], dt, initializer=init)
        return scale, (lambda val: tf.assign(scale, val)) if si == "ddi" else None
    # the reference's get_normalized_weights on a [1] vector: v/|v|*g = sign(v)*g, both drawn U(+-sqrt3)
    v = tf.get_variable("tanh_scale_v", [1], dt, initializer=tf.random_uniform_initializer(-SQRT3, SQRT3))
    g = tf.get_variable("tanh_scale_g", [1], dt, initializer=init)
    scale = tf.reshape(v * tf.rsqrt(tf.reduce_sum(tf.square(v))) * g, [])
    return scale, (lambda val: tf.assign(g, tf.reshape(val, [1]) * tf.sign(v))) if si == "ddi" else None


def st_net(x, n_blocks, n_features, init=False, dropout_p=0.0, seed=None, opts=None):
    """s/t ResNet (taesungp layout, per-image normalisation): -> (l, m), each shaped like x."""
    opts = DEFAULT_OPTS if opts is None else opts
    gi = opts["gain_init"]
    c = int(x.shape[-1])
    h = tf.nn.relu(image_norm(conv("in", image_norm(x), n_features, 1, gain_init=gi)))
    skip = h
    for i in range(n_blocks):
        with tf.variable_scope(f"block{i}"):
            h = tf.nn.relu(image_norm(conv("conv0", skip, n_features, 3, gain_init=gi)))
            if isinstance(dropout_p, tf.Tensor) or dropout_p > 0:
                h = dropout(h, dropout_p, seed + tf.constant([0, 1 + i], seed.dtype))
            h = image_norm(conv("conv1", h, n_features, 3, gain_init=gi))
            skip = h = tf.nn.relu(h + skip)
    if init and opts["scale_init"] != "ddi":
        # the scale is given: the init pass sets the output gain so l, m still start with RMS ~INIT_SCALE
        scale, assign = tanh_scale(x.dtype.base_dtype, opts)
        out = conv("out", h, 2 * c, 1, init_std=INIT_SCALE / (tf.abs(scale) + EPS), gain_init=gi)
    else:  # (variables in the order they always had: out conv, then scale)
        out = conv("out", h, 2 * c, 1, init_std=1.0 if init else None, gain_init=gi)
        scale, assign = tanh_scale(x.dtype.base_dtype, opts)
    t = tf.tanh(out)
    if init and assign is not None:  # near-identity start: l and m get std INIT_SCALE on the init batch
        s_new = INIT_SCALE * tf.rsqrt(tf.reduce_mean(tf.square(t)) + EPS)
        with tf.control_dependencies([assign(s_new)]):
            t = tf.identity(t * s_new)
    else:
        t = t * scale
    return tf.split(t, 2, axis=3)


def checkerboard(h, w, c, parity, phase="ours"):
    """[1,H,W,C] mask (1 = conditioning, kept as is): parity 0 is the 2x2 unit [[1,0],[0,1]] tiled,
    parity 1 its complement. This is the COMPLEMENT of the reference's checkerboard0
    ([[0,1],[1,0]]); ``phase="ref"`` gives the reference's masks. See docs/realnvp_ablations.md
    for what the phase does to learning."""
    m = (np.add.outer(np.arange(h), np.arange(w)) + (1 if phase == "ours" else 0) + parity) % 2
    return np.repeat(m[None, :, :, None], c, axis=3).astype(np.float32)


def channel(h, w, c, parity):
    """[1,H,W,C] mask: ones on the first C/2 channels (parity 0) or the last C/2 (parity 1)."""
    m = np.zeros([1, h, w, c], np.float32)
    if parity == 0:
        m[..., : c // 2] = 1
    else:
        m[..., c // 2 :] = 1
    return m


def coupling(
    name, z, logdet, mask, n_blocks, n_features, reverse=False, init=False, dropout_p=0.0, seed=None, opts=None
):
    """Affine coupling: y = x*b + (1-b)*(x*exp(l) + m), (l, m) = f(x*b); logdet += sum l.

    l and m are zero where b = 1, so this is computed as y = x*exp(l) + m (and x = (y - m)*exp(-l)):
    the same values, fewer ops."""
    with tf.variable_scope(name):
        dt = z.dtype.base_dtype
        l, m = st_net(z * tf.constant(mask, dt), n_blocks, n_features, init, dropout_p, seed, opts)
        free = tf.constant(1 - mask, dt)
        l, m = l * free, m * free
        sum_l = tf.reduce_sum(l, [1, 2, 3])
        if not reverse:
            return z * tf.exp(l) + m, logdet + sum_l
        return (z - m) * tf.exp(-l), logdet - sum_l


def squeeze(name, z, logdet, reverse=False):
    with tf.name_scope(name):
        return (tf.nn.depth_to_space(z, 2) if reverse else tf.nn.space_to_depth(z, 2)), logdet
