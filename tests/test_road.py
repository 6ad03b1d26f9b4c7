"""The whole road on real data, as a user types it: train -> freeze -> atc_*.sh (no CANN
here, so the portable ONNX model) -> img2bin -> msame runner -> golden outputs from the
checkpoint -> loss_check; then a corrupted output file makes loss_check fail and name it."""

import json
import os
import subprocess
import sys

import numpy as np

from infer import layout

PY = sys.executable


def sh(root, *cmd, ok=(0,)):
    env = dict(
        os.environ,
        PYTHON=PY,
        PATH=os.pathsep.join(
            p for p in os.environ["PATH"].split(os.pathsep) if not os.path.isfile(os.path.join(p, "atc"))
        ),
    )
    r = subprocess.run([str(c) for c in cmd], cwd=root, capture_output=True, text=True, env=env)
    assert r.returncode in ok, f"{cmd[:3]} exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r


def road(root, tmp, kind, data_dir, train_cmd, freeze_args, dataset, limit):
    train, model, inputs = tmp / "train", tmp / "model", tmp / "inputs"
    sh(root, PY, *train_cmd(train))
    sh(root, PY, f"freeze/freeze_{kind}.py", "--ckpt", train, "--out", model, *freeze_args)
    pb, sig = model / f"{kind}.pb", model / f"{kind}.json"
    r = sh(root, "bash", f"convert/atc_{kind}.sh", "--model", pb, "--output", model / kind)
    assert "atc not found" in r.stdout + r.stderr and (model / f"{kind}.onnx").is_file()
    sh(
        root,
        PY,
        "data_tools/img2bin.py",
        "--dataset",
        dataset,
        "--split",
        "test",
        "--signature",
        sig,
        "--data-dir",
        data_dir,
        "-o",
        inputs,
        "--seed",
        "1",
        "--limit",
        limit,
    )
    ins = f"{inputs / 'x'},{inputs / 'u'}"
    r = sh(root, PY, "infer/msame.py", "--model", model / f"{kind}.onnx", "--input", ins, "--output", tmp / "out")
    assert "Execute sample success" in r.stdout
    sh(root, PY, "verify/reference.py", "--signature", sig, "--input", ins, "--output", tmp / "ref")
    r = sh(
        root,
        PY,
        "verify/loss_check.py",
        "--signature",
        sig,
        "--offline",
        tmp / "out",
        "--reference",
        tmp / "ref",
        "--inputs",
        ins,
        "--report",
        tmp / "lc.json",
        "--no-progress",
    )
    report = json.loads((tmp / "lc.json").read_text())
    assert report["passed"] and report["n_images"] == limit  # padding rows excluded
    # the one-command form: golden outputs computed from the checkpoint, then compared
    sh(
        root,
        PY,
        "verify/loss_check.py",
        "--signature",
        sig,
        "--offline",
        tmp / "out",
        "--checkpoint-reference",
        "--reference",
        tmp / "ref2",
        "--inputs",
        ins,
        "--report",
        tmp / "lc1.json",
        "--no-progress",
        "--no-plot",
    )
    assert json.loads((tmp / "lc1.json").read_text())["passed"]
    # the same offline outputs, one file corrupted: FAIL (exit 1), the file named
    run_dir = layout.latest_run_dir(tmp / "out")
    bad = sorted(os.listdir(run_dir))[1]
    a = np.fromfile(os.path.join(run_dir, bad), np.float32)
    a[: max(1, a.size // 10)] += 1.0
    a.tofile(os.path.join(run_dir, bad))
    r = sh(
        root,
        PY,
        "verify/loss_check.py",
        "--signature",
        sig,
        "--offline",
        tmp / "out",
        "--reference",
        tmp / "ref",
        "--inputs",
        ins,
        "--report",
        tmp / "lc2.json",
        "--no-progress",
        "--no-plot",
        ok=(1,),
    )
    assert bad in r.stdout and "FAILED" in r.stdout
    return report


def test_realnvp_road_on_real_cifar(cifar_dir, repo_root, tmp_path):
    def train(d):
        return [
            "train/train_realnvp.py",
            "--config",
            "tiny32",
            "--data_url",
            cifar_dir,
            "--train_url",
            d,
            "--batch_size",
            "8",
            "--max_steps",
            "5",
            "--test_images",
            "16",
            "--seed",
            "0",
        ]

    rep = road(repo_root, tmp_path, "realnvp", cifar_dir, train, ["--batch", "8"], "cifar10", 21)
    bpd = next(m for m in rep["model_metrics"] if m["name"] == "bpd")
    assert 3 < bpd["reference_mean"] < 12 and abs(bpd["diff"]) <= 1e-4


def test_rebar_road_on_real_mnist(mnist_dir, repo_root, tmp_path):
    def train(d):
        return [
            "train/train_rebar.py",
            "--data_path",
            mnist_dir,
            "--working_dir",
            d,
            "--hparams",  # noqa: E731
            "model=SBNRebar,n_layer=2,task=sbn",
            "--steps",
            "20",
            "--eval_limit",
            "20",
            "--eval_samples",
            "10",
            "--log_every",
            "10",
            "--eval_freq",
            "0",
            "--seed",
            "0",
        ]

    rep = road(
        repo_root, tmp_path, "rebar", mnist_dir, train, ["--batch", "5", "--samples", "10"], "binarized_mnist", 12
    )
    m = {x["name"]: x for x in rep["model_metrics"]}
    assert m["iwae"]["reference_mean"] >= m["elbo"]["reference_mean"]
    assert abs(m["elbo"]["diff"]) <= 1e-3
