"""img2bin: images to raw .bin model inputs (Ascend's tool), plus a dataset mode.

Image mode is Ascend's img2bin (-i -w -h -f -a -t -m -c -o), same maths in the same
order: cv2.imread (BGR) -> letterbox resize (INTER_LINEAR, zero padding, split
top=pad//2) -> colour (RGB/GRAY/YUV) -> float32 (x - mean) * coef -> plain astype ->
NCHW transpose (BGR/RGB only; GRAY stays HW) -> <stem>.bin. Fixed bugs of the original:
  * files are processed in sorted order (not os.listdir order);
  * two inputs with the same stem (a.jpg + a.png) are an error, never a silent overwrite;
  * the .txt input works, alone or in a folder ([baseconf] input_node=[...] shape=[...]);
  * every error exits non-zero with one line naming the file; unknown -f/-t are errors.
  YUV (NV12, Ascend's integer formula) is done; U/V are clipped to 0..255.

Dataset mode writes a test split for a model, one .bin per static batch, in exactly the
signature's input shapes and dtypes (layout: data_tools/binfiles.py): the image input
"x" (CIFAR-10: (pixel - 127.5) / 127.5 float32 NHWC; binarized MNIST: {0,1} float32
[B,784]) and every other input as uniform noise in (0,1) (never exactly 0) from --seed,
one stream per input in image order, so image i gets the same noise at any batch size.
A last partial batch is padded by repeating the last image; the manifest records n_pad.
"""
import argparse
import configparser
import json
import os
import shutil
import sys
import tempfile
import zlib

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from common import fsio  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from data_tools import binfiles  # noqa: E402

EXAMPLE = """examples:
  python data_tools/img2bin.py -i images/ -w 224 -h 224 -f RGB -a NHWC -t float32 \\
      -m "[123.675,116.28,103.53]" -c "[0.0171,0.0175,0.0174]" -o bins/
  python data_tools/img2bin.py --dataset cifar10 --split test --signature out/realnvp.json \\
      -o bins/ --seed 0 --limit 256"""
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
DTYPES = ("float32", "uint8", "int32", "uint32")


# --- image mode ---------------------------------------------------------------------

def letterbox(img, w, h):
    import cv2

    ih, iw = img.shape[:2]
    r = min(h / ih, w / iw)
    nh, nw = int(ih * r), int(iw * r)
    img = cv2.resize(img, (nw, nh))
    top, left = (h - nh) // 2, (w - nw) // 2
    return cv2.copyMakeBorder(img, top, h - nh - top, left, w - nw - left, cv2.BORDER_CONSTANT, value=0)


