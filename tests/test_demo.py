"""demo/road.py with every command faked (the real road is `make demo`): each model walks
train, freeze, convert per precision mode, its input bins, golden outputs, then the runner
and loss_check per mode on the model that mode's convert wrote; RealNVP goes on to the
precision doctor and the model rebuilt with its keep list."""

import importlib.util
import json
import os
import re

PER_MODE = ["msame runner ({})", "loss_check ({})"]
REALNVP = (
    ["train (small config)", "freeze", "convert fp32 (atc_realnvp.sh)", "convert fp16 (allow_fp32_to_fp16)"]
    + ["img2bin (CIFAR-10 test)", "golden outputs (checkpoint)"]
    + [s.format(m) for m in ("fp32", "fp16") for s in PER_MODE]
    + ["convert force_fp16 (to_onnx.py)"]
    + [s.format("force_fp16") for s in PER_MODE]
    + ["precision doctor (force_fp16, --iterate 8)", "convert force_fp16 + keep_dtype"]
    + [s.format("force_fp16_keep") for s in PER_MODE]
)
REBAR = (
    ["train (SBNDynamicRebar)", "freeze", "convert fp32 (atc_rebar.sh)", "convert fp16 (allow_fp32_to_fp16)"]
    + ["img2bin (MNIST test, first 7)", "golden outputs (checkpoint)"]
    + [s.format(m) for m in ("fp32", "fp16") for s in PER_MODE]
)
CLASSIFIER = (
    ["train (examples/, 3 s)", "freeze (freeze_graph.py)", "convert fp32 (atc.sh)"]
    + ["convert fp16 (atc.sh allow_fp32_to_fp16)", "export test images (PNG + labels)"]
    + ["img2bin (image mode, --signature)", "golden outputs (checkpoint)"]
    + [s.format(m) for m in ("fp32", "fp16") for s in PER_MODE]
)


def _fake_call(calls):
    """subprocess.call that records the command, and writes what the demo reads back: the
    loss_check report (one failing batch) and the doctor's keep list."""

    def write(path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def call(cmd, cwd=None):
        calls.append(cmd)
        if "verify/loss_check.py" in cmd:
            report = cmd[cmd.index("--report") + 1]
            label = os.path.basename(report)[len("loss_check_") : -len(".json")]
            lc = {"precision_mode": label, "passed": True, "model_metrics": [], "outputs": [{"name": "y", "cosine": 1}]}
            lc["failed_files"] = [{"file": "/o/b007_output_0.bin"}]
            write(report, json.dumps(lc))
        if "verify/compare_layers.py" in cmd:
            write(cmd[cmd.index("--keep-dtype-out") + 1], "Log_1\n")
        return 0

    return call


def test_every_model_walks_the_same_stages(tmp_path, repo_root, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("demo_road", os.path.join(repo_root, "demo", "road.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    calls = []
    monkeypatch.setattr(demo.subprocess, "call", _fake_call(calls))
    monkeypatch.setattr(demo, "fetch_missing_data", lambda *a: None)  # the data are faked too (test_fetch_data)
    out = tmp_path / "demo"
    demo.main(["--out", str(out), "--data-dir", str(tmp_path), "--rebar-images", "7", "--classifier-seconds", "3"])
    stages = re.findall(r"^=== (\w+): (.*)$", capsys.readouterr().out, re.M)
    assert stages[-1][1] == "self-verification report"  # of the road folders with a model/
    assert stages[:-1] == [
        (m, s) for m, ss in (("realnvp", REALNVP), ("rebar", REBAR), ("classifier", CLASSIFIER)) for s in ss
    ]
    cmds = [[str(c) for c in cmd] for cmd in calls]
    runs = [c[c.index("--model") + 1] for c in cmds if "infer/msame.py" in c]
    assert [os.path.relpath(r, out) for r in runs] == [
        f"{m}/model/{m}{suffix}.onnx"
        for m, suffixes in (
            ("realnvp", ("", ".allow_fp32_to_fp16", ".force_fp16", ".force_fp16_keep")),
            ("rebar", ("", ".allow_fp32_to_fp16")),
            ("classifier", ("", ".allow_fp32_to_fp16")),
        )
        for suffix in suffixes
    ]
    checks = [c for c in cmds if "verify/loss_check.py" in c]
    assert [c[c.index("--signature") + 1] for c in checks] == [r[: -len(".onnx")] + ".json" for r in runs]
    assert [("--top1" in c) for c in checks] == [False] * 6 + [True] * 2  # the classifier's --top1 --labels
    (doctor,) = [c for c in cmds if "verify/compare_layers.py" in c]
    assert doctor[-2:] == ["--batch-file", "b007"]  # the batch loss_check named as failing
    (kept,) = [c for c in cmds if "--keep_dtype" in c]
    assert kept[-1] == doctor[doctor.index("--keep-dtype-out") + 1]
