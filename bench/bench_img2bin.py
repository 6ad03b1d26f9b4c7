"""img2bin speed and memory: dataset mode vs a plain numpy tofile loop of the same bytes
(target >= 80%), vs the per-image Ascend path through cv2 (target >= 5x), and memory
growth at 1x vs 4x data (tracemalloc peak while writing; target flat)."""

import os
import shutil
import tempfile
import time
import tracemalloc

import numpy as np

from bench import stats
from data_tools import datasets
from data_tools.dataset_bins import write_dataset
from data_tools.image_tool import images_to_bins
from freeze.signature import Signature, Tensor

BATCH = 16


def _sig(d):
    s = Signature(
        "realnvp",
        "forward",
        BATCH,
        [Tensor("x", "x:0", [BATCH, 32, 32, 3], layout="NHWC"), Tensor("u", "u:0", [BATCH, 32, 32, 3])],
        [],
    )
    return s.save(os.path.join(d, "sig.json"))


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _dataset_vs_plain(images, sig, work, repeats):
    """Dataset mode and the plain tofile baseline timed alternately (``repeats`` pairs, order
    swapped every pair, one untimed warm-up each), writing the same files and bytes, each
    replacing its previous output inside the timing. Returns (bytes written, dataset-mode
    times, plain times); dataset mode's output stays in work/ds."""
    out = os.path.join(work, "ds")

    def ds():
        write_dataset(images, sig, out, "cifar10", "test", force=True, progress=False)

    ds()
    names = {n: sorted(os.listdir(os.path.join(out, n))) for n in ("x", "u")}
    nbytes = sum(os.path.getsize(os.path.join(out, n, f)) for n in names for f in names[n])
    n_files = -(-len(images) // BATCH)
    assert all(len(v) == n_files for v in names.values())
    # baseline: the same files and bytes, arrays ready, plain tofile
    arrays = [np.random.rand(BATCH, 32, 32, 3).astype(np.float32) for _ in range(2)]
    base = os.path.join(work, "base")

    def plain():
        shutil.rmtree(base, ignore_errors=True)
        for k in ("x", "u"):
            os.makedirs(os.path.join(base, k))
        for i in range(n_files):
            for k, a in zip(("x", "u"), arrays):
                a.tofile(os.path.join(base, k, names[k][i]))

    plain()
    t_ds_all, t_plain_all = [], []
    for r in range(repeats):
        for fn, ts in ((ds, t_ds_all), (plain, t_plain_all))[:: 1 if r % 2 == 0 else -1]:
            ts.append(_timed(fn))
    return nbytes, t_ds_all, t_plain_all


def _ascend_style(images, work, k=256):
    """A callable: seconds per image the Ascend tool's way, one PNG per image through cv2
    (read, letterbox, maths, write) over ``k`` images, into a fresh folder each call."""
    import cv2

    pngs = os.path.join(work, "png")
    os.makedirs(pngs)
    for i in range(k):
        cv2.imwrite(os.path.join(pngs, f"{i:05d}.png"), images[i][..., ::-1])
    calls = iter(range(10**6))
    args = (32, 32, "RGB", "NHWC", "float32", [127.5] * 3, [1 / 127.5] * 3)
    return lambda: (
        _timed(lambda: images_to_bins(pngs, os.path.join(work, f"asc{next(calls)}"), *args, progress=False)) / k
    )


def _memory_peaks(images, sig, out):
    """{1: bytes, 4: bytes}: the tracemalloc peak while writing 1x and 4x the data."""
    peaks = {}
    for mult in (1, 4):
        data = np.concatenate([images] * mult)
        tracemalloc.start()
        write_dataset(data, sig, out, "cifar10", "test", force=True, progress=False)
        peaks[mult] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del data
    return peaks


def run(data_dir, repeats=9):
    """Dataset mode against the plain tofile baseline (alternating runs, paired per round),
    against the Ascend-style per-image path (interleaved with dataset mode), and its memory growth."""
    images = datasets.load("cifar10", "test", data_dir)
    work = tempfile.mkdtemp(prefix="bench_img2bin_")
    plain_load = stats.Load()
    try:
        sig = _sig(work)
        with plain_load.watch():
            nbytes, t_ds_all, t_plain_all = _dataset_vs_plain(images, sig, work, repeats)
        out = os.path.join(work, "ds")
        ds = lambda: _timed(  # noqa: E731
            lambda: write_dataset(images, sig, out, "cifar10", "test", force=True, progress=False)
        )
        asc, asc_loads = stats.interleave({"ds": ds, "ascend": _ascend_style(images, work)}, min(3, repeats))
        peaks = _memory_peaks(images, sig, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(images)
    figures = {
        "ratio_vs_plain_tofile": stats.figure(
            stats.ratios(t_plain_all, t_ds_all),
            "x",
            plain_load,
            "one_core",
            "img2bin vs tofile",
            f"img2bin dataset mode, CIFAR-10 test set ({nbytes / 1e6:.0f} MB) vs a plain numpy tofile loop, same bytes",
            target=">= 0.8x",
            met=lambda m: m >= 0.8,
        ),
        "speedup_vs_ascend_style": stats.figure(
            [a * n / d for a, d in zip(asc["ascend"], asc["ds"])],
            "x",
            stats.Load.merged(asc_loads["ds"], asc_loads["ascend"]),
            "one_core",
            "img2bin vs ascend-style",
            "img2bin dataset mode vs the per-image Ascend-style path (cv2 per image)",
            target=">= 5x",
            met=lambda m: m >= 5,
        ),
        "memory_growth_4x_over_1x": stats.figure(
            [peaks[4] / peaks[1]],
            "x",
            stats.Load(),
            None,
            label="img2bin memory, 4x the data vs 1x (tracemalloc peak)",
            target="flat (< 1.1x)",
            met=lambda m: m < 1.1,
        ),
    }
    return {
        "figures": figures,
        "images": n,
        "batch": BATCH,
        "bytes_written": nbytes,
        "repeats": repeats,
        "dataset_mode_s": stats.spread(t_ds_all),
        "plain_tofile_s": stats.spread(t_plain_all),
        "dataset_mode_images_per_s": stats.spread([n / t for t in asc["ds"]]),
        "ascend_style_images_per_s": stats.spread([1 / t for t in asc["ascend"]]),
        "tracemalloc_peak_MB_1x": peaks[1] / 1e6,
        "tracemalloc_peak_MB_4x": peaks[4] / 1e6,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else datasets.default_data_dir()), indent=1))
