"""A model's inputs in its static batches: which input the images fill and which are noise
(``input_roles``), then one batch per file, a last partial batch padded by repeating its
last image, noise inputs filled from the seed (data_tools/noise.py), written by
data_tools/set_writer.py with the manifest.

Two sources: image files preprocessed with Ascend's flags (img2bin's image mode with
--signature, ``images_to_set``), or a built-in model's dataset split mapped by its spec's
pixel table (dataset mode, ``write_dataset``).
"""

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from common.errors import UserError
from data_tools import noise as noise_inputs
from data_tools.image_tool import list_inputs
from data_tools.set_writer import ahead, write_set

if TYPE_CHECKING:
    from models.spec import ModelSpec


# --- the roles of a signature's inputs ------------------------------------------------------


def input_roles(sig, spec=None, image_input: str | None = None, mode: str = "image mode", parts=()) -> tuple:
    """(image input Tensor, [noise input Tensors]) for a signature: the image input is
    ``image_input`` if given, else the signature's only input, else the spec's; every
    other input must be one of ``parts`` (the other inputs a dataset's images fill) or one
    of the spec's noise inputs (float)."""
    names = [t.name for t in sig.inputs]
    split = spec.image_parts(sig.config) if spec is not None else None
    if split and not parts:
        raise UserError(
            f"{sig.path}: the model takes each image as {len(split)} inputs ({', '.join(split)}); {mode} "
            f"fills one: use dataset mode, --dataset {spec.dataset_of(sig.config)}"
        )
    if image_input is None:
        if len(sig.inputs) == 1:
            image_input = names[0]
        elif spec is not None:
            image_input = spec.image_input
        else:
            raise UserError(
                f"{sig.path}: the model has {len(names)} inputs {names}; pass "
                "--input_name NAME to say which one the images fill"
            )
    if image_input not in names:
        raise UserError(f"{sig.path}: no input named {image_input!r}; inputs are {names}")
    x = sig.inputs[names.index(image_input)]
    known = tuple(spec.noise_inputs) if spec is not None else ()
    noise = []
    for t in sig.inputs:
        if t is x or t.name in parts:
            continue
        if t.name not in known:
            raise UserError(
                f"{sig.path}: input {t.name!r} is neither the image input {x.name!r} nor a "
                f"noise input of a built-in model ({list(known) or 'none: a user model'}); "
                f"{mode} cannot fill it"
            )
        if t.np_dtype.kind != "f":
            raise UserError(f"{sig.path}: noise input {t.name!r} is {t.dtype}; uniform noise needs float")
        noise.append(t)
    return x, noise


# --- image mode with --signature -----------------------------------------------------------


def fit_row(a: np.ndarray, x, sig, where: str) -> np.ndarray:
    """The image's array as one row of input ``x``: exactly its per-row shape, or the same
    after dropping size-1 axes (GRAY HW into [B,H,W,1]), or a one-channel image into a
    flat row ([B, H*W]); anything else (NCHW vs NHWC, other sizes) is an error."""
    row = tuple(x.shape[1:])
    if a.shape == row:
        return a
    squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731
    one_channel = len(squeeze(a.shape)) <= 2  # HW: flattening cannot mix channel orders
    if squeeze(a.shape) == squeeze(row) or (len(row) == 1 and a.size == row[0] and one_channel):
        return a.reshape(row)
    raise UserError(
        f"{where}: the flags (-w/-h/-f/-a) give a {list(a.shape)} array per image; input "
        f"{x.name!r} of {sig.path} wants {list(row)} per row ({x.layout}, batch {sig.batch} "
        f"of {x.shape}); change -a/-f/-w/-h to match"
    )


def _image_batches(files, pre, x, streams, sig, n_sets=2):
    B = sig.batch
    sets = []
    for _ in range(n_sets):
        xs = np.empty(x.shape, x.np_dtype)
        own = noise_inputs.batch_buffers(streams)
        arrays = {x.name: xs}
        arrays.update((name, out) for name, _, _, out in own)
        sets.append((xs, own, arrays))
    for i, first in enumerate(range(0, len(files), B)):
        xs, own, arrays = sets[i % n_sets]
        chunk = files[first : first + B]
        for r, f in enumerate(chunk):
            a = fit_row(pre(f), x, sig, f)
            if a.dtype != x.np_dtype:
                raise UserError(f"{f}: -t gives {a.dtype}; input {x.name!r} of {sig.path} is {x.dtype}")
            xs[r] = a
        k = len(chunk)
        if k < B:
            xs[k:] = xs[k - 1]  # padding: the last image again
        noise_inputs.fill_batch(own)
        yield first, k, arrays


