"""RealNVP (Dinh et al. 2017) as in taesungp/real-nvp and its Ascend port, batch-independent.

Architecture (2 scales, for HxWxC images): 3 checkerboard couplings, squeeze
(space_to_depth 2), 3 channel couplings, factor out half the channels, 4 checkerboard
couplings; z = concat(factored, rest) -> [B, H/2, W/2, 4C] (16x16x12 for CIFAR-10).
s/t nets: 1x1 conv in, ``n_blocks`` residual blocks of two 3x3 convs with
``n_features`` maps, 1x1 conv to 2C, tanh times a learned scalar; weight norm over the
whole kernel (w/||w||_F * g), no biases, SAME padding. Preprocessing and bits/dim are
exactly the reference's (alpha = 1e-5 logit; bpd = 8 + (0.5 sum z^2 + 0.5 D ln 2pi -
logdet) / (D ln 2)); the dequantisation noise u is an input, never drawn in the graph.

Deliberate difference from the reference: normalisation inside the s/t nets.
taesungp normalises with ONE mean/variance over the whole batch tensor, so an
image's z, logdet and bpd depend on its batch-mates (and offline inference must
reproduce the exact batch grouping). Here each image is normalised by the mean and
variance over its own H, W, C (eps 1e-6, no affine, no moving averages). The
computation is identical at train and test, so there is neither batch coupling nor a
train/eval mismatch (the moving-average BN failure of the chrischute-derived ports:
test bpd in the hundreds while train bpd falls). An image's bpd is the same in any batch.

Tanh scale and data-dependent init (``init=True``, one pass on a fixed batch, never
exported). Each coupling's tanh scale starts at 1.0 (config key ``scale_init``), and the
init pass sets the output conv's weight-norm gain so l and m have RMS ~0.1 on that batch
(pre-tanh RMS 0.1: tanh in its linear range): the initial flow is close to the identity
with live gradients, and |l| can reach 1 from the first step. The earlier default
(``scale_init: "ddi"``: unit-RMS pre-tanh, the scale set to ~0.16) learned markedly
slower: the scale caps |l| and Adam grows it by only ~1e-3 per step; see
docs/realnvp_ablations.md. (The inner convs are followed by per-image normalisation,
which makes their gains irrelevant; they start at 1.) Without the init pass the output
gains stay 1, so the flow does not start near the identity.
Ablation switches (scale_init, scale_param, gain_init, mask_phase): flow_ops.DEFAULT_OPTS.

Dropout (``dropout_p``, training only) acts between the two convs of each residual
block, drawn from a stateless RNG keyed by a seed tensor so resumed runs are exact.
"""

import numpy as np

from common.errors import UserError
from common.tfcompat import tf
from models import IO
from models.flow_ops import DEFAULT_OPTS, channel, checkerboard, coupling, opts_of, squeeze
from models.realnvp_spec import bpd_formula, pixels_to_input

SCOPE = "realnvp"
GRAPHS = ("forward", "sample")
CONFIGS = {
    "paper": {"image_shape": [32, 32, 3], "num_scales": 2, "n_blocks": 8, "n_features": 64, "alpha": 1e-5},
    "small": {"image_shape": [32, 32, 3], "num_scales": 2, "n_blocks": 2, "n_features": 16, "alpha": 1e-5},
    "tiny": {"image_shape": [8, 8, 3], "num_scales": 2, "n_blocks": 1, "n_features": 4, "alpha": 1e-5},
    # CIFAR-shaped smoke-test size: the whole road (train, freeze, convert) in seconds
    "tiny32": {"image_shape": [32, 32, 3], "num_scales": 2, "n_blocks": 1, "n_features": 4, "alpha": 1e-5},
}
KEYS = ("image_shape", "num_scales", "n_blocks", "n_features", "alpha")


def get_config(name_or_dict):
    """A config dict from a name in CONFIGS or a dict (checked)."""
    if isinstance(name_or_dict, str):
        if name_or_dict not in CONFIGS:
            raise UserError(f"unknown RealNVP config {name_or_dict!r}; expected one of {sorted(CONFIGS)}")
        return dict(CONFIGS[name_or_dict])
    c = dict(name_or_dict)
    missing = [k for k in KEYS if k not in c]
    if missing:
        raise UserError(f"RealNVP config is missing {missing} (found keys {sorted(c)})")
    h, w, ch = c["image_shape"]
    if c["num_scales"] != 2:
        raise UserError(f"RealNVP config: num_scales must be 2 (the taesungp CIFAR layout), found {c['num_scales']}")
    if h % 4 or w % 4:
        raise UserError(f"RealNVP config: image height and width must be multiples of 4, found {h}x{w}")
    try:
        opts_of(c)
    except ValueError as e:
        raise UserError(f"RealNVP config: {e}") from None
    return c


def with_options(config, **opts):
    """config with the ablation switches (flow_ops.DEFAULT_OPTS) that are not None set."""
    c = dict(get_config(config))
    c.update({k: v for k, v in opts.items() if v is not None and k in DEFAULT_OPTS})
    return get_config(c)


