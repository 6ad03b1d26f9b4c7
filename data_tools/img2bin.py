"""img2bin: images to raw .bin model inputs (Ascend's tool), batched for a model, and a
dataset mode for the built-in models.

Image mode is Ascend's img2bin (-i -w -h -f -a -t -m -c -o), same maths in the same
order: cv2.imread (BGR) -> letterbox resize (INTER_LINEAR, zero padding, split
top=pad//2) -> colour (RGB/GRAY/YUV) -> float32 (x - mean) * coef -> plain astype ->
NCHW transpose (BGR/RGB only; GRAY stays HW) -> <stem>.bin. Fixed bugs of the original:
  * files are processed in sorted order (not os.listdir order);
  * two inputs with the same stem (a.jpg + a.png) are an error, never a silent overwrite;
  * the .txt input works, alone or in a folder ([baseconf] input_node=[...] shape=[...]);
  * every error exits 2 with one line naming the file: unknown -f/-t, -m/-c with the
    wrong number of values for the channels or not finite, sizes outside 1..16384, an
    image the letterbox would shrink to 0 pixels, an unreadable image;
  * existing .bin files are kept unless --force, and a run is all or nothing: files are
    written into a hidden .img2bin-<pid>-* folder and moved into place at the end (a
    killed run's folder is removed by the next run).
  YUV is the real tool's integer NV12 (Y plane, then interleaved U,V from the even/even
  pixels); like the real tool (int64 maths, then astype(uint8)) U and V wrap modulo 256
  where the formula leaves 0..255 (U = 258 for pure blue is written as 2).

With --signature MODEL.json, image mode writes for the model instead of one file per
image: the images (same flags, same maths) packed into one .bin per static batch of the
signature's image input (its only input, or a built-in model's image input, or
--input_name), a last partial batch padded by repeating the last image, a built-in
model's noise inputs filled as in dataset mode, and the manifest (data_tools/binfiles.py)
listing the source files in row order, so labels kept in the same order line up. Each
image's array must be exactly the input's per-row shape (layout from -a, -f, -w, -h);
-t defaults to the input's dtype and must match it.

Dataset mode writes a built-in model's evaluation split (its spec, models/spec.py, names
the dataset, the image input, the pixel mapping and the noise inputs), one .bin per
static batch, in exactly the signature's input shapes and dtypes; every noise input as
uniform noise in (0,1) (never exactly 0) from --seed, one stream per input in image
order, so image i gets the same noise at any batch size. A user model (no spec) uses
image mode with --signature.
"""

import argparse
import configparser
import contextlib
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import zlib

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from common import fsio  # noqa: E402
from common.cli import ArgumentParser, add_data_dir, add_force, add_input, add_output, add_verbosity  # noqa: E402
from common.errors import UserError, cli, first_line, run  # noqa: E402
from common.log import log  # noqa: E402
from data_tools import binfiles  # noqa: E402

EXAMPLE = """examples:
  python data_tools/img2bin.py -i images/ -w 224 -h 224 -f RGB -a NHWC -t float32 \\
      -m "[123.675,116.28,103.53]" -c "[0.0171,0.0175,0.0174]" -o bins/
  python data_tools/img2bin.py -i images/ -w 32 -h 32 -f RGB -a NHWC \\
      -m "[127.5,127.5,127.5]" -c "[0.00784314,0.00784314,0.00784314]" \\
      --signature m/mine.json -o bins/            # one file per batch + manifest.json
  python data_tools/img2bin.py --dataset cifar10 --split test --signature m/realnvp.json \\
      -o bins/ --seed 0 --limit 256"""
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
DTYPES = ("float32", "uint8", "int32", "uint32")
MAX_SIDE = 16384  # -w/-h bound: 16384^2 RGB float32 is already 3 GiB per image
TMP_PREFIX = ".img2bin-"


# --- image mode: one image --------------------------------------------------------------


def _cv2():
    import cv2

    # a corrupt file is our one-line error, not OpenCV's log lines on stderr
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