def images_to_set(
    src: str, out: str, sig, pre, input_name=None, seed=0, force=False, progress=True, prefix=None
) -> dict:
    """Image mode for a model: the images in ``src`` preprocessed by ``pre`` (Ascend's
    flags), packed into the signature's static batches (binfiles layout + manifest)."""
    from models import spec as specs

    spec = specs.for_signature(sig)
    x, noise = input_roles(sig, spec, input_name, "image mode")
    files = list_inputs(src, txt=False)
    fit_row(pre(files[0]), x, sig, files[0])  # the shape check before anything is written
    streams = noise_inputs.streams_for(noise, seed)
    if prefix is None:
        base = os.path.basename(os.path.normpath(src)) if os.path.isdir(src) else "images"
        prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("._") or "images"
    fields = dict(
        image_input=x.name,
        noise_inputs=[t.name for t in noise],
        seed=seed,
        images=[os.path.basename(f) for f in files],
        images_dir=src if os.path.isdir(src) else os.path.dirname(os.path.abspath(src)),
        preprocess=pre.to_dict(),
    )
    return write_set(
        sig, out, ahead(_image_batches(files, pre, x, streams, sig)), len(files), prefix, fields, force, progress
    )


# --- dataset mode --------------------------------------------------------------------------


def pixel_map(lut) -> Callable[[np.ndarray, np.ndarray], None]:
    """f(uint8 chunk, float32 out): the spec's pixel lookup table applied in one pass.
    Where the table is the identity or (p - c) / s, float32 ufuncs into a preallocated
    buffer do it (np.take first widens every index to intp: 3-4x slower), checked bit for
    bit against the table on all 256 values; otherwise, or for non-uint8 images, np.take."""
    lut = np.ascontiguousarray(lut, np.float32)
    if lut.shape != (256,):
        raise ValueError(f"pixel lookup table must have 256 entries, has {lut.shape}")
    if np.array_equal(lut, np.arange(256, dtype=np.float32)):

        def f(chunk, out):
            np.copyto(out, chunk, casting="unsafe")
    else:
        span = float(lut[255]) - float(lut[0])
        s = np.float32(255.0 / span) if span else np.float32(1)
        c = np.float32(-float(lut[0]) * float(s))

        def f(chunk, out):
            np.subtract(chunk, c, out=out, dtype=np.float32)
            np.divide(out, s, out=out)

    got = np.empty(256, np.float32)
    with np.errstate(all="ignore"):
        f(np.arange(256, dtype=np.uint8), got)
    exact = np.array_equal(got.view(np.uint32), lut.view(np.uint32))

    def apply(chunk, out):
        if exact and chunk.dtype == np.uint8:
            f(chunk, out)
        else:
            np.take(lut, chunk, out=out)

    return apply


class _Buffers:
    """One batch's arrays, allocated once and refilled: ``arrays`` {name: array in the
    signature's shape and dtype}, plus float32 scratch where a cast or transpose is needed.
    With ``parts`` [(Tensor, first, stop)], columns first:stop of each flattened image go to
    that input instead (a model taking, say, the top and bottom half of a digit)."""

    def __init__(self, images, x, streams, parts=None):
        self.xf = np.empty((x.shape[0],) + images.shape[1:], np.float32)  # mapped pixels, dataset layout
        self.parts = [(t, lo, hi, np.empty(t.shape, t.np_dtype)) for t, lo, hi in parts or ()]
        src = self.xf.transpose(0, 3, 1, 2) if x.layout == "NCHW" and self.xf.ndim == 4 else self.xf
        if self.parts:
            self.xsrc, self.x = None, None
        elif src is self.xf and x.np_dtype == np.float32:
            self.xsrc, self.x = None, self.xf.reshape(x.shape)  # a view: nothing to copy per batch
        else:
            self.xsrc, self.x = src, np.empty(x.shape, x.np_dtype)
        self.noise = noise_inputs.batch_buffers(streams)
        self.arrays = {t.name: a for t, _, _, a in self.parts} if self.parts else {x.name: self.x}
        self.arrays.update((name, o) for name, _, _, o in self.noise)

    def fill_parts(self):
        flat = self.xf.reshape(len(self.xf), -1)
        for t, lo, hi, a in self.parts:
            np.copyto(a, flat[:, lo:hi].reshape(t.shape), casting="unsafe")


