"""Runner speed: ONNX Runtime vs the TF frozen graph on the same bins (target ORT >= 1.6x),
ORT's achieved FLOP rate vs a float32 sgemm, per-file overhead on a tiny model (target
< 2 ms) and memory at 1,000 vs 10,000 files (target flat).

ORT, TF and the sgemm are interleaved over ``rounds`` rounds (ORT TF sgemm ORT TF sgemm ...);
each ratio is the median of its per-round ratios, with their spread. Each ORT/TF side is a
fresh session (warmed on one batch) closed after its pass, so the sgemm runs with the
runtimes' threads gone, on as many OpenBLAS threads as ONNX Runtime and TF use (every core)."""

import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import stats
from infer.runner import open_runner, run_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _images_per_s(model, sig, dirs, work):
    """One timed pass over the bins in a fresh session, warmed on one batch of zeros."""
    out = tempfile.mkdtemp(dir=work)
    try:
        with open_runner(model, sig) as r:
            r.infer({t.name: np.zeros(t.shape, t.np_dtype) for t in r.signature.inputs})
            wall = _timed(lambda: run_inputs(r, dirs, out, progress=False))
            batch = r.signature.batch
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return len(os.listdir(dirs[0])) * batch / wall


MEM_CHILD = r"""
import sys, os, resource, time
sys.path.insert(0, sys.argv[4])
from bench import stats
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
    interleaved over ``repeats`` rounds. ({figure name: figure}, details)."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from tiny_model import tiny_model

    tiny = tiny_model()
    work = tempfile.mkdtemp(prefix="bench_runner_tiny_")
    samples = {n: {"s": [], "rss": [], "ov": []} for n in ns}
    loads = {n: stats.Load() for n in ns}
    try:
        for n in ns:
            _tiny_files(tiny, os.path.join(work, f"tiny{n}"), n)
        with open_runner(tiny["onnx"]) as rr:  # model compute alone, to subtract
            feed = {t.name: np.zeros(t.shape, t.np_dtype) for t in rr.signature.inputs}
            for _ in range(repeats):
                for n in ns:
                    out = os.path.join(work, f"out{n}")
                    with loads[n].watch():
                        r = subprocess.run(
                            [sys.executable, "-c", MEM_CHILD, tiny["onnx"], os.path.join(work, f"tiny{n}"), out, ROOT],
                            capture_output=True,
                            text=True,
                            check=True,
                        )
                        compute = min(_timed(lambda: rr.infer(feed)) for _ in range(200))
                    rss_kb, dt = r.stdout.split()
                    samples[n]["s"].append(float(dt))
                    samples[n]["rss"].append(int(rss_kb) / 1024)
                    samples[n]["ov"].append((float(dt) / n - compute) * 1e3)
                    shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        f"per_file_overhead_ms_{n}": stats.figure(
            samples[n]["ov"],
            "ms",
            loads[n],
            "one_core",
            f"runner per-file overhead {n}",
            f"runner, per-file overhead on a tiny model, {n:,} files",
            target="< 2 ms",
            met=lambda m: m < 2.0,
        )
        for n in ns
    }
    if len(ns) > 1:
        lo, hi = ns[0], ns[-1]
        figures["rss_growth"] = stats.figure(
            stats.ratios(samples[hi]["rss"], samples[lo]["rss"]),
            "x",
            stats.Load.merged(loads[lo], loads[hi]),
            None,
            label=f"runner, peak RSS {hi:,} vs {lo:,} files",
            target="flat (< 1.1x)",
            met=lambda m: m < 1.1,
        )
    details = {"tiny_repeats": repeats}
    for n in ns:
        details[f"tiny_{n}_files_s"] = stats.spread(samples[n]["s"])
        details[f"tiny_{n}_peak_rss_MB"] = stats.spread(samples[n]["rss"])
    return figures, details


def throughput(pb_path, onnx_path, signature_path, inputs_dir, flops_per_image, rounds=5):
    """ORT, TF and sgemm interleaved: {figure name: figure}."""
    from data_tools.binfiles import Manifest

    dirs = Manifest.load(inputs_dir).input_dirs()
    threads = os.cpu_count()  # ort_session_options' and TF's default intra-op threads: every core
    work = tempfile.mkdtemp(prefix="bench_runner_")
    try:
        with stats.blas_threads(threads):
            blas = stats.blas_info()
            s, loads = stats.interleave(
                {
                    "ort": lambda: _images_per_s(onnx_path, signature_path, dirs, work),
                    "tf": lambda: _images_per_s(pb_path, signature_path, dirs, work),
                    "sgemm": lambda: stats.sgemm_flops() / 1e9,
                },
                rounds,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    gf = [ips * flops_per_image / 1e9 for ips in s["ort"]]
    tf_gf = [ips * flops_per_image / 1e9 for ips in s["tf"]]
    both = stats.Load.merged(loads["ort"], loads["tf"])
    with_sgemm = stats.Load.merged(loads["ort"], loads["tf"], loads["sgemm"])
    what = "paper RealNVP batch 16"
    return {
        "ort_images_per_s": stats.figure(
            s["ort"], "images/s", loads["ort"], "all_cores", "runner ort", f"runner, {what}, ONNX Runtime"
        ),
        "tf_images_per_s": stats.figure(
            s["tf"], "images/s", loads["tf"], "all_cores", "runner tf", f"runner, {what}, TF frozen graph"
        ),
        "ort_over_tf": stats.figure(
            stats.ratios(s["ort"], s["tf"]),
            "x",
            both,
            "all_cores",
            "runner ort/tf",
            "runner, ONNX Runtime over TF frozen graph, same bins (per-round ratio)",
            target=">= 1.6x",
            met=lambda m: m >= 1.6,
        ),
        "sgemm_gflops": stats.figure(
            s["sgemm"],
            "GFLOP/s",
            loads["sgemm"],
            "all_cores",
            "sgemm",
            f"sgemm 2048, numpy on {blas.get('library')} ({blas.get('core')} kernel, {threads} threads)",
        ),
        "ort_fraction_of_sgemm": stats.figure(
            stats.ratios(gf, s["sgemm"]),
            "fraction",
            with_sgemm,
            "all_cores",
            "runner ort/sgemm",
            "runner, ONNX Runtime FLOP rate over sgemm (per-round ratio)",
            target=">= 85%",
            met=lambda m: m >= 0.85,
        ),
        "tf_fraction_of_sgemm": stats.figure(
            stats.ratios(tf_gf, s["sgemm"]),
            "fraction",
            with_sgemm,
            "all_cores",
            "runner tf/sgemm",
            "runner, TF frozen graph FLOP rate over sgemm (per-round ratio)",
        ),
    }, {"rounds": rounds, "threads": threads, "blas": blas, "flops_per_image": flops_per_image}


def run(pb_path, onnx_path, signature_path, inputs_dir, flops_per_image, rounds=5, tiny_ns=(1000, 10000)):
    figures, details = throughput(pb_path, onnx_path, signature_path, inputs_dir, flops_per_image, rounds)
    tiny_figures, tiny_details = tiny_overhead(tiny_ns, repeats=min(3, rounds))
    return {"figures": {**figures, **tiny_figures}, **details, **tiny_details}
