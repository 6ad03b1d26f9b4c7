"""The values of a built-in model's noise inputs (dequantization noise, SBN uniforms).

Uniform (0,1) float32 from --seed, one stream per input name in image order, so image i
gets the same noise at any batch size; the manifest records this as binfiles.NOISE.
"""

import zlib

import numpy as np

from common.errors import UserError


class Noise:
    """Uniform (0,1) float32, one stream per input name in image order: image i's noise
    does not depend on the batch size. (float32 uniforms are k*2^-24; k=0 becomes 2^-24.)"""

    TINY = np.float32(2.0**-24)

    def __init__(self, seed: int, name: str):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {seed!r}")
        self.rng = np.random.Generator(np.random.PCG64([int(seed), zlib.crc32(name.encode())]))

    def next(self, shape) -> np.ndarray:
        return self.fill(np.empty(shape, np.float32))

    def fill(self, out: np.ndarray) -> np.ndarray:
        """The next ``out.size`` values of the stream into float32 ``out``: the same
        values as ``next(out.shape)``, without allocating."""
        self.rng.random(dtype=np.float32, out=out)
        if not out.all():  # a read-only pass; the rare exact 0 (p = 2^-24) becomes 2^-24
            np.maximum(out, self.TINY, out=out)
        return out


def streams_for(noise: list, seed: int) -> list:
    """[(input Tensor, its Noise stream)] for the noise inputs."""
    return [(t, Noise(seed, t.name)) for t in noise]


def batch_buffers(streams: list) -> list:
    """One batch's noise arrays: [(name, stream, float32 array to fill, output array)]
    (the same array where the input is float32)."""
    res = []
    for t, gen in streams:
        out = np.empty(t.shape, t.np_dtype)
        res.append((t.name, gen, out if t.np_dtype == np.float32 else np.empty(t.shape, np.float32), out))
    return res


def fill_batch(buffers: list) -> None:
    """The next batch of every stream into its buffers (cast where the input is not float32)."""
    for _, gen, f32, out in buffers:
        gen.fill(f32)
        if out is not f32:
            np.copyto(out, f32, casting="unsafe")
