"""msame where the runner used to differ from the real tool (issue 20), each expectation
taken from msame's source (Ascend/tools msame/src: main.cpp, sample_process.cpp,
model_process.cpp, utils.cpp) or its documented behaviour, never from our own output:
--loop in zero mode, --outputSize, the dym flags and gears, dump/profiler, short options
and the help on a bad option, the model id, the om backend's time."""

import os
import re
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from dyn_model import write as write_dyn
from tiny_model import B, F, H, W, tiny_model, write_bins

from infer import msame
from infer.runner import open_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MSAME = os.path.join(ROOT, "infer", "msame.py")


def _msame(capsys, *args):
    rc = msame.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def _run_dir(lines):
    return lines[lines.index("[INFO] create model output success") + 1]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_zero_mode_loops_and_writes_once(model, tmp_path, capsys):
    """sample_process.cpp: without --input, CreateZeroInput, then `for t < g_loop` Execute
    with one "Inference time:" each, outputs written once, "%f" averages."""
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "o", "-l", "3")
    assert rc in (0, None), err
    times = [ln for ln in out if re.fullmatch(r"Inference time: [0-9.e+-]+ms", ln)]
    assert len(times) == 3
    assert re.fullmatch(r"Inference average time: \d+\.\d{6} ms", out[out.index(times[-1]) + 3])
    assert any(re.fullmatch(r"Inference average time without first time: \d+\.\d{6} ms", ln) for ln in out)
    assert sorted(os.listdir(_run_dir(out))) == ["run.json", "tiny_output_0.bin", "tiny_output_1.bin"]
    y = np.fromfile(os.path.join(_run_dir(out), "tiny_output_0.bin"), np.float32)
    assert y.size == B * H * W * F  # tanh(conv(0) + 0) = 0 everywhere: zeros in, zeros out
    assert not y.any()


def test_output_size_whole_buffers(model, tmp_path, capsys):
    """CreateOutput: one buffer of --outputSize bytes per output (count must equal the om's
    outputs: "om has N output, but outputSize parametet give M"); OutputModelResult writes
    the whole buffer, the output's values first."""
    feed = write_bins(tmp_path / "in", 1)[0]
    files = f"{tmp_path}/in/x/b000.bin,{tmp_path}/in/u/b000.bin"
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-i", files, "-o", tmp_path / "bad", "--outputSize", "100")
    assert rc == 2 and "om has 2 output, but outputSize parametet give 1" in err
    ny, ns = B * H * W * F * 4 + 64, B * 4
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-i", files, "-o", tmp_path / "o", "--outputSize", f"{ny},{ns}")
    assert rc in (0, None), err
    with open_runner(model["onnx"]) as r:
        y, s = r.infer(feed)
    raw = open(os.path.join(_run_dir(out), "tiny_output_0.bin"), "rb").read()
    assert len(raw) == ny and raw[: y.nbytes] == y.tobytes() and raw[y.nbytes :] == bytes(64)
    assert open(os.path.join(_run_dir(out), "tiny_output_1.bin"), "rb").read() == s.tobytes()
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-i", files, "-o", tmp_path / "small", "--outputSize", "8,8")
    assert rc == 2 and "needs 1152 bytes, its buffer has 8" in err


@pytest.mark.parametrize(
    "flag,value,words",
    [
        ("--dymBatch", "2", "the dynamic_batch_size parameter is not specified for model conversion"),
        ("--dymHW", "6,6", "the dynamic_image_size parameter is not specified for model conversion"),
        ("--dymDims", "x:2,6,6,3;u:2,6,6,4", "the dynamic_dims parameter is not specified for model conversion"),
    ],
)
def test_static_model_refuses_dym_flags(model, tmp_path, capsys, flag, value, words):
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "o", flag, value)
    assert rc == 2 and words in err and "[ERROR] Execute sample failed" in out
    assert not os.path.exists(tmp_path / "o")


def test_two_dym_flags_refused(model, tmp_path, capsys):
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "o", "--dymBatch", "2", "--dymHW", "6,6")
    assert rc == 2 and "dymBatch dymDims dymHW dymShape cannot be set at the same time" in err
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "o", "--dymShape", "x:2,6,6,3;u:2,6,6,4")
    assert rc == 2 and "the dymShape parameter must be used with the input parameter" in err


