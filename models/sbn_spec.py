"""Sigmoid belief net (REBAR and its estimators) on binarized MNIST or Omniglot: the spec
(models/spec.py). Graphs in models/sbn.py; the hparam ``task`` picks the data (sbn, sp:
binarized MNIST; omni: Omniglot) and, for sp, the two image inputs (top and bottom half)."""

import numpy as np

from models.spec import Metric, ModelSpec


def bounds(log_weights):
    """Per-image (ELBO, IWAE-K), float64, from log p(x,b) - log q(b|x) of shape [B, K]."""
    from scipy.special import logsumexp

    lw = np.asarray(log_weights, np.float64)
    lw = lw.reshape(lw.shape[0], -1)
    return lw.mean(axis=1), logsumexp(lw, axis=1) - np.log(lw.shape[1])


def _per_image(out):
    elbo, iwae = bounds(out["log_weights"])
    return {"elbo": elbo, "iwae": iwae}


def _dataset(config):
    return "omniglot" if config.get("task") == "omni" else "binarized_mnist"


def _parts(config):
    """sp's graph takes the observed top half and the scored bottom half as two inputs."""
    if config.get("task") != "sp":
        return None
    n = int(config.get("n_input", 784))
    return {"x_top": (0, n // 2), "x_bottom": (n // 2, n)}


def _tol(ref_mean):
    return max(1e-4, 1e-5 * abs(ref_mean))  # nats: 1e-5 of a bound near -100, at least 1e-4


SPEC = ModelSpec(
    name="rebar",
    module="models.sbn",
    graphs=("forward",),
    stems={"forward": "rebar"},
    dataset="binarized_mnist",
    image_input="x",
    pixel_lut=lambda: np.arange(256, dtype=np.float32),  # {0,1} stays {0,1}
    noise_inputs=("u",),
    metrics=(
        Metric("elbo", "higher", "single-sample ELBO per image (nats)", _tol),
        Metric("iwae", "higher", "IWAE-K bound per image (nats)", _tol),
    ),
    per_image=_per_image,
    options=("samples",),
    # one flipped Bernoulli bit moves one sample's log weight by up to ~1 nat, and its image's
    # ELBO by 1/K of that: measured 1 of 100,000 log weights in a demo run; 10x that is allowed
    draw_outputs={"log_weights": 1e-4, "elbo": 1e-2, "iwae": 1e-2},
    dataset_for=_dataset,
    parts_for=_parts,
)