def letterbox(img, w, h, path="image"):
    cv2 = _cv2()
    ih, iw = img.shape[:2]
    r = min(h / ih, w / iw)
    nh, nw = int(ih * r), int(iw * r)
    if nh < 1 or nw < 1:
        raise UserError(
            f"{path}: a {iw}x{ih} (WxH) image letterboxed into {w}x{h} would be "
            f"{nw}x{nh} pixels; expected at least 1x1 (crop it or choose a larger -w/-h)"
        )
    img = cv2.resize(img, (nw, nh))
    top, left = (h - nh) // 2, (w - nw) // 2
    return cv2.copyMakeBorder(img, top, h - nh - top, left, w - nw - left, cv2.BORDER_CONSTANT, value=0)


def nv12(bgr):
    """Ascend img2bin's integer BGR -> YUV420SP (NV12): Y plane, then interleaved U,V.
    Values outside 0..255 wrap modulo 256, as the real tool's astype(uint8) of its
    int64 results does (U of pure blue: (131*255 >> 8) + 128 = 258 -> 2)."""
    b, g, r = (bgr[..., i].astype(np.int64) for i in range(3))
    y = (29 * b + 150 * g + 77 * r) >> 8
    b2, g2, r2 = b[::2, ::2], g[::2, ::2], r[::2, ::2]
    u = ((131 * b2 - 87 * g2 - 44 * r2) >> 8) + 128
    v = ((-21 * b2 - 110 * g2 + 131 * r2) >> 8) + 128
    uv = np.stack([u, v], -1).reshape(bgr.shape[0] // 2, bgr.shape[1])
    return (np.concatenate([y, uv]) & 0xFF).astype(np.uint8)


def convert_image(path, w, h, fmt="BGR", layout="NCHW", dtype="float32", mean=(0, 0, 0), coef=(1, 1, 1)):
    """One image file -> the array Ascend's img2bin would write."""
    cv2 = _cv2()
    try:
        img = cv2.imread(os.fspath(path))
    except cv2.error as e:
        raise UserError(f"{path}: not a readable image ({str(e).strip().splitlines()[-1]})") from None
    if img is None:
        raise UserError(
            f"{path}: not a readable image (missing, unreadable, corrupt or not a "
            f"{'/'.join(e[1:] for e in IMAGE_EXT)} file)"
        )
    img = letterbox(img, w, h, path)
    if fmt == "YUV":
        return nv12(img)
    if fmt == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif fmt == "GRAY":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    x = img.astype(np.float32)
    if fmt == "GRAY":
        x = (x - np.float32(mean[0])) * np.float32(coef[0])
    else:
        x = (x - np.asarray(mean[:3], np.float32)) * np.asarray(coef[:3], np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        x = x.astype(dtype)  # plain cast, as the original: no rounding, no clipping
    if layout == "NCHW" and fmt != "GRAY":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x)


def convert_txt(path, dtype):
    """[baseconf] input_node=[...] shape=[...] -> array of that shape and dtype."""
    cp = configparser.ConfigParser()
    try:
        cp.read(path)
        node = json.loads(cp["baseconf"]["input_node"])
        shape = json.loads(cp["baseconf"]["shape"])
        return np.asarray(node, dtype=np.float64).astype(dtype).reshape(shape)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError, configparser.Error) as e:
        raise UserError(
            f"{path}: expected '[baseconf]' with input_node=[...] and shape=[...] "
            f"matching in size, found {type(e).__name__}: {first_line(e)}"
        ) from None


def list_inputs(src, txt=True):
    """Sorted input files; one stem may appear once only (its .bin would be overwritten).
    ``txt=False`` (batched for a model): images only, a folder's .txt files (labels.txt
    beside the images) are not inputs."""
    ext = IMAGE_EXT + ((".txt",) if txt else ())
    what = f"images ({', '.join(IMAGE_EXT)})" + (" or .txt files" if txt else "")
    if os.path.isdir(src):
        files = sorted(os.path.join(src, n) for n in os.listdir(src) if n.lower().endswith(ext))
        if not files:
            raise UserError(f"{src}: no {what} in the folder")
    elif os.path.isfile(src):
        if not src.lower().endswith(ext):
            raise UserError(f"{src}: input file must be one of: {what}")
        files = [src]
    else:
        raise UserError(f"{src}: input path does not exist")
    seen = {}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        if stem in seen:
            raise UserError(f"{f}: same output name {stem}.bin as {seen[stem]}; rename one of them")
        seen[stem] = f
    return files


