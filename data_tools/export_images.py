"""Write a dataset split as image files plus labels: what a user has for their own model.

    python data_tools/export_images.py --dataset cifar10 --split test [--limit N] -o DIR

writes DIR/<dataset>_<split>_<00000>.png (lossless; CIFAR-10 in colour, binarized MNIST
as 28x28 gray with 0 -> 0 and 1 -> 255) and, where the dataset has labels (CIFAR-10),
DIR/labels.txt: one integer label per line, in file-name order, which is the order
img2bin reads a folder in (sorted) and so the row order of its manifest. Then the road
for a user model is img2bin's image mode: ``img2bin.py -i DIR ... --signature m/mine.json``.

All or nothing: the files are written into a hidden folder inside DIR and moved into
place at the end; existing files are kept unless --force.
"""

import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from common import fsio  # noqa: E402
from common.cli import add_data_dir, add_force, add_output, tool_parser  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from common.log import quiet  # noqa: E402
from data_tools import datasets  # noqa: E402
from data_tools.staging import committing, interruptible, staging  # noqa: E402

LABELS = "labels.txt"
EXAMPLE = """example:
  python data_tools/export_images.py --dataset cifar10 --split test --limit 100 -o pics
  python data_tools/img2bin.py -i pics -w 32 -h 32 -f RGB -a NHWC --signature m/mine.json -o bins"""


def file_name(dataset, split, i):
    return f"{dataset}_{split}_{i:05d}.png"


def as_picture(images, dataset):
    """uint8 [N, ...] dataset images -> [N, H, W, C] uint8 pixels as they would be shown."""
    h, w, c = datasets.image_shape(dataset)
    x = np.asarray(images).reshape(len(images), h, w, c)
    if dataset == "binarized_mnist":
        x = x * np.uint8(255)  # {0,1} -> black / white
    return x


def export(images, labels, dataset, split, out, force=False, progress=True):
    """Write the PNGs (+ labels.txt); returns the written file names in order."""
    import cv2
    from tqdm import tqdm

    pics = as_picture(images, dataset)
    names = [file_name(dataset, split, i) for i in range(len(pics))]
    targets = names + ([LABELS] if labels is not None else [])
    fsio.refuse_overwrite([os.path.join(out, n) for n in targets], force)
    with staging(out) as tmp:
        for n, p in zip(names, tqdm(pics, disable=not progress or len(pics) < 2, unit="img")):
            bgr = p[..., ::-1] if p.shape[-1] == 3 else p[..., 0]
            ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
            if not ok:
                raise UserError(f"{n}: OpenCV could not encode the image as PNG")
            fsio.write_bytes(os.path.join(tmp, n), buf)
        if labels is not None:
            fsio.write_text(os.path.join(tmp, LABELS), "".join(f"{int(v)}\n" for v in labels))
        with committing():
            for n in targets:
                os.replace(os.path.join(tmp, n), os.path.join(out, n))
    return names


@cli
def main(argv=None):
    ap = tool_parser("export_images.py", __doc__, EXAMPLE)
    ap.add_argument("--dataset", required=True, choices=datasets.DATASETS)
    ap.add_argument("--split", default="test")
    add_data_dir(ap)
    ap.add_argument("--limit", type=int, help="first N images only")
    add_output(ap, required=True, help="folder to write the images into")
    add_force(ap, help="replace existing files")
    a = ap.parse_args(argv)
    if a.limit is not None and a.limit <= 0:
        raise UserError(f"--limit must be > 0, found {a.limit}")
    images, labels = datasets.load_labeled(a.dataset, a.split, a.data_dir)
    if a.limit is not None:
        images = images[: a.limit]
        labels = labels[: a.limit] if labels is not None else None
    with interruptible():
        names = export(images, labels, a.dataset, a.split, a.output, a.force, progress=not quiet())
    print(
        f"[info] {len(names)} images -> {os.path.abspath(a.output)}"
        + (
            f" (+ {LABELS}, one label a line, same order)"
            if labels is not None
            else f" (no labels: {a.dataset} has none)"
        )
    )
    return 0


if __name__ == "__main__":
    run(main)