def test_dym_batch_gear_file_length(tmp_path, capsys):
    """--dymBatch b on a model converted with --dynamic_batch_size 1,3,4: the buffer holds
    the largest gear (4 rows); msame writes len / (maxBatch / b) bytes in integer
    arithmetic: 4 / 3 = 1, so all 4 rows' bytes with --dymBatch 3 (3 real rows first),
    4 / 1 = 4 -> one row with --dymBatch 1."""
    m = write_dyn(tmp_path / "m", "batch", "x:-1,2,3", [[1], [3], [4]])
    x3 = np.arange(18, dtype=np.float32).reshape(3, 2, 3)
    x3.tofile(tmp_path / "x3.bin")
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x3.bin", "-o", tmp_path / "o3", "--dymBatch", "3")
    assert rc in (0, None), err
    y = np.fromfile(os.path.join(_run_dir(out), "dyn_output_0.bin"), np.float32)
    want = np.zeros(4 * 6, np.float32)
    want[:18] = (2 * x3 + 1).ravel()
    np.testing.assert_array_equal(y, want)
    s = np.fromfile(os.path.join(_run_dir(out), "dyn_output_1.bin"), np.float32)
    np.testing.assert_allclose(s, np.r_[(2 * x3 + 1).sum(axis=(1, 2)), 0], rtol=1e-6)
    x3[:1].tofile(tmp_path / "x1.bin")
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x1.bin", "-o", tmp_path / "o1", "-y", "1")
    assert rc in (0, None), err
    assert os.path.getsize(os.path.join(_run_dir(out), "dyn_output_0.bin")) == 6 * 4
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x1.bin", "-o", tmp_path / "o5", "--dymBatch", "2")
    assert rc == 2 and "the dymBatch parameter is not correct" in err and "{[1][3][4]}" in err


def test_dym_dims_and_hw_gears(tmp_path, capsys):
    """--dymDims must name a gear exactly (CheckDynamicDims compares every dim); a dims
    model without it: "model has dynamic_dims, please add dymDims parameter". The file is
    the whole buffer, the largest gear's output."""
    m = write_dyn(tmp_path / "d", "dims", "x:-1,-1,3", [[1, 2], [2, 4]])
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    x.tofile(tmp_path / "x.bin")
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x.bin", "-o", tmp_path / "o", "--dymDims", "x:1,2,3")
    assert rc in (0, None), err
    y = np.fromfile(os.path.join(_run_dir(out), "dyn_output_0.bin"), np.float32)
    assert y.size == 2 * 4 * 3 and np.array_equal(y[:6], (2 * x + 1).ravel()) and not y[6:].any()
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x.bin", "-o", tmp_path / "o2", "--dymDims", "x:1,4,3")
    assert rc == 2 and "the dynamic_dims parameter is not correct" in err
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x.bin", "-o", tmp_path / "o3")
    assert rc == 2 and "model has dynamic_dims, please add dymDims parameter" in err
    m = write_dyn(tmp_path / "h", "hw", "x:1,-1,-1", [[2, 3], [4, 5]])
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x.bin", "-o", tmp_path / "o4", "--dymHW", "2,3")
    assert rc in (0, None), err
    y = np.fromfile(os.path.join(_run_dir(out), "dyn_output_0.bin"), np.float32)
    assert y.size == 4 * 5 and np.array_equal(y[:6], (2 * x + 1).ravel()) and not y[6:].any()
    rc, out, err = _msame(capsys, "-m", m, "-i", tmp_path / "x.bin", "-o", tmp_path / "o5", "--dymHW", "3,2")
    assert rc == 2 and "the dymHW parameter is not correct" in err


def test_dump_and_profiler(model, tmp_path, capsys):
    """main.cpp: both true is "dump and profiler can not both be true"; one of them makes
    OUTPUT/profiler or OUTPUT/dump (Utils::ProfilerJson / DumpJson) before the model loads."""
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "b", "-d", "true", "-p", "true")
    assert rc == 2 and "dump and profiler can not both be true" in err and not os.path.exists(tmp_path / "b")
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "p", "--profiler", "true")
    assert rc in (0, None), err
    assert os.path.isdir(tmp_path / "p" / "profiler") and not os.listdir(tmp_path / "p" / "profiler")
    assert [ln for ln in out if ln.startswith("[WARN]")] == [
        f"[WARN] --profiler true: no NPU here, nothing to profile; {tmp_path / 'p' / 'profiler'} is made as "
        "msame makes it and stays empty (each inference's time is in the run's run.json)"
    ]
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "d", "--dump", "true")
    assert rc in (0, None) and os.path.isdir(tmp_path / "d" / "dump")


