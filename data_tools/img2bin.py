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
import json
import math
import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.cli import ArgumentParser, add_data_dir, add_force, add_input, add_output, add_verbosity  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from common.log import log, quiet  # noqa: E402
from data_tools.dataset_bins import images_to_set, input_roles, model_spec, write_dataset  # noqa: E402
from data_tools.image_tool import AIPP_FORMATS, DTYPES, Preprocess, images_to_bins  # noqa: E402
from data_tools.staging import interruptible  # noqa: E402

EXAMPLE = """examples:
  python data_tools/img2bin.py -i images/ -w 224 -h 224 -f RGB -a NHWC -t float32 \\
      -m "[123.675,116.28,103.53]" -c "[0.0171,0.0175,0.0174]" -o bins/
  python data_tools/img2bin.py -i images/ -w 32 -h 32 -f RGB -a NHWC \\
      -m "[127.5,127.5,127.5]" -c "[0.00784314,0.00784314,0.00784314]" \\
      --signature m/mine.json -o bins/            # one file per batch + manifest.json
  python data_tools/img2bin.py --dataset cifar10 --split test --signature m/realnvp.json \\
      -o bins/ --seed 0 --limit 256"""
MAX_SIDE = 16384  # -w/-h bound: 16384^2 RGB float32 is already 3 GiB per image


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
    ap.add_argument(
        "-f",
        "--output_image_format",
        choices=["BGR", "RGB", "GRAY", "YUV", *AIPP_FORMATS],
        help="default BGR; the *_U8 formats are what a static-AIPP model takes (ATC --insert_op_conf: "
        "uint8, packed, no -m/-c; YVU420SP_U8 is NV21; with --signature of such a model, the default)",
    )
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
    """-m / -c: exactly one finite number per output channel. GRAY (n = 1) also takes the
    three values of the real tool's default and of a BGR/RGB command: the real img2bin
    uses the first (``input_img[:, :] -= args.mean[0]``), said in one line when they differ."""
    if s is None:
        return [float(default)] * n
    try:
        v = json.loads(s)
        v = [float(x) for x in (v if isinstance(v, list) else [v])]
    except (ValueError, TypeError):
        raise UserError(f"{flag}: expected a JSON list of numbers like [104,117,123], found {s!r}") from None
    if n == 1 and len(v) == 3:
        if len(set(v)) > 1:
            log.info("%s %s: GRAY uses the first value, %g, as Ascend's img2bin does", flag, s, v[0])
        v = v[:1]
    if len(v) != n:
        also = " (or 3, of which GRAY uses the first)" if n == 1 else ""
        raise UserError(
            f"{flag}: expected {n} value(s){also}, one per output channel ({n} for this -f), found {len(v)} in {s!r}"
        )
    if not all(math.isfinite(x) for x in v):
        raise UserError(f"{flag}: expected finite numbers, found {s!r}")
    return v


def _preprocess(a, dtype):
    if a.output_image_format in AIPP_FORMATS:
        return _aipp_preprocess(a, dtype)
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


def _aipp_preprocess(a, dtype):
    """-f <AIPP input_format>: uint8 packed data at -w x -h (the config's src_image_size)."""
    f = a.output_image_format
    missing = [flag for flag, v in (("-w", a.width), ("-h", a.height)) if v is None]
    if missing:
        raise UserError(f"{a.input}: {', '.join(missing)} required (the AIPP config's src_image_size)")
    for flag, v in (("-w", a.width), ("-h", a.height)):
        if not 0 < v <= MAX_SIDE:
            raise UserError(f"{a.input}: {flag} must be in 1..{MAX_SIDE}, found {v}")
    if "420" in f and (a.width % 2 or a.height % 2):
        raise UserError(f"{a.input}: -f {f} needs an even width and height, got {a.width}x{a.height}")
    if dtype not in (None, "uint8"):
        raise UserError(f"-t {dtype}: -f {f} is uint8 data (what AIPP takes)")
    for flag, s in (("-m", a.mean), ("-c", a.coefficient), ("-a", a.output_format)):
        if s is not None:
            raise UserError(f"{flag}: not used with -f {f} (AIPP normalises on the device), found {s!r}")
    return Preprocess(a.width, a.height, f, "NHWC", "uint8")


def _aipp_defaults(a, sig, x):
    """-f/-w/-h from the card of a static-AIPP model for input ``x`` (convert/aipp.py's record)."""
    rec = next((r for r in (sig.artifact or {}).get("aipp") or [] if r.get("input") == x.name), None)
    if rec is None:
        return
    v, (w, h) = rec["values"], rec["src_image_size"]
    fmt = rec["input_format"]
    if fmt == "YUV420SP_U8" and v.get("rbuv_swap_switch"):
        fmt = "YVU420SP_U8"
    elif fmt == "RGB888_U8" and v.get("rbuv_swap_switch"):
        fmt = None  # packed B,G,R: -f BGR -a NHWC
    elif fmt == "XRGB8888_U8" and (v.get("rbuv_swap_switch") or not v.get("ax_swap_switch")):
        fmt = None  # img2bin writes X,R,G,B (ax_swap_switch true, rbuv_swap_switch false)
    if a.output_image_format is None:
        if fmt is None:
            raise UserError(
                f"{a.signature}: input {x.name!r} takes {x.meaning}; pass -f (e.g. -f BGR -a NHWC) and -w/-h"
            )
        a.output_image_format = fmt
    a.width = a.width if a.width is not None else w
    a.height = a.height if a.height is not None else h


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
    want = spec.dataset_of(sig.config)
    if a.dataset != want:
        raise UserError(f"{a.signature}: model {sig.model!r} is evaluated on {want}, found --dataset {a.dataset}")
    images = datasets.load(a.dataset, a.split, a.data_dir)
    if a.limit is not None:
        images = images[: a.limit]
    m = write_dataset(images, sig, a.output, a.dataset, a.split, a.seed, a.force, progress=not quiet())
    print(
        f"[info] {m['n_images']} images in {len(m['files'])} files of batch {sig.batch} "
        f"({m['files'][-1]['n_pad']} padding rows) -> {os.path.abspath(a.output)}"
    )
    return 0


def _model_image_main(a):
    """Image mode with --signature: the images packed into the model's static batches."""
    from freeze.signature import Signature
    from models import spec as specs

    sig = Signature.load(a.signature)
    x, _ = input_roles(sig, specs.for_signature(sig), a.input_name, "image mode")
    if x.dtype not in DTYPES:
        raise UserError(f"{a.signature}: input {x.name!r} is {x.dtype}; img2bin writes {', '.join(DTYPES)}")
    if a.output_type is not None and a.output_type != x.dtype:
        raise UserError(f"-t {a.output_type}: input {x.name!r} of {a.signature} is {x.dtype} (leave -t out to use it)")
    _aipp_defaults(a, sig, x)
    pre = _preprocess(a, x.dtype)
    m = images_to_set(a.input, a.output, sig, pre, x.name, a.seed, a.force, progress=not quiet())
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
        if a.signature:
            return _model_image_main(a)
        if a.input_name:
            raise UserError("--input_name needs --signature MODEL.json")
        pre = _preprocess(a, a.output_type)
        outs = images_to_bins(
            a.input,
            a.output,
            pre.w,
            pre.h,
            pre.fmt,
            pre.layout,
            pre.dtype,
            pre.mean,
            pre.coef,
            force=a.force,
            progress=not quiet(),
        )
        print(f"[info] bin file generated successfully. ({len(outs)} file(s) in {a.output})")
        return 0


if __name__ == "__main__":
    run(main)
