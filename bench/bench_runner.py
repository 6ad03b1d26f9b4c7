"""Runner speed: ONNX Runtime vs the TF frozen graph on the same bins (target ORT >= 1.6x),
ORT's achieved FLOP rate vs a float32 sgemm measured in the same run, per-file overhead
on a tiny model (target < 2 ms) and memory at 1,000 vs 10,000 files (target flat)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from infer.runner import open_runner, run_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sgemm_flops(n=2048, reps=5):
    a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
    a @ b
    t = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n**3 / t


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _throughput(model, sig, inputs_dir, out):
    from data_tools.binfiles import Manifest

    dirs = Manifest.load(inputs_dir).input_dirs()
    with open_runner(model, sig) as r:
        run_inputs(r, dirs, out + "_warm", progress=False)  # warm-up pass (first-run allocations)
        t = time.perf_counter()
        run_dir = run_inputs(r, dirs, out, progress=False)
        wall = time.perf_counter() - t
    n_files = len(os.listdir(dirs[0]))
    return n_files * r.signature.batch / wall, run_dir


MEM_CHILD = r"""
import sys, os, resource, time
sys.path.insert(0, sys.argv[4])
from infer.runner import open_runner, run_inputs
with open_runner(sys.argv[1]) as r:
    t = time.perf_counter()
    run_inputs(r, [sys.argv[2] + "/x", sys.argv[2] + "/u"], sys.argv[3], progress=False)
    dt = time.perf_counter() - t
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, dt)
"""


def _tiny_files(tiny, folder, n):
    from tiny_model import B, C, F, H, W

    for k, shape in (("x", (B, H, W, C)), ("u", (B, H, W, F))):
        os.makedirs(os.path.join(folder, k), exist_ok=True)
        a = np.random.rand(*shape).astype(np.float32)
        for i in range(n):
            a.tofile(os.path.join(folder, k, f"{i:06d}.bin"))


def tiny_overhead(ns=(1000, 10000), repeats=3):
    """Per-file overhead (wall per file minus the model's compute) and peak RSS of
    run_inputs on a tiny model, each run in a fresh process; the file counts are
    interleaved over ``repeats`` rounds and medians reported (the machine is shared)."""
    import statistics

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tiny_model import tiny_model

    tiny = tiny_model()
    work = tempfile.mkdtemp(prefix="bench_runner_tiny_")
    samples = {n: {"s": [], "rss": [], "ov": []} for n in ns}
    try:
        for n in ns:
            _tiny_files(tiny, os.path.join(work, f"tiny{n}"), n)
        with open_runner(tiny["onnx"]) as rr:  # model compute alone, to subtract
            feed = {t.name: np.zeros(t.shape, t.np_dtype) for t in rr.signature.inputs}
            for _ in range(repeats):
                for n in ns:
                    out = os.path.join(work, f"out{n}")
                    r = subprocess.run(
                        [sys.executable, "-c", MEM_CHILD, tiny["onnx"], os.path.join(work, f"tiny{n}"), out, ROOT],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    rss_kb, dt = r.stdout.split()
                    compute = min(_timed(lambda: rr.infer(feed)) for _ in range(200))
                    samples[n]["s"].append(float(dt))
                    samples[n]["rss"].append(int(rss_kb) / 1024)
                    samples[n]["ov"].append((float(dt) / n - compute) * 1e3)
                    shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res = {"tiny_repeats": repeats}
    for n in ns:
        res[f"tiny_{n}_files_s"] = statistics.median(samples[n]["s"])
        res[f"tiny_{n}_peak_rss_MB"] = statistics.median(samples[n]["rss"])
        res[f"per_file_overhead_ms_{n}"] = statistics.median(samples[n]["ov"])
        res[f"per_file_overhead_ms_{n}_samples"] = samples[n]["ov"]
    res["target_per_file_overhead_ms"] = 2.0
    if len(ns) > 1:
        res["rss_growth_10k_over_1k"] = res[f"tiny_{ns[-1]}_peak_rss_MB"] / res[f"tiny_{ns[0]}_peak_rss_MB"]
    return res


def run(pb_path, onnx_path, signature_path, inputs_dir, flops_per_image=None):
    work = tempfile.mkdtemp(prefix="bench_runner_")
    try:
        ort_ips, _ = _throughput(onnx_path, signature_path, inputs_dir, os.path.join(work, "ort"))
        tf_ips, _ = _throughput(pb_path, signature_path, inputs_dir, os.path.join(work, "tf"))
        sgemm = sgemm_flops()
        res = {
            "ort_images_per_s": ort_ips,
            "tf_images_per_s": tf_ips,
            "ort_over_tf": ort_ips / tf_ips,
            "target_ort_over_tf": 1.6,
            "sgemm_gflops": sgemm / 1e9,
            "threads": os.cpu_count(),
        }
        if flops_per_image:
            res.update(
                flops_per_image=flops_per_image,
                ort_gflops=ort_ips * flops_per_image / 1e9,
                ort_fraction_of_sgemm=ort_ips * flops_per_image / sgemm,
            )
        res.update(tiny_overhead())
        return res
    finally:
        shutil.rmtree(work, ignore_errors=True)