def test_short_options_and_help_on_unknown(model, tmp_path, capsys):
    """main.cpp's optstring: -m -i -o -f -d -p -l -y -e -g; an unknown option prints
    "[ERROR] unknown paramenter", "Execute sample failed" and the help letter."""
    write_bins(tmp_path / "in", 1)
    files = f"{tmp_path}/in/x/b000.bin,{tmp_path}/in/u/b000.bin"
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-i", files, "-o", tmp_path / "o", "-f", "TXT", "-e", "0")
    assert rc in (0, None), err
    assert sorted(os.listdir(_run_dir(out))) == ["run.json", "tiny_output_0.txt", "tiny_output_1.txt"]
    rc, out, err = _msame(capsys, "-m", model["onnx"], "-o", tmp_path / "o2", "--bogus", "1")
    assert rc == 2 and out[:2] == ["[ERROR] unknown paramenter", "[ERROR] Execute sample failed"]
    assert any(ln.startswith("usage: msame.py") for ln in out) and "--bogus" in err


def test_model_id_is_aclmdl_load_order(model):
    """ACL numbers the models a process loads; msame loads one, so a fresh msame says 1."""
    r = subprocess.run(
        [sys.executable, MSAME, "-m", model["onnx"], "-o", os.path.join(model["dir"], "idrun")],
        capture_output=True,
        text=True,
    )
    assert "[INFO] unload model success, model Id is 1" in r.stdout.splitlines()
    with open_runner(model["onnx"]) as a, open_runner(model["onnx"]) as b:
        assert b.model_id == a.model_id + 1


def test_om_backend_takes_msame_device_time_and_id(model, tmp_path, monkeypatch):
    """The om backend's time is the "Inference time:" msame prints (device execute only),
    not the wall time of the msame process (model load included); the id is msame's."""
    om = tmp_path / "tiny.om"
    shutil.copyfile(model["onnx"], om)
    shutil.copyfile(model["json"], tmp_path / "tiny.json")
    fake = tmp_path / "bin" / "msame"
    fake.parent.mkdir()
    fake.write_text(
        f'#!/bin/sh\n{sys.executable} {MSAME} --backend onnxruntime "$@" | '
        "sed -e 's/^Inference time: .*/Inference time: 0.731ms/' -e 's/model Id is 1/model Id is 7/'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    feed = write_bins(tmp_path / "in", 1)[0]
    with open_runner(om) as r:
        r.infer(feed)
        assert r.inference_time == pytest.approx(0.731e-3) and r.model_id == 7


def test_om_backend_passes_the_gear_to_msame(tmp_path, monkeypatch):
    """A gear chosen for an .om goes to the real msame as its flag, and the whole-buffer
    files msame writes are read back as the gear's output (its values come first)."""
    m = write_dyn(tmp_path / "m", "batch", "x:-1,2,3", [[1], [3], [4]])
    shutil.copyfile(m, tmp_path / "m" / "dyn.om")
    fake = tmp_path / "bin" / "msame"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {MSAME} --backend onnxruntime "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    x = np.arange(18, dtype=np.float32).reshape(3, 2, 3)
    with open_runner(tmp_path / "m" / "dyn.om", dym_batch="3") as r:
        y, s = r.infer({"x": x})
    np.testing.assert_array_equal(y, 2 * x + 1)
    np.testing.assert_allclose(s, (2 * x + 1).sum(axis=(1, 2)), rtol=1e-6)


def test_debug_lists_the_gears(tmp_path, capsys):
    """PrintDesc: "DynamicBatch:" then each batch gear and a space; "DynamicHW:" then each
    gear as `hw[0] << hw[1] << " "` (no separator between h and w)."""
    m = write_dyn(tmp_path / "b", "batch", "x:-1,2,3", [[1], [3], [4]])
    rc, out, err = _msame(capsys, "-m", m, "-o", tmp_path / "o", "-y", "1", "-g", "true")
    assert rc in (0, None), err
    i = out.index("[DEBUG] DynamicBatch:")
    assert out[i + 1 : i + 3] == ["1 3 4 ", "[DEBUG] end print model description"]
    m = write_dyn(tmp_path / "h", "hw", "x:1,-1,-1", [[2, 3], [4, 5]])
    rc, out, err = _msame(capsys, "-m", m, "-o", tmp_path / "o2", "--dymHW", "4,5", "--debug", "true")
    assert rc in (0, None), err
    assert out[out.index("[DEBUG] DynamicHW:") + 1] == "23 45 "