def nv12(bgr):
    """Ascend img2bin's integer BGR -> YUV420SP (NV12): Y plane, then interleaved U,V."""
    b, g, r = (bgr[..., i].astype(np.int32) for i in range(3))
    y = (29 * b + 150 * g + 77 * r) >> 8
    b2, g2, r2 = b[::2, ::2], g[::2, ::2], r[::2, ::2]
    u = ((131 * b2 - 87 * g2 - 44 * r2) >> 8) + 128
    v = ((-21 * b2 - 110 * g2 + 131 * r2) >> 8) + 128
    uv = np.stack([u, v], -1).reshape(bgr.shape[0] // 2, bgr.shape[1])
    return np.clip(np.concatenate([y, uv]), 0, 255).astype(np.uint8)


def convert_image(path, w, h, fmt="BGR", layout="NCHW", dtype="float32", mean=(0, 0, 0), coef=(1, 1, 1)):
    """One image file -> the array Ascend's img2bin would write."""
    import cv2

    img = cv2.imread(os.fspath(path))
    if img is None:
        raise UserError(f"{path}: not a readable image")
    img = letterbox(img, w, h)
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
    except (KeyError, ValueError, configparser.Error) as e:
        raise UserError(f"{path}: expected '[baseconf]' with input_node=[...] and shape=[...] "
                        f"matching in size, found a problem: {type(e).__name__}: {e}") from None


def list_inputs(src):
    """Sorted input files; one stem may appear once only (its .bin would be overwritten)."""
    if os.path.isdir(src):
        files = sorted(os.path.join(src, n) for n in os.listdir(src)
                       if n.lower().endswith(IMAGE_EXT + (".txt",)))
        if not files:
            raise UserError(f"{src}: no images ({', '.join(IMAGE_EXT)}) or .txt files in the folder")
    elif os.path.isfile(src):
        if not src.lower().endswith(IMAGE_EXT + (".txt",)):
            raise UserError(f"{src}: input file must be an image ({', '.join(IMAGE_EXT)}) or .txt")
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


def images_to_bins(src, out, w, h, fmt="BGR", layout="NCHW", dtype="float32", mean=(0, 0, 0),
                   coef=(1, 1, 1), progress=True):
    """Ascend img2bin over a folder / image / .txt; returns the written paths."""
    from tqdm import tqdm

    files = list_inputs(src)
    os.makedirs(out, exist_ok=True)
    outs = [os.path.join(out, os.path.splitext(os.path.basename(f))[0] + ".bin") for f in files]
    old = [p for p in outs if os.path.exists(p)]
    if old:
        print(f"[WARN] replacing {len(old)} existing .bin file(s) in {out}", file=sys.stderr)
    for f, p in zip(tqdm(files, disable=not progress or len(files) < 2, unit="img"), outs):
        a = convert_txt(f, dtype) if f.lower().endswith(".txt") else convert_image(
            f, w, h, fmt, layout, dtype, mean, coef)
        fsio.write_array(p, a)
    return outs


def _floats(s, flag, n):
    try:
        v = json.loads(s)
        v = [float(x) for x in (v if isinstance(v, list) else [v])]
    except (ValueError, TypeError):
        raise UserError(f"{flag}: expected a JSON list of numbers like [104,117,123], found {s!r}") from None
    if len(v) < n:
        raise UserError(f"{flag}: expected {n} value(s) (one per output channel), found {len(v)}")
    return v


# --- dataset mode --------------------------------------------------------------------

def image_lut(dataset):
    """uint8 pixel -> model value, as one lookup table (one pass over the data)."""
    if dataset == "cifar10":
        return ((np.arange(256, dtype=np.float32) - np.float32(127.5)) / np.float32(127.5))
    return np.arange(256, dtype=np.float32)  # binarized MNIST: {0,1} stays {0,1}


def _pixel_map(dataset):
    """f(uint8 chunk, float32 out): the image_lut mapping done as float32 ufuncs into a
    preallocated buffer (np.take(lut, chunk) first widens every index to intp: 3-4x
    slower). Checked bit for bit against the table on all 256 values; where it does not
    match, or the images are not uint8, np.take does it."""
    lut = image_lut(dataset)
    if dataset == "cifar10":
        c = np.float32(127.5)

        def f(chunk, out):
            np.subtract(chunk, c, out=out, dtype=np.float32)
            np.divide(out, c, out=out)
    else:
        def f(chunk, out):
            np.copyto(out, chunk, casting="unsafe")
    got = np.empty(256, np.float32)
    f(np.arange(256, dtype=np.uint8), got)
    exact = np.array_equal(got.view(np.uint32), lut.view(np.uint32))

    def pixel_map(chunk, out):
        if exact and chunk.dtype == np.uint8:
            f(chunk, out)
        else:
            np.take(lut, chunk, out=out)
    return pixel_map


class Noise:
    """Uniform (0,1) float32, one stream per input name in image order: image i's noise
    does not depend on the batch size. (float32 uniforms are k*2^-24; k=0 becomes 2^-24.)"""

    TINY = np.float32(2.0 ** -24)

    def __init__(self, seed, name):
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


def _image_input(sig):
    for t in sig.inputs:
        if t.name == "x":
            return t
    raise UserError(f"{sig.path}: no image input named 'x'; inputs are {[t.name for t in sig.inputs]}")


class _Buffers:
    """One batch's arrays, allocated once and refilled: ``arrays`` {name: array in the
    signature's shape and dtype}, plus float32 scratch where a cast or transpose is needed."""

    def __init__(self, images, x, noise):
        self.xf = np.empty((x.shape[0],) + images.shape[1:], np.float32)  # mapped pixels, dataset layout
        src = self.xf.transpose(0, 3, 1, 2) if x.layout == "NCHW" and self.xf.ndim == 4 else self.xf
        if src is self.xf and x.np_dtype == np.float32:
            self.xsrc, self.x = None, self.xf.reshape(x.shape)  # a view: nothing to copy per batch
        else:
            self.xsrc, self.x = src, np.empty(x.shape, x.np_dtype)
        self.noise = []
        for t, gen in noise:
            out = np.empty(t.shape, t.np_dtype)
            f32 = out if t.np_dtype == np.float32 else np.empty(t.shape, np.float32)
            self.noise.append((gen, f32, out))
        self.arrays = {x.name: self.x}
        self.arrays.update((t.name, out) for (t, _), (_, _, out) in zip(noise, self.noise))


def _batches(images, pixel_map, x, noise, sig, n_sets=2):
    """Yield (first, n_real, {name: batch array}) for each static batch; pads by repeating
    the last image. The arrays live in ``n_sets`` buffer sets used in turn: an item stays
    valid until ``n_sets - 1`` more items have been taken. Memory: n_sets batches."""
    B = sig.batch
    per_image = x.size // B
    if images[0].size != per_image:
        raise UserError(f"{sig.path}: input 'x' {x.shape} holds {per_image} values per image, "
                        f"the dataset has {images[0].size}")
    sets = [_Buffers(images, x, noise) for _ in range(n_sets)]
    for i, first in enumerate(range(0, len(images), B)):
        b = sets[i % n_sets]
        chunk = images[first:first + B]
        k = len(chunk)
        pixel_map(chunk, b.xf[:k])
        if k < B:
            b.xf[k:] = b.xf[k - 1]  # padding: the last image again
        if b.xsrc is not None:
            np.copyto(b.x, b.xsrc.reshape(x.shape), casting="unsafe")  # cast and/or NCHW transpose
        for gen, f32, out in b.noise:
            gen.fill(f32)
            if out is not f32:
                np.copyto(out, f32, casting="unsafe")
        yield first, k, b.arrays


_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_raw(path, a):
    """Raw C-order bytes of a contiguous array to a new file (inside write_dataset's
    hidden folder, which makes the whole dataset atomic by its final rename)."""
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
    random fill, ufuncs and os.write release the GIL). The caller must be done with an
    item before it asks for the next one (then two buffer sets suffice)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(next, it, None)
        while True:
            item = fut.result()
            if item is None:
                return
            fut = ex.submit(next, it, None)
            yield item


