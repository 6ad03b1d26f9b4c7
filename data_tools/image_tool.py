"""Ascend's img2bin for one image and for a folder: the image mode's maths and its files.

One image: cv2.imread (BGR) -> letterbox resize (INTER_LINEAR, zero padding, split
top=pad//2) -> colour (RGB/GRAY/YUV as integer NV12) -> float32 (x - mean) * coef ->
plain astype -> NCHW transpose (BGR/RGB only; GRAY stays HW). A .txt input is Ascend's
``[baseconf] input_node=[...] shape=[...]``. A folder, an image or a .txt file becomes one
``<stem>.bin`` per input file (``images_to_bins``), all or nothing (data_tools/staging.py).
The command line is data_tools/img2bin.py.
"""

import configparser
import contextlib
import json
import os

import numpy as np

from common import fsio
from common.errors import UserError, first_line
from data_tools.export_images import LABELS
from data_tools.staging import committing, staging

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp")
DTYPES = ("float32", "uint8", "int32", "uint32")
# what a static AIPP model (ATC --insert_op_conf) takes: uint8, packed, no mean/coef
# (YVU420SP_U8 is the AIPP pages' name of NV21: input_format YUV420SP_U8 + rbuv_swap_switch)
AIPP_FORMATS = ("YUV420SP_U8", "YVU420SP_U8", "RGB888_U8", "XRGB8888_U8", "YUV400_U8")


def _cv2():
    import cv2

    # a corrupt file is our one-line error, not OpenCV's log lines on stderr
    with contextlib.suppress(AttributeError):
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    return cv2


def letterbox(img: np.ndarray, w: int, h: int, path: str = "image") -> np.ndarray:
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


def nv12(bgr: np.ndarray) -> np.ndarray:
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


def aipp_bytes(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """A letterboxed BGR image as the uint8 data a static-AIPP model takes (convert/aipp.py):
    YUV420SP_U8 [H*3/2, W] NV12 (YVU420SP_U8: NV21) in the full-range BT.601 (JPEG/JFIF)
    YCbCr a JPEG decoder gives, chroma averaged over each 2x2 block; RGB888_U8 [H, W, 3];
    XRGB8888_U8 [H, W, 4] bytes X,R,G,B with X = 0; YUV400_U8 [H, W] (the same Y)."""
    cv2 = _cv2()
    if fmt == "RGB888_U8":
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if fmt == "XRGB8888_U8":
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return np.concatenate([np.zeros(rgb.shape[:2] + (1,), np.uint8), rgb], -1)
    ycrcb = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)  # full range: Y = .299R + .587G + .114B, rounded
    y = ycrcb[..., 0]
    if fmt == "YUV400_U8":
        return np.ascontiguousarray(y)
    h, w = y.shape
    c = ycrcb[..., 1:].astype(np.float64).reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    c = np.clip(np.floor(c + 0.5), 0, 255).astype(np.uint8)  # Cr, Cb per 2x2 block
    uv = c[..., ::-1] if fmt == "YUV420SP_U8" else c  # NV12: U(Cb), V(Cr); NV21: V, U
    return np.concatenate([y, uv.reshape(h // 2, w)])


def convert_image(
    path, w: int, h: int, fmt="BGR", layout="NCHW", dtype="float32", mean=(0, 0, 0), coef=(1, 1, 1)
) -> np.ndarray:
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
    if fmt in AIPP_FORMATS:
        return aipp_bytes(img, fmt)
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


def convert_txt(path: str, dtype: str) -> np.ndarray:
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


def is_label_list(folder: str, name: str) -> bool:
    """True for export_images' ``labels.txt`` in a folder of images (one integer label a
    line): it describes the images and is not an input. A ``labels.txt`` in Ascend's
    [baseconf] form is still an input."""
    if name != LABELS:
        return False
    try:
        with open(os.path.join(folder, name), encoding="ascii") as f:
            return all(line.strip().lstrip("-").isdigit() for line in f if line.strip())
    except (OSError, UnicodeDecodeError):
        return False


def list_inputs(src: str, txt: bool = True) -> list[str]:
    """Sorted input files; one stem may appear once only (its .bin would be overwritten).
    ``txt=False`` (batched for a model): images only, a folder's .txt files (labels.txt
    beside the images) are not inputs; with ``txt=True`` a folder's export_images
    labels.txt is skipped too (``is_label_list``)."""
    ext = IMAGE_EXT + ((".txt",) if txt else ())
    what = f"images ({', '.join(IMAGE_EXT)})" + (" or .txt files" if txt else "")
    if os.path.isdir(src):
        names = [n for n in os.listdir(src) if n.lower().endswith(ext) and not is_label_list(src, n)]
        files = sorted(os.path.join(src, n) for n in names)
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

    def __call__(self, path: str) -> np.ndarray:
        if path.lower().endswith(".txt"):
            return convert_txt(path, self.dtype)
        return convert_image(path, self.w, self.h, self.fmt, self.layout, self.dtype, self.mean, self.coef)

    def to_dict(self) -> dict:
        return {
            "width": self.w,
            "height": self.h,
            "output_image_format": self.fmt,
            "output_format": self.layout,
            "output_type": self.dtype,
            "mean": self.mean,
            "coefficient": self.coef,
        }


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
) -> list[str]:
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