def _batches(images, pmap, x, streams, sig, n_sets=2, parts=None):
    """Yield (first, n_real, {name: batch array}) for each static batch; pads by repeating
    the last image. The arrays live in ``n_sets`` buffer sets used in turn: an item stays
    valid until ``n_sets - 1`` more items have been taken. Memory: n_sets batches."""
    B = sig.batch
    for t, lo, hi in parts or [(x, 0, images[0].size)]:
        if t.size // B != hi - lo or hi > images[0].size:
            raise UserError(
                f"{sig.path}: input {t.name!r} {t.shape} holds {t.size // B} values per image, "
                f"the dataset gives it {hi - lo} of its {images[0].size}"
            )
    sets = [_Buffers(images, x, streams, parts) for _ in range(n_sets)]
    for i, first in enumerate(range(0, len(images), B)):
        b = sets[i % n_sets]
        chunk = images[first : first + B]
        k = len(chunk)
        pmap(chunk, b.xf[:k])
        if k < B:
            b.xf[k:] = b.xf[k - 1]  # padding: the last image again
        if b.xsrc is not None:
            np.copyto(b.x, b.xsrc.reshape(x.shape), casting="unsafe")  # cast and/or NCHW transpose
        b.fill_parts()
        noise_inputs.fill_batch(b.noise)
        yield first, k, b.arrays


def model_spec(sig) -> "ModelSpec":
    """The built-in model's spec; a user model (no spec) is told to use image mode."""
    from models import spec as specs

    spec = specs.for_signature(sig)
    if spec is None:
        raise UserError(
            f"{sig.path}: model {sig.model!r} (source {sig.source.get('kind', 'builtin')}) "
            "is not a built-in model, so dataset mode does not know its data; use image "
            "mode: -i IMAGES -w W -h H [-f -a -m -c] --signature "
            f"{sig.path} (data_tools/export_images.py writes a dataset's images)"
        )
    return spec


def _parts(sig, spec):
    """([(Tensor, first, stop)] for a model whose image fills several inputs, else []; and the
    input that input_roles takes as the image one)."""
    parts = spec.image_parts(sig.config)
    if not parts:
        return [], spec.image_input
    by_name = {t.name: t for t in sig.inputs}
    missing = [n for n in parts if n not in by_name]
    if missing:
        raise UserError(f"{sig.path}: the model's images fill inputs {list(parts)}; it has no {missing}")
    return [(by_name[n], lo, hi) for n, (lo, hi) in parts.items()], next(iter(parts))


def write_dataset(
    images: np.ndarray, sig, out: str, dataset: str, split: str, seed=0, force=False, progress=True
) -> dict:
    """Write ``images`` (uint8 [N,...]) for the built-in model ``sig`` under ``out``
    (binfiles layout). The set is complete or absent. Returns the manifest dict."""
    spec = model_spec(sig)
    want = spec.dataset_of(sig.config)
    if dataset != want:
        raise UserError(f"{sig.path}: model {sig.model!r} is evaluated on {want}, found --dataset {dataset}")
    parts, image_input = _parts(sig, spec)
    x, noise = input_roles(sig, spec, image_input, "dataset mode", [t.name for t, _, _ in parts])
    if not len(images):
        raise UserError(f"{dataset} {split}: no images to write")
    streams = noise_inputs.streams_for(noise, seed)
    name = ",".join(t.name for t, _, _ in parts) if parts else x.name
    fields = dict(image_input=name, noise_inputs=[t.name for t in noise], seed=seed, dataset=dataset, split=split)
    # the next batch is computed in a thread while this one is written; two buffer sets
    items = ahead(_batches(images, pixel_map(spec.pixel_lut()), x, streams, sig, parts=parts))
    return write_set(sig, out, items, len(images), f"{dataset}_{split}", fields, force, progress)
