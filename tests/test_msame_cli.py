"""`python infer/msame.py` in place of msame: console lines, layout, exit codes; and the
om backend driving an msame found on PATH (here a stand-in script calling msame.py)."""

import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
from tiny_model import tiny_model, write_bins

from infer.runner import open_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSAME = os.path.join(ROOT, "infer", "msame.py")


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, MSAME, *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT)


def test_folder_mode_console_and_layout(tmp_path):
    m = tiny_model()
    write_bins(tmp_path / "in", 2)
    r = _run(
        "--model",
        m["onnx"],
        "--input",
        f"{tmp_path}/in/x, {tmp_path}/in/u",
        "--output",
        tmp_path / "out",
        "--outfmt",
        "TXT",
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    i = out.index("[INFO] create model output success")
    run_dir = out[i + 1]
    assert re.fullmatch(r"\d{6,8}_\d{1,2}_\d{1,2}_\d{1,2}_\d{1,6}", os.path.basename(run_dir))
    assert sorted(os.listdir(run_dir)) == [
        "b000_output_0.txt",
        "b000_output_1.txt",
        "b001_output_0.txt",
        "b001_output_1.txt",
        "run.json",
    ]
    assert sum(bool(re.fullmatch(r"Inference time: [0-9.e+-]+ms", ln)) for ln in out) == 2
    assert any(re.fullmatch(r"Inference average time : \d+\.\d\d ms", ln) for ln in out)
    assert re.fullmatch(r"\[INFO\] pid: \d+ Execute sample success", out[-5])
    # what msame post-processing does: newest sub-folder, whitespace-split TXT
    vals = np.array(open(os.path.join(run_dir, "b001_output_1.txt")).read().split(), np.float32)
    assert vals.shape == (2,)


def test_errors_exit_nonzero_and_write_nothing(tmp_path):
    m = tiny_model()
    write_bins(tmp_path / "in", 1)
    np.zeros(5, np.float32).tofile(tmp_path / "in/u/b000.bin")
    r = _run(
        "--model",
        m["onnx"],
        "--input",
        f"{tmp_path}/in/x/b000.bin,{tmp_path}/in/u/b000.bin",
        "--output",
        tmp_path / "out",
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/in/u/b000.bin: input 'u' expects 1152 bytes ([2, 6, 6, 4] float32), found 20"
    )
    assert "[ERROR] Execute sample failed" in r.stdout and "Execute sample success" not in r.stdout
    assert not any(os.scandir(tmp_path / "out")) if os.path.exists(tmp_path / "out") else True
    r = _run("--model", m["onnx"], "--output", tmp_path / "o", "--loop", "101")
    assert r.returncode == 2 and "loop must be in 1 to 100" in r.stderr


def test_om_backend_drives_msame_on_path(tmp_path, monkeypatch):
    """An .om goes to whatever `msame` is on PATH; here a stand-in that runs msame.py on an
    ONNX copy, so the whole om path (write bins, run, parse, read outputs) is exercised."""
    m = tiny_model()
    om = tmp_path / "tiny.om"
    shutil.copyfile(m["onnx"], om)
    shutil.copyfile(m["json"], tmp_path / "tiny.json")
    fake = tmp_path / "bin" / "msame"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {MSAME} --backend onnxruntime "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    feed = write_bins(tmp_path / "in", 1)[0]
    with open_runner(om) as r, open_runner(m["onnx"]) as ref:
        assert r.backend == "om"
        got, want = r.infer(feed), ref.infer(feed)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