def latent_shape(config):
    h, w, c = get_config(config)["image_shape"]
    return [h // 2, w // 2, 4 * c]


def _steps(config):
    """The flow as a list of (kind, name, mask or None), in forward order."""
    h, w, c = config["image_shape"]
    phase = opts_of(config)["mask_phase"]
    steps = [("coupling", f"Checkerboard0_{i + 1}", checkerboard(h, w, c, i % 2, phase)) for i in range(3)]
    steps.append(("squeeze", "Squeeze0", None))
    h, w, c = h // 2, w // 2, 4 * c
    steps += [("coupling", f"Channel0_{i + 1}", channel(h, w, c, i % 2)) for i in range(3)]
    steps.append(("factor_out", "FactorOut0", None))
    steps += [("coupling", f"Checkerboard1_{i + 1}", checkerboard(h, w, c // 2, i % 2, phase)) for i in range(4)]
    return steps


def flow(y, config, logdet=None, reverse=False, init=False, dropout_p=0.0, seed=None):
    """Logit-space flow y [B,H,W,C] <-> z [B,H/2,W/2,4C], with the log-det (forward adds,
    reverse subtracts). ``seed``: int64 [2] tensor for dropout."""
    config = get_config(config)
    nb, nf = config["n_blocks"], config["n_features"]
    opts = opts_of(config)
    steps = _steps(config)
    if logdet is None:
        logdet = tf.zeros(tf.shape(y)[:1], y.dtype)
    z, factored = y, None
    with tf.variable_scope(SCOPE, reuse=tf.AUTO_REUSE):
        if reverse:
            half = int(z.shape[-1]) // 2
            factored, z = z[..., :half], z[..., half:]
        for k in reversed(range(len(steps))) if reverse else range(len(steps)):
            kind, name, mask = steps[k]
            if kind == "coupling":
                s = None if seed is None else seed + tf.constant([0, 1000 * (k + 1)], seed.dtype)
                z, logdet = coupling(name, z, logdet, mask, nb, nf, reverse, init, dropout_p, s, opts)
            elif kind == "squeeze":
                z, logdet = squeeze(name, z, logdet, reverse)
            elif reverse:  # factor_out undone: the factored half goes back in front
                z = tf.concat([factored, z], 3)
            else:
                half = int(z.shape[-1]) // 2
                factored, z = z[..., :half], z[..., half:]
        if not reverse:
            z = tf.concat([factored, z], 3)
    return z, logdet


def preprocess(x, u, alpha):
    """x in [-1,1] and noise u in [0,1) -> (logit y, logdet of the logit) as the reference."""
    v = ((x * 0.5 + 0.5) * 255.0 + u) / 256.0
    p = v * (1 - alpha) + alpha / 2
    return tf.log(p) - tf.log(1 - p), tf.reduce_sum(-tf.log(p) - tf.log(1 - p), [1, 2, 3])


def postprocess(y, alpha, u=None):
    """Inverse of preprocess: logit y -> x in [-1,1]. Without u, the noise's mean 0.5 is removed."""
    v = (tf.sigmoid(y) - alpha / 2) / (1 - alpha)
    pixel = tf.clip_by_value(v * 256.0 - (0.5 if u is None else u), 0.0, 255.0)
    return pixel / 127.5 - 1.0


def bits_per_dim(z, logdet):
    """Per-image bits/dim: 8 + (0.5 sum z^2 + 0.5 D ln 2pi - logdet) / (D ln 2)."""
    d = float(np.prod(z.shape.as_list()[1:]))
    return bpd_formula(tf.reduce_sum(tf.square(z), [1, 2, 3]), logdet, d)


def encode(x, u, config, init=False, dropout_p=0.0, seed=None):
    """Images x [B,H,W,C] in [-1,1] + noise u -> (z, logdet, bpd), each per image."""
    config = get_config(config)
    y, logdet = preprocess(x, u, config["alpha"])
    z, logdet = flow(y, config, logdet, init=init, dropout_p=dropout_p, seed=seed)
    return z, logdet, bits_per_dim(z, logdet)


def decode(z, config):
    """Latents z [B,H/2,W/2,4C] -> images in [-1,1]."""
    config = get_config(config)
    y, _ = flow(z, config, reverse=True)
    return postprocess(y, config["alpha"])


# --- the inference contract (models/__init__.py) ------------------------------


def inference_graph(config, batch, graph="forward"):
    config = get_config(config)
    shape = [batch] + list(config["image_shape"])
    if graph == "forward":
        x = tf.placeholder(tf.float32, shape, name="x")
        u = tf.placeholder(tf.float32, shape, name="u")
        z, logdet, bpd = encode(x, u, config)
        return (
            [
                IO(x, "NHWC", "images (pixel - 127.5) / 127.5, in [-1, 1]"),
                IO(u, "NHWC", "dequantisation noise, uniform in [0, 1)"),
            ],
            [
                IO(tf.identity(z, name="z"), "NHWC", "latent z"),
                IO(
                    tf.identity(logdet, name="logdet"),
                    "N",
                    "log |det dz/dv| per image, nats (includes the logit preprocessing)",
                ),
                IO(tf.identity(bpd, name="bpd"), "N", "bits/dim per image"),
            ],
        )
    if graph == "sample":
        z = tf.placeholder(tf.float32, [batch] + latent_shape(config), name="z")
        x = decode(z, config)
        return (
            [IO(z, "NHWC", "latent z, standard normal")],
            [IO(tf.identity(x, name="x"), "NHWC", "images in [-1, 1]")],
        )
    raise UserError(f"realnvp has no graph {graph!r}; graphs are {list(GRAPHS)}")


def example_feed(config, batch, graph, rng):
    config = get_config(config)
    if graph == "forward":
        shape = [batch] + list(config["image_shape"])
        x = pixels_to_input(rng.randint(0, 256, size=shape))
        return {"x": x, "u": rng.uniform(0, 1, size=shape).astype(np.float32)}
    if graph == "sample":
        return {"z": rng.standard_normal([batch] + latent_shape(config)).astype(np.float32)}
    raise UserError(f"realnvp has no graph {graph!r}; graphs are {list(GRAPHS)}")