class Preprocess:
    """Ascend's flags for one image: -w -h -f -a -t -m -c."""

    def __init__(self, w, h, fmt="BGR", layout="NCHW", dtype="float32", mean=(0, 0, 0), coef=(1, 1, 1)):
        self.w, self.h, self.fmt, self.layout, self.dtype = w, h, fmt, layout, dtype
        self.mean, self.coef = list(mean), list(coef)

    def __call__(self, path):
        if path.lower().endswith(".txt"):
            return convert_txt(path, self.dtype)
        return convert_image(path, self.w, self.h, self.fmt, self.layout, self.dtype, self.mean, self.coef)

    def to_dict(self):
        return {
            "width": self.w,
            "height": self.h,
            "output_image_format": self.fmt,
            "output_format": self.layout,
            "output_type": self.dtype,
            "mean": self.mean,
            "coefficient": self.coef,
        }


# --- all or nothing: a hidden staging folder, removed on error, SIGTERM/SIGINT, or by
# --- the next run when its process died ---------------------------------------------------


class Interrupted(UserError):
    def __init__(self, signum):
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}; no partial output left "
            "(the output folder holds its previous files, or all the new ones)"
        )
        self.exit_code = 128 + signum


_commit = {"active": False, "pending": None}


def _raise_interrupted(signum, frame):
    if _commit["active"]:  # the final renames run to the end; the signal is raised after
        _commit["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def committing():
    """The renames that move a finished staging folder's files into place: a SIGTERM /
    SIGINT arriving meanwhile waits until they are all done."""
    _commit["active"], _commit["pending"] = True, None
    try:
        yield
    finally:
        _commit["active"] = False
        signum, _commit["pending"] = _commit["pending"], None
        if signum is not None:
            raise Interrupted(signum)


@contextlib.contextmanager
def interruptible():
    """SIGTERM / SIGINT raise Interrupted: ``finally`` blocks remove staging folders, the
    CLI prints one line and exits 128 + signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def clean_stale(out):
    """Remove ``.img2bin-<pid>-*`` folders under ``out`` left by processes that died
    (SIGKILL, power loss); returns the removed paths."""
    removed = []
    if not os.path.isdir(out):
        return removed
    for n in os.listdir(out):
        m = re.match(re.escape(TMP_PREFIX) + r"(\d+)-", n)
        p = os.path.join(out, n)
        if m and os.path.isdir(p) and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def staging(out):
    """A new hidden folder inside ``out`` (so the final renames stay on one filesystem);
    removed afterwards whatever happens. An OSError (unwritable, disk full) becomes one
    UserError naming the path."""
    try:
        os.makedirs(out, exist_ok=True)
        for p in clean_stale(out):
            log.info(f"[info] removed {p} (left by a run that died)")
        tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=out)
    except OSError as e:
        raise UserError(f"{e.filename or out}: cannot write the output folder ({e.strerror or e})") from None
    try:
        yield tmp
    except OSError as e:
        raise UserError(
            f"{e.filename or out}: cannot write ({e.strerror or e}); nothing was written (partial output removed)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def images_to_bins(
    src,
    out,
    w,
    h,
    fmt="BGR",
    layout="NCHW",
    dtype="float32",
    mean=(0, 0, 0),
    coef=(1, 1, 1),
    progress=True,
    force=False,
):
    """Ascend img2bin over a folder / image / .txt: one ``<stem>.bin`` per file. Existing
    .bin files are kept unless ``force``; all files or none. Returns the written paths."""
    from tqdm import tqdm

    files = list_inputs(src)
    outs = [os.path.join(out, os.path.splitext(os.path.basename(f))[0] + ".bin") for f in files]
    fsio.refuse_overwrite(outs, force, what=".bin files to write")
    pre = Preprocess(w, h, fmt, layout, dtype, mean, coef)
    with staging(out) as tmp:
        staged = [os.path.join(tmp, os.path.basename(p)) for p in outs]
        for f, p in zip(tqdm(files, disable=not progress or len(files) < 2, unit="img"), staged):
            fsio.write_array(p, pre(f))
        with committing():
            for s, p in zip(staged, outs):
                os.replace(s, p)
    return outs


# --- a set of batched inputs for a model (dataset mode, image mode with --signature) -------


class Noise:
    """Uniform (0,1) float32, one stream per input name in image order: image i's noise
    does not depend on the batch size. (float32 uniforms are k*2^-24; k=0 becomes 2^-24.)"""

    TINY = np.float32(2.0**-24)

    def __init__(self, seed, name):
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"--seed must be an integer >= 0, got {seed!r}")
        self.rng = np.random.Generator(np.random.PCG64([int(seed), zlib.crc32(name.encode())]))

    def next(self, shape):
        return self.fill(np.empty(shape, np.float32))

    def fill(self, out):
        """The next ``out.size`` values of the stream into float32 ``out``: the same
        values as ``next(out.shape)``, without allocating."""
        self.rng.random(dtype=np.float32, out=out)
        if not out.all():  # a read-only pass; the rare exact 0 (p = 2^-24) becomes 2^-24
            np.maximum(out, self.TINY, out=out)
        return out


def input_roles(sig, spec=None, image_input=None, mode="image mode"):
    """(image input Tensor, [noise input Tensors]) for a signature: the image input is
    ``image_input`` if given, else the signature's only input, else the spec's; every
    other input must be one of the spec's noise inputs (float)."""
    names = [t.name for t in sig.inputs]
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
        if t is x:
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


_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_raw(path, a):
    """Raw C-order bytes of a contiguous array to a new file (inside a staging folder,
    which makes the whole set atomic by its final rename)."""
    view = memoryview(a.reshape(-1).view(np.uint8))
    fd = os.open(path, _O_NEW, 0o666)
    try:
        n = os.write(fd, view)
        while n < len(view):
            n += os.write(fd, view[n:])
    finally:
        os.close(fd)


def _ahead(it):
    """Compute the next item in a thread while the caller writes this one (numpy's
    random fill, ufuncs, cv2 and os.write release the GIL). The caller must be done with
    an item before it asks for the next one (then two buffer sets suffice)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(next, it, None)
        while True:
            item = fut.result()
            if item is None:
                return
            fut = ex.submit(next, it, None)
            yield item


def write_set(sig, out, items, n_images, prefix, manifest_fields, force=False, progress=True):
    """Write the batches ``items`` yields ((first, n_real, {input name: batch array}), in
    order) as ``out/<input>/<prefix>_<00000>.bin`` plus ``out/manifest.json``. Everything
    goes into a staging folder first: the set is complete or absent, and an existing one
    is replaced only with ``force``. Returns the manifest dict."""
    from tqdm import tqdm

    manifest_path = os.path.join(out, binfiles.MANIFEST)
    names = binfiles.input_dirs(sig)
    targets = [os.path.join(out, d) for d in names.values()] + [manifest_path]
    fsio.refuse_overwrite(targets, force, what="outputs (expected an empty output folder)")
    busy = [p for p in targets if os.path.lexists(p)]
    B = sig.batch
    with staging(out) as tmp:
        dirs = {}
        for name, d in names.items():
            os.mkdir(os.path.join(tmp, d))
            dirs[name] = os.path.join(tmp, d, "")
        files = []
        for first, k, arrays in tqdm(
            items, total=-(-n_images // B), disable=not progress, unit="batch", desc="img2bin"
        ):
            stem = binfiles.batch_stem(prefix, first // B)
            for name, a in arrays.items():
                _write_raw(dirs[name] + stem + ".bin", a)
            files.append(binfiles.file_entry(stem, first, k, B))
        manifest = binfiles.new_manifest(sig, files, n_images, **manifest_fields)
        fsio.write_json(os.path.join(tmp, binfiles.MANIFEST), manifest)
        # the old manifest goes first and the new one comes last: a folder never holds a
        # manifest that does not describe its files
        with committing():
            for p in sorted(busy, key=lambda p: p != manifest_path):
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            for d in names.values():
                os.replace(os.path.join(tmp, d), os.path.join(out, d))
            os.replace(os.path.join(tmp, binfiles.MANIFEST), manifest_path)
    return manifest


def _noise_streams(noise, seed):
    return [(t, Noise(seed, t.name)) for t in noise]


def _noise_buffers(streams):
    """One batch's noise arrays: [(name, stream, float32 array to fill, output array)]
    (the same array where the input is float32)."""
    res = []
    for t, gen in streams:
        out = np.empty(t.shape, t.np_dtype)
        res.append((t.name, gen, out if t.np_dtype == np.float32 else np.empty(t.shape, np.float32), out))
    return res


def _fill_noise(buffers):
    for _, gen, f32, out in buffers:
        gen.fill(f32)
        if out is not f32:
            np.copyto(out, f32, casting="unsafe")


# --- image mode with --signature -----------------------------------------------------------


def fit_row(a, x, sig, where):
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
        own = _noise_buffers(streams)
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
        _fill_noise(own)
        yield first, k, arrays


def images_to_set(src, out, sig, pre, input_name=None, seed=0, force=False, progress=True, prefix=None):
    """Image mode for a model: the images in ``src`` preprocessed by ``pre`` (Ascend's
    flags), packed into the signature's static batches (binfiles layout + manifest)."""
    from models import spec as specs

    spec = specs.for_signature(sig)
    x, noise = input_roles(sig, spec, input_name, "image mode")
    files = list_inputs(src, txt=False)
    fit_row(pre(files[0]), x, sig, files[0])  # the shape check before anything is written
    streams = _noise_streams(noise, seed)
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
        sig, out, _ahead(_image_batches(files, pre, x, streams, sig)), len(files), prefix, fields, force, progress
    )


