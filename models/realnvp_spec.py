"""RealNVP on CIFAR-10: the spec (models/spec.py). Graphs in models/realnvp.py."""

import numpy as np

from models.spec import Metric, ModelSpec

BPD_TOL = 1e-4  # fp32: mean bits/dim offline vs checkpoint


def bpd_formula(sq_sum, logdet, d):
    """Bits/dim of images from their sum of z^2, their log-det and D values per image:
    8 + (0.5 sum z^2 + 0.5 D ln 2pi - logdet) / (D ln 2), the 8 for pixels scaled from
    [0, 256) to [0, 1). Plain arithmetic: the graph (TF tensors) and loss_check (numpy)
    compute it here, in the same order of operations."""
    nll = 0.5 * sq_sum + 0.5 * d * np.log(2 * np.pi) - logdet
    return 8.0 + nll / (d * np.log(2.0))


def bits_per_dim(z, logdet):
    """Per-image bits/dim of numpy outputs z [B, ...] and logdet [B], float64."""
    from verify.metrics import row_sq_sums

    z = np.asarray(z)
    z = z.reshape(z.shape[0], -1)
    return bpd_formula(row_sq_sums(z), np.asarray(logdet, np.float64).reshape(-1), z.shape[1])


def pixels_to_input(pixels):
    """uint8 pixels (0..255) -> the model's input x = (pixel - 127.5) / 127.5 in [-1, 1], float32.
    The dequantisation noise u is added inside the graph (models/realnvp.py preprocess)."""
    return (np.asarray(pixels).astype(np.float32) - np.float32(127.5)) / np.float32(127.5)


def cifar_lut():
    """uint8 pixel -> model input, as a (256,) float32 table (img2bin's dataset mode)."""
    return pixels_to_input(np.arange(256))


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
