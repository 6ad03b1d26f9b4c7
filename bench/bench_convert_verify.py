"""Bench: conversion time (fp32, fp16) for a .pb, and loss_check time on 10,000 images.

    from bench.bench_convert_verify import run
    run("runs/demo/realnvp/model/realnvp.pb", "runs/demo/realnvp/model/realnvp.json")
"""
import os
import shutil
import sys
import tempfile
import time

import numpy as np

N_IMAGES, BATCH = 10_000, 16


def _synthetic_realnvp(root, seed):
    """msame-layout RealNVP outputs (z [16,32,32,3], logdet, bpd) for 10,000 images, files of 16."""
    from infer import layout
    from verify.metrics import realnvp_bpd

    rng = np.random.RandomState(seed)
    d = layout.new_run_dir(root)
    for f in range((N_IMAGES + BATCH - 1) // BATCH):
        z = rng.randn(BATCH, 32, 32, 3).astype(np.float32)
        ld = rng.uniform(-3000, -1000, BATCH).astype(np.float32)
        for i, a in enumerate((z, ld, realnvp_bpd(z, ld).astype(np.float32))):
            a.tofile(os.path.join(d, layout.output_name(f"cifar10_test_{f:05d}", i)))
    return d


def bench_loss_check(tmp):
    from freeze.signature import Signature, Tensor
    from verify import loss_check

    sig = Signature("realnvp", "forward", BATCH, [Tensor("x", "x:0", [BATCH, 32, 32, 3])],
                    [Tensor("z", "z:0", [BATCH, 32, 32, 3]), Tensor("logdet", "logdet:0", [BATCH]),
                     Tensor("bpd", "bpd:0", [BATCH])])
    sig.save(os.path.join(tmp, "sig.json"))
    ref = _synthetic_realnvp(os.path.join(tmp, "ref"), 0)
    off = os.path.join(tmp, "off")
    shutil.copytree(ref, os.path.join(off, os.path.basename(ref)))
    t0 = time.perf_counter()
    report = loss_check.check(sig, off, ref, progress=False)
    t_check = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss_check.plot(report, os.path.join(tmp, "lc.png"))
    return {"loss_check_10k_s": round(t_check, 3), "loss_check_plot_s": round(time.perf_counter() - t0, 3),
            "loss_check_files": report["files_compared"], "loss_check_passed": report["passed"]}


def run(pb_path, signature_path):
    from convert import to_onnx

    res = {"pb": os.path.abspath(pb_path), "signature": os.path.abspath(signature_path)}
    tmp = tempfile.mkdtemp(prefix="bench_cv_", dir="/tmp")
    try:
        stem = os.path.join(tmp, "m")
        shutil.copy(pb_path, stem + ".pb")
        shutil.copy(signature_path, stem + ".json")
        for mode, out in (("force_fp32", stem + ".fp32.onnx"), ("force_fp16", stem + ".fp16.onnx")):
            t0 = time.perf_counter()
            sig = to_onnx.convert(stem + ".pb", out, mode)
            res[f"convert_{mode}_s"] = round(time.perf_counter() - t0, 3)
            res[f"convert_{mode}_max_rel"] = sig.checks["onnx_vs_frozen_max_rel"]
        res.update(bench_loss_check(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return res


if __name__ == "__main__":
    import json

    print(json.dumps(run(*sys.argv[1:3]), indent=2))