# --- dataset mode ---------------------------------------------------------------------------


def pixel_map(lut):
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
    signature's shape and dtype}, plus float32 scratch where a cast or transpose is needed."""

    def __init__(self, images, x, streams):
        self.xf = np.empty((x.shape[0],) + images.shape[1:], np.float32)  # mapped pixels, dataset layout
        src = self.xf.transpose(0, 3, 1, 2) if x.layout == "NCHW" and self.xf.ndim == 4 else self.xf
        if src is self.xf and x.np_dtype == np.float32:
            self.xsrc, self.x = None, self.xf.reshape(x.shape)  # a view: nothing to copy per batch
        else:
            self.xsrc, self.x = src, np.empty(x.shape, x.np_dtype)
        self.noise = _noise_buffers(streams)
        self.arrays = {x.name: self.x}
        self.arrays.update((name, o) for name, _, _, o in self.noise)


def _batches(images, pmap, x, streams, sig, n_sets=2):
    """Yield (first, n_real, {name: batch array}) for each static batch; pads by repeating
    the last image. The arrays live in ``n_sets`` buffer sets used in turn: an item stays
    valid until ``n_sets - 1`` more items have been taken. Memory: n_sets batches."""
    B = sig.batch
    per_image = x.size // B
    if images[0].size != per_image:
        raise UserError(
            f"{sig.path}: input {x.name!r} {x.shape} holds {per_image} values per image, "
            f"the dataset has {images[0].size}"
        )
    sets = [_Buffers(images, x, streams) for _ in range(n_sets)]
    for i, first in enumerate(range(0, len(images), B)):
        b = sets[i % n_sets]
        chunk = images[first : first + B]
        k = len(chunk)
        pmap(chunk, b.xf[:k])
        if k < B:
            b.xf[k:] = b.xf[k - 1]  # padding: the last image again
        if b.xsrc is not None:
            np.copyto(b.x, b.xsrc.reshape(x.shape), casting="unsafe")  # cast and/or NCHW transpose
        _fill_noise(b.noise)
        yield first, k, b.arrays


