"""Bench: conversion time (fp32, fp16) for a .pb, and loss_check time on 10,000 images.

    from bench.bench_convert_verify import run
    run("runs/demo/realnvp/model/realnvp.pb", "runs/demo/realnvp/model/realnvp.json")

    python -m bench.bench_convert_verify            # loss_check part only
    python -m bench.bench_convert_verify PB SIG     # both

loss_check: 10,000 RealNVP-shaped images (z [16,16,16,12], logdet [16], bpd [16] per BIN
file of batch 16, rows counted through a manifest as loss_check does with --inputs) are
made on the fly in /tmp. The offline side is the reference with fp32-rounding-sized noise
(relative 1e-7, so every metric is non-trivial and the check passes). The timed
part is one whole ``verify.loss_check.check(...)`` call (listing, reading, per-file and
total metrics, model metric), repeated; the median is the headline, target < 3 s.
"""

import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from bench import stats

N_IMAGES, BATCH = 10_000, 16
Z_SHAPE = [BATCH, 16, 16, 12]  # RealNVP's latent for 32x32x3 (3072 values per image)
LOSS_CHECK_TARGET_S = 3.0


def _synthetic_realnvp(root, seed, n_files, noise=0.0, ref_dir=None):
    """msame-layout RealNVP outputs (z, logdet, bpd) for n_files files of BATCH images.

    With ref_dir, each file is the reference's file times (1 + noise * N(0,1))."""
    from infer import layout
    from models.realnvp_spec import bits_per_dim as realnvp_bpd

    rng = np.random.RandomState(seed)
    d = layout.new_run_dir(root)
    for f in range(n_files):
        stem = f"cifar10_test_{f:05d}"
        if ref_dir is None:
            z = rng.randn(*Z_SHAPE).astype(np.float32)
            ld = rng.uniform(-3000, -1000, BATCH).astype(np.float32)
        else:
            z = np.fromfile(os.path.join(ref_dir, layout.output_name(stem, 0)), np.float32).reshape(Z_SHAPE)
            ld = np.fromfile(os.path.join(ref_dir, layout.output_name(stem, 1)), np.float32)
            z = (z * (1 + noise * rng.randn(*z.shape))).astype(np.float32)
            ld = (ld * (1 + noise * rng.randn(*ld.shape))).astype(np.float32)
        for i, a in enumerate((z, ld, realnvp_bpd(z, ld).astype(np.float32))):
            a.tofile(os.path.join(d, layout.output_name(stem, i)))
    return d


def _manifest(folder, n_files):
    from data_tools.binfiles import FORMAT, write_manifest

    files = [
        {
            "stem": f"cifar10_test_{f:05d}",
            "first": f * BATCH,
            "n_real": min(BATCH, N_IMAGES - f * BATCH),
            "n_pad": max(0, (f + 1) * BATCH - N_IMAGES),
        }
        for f in range(n_files)
    ]
    os.makedirs(os.path.join(folder, "x"), exist_ok=True)
    return write_manifest(
        folder, {"format": FORMAT, "n_images": N_IMAGES, "inputs": [{"name": "x", "dir": "x"}], "files": files}
    )


def bench_loss_check(tmp, repeats=5, plot=True):
    from data_tools.binfiles import Manifest
    from freeze.signature import Signature, Tensor
    from verify import loss_check

    sig = Signature(
        "realnvp",
        "forward",
        BATCH,
        [Tensor("x", "x:0", [BATCH, 32, 32, 3])],
        [Tensor("z", "z:0", Z_SHAPE), Tensor("logdet", "logdet:0", [BATCH]), Tensor("bpd", "bpd:0", [BATCH])],
    )
    sig = sig.save(os.path.join(tmp, "sig.json"))
    n_files = (N_IMAGES + BATCH - 1) // BATCH
    t0 = time.perf_counter()
    ref = _synthetic_realnvp(os.path.join(tmp, "ref"), 0, n_files)
    off = _synthetic_realnvp(os.path.join(tmp, "off"), 1, n_files, noise=1e-7, ref_dir=ref)
    manifest = Manifest.load(_manifest(os.path.join(tmp, "bins"), n_files))
    t_make = time.perf_counter() - t0
    times, report, load = [], None, stats.Load()
    for _ in range(repeats):
        with load.watch():
            t0 = time.perf_counter()
            report = loss_check.check(sig, off, ref, manifest, progress=False)
            times.append(time.perf_counter() - t0)
    res = {
        "figures": {
            "loss_check_10k_s": stats.figure(
                times,
                "s",
                load,
                "one_core",
                "loss_check 10k",
                f"loss_check, {N_IMAGES:,} RealNVP images ({report['files_compared']} files)",
                target=f"< {LOSS_CHECK_TARGET_S:g} s",
                met=lambda m: m < LOSS_CHECK_TARGET_S,
            )
        },
        "loss_check_files": report["files_compared"],
        "loss_check_images": report["n_images"],
        "loss_check_passed": report["passed"],
        "loss_check_z_elementwise_fail": report["outputs"][0]["elementwise_fail"],
        "loss_check_make_inputs_s": round(t_make, 3),
    }
    if plot:
        t0 = time.perf_counter()
        loss_check.plot(report, os.path.join(tmp, "lc.png"))
        res["loss_check_plot_s"] = round(time.perf_counter() - t0, 3)
    return res


def run(pb_path, signature_path, paper=None, smoke=False):
    """Conversion (fp32, and fp16 unless ``smoke``) and loss_check; ``paper``: run.py's
    prepared model, whose freeze time and load become a figure too. Freeze and conversion
    are single runs (one sample each): mostly one Python thread, with short TF/ORT checks."""
    from convert import to_onnx

    res = {"pb": os.path.abspath(pb_path), "signature": os.path.abspath(signature_path), "figures": {}}
    if paper:
        res["figures"]["freeze_s"] = stats.figure(
            [paper["freeze_s"]], "s", paper["freeze_load"], "one_core", "freeze", "freeze, paper RealNVP at batch 16"
        )
    tmp = tempfile.mkdtemp(prefix="bench_cv_", dir="/tmp")
    try:
        stem = os.path.join(tmp, "m")
        shutil.copy(pb_path, stem + ".pb")
        shutil.copy(signature_path, stem + ".json")
        for mode in ("force_fp32",) if smoke else ("force_fp32", "force_fp16"):
            load = stats.Load()
            with load.watch():
                t0 = time.perf_counter()
                sig = to_onnx.convert(stem + ".pb", f"{stem}.{mode}.onnx", mode)
                dt = time.perf_counter() - t0
            res["figures"][f"convert_{mode}_s"] = stats.figure(
                [dt], "s", load, "one_core", f"convert {mode}", f"tf2onnx conversion {mode}, paper RealNVP"
            )
            res[f"convert_{mode}_max_rel"] = sig.checks["onnx_vs_frozen_max_rel"]
        lc = bench_loss_check(tmp, repeats=2 if smoke else 5)
        res["figures"].update(lc.pop("figures"))
        res.update(lc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


def run_loss_check(repeats=5):
    tmp = tempfile.mkdtemp(prefix="bench_lc_", dir="/tmp")
    try:
        return bench_loss_check(tmp, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run(*sys.argv[1:3]) if len(sys.argv) > 2 else run_loss_check(), indent=2))
