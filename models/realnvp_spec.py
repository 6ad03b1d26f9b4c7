"""RealNVP on CIFAR-10: the spec (models/spec.py). Graphs in models/realnvp.py."""

import numpy as np

from models.spec import Metric, ModelSpec

BPD_TOL = 1e-4  # fp32: mean bits/dim offline vs checkpoint


def bits_per_dim(z, logdet):
    """Per-image bits/dim, float64: 8 + (0.5 sum z^2 + 0.5 D ln 2pi - logdet) / (D ln 2)."""
    from verify.metrics import row_sq_sums

    z = np.asarray(z)
    z = z.reshape(z.shape[0], -1)
    d = z.shape[1]
    nll = 0.5 * row_sq_sums(z) + 0.5 * d * np.log(2 * np.pi) - np.asarray(logdet, np.float64).reshape(-1)
    return 8.0 + nll / (d * np.log(2.0))


def cifar_lut():
    """uint8 pixel -> (pixel - 127.5) / 127.5, float32."""
    return (np.arange(256, dtype=np.float32) - np.float32(127.5)) / np.float32(127.5)


SPEC = ModelSpec(
    name="realnvp",
    module="models.realnvp",
    graphs=("forward", "sample"),
    stems={"forward": "realnvp", "sample": "realnvp_sample"},
    dataset="cifar10",
    image_input="x",
    pixel_lut=cifar_lut,
    noise_inputs=("u",),
    metrics=(Metric("bpd", "lower", "bits/dim per image", lambda ref_mean: BPD_TOL),),
    per_image=lambda out: {"bpd": bits_per_dim(out["z"], out["logdet"])},
)