def write_dataset(images, sig, out, dataset, split, seed=0, force=False, progress=True):
    """Write ``images`` (uint8 [N,...]) for the model ``sig`` under ``out`` (binfiles layout).
    Everything is written into a hidden folder and moved into place at the end, so a
    dataset folder is either complete or absent. Returns the manifest dict."""
    from tqdm import tqdm

    x = _image_input(sig)
    noise = []
    for t in sig.inputs:
        if t is not x:
            if t.np_dtype.kind != "f":
                raise UserError(f"{sig.path}: input {t.name!r} is {t.dtype}; dataset mode fills "
                                "inputs other than 'x' with uniform noise and needs float")
            noise.append((t, Noise(seed, t.name)))
    if not len(images):
        raise UserError(f"{dataset} {split}: no images to write")
    manifest_path = os.path.join(out, binfiles.MANIFEST)
    targets = [os.path.join(out, t.name) for t in sig.inputs] + [manifest_path]
    busy = [p for p in targets if os.path.exists(p)]
    if busy and not force:
        raise UserError(f"{busy[0]}: already exists (expected an empty output folder); "
                        "pass --force to replace it")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".img2bin-", dir=out)
    try:
        for t in sig.inputs:
            os.mkdir(os.path.join(tmp, t.name))
        files = []
        n_batches = -(-len(images) // sig.batch)
        dirs = {t.name: os.path.join(tmp, t.name, "") for t in sig.inputs}
        # the next batch is computed in a thread while this one is written (numpy's
        # ufuncs, random fill and os.write release the GIL); two buffer sets, reused
        for first, k, arrays in tqdm(_ahead(_batches(images, _pixel_map(dataset), x, noise, sig)),
                                     total=n_batches, disable=not progress, unit="batch", desc="img2bin"):
            stem = f"{dataset}_{split}_{first // sig.batch:05d}"
            for name, a in arrays.items():
                _write_raw(dirs[name] + stem + ".bin", a)
            files.append({"stem": stem, "first": first, "n_real": k, "n_pad": sig.batch - k})
        manifest = {
            "format": binfiles.FORMAT, "dataset": dataset, "split": split,
            "signature": {"path": sig.path and os.path.abspath(sig.path), "model": sig.model,
                          "graph": sig.graph, "batch": sig.batch,
                          "inputs": [t.to_dict() for t in sig.inputs]},
            "seed": int(seed), "n_images": int(len(images)), "padding": "repeat_last",
            "noise": "uniform (0,1) float32, numpy PCG64([seed, crc32(name)]), image order",
            "inputs": [{"name": t.name, "dir": t.name} for t in sig.inputs], "files": files,
        }
        for p in busy:
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)
        for t in sig.inputs:
            os.replace(os.path.join(tmp, t.name), os.path.join(out, t.name))
        fsio.write_json(manifest_path, manifest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# --- CLI -----------------------------------------------------------------------------

def parser():
    ap = argparse.ArgumentParser(prog="img2bin.py", description=__doc__, epilog=EXAMPLE,
                                 conflict_handler="resolve", add_help=False,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--help", action="help", help="show this help and exit")
    ap.add_argument("-i", "--input", help="folder of images, one image, or a .txt file")
    ap.add_argument("-w", "--width", type=int, help="output width (image mode, required)")
    ap.add_argument("-h", "--height", type=int, help="output height (image mode, required)")
    ap.add_argument("-f", "--output_image_format", default="BGR", choices=["BGR", "RGB", "GRAY", "YUV"])
    ap.add_argument("-a", "--output_format", default="NCHW", choices=["NCHW", "NHWC"])
    ap.add_argument("-t", "--output_type", choices=DTYPES, help="(image mode, required)")
    ap.add_argument("-m", "--mean", default="[0, 0, 0]", help="JSON list, output channel order")
    ap.add_argument("-c", "--coefficient", default="[1, 1, 1]", help="JSON list, multiplied")
    ap.add_argument("-o", "--output", default="./", help="output folder (default ./)")
    g = ap.add_argument_group("dataset mode (instead of -i)")
    g.add_argument("--dataset", choices=["cifar10", "binarized_mnist"])
    g.add_argument("--split", default="test")
    g.add_argument("--signature", help="MODEL.json written by freeze (input names, shapes, dtypes)")
    g.add_argument("--data-dir", default=None, help="DATA_DIR (default $DATA_DIR or ./data)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    g.add_argument("--limit", type=int, help="first N images only")
    g.add_argument("--force", action="store_true", help="replace an existing dataset folder")
    return ap


@cli
def main(argv=None):
    a = parser().parse_args(argv)
    if a.dataset:
        from data_tools import datasets
        from freeze.signature import Signature

        if not a.signature:
            raise UserError("--dataset needs --signature MODEL.json (freeze writes it)")
        sig = Signature.load(a.signature)
        images = datasets.load(a.dataset, a.split, a.data_dir)
        if a.limit is not None:
            if a.limit <= 0:
                raise UserError(f"--limit must be > 0, got {a.limit}")
            images = images[:a.limit]
        m = write_dataset(images, sig, a.output, a.dataset, a.split, a.seed, a.force)
        print(f"[info] {m['n_images']} images in {len(m['files'])} files of batch {sig.batch} "
              f"({m['files'][-1]['n_pad']} padding rows) -> {os.path.abspath(a.output)}")
        return 0
    if not a.input:
        raise UserError("-i/--input is required (or --dataset for dataset mode)")
    missing = [f for f, v in (("-w", a.width), ("-h", a.height), ("-t", a.output_type)) if v is None]
    if missing:
        raise UserError(f"{a.input}: {', '.join(missing)} required in image mode")
    if a.width <= 0 or a.height <= 0:
        raise UserError(f"{a.input}: image height or width must be greater than 0, got "
                        f"{a.height}x{a.width}")
    if a.output_image_format == "YUV" and (a.width % 2 or a.height % 2):
        raise UserError(f"{a.input}: YUV needs an even width and height, got {a.width}x{a.height}")
    n = 1 if a.output_image_format == "GRAY" else 3
    mean, coef = _floats(a.mean, "-m", n), _floats(a.coefficient, "-c", n)
    outs = images_to_bins(a.input, a.output, a.width, a.height, a.output_image_format, a.output_format,
                          a.output_type, mean, coef)
    print(f"[info] bin file generated successfully. ({len(outs)} file(s) in {a.output})")
    return 0


if __name__ == "__main__":
    run(main)