def model_spec(sig):
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


def write_dataset(images, sig, out, dataset, split, seed=0, force=False, progress=True):
    """Write ``images`` (uint8 [N,...]) for the built-in model ``sig`` under ``out``
    (binfiles layout). The set is complete or absent. Returns the manifest dict."""
    spec = model_spec(sig)
    if dataset != spec.dataset:
        raise UserError(f"{sig.path}: model {sig.model!r} is evaluated on {spec.dataset}, found --dataset {dataset}")
    x, noise = input_roles(sig, spec, spec.image_input, "dataset mode")
    if not len(images):
        raise UserError(f"{dataset} {split}: no images to write")
    streams = _noise_streams(noise, seed)
    fields = dict(image_input=x.name, noise_inputs=[t.name for t in noise], seed=seed, dataset=dataset, split=split)
    # the next batch is computed in a thread while this one is written; two buffer sets
    items = _ahead(_batches(images, pixel_map(spec.pixel_lut()), x, streams, sig))
    return write_set(sig, out, items, len(images), f"{dataset}_{split}", fields, force, progress)


# --- CLI -------------------------------------------------------------------------------------


def parser():
    ap = ArgumentParser(
        prog="img2bin.py",
        description=__doc__,
        epilog=EXAMPLE,
        conflict_handler="resolve",
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--help", action="help", help="show this help and exit")
    add_input(ap, "-i", help="folder of images, one image, or a .txt file")
    ap.add_argument("-w", "--width", type=int, help=f"output width, 1..{MAX_SIDE} (image mode, required)")
    ap.add_argument("-h", "--height", type=int, help=f"output height, 1..{MAX_SIDE} (image mode, required)")
    ap.add_argument("-f", "--output_image_format", choices=["BGR", "RGB", "GRAY", "YUV"], help="default BGR")
    ap.add_argument("-a", "--output_format", choices=["NCHW", "NHWC"], help="default NCHW")
    ap.add_argument(
        "-t",
        "--output_type",
        choices=DTYPES,
        help="(image mode, required; with --signature: default and must be the input's dtype)",
    )
    ap.add_argument(
        "-m", "--mean", help="JSON list, one value per output channel, in output channel order (default zeros)"
    )
    ap.add_argument("-c", "--coefficient", help="JSON list, one value per output channel, multiplied (default ones)")
    add_output(ap, default="./", help="output folder (default ./)")
    add_force(ap, help="replace existing .bin files / input set")
    add_verbosity(ap)
    g = ap.add_argument_group("for a model (image mode with --signature, or dataset mode)")
    g.add_argument("--signature", help="MODEL.json written by freeze (input names, shapes, dtypes)")
    g.add_argument("--input_name", help="the input the images fill, for a model with several inputs")
    g.add_argument("--seed", type=int, default=0, help="noise seed, >= 0 (default 0)")
    d = ap.add_argument_group("dataset mode (a built-in model's evaluation split, instead of -i)")
    from data_tools.datasets import DATASETS

    d.add_argument("--dataset", choices=DATASETS)
    d.add_argument("--split", default="test")
    add_data_dir(d)
    d.add_argument("--limit", type=int, help="first N images only")
    return ap


def _floats(s, flag, n, default):
    """-m / -c: exactly one finite number per output channel."""
    if s is None:
        return [float(default)] * n
    try:
        v = json.loads(s)
        v = [float(x) for x in (v if isinstance(v, list) else [v])]
    except (ValueError, TypeError):
        raise UserError(f"{flag}: expected a JSON list of numbers like [104,117,123], found {s!r}") from None
    if len(v) != n:
        raise UserError(
            f"{flag}: expected {n} value(s), one per output channel ({n} for this -f), found {len(v)} in {s!r}"
        )
    if not all(math.isfinite(x) for x in v):
        raise UserError(f"{flag}: expected finite numbers, found {s!r}")
    return v


def _preprocess(a, dtype):
    a.output_image_format = a.output_image_format or "BGR"
    a.output_format = a.output_format or "NCHW"
    missing = [f for f, v in (("-w", a.width), ("-h", a.height), ("-t", dtype)) if v is None]
    if missing:
        raise UserError(f"{a.input}: {', '.join(missing)} required in image mode")
    for flag, v in (("-w", a.width), ("-h", a.height)):
        if not 0 < v <= MAX_SIDE:
            raise UserError(
                f"{a.input}: image height or width must be greater than 0 and at most {MAX_SIDE}, found {flag} {v}"
            )
    if a.output_image_format == "YUV" and (a.width % 2 or a.height % 2):
        raise UserError(f"{a.input}: YUV needs an even width and height, got {a.width}x{a.height}")
    n = 1 if a.output_image_format == "GRAY" else 3
    if a.output_image_format == "YUV":  # the real tool skips mean/coef for YUV: say so
        for flag, s in (("-m", a.mean), ("-c", a.coefficient)):
            if s is not None:
                raise UserError(f"{flag}: not used with -f YUV (NV12 is written as computed), found {s!r}")
    mean, coef = _floats(a.mean, "-m", n, 0), _floats(a.coefficient, "-c", n, 1)
    return Preprocess(a.width, a.height, a.output_image_format, a.output_format, dtype, mean, coef)


def _dataset_main(a):
    from data_tools import datasets
    from freeze.signature import Signature

    if not a.signature:
        raise UserError("--dataset needs --signature MODEL.json (freeze writes it)")
    image_flags = [
        f
        for f, v in (
            ("-i", a.input),
            ("-w", a.width),
            ("-h", a.height),
            ("-t", a.output_type),
            ("-f", a.output_image_format),
            ("-a", a.output_format),
            ("-m", a.mean),
            ("-c", a.coefficient),
        )
        if v is not None
    ]
    if image_flags:  # the spec says how pixels become model values: these would be ignored
        raise UserError(
            f"{' '.join(image_flags)}: image mode flags, not used with --dataset (the model's "
            "spec maps the pixels); drop them, or use image mode (-i) instead"
        )
    if a.limit is not None and a.limit <= 0:
        raise UserError(f"--limit must be > 0, got {a.limit}")
    sig = Signature.load(a.signature)
    spec = model_spec(sig)
    if a.input_name is not None and a.input_name != spec.image_input:
        raise UserError(
            f"--input_name {a.input_name}: model {sig.model!r}'s images go to input "
            f"{spec.image_input!r} in dataset mode"
        )
    if a.dataset != spec.dataset:
        raise UserError(
            f"{a.signature}: model {sig.model!r} is evaluated on {spec.dataset}, found --dataset {a.dataset}"
        )
    images = datasets.load(a.dataset, a.split, a.data_dir)
    if a.limit is not None:
        images = images[: a.limit]
    m = write_dataset(images, sig, a.output, a.dataset, a.split, a.seed, a.force)
    print(
        f"[info] {m['n_images']} images in {len(m['files'])} files of batch {sig.batch} "
        f"({m['files'][-1]['n_pad']} padding rows) -> {os.path.abspath(a.output)}"
    )
    return 0


@cli
def main(argv=None):
    a = parser().parse_args(argv)
    if a.seed < 0:
        raise UserError(f"--seed must be >= 0, found {a.seed}")
    with interruptible():
        if a.dataset:
            return _dataset_main(a)
        if not a.input:
            raise UserError("-i/--input is required (or --dataset for dataset mode)")
        if a.limit is not None or a.data_dir is not None:
            raise UserError(
                f"{'--limit' if a.limit is not None else '--data-dir'} is for dataset mode "
                "(--dataset); with -i, pass a folder holding the images you want"
            )
        if not a.signature:
            if a.input_name:
                raise UserError("--input_name needs --signature MODEL.json")
            pre = _preprocess(a, a.output_type)
            outs = images_to_bins(
                a.input, a.output, pre.w, pre.h, pre.fmt, pre.layout, pre.dtype, pre.mean, pre.coef, force=a.force
            )
            print(f"[info] bin file generated successfully. ({len(outs)} file(s) in {a.output})")
            return 0
        from freeze.signature import Signature
        from models import spec as specs

        sig = Signature.load(a.signature)
        x, _ = input_roles(sig, specs.for_signature(sig), a.input_name, "image mode")
        if x.dtype not in DTYPES:
            raise UserError(f"{a.signature}: input {x.name!r} is {x.dtype}; img2bin writes {', '.join(DTYPES)}")
        if a.output_type is not None and a.output_type != x.dtype:
            raise UserError(
                f"-t {a.output_type}: input {x.name!r} of {a.signature} is {x.dtype} (leave -t out to use it)"
            )
        pre = _preprocess(a, x.dtype)
        m = images_to_set(a.input, a.output, sig, pre, x.name, a.seed, a.force)
        print(
            f"[info] {m['n_images']} images in {len(m['files'])} files of batch {sig.batch} "
            f"({m['files'][-1]['n_pad']} padding rows) -> {os.path.abspath(a.output)}"
        )
        return 0


if __name__ == "__main__":
    run(main)
