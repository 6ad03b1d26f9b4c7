"""img2bin speed and memory: dataset mode vs a plain numpy tofile loop of the same bytes
(target >= 80%), vs the per-image Ascend path through cv2 (target >= 5x), and memory
growth at 1x vs 4x data (tracemalloc peak while writing; target flat)."""
import os
import shutil
import tempfile
import time
import tracemalloc

import numpy as np

from data_tools import datasets, img2bin
from freeze.signature import Signature, Tensor

BATCH = 16


def _sig(d):
    s = Signature("realnvp", "forward", BATCH, [Tensor("x", "x:0", [BATCH, 32, 32, 3], layout="NHWC"),
                                                Tensor("u", "u:0", [BATCH, 32, 32, 3])], [])
    s.save(os.path.join(d, "sig.json"))
    return s


def _best(fn, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def run(data_dir):
    images = datasets.load("cifar10", "test", data_dir)
    work = tempfile.mkdtemp(prefix="bench_img2bin_")
    try:
        sig = _sig(work)
        out = os.path.join(work, "ds")
        t_ds = _best(lambda: img2bin.write_dataset(images, sig, out, "cifar10", "test", force=True,
                                                   progress=False))
        nbytes = sum(os.path.getsize(os.path.join(out, n, f)) for n in ("x", "u") for f in os.listdir(os.path.join(out, n)))
        # baseline: the same files and bytes, arrays ready, plain tofile
        arrays = [np.random.rand(BATCH, 32, 32, 3).astype(np.float32) for _ in range(2)]
        n_files = -(-len(images) // BATCH)
        base = os.path.join(work, "base")

        def plain():
            shutil.rmtree(base, ignore_errors=True)
            for k in ("x", "u"):
                os.makedirs(os.path.join(base, k))
            for i in range(n_files):
                for k, a in zip(("x", "u"), arrays):
                    a.tofile(os.path.join(base, k, f"{i:05d}.bin"))
        t_plain = _best(plain)
        # the Ascend tool's way: one PNG per image through cv2 (read, letterbox, maths, write)
        import cv2
        pngs = os.path.join(work, "png")
        os.makedirs(pngs)
        k = 256
        for i in range(k):
            cv2.imwrite(os.path.join(pngs, f"{i:05d}.png"), images[i][..., ::-1])
        t_ascend = _best(lambda: img2bin.images_to_bins(pngs, os.path.join(work, "asc"), 32, 32, "RGB", "NHWC",
                                                        "float32", [127.5] * 3, [1 / 127.5] * 3, progress=False), 1)
        ascend_per_image = t_ascend / k
        # memory: tracemalloc peak while writing 1x vs 4x the data
        peaks = {}
        for mult in (1, 4):
            data = np.concatenate([images] * mult)
            tracemalloc.start()
            img2bin.write_dataset(data, sig, out, "cifar10", "test", force=True, progress=False)
            peaks[mult] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            del data
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = nbytes / t_ds
    return {
        "images": len(images), "batch": BATCH, "bytes_written": nbytes,
        "dataset_mode_s": t_ds, "dataset_mode_MB_per_s": rate / 1e6,
        "plain_tofile_MB_per_s": nbytes / t_plain / 1e6,
        "ratio_vs_plain_tofile": t_plain / t_ds, "target_ratio_vs_plain_tofile": 0.8,
        "images_per_s": len(images) / t_ds, "ascend_style_images_per_s": 1 / ascend_per_image,
        "speedup_vs_ascend_style": ascend_per_image * len(images) / t_ds, "target_speedup_vs_ascend_style": 5,
        "tracemalloc_peak_MB_1x": peaks[1] / 1e6, "tracemalloc_peak_MB_4x": peaks[4] / 1e6,
        "memory_growth_4x_over_1x": peaks[4] / peaks[1],
    }


if __name__ == "__main__":
    import json
    import sys
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else datasets.default_data_dir()), indent=1))
