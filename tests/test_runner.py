"""The runner: backends agree, msame's naming and TXT format, folder matching, input
checks before anything is written, resume."""

import json
import os

import numpy as np
import pytest
from tiny_model import tiny_model, write_bins

from common.errors import UserError
from infer import layout
from infer.runner import open_runner, run_inputs, summary_path


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_onnxruntime_and_tf_agree(model, tmp_path):
    feed = write_bins(tmp_path, 1)[0]
    with open_runner(model["onnx"]) as ort_r, open_runner(model["pb"]) as tf_r:
        assert (ort_r.backend, tf_r.backend) == ("onnxruntime", "tf")
        a, b = ort_r.infer(feed), tf_r.infer(feed)
        assert ort_r.inference_time > 0
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a[1], a[0].sum(axis=(1, 2, 3)), rtol=1e-5)


def test_infer_checks_names_shapes_dtypes(model, tmp_path):
    feed = write_bins(tmp_path, 1)[0]
    with open_runner(model["onnx"]) as r:
        with pytest.raises(UserError, match="'u' expects"):
            r.infer({"x": feed["x"], "u": feed["u"].astype(np.float64)})
        with pytest.raises(UserError, match="inputs are"):
            r.infer({"x": feed["x"]})


def test_folder_mode_naming_and_multi_input_match(model, tmp_path):
    names = ["b10.bin", "a.bin", "B2.bin"]
    feeds = write_bins(tmp_path / "in", 3, names=names)
    with open_runner(model["onnx"]) as r:
        lines = []
        run_dir = run_inputs(
            r, [tmp_path / "in" / "x", tmp_path / "in" / "u"], tmp_path / "out", progress=False, log=lines.append
        )
        ref = {n: r.infer(f) for n, f in zip(names, feeds)}
    assert os.path.dirname(run_dir) == str(tmp_path / "out") and lines[1] == run_dir
    assert sorted(os.listdir(run_dir)) == sorted(
        [f"{s}_output_{i}.bin" for s in ("a", "b10", "B2") for i in (0, 1)] + ["run.json"]
    )  # the run record lives in the run
    starts = [ln.split(":", 1)[1] for ln in lines if ln.startswith("[INFO] start to process file:")]
    assert [os.path.basename(s) for s in starts[::2]] == ["B2.bin", "a.bin", "b10.bin"]  # byte-wise sort
    for n in names:
        y = np.fromfile(os.path.join(run_dir, layout.stem_of(n) + "_output_0.bin"), np.float32)
        np.testing.assert_array_equal(y, ref[n][0].ravel())  # u matched by name, not by position
    assert lines[-1].startswith("Inference average time without first time: ")
    assert any(ln.startswith("Inference average time : ") for ln in lines)
    s = json.load(open(summary_path(run_dir)))
    assert s["files"] == 3 and s["images"] == 6 and s["latency_ms"]["count"] == 3
    assert s["latency_ms"]["min"] <= s["latency_ms"]["median"] <= s["latency_ms"]["p99"]


def test_file_mode_txt_named_after_model(model, tmp_path):
    feed = write_bins(tmp_path / "in", 1)[0]
    with open_runner(model["pb"]) as r:
        run_dir = run_inputs(
            r,
            [tmp_path / "in/x/b000.bin", tmp_path / "in/u/b000.bin"],
            tmp_path / "o",
            fmt="TXT",
            loop=3,
            progress=False,
        )
        y, s = r.infer(feed)
    assert sorted(os.listdir(run_dir)) == ["run.json", "tiny_output_0.txt", "tiny_output_1.txt"]
    txt1 = open(os.path.join(run_dir, "tiny_output_1.txt")).read()
    assert txt1 == "".join("%g " % v for v in s) and "\n" not in txt1  # rank 1: one line
    lines0 = open(os.path.join(run_dir, "tiny_output_0.txt")).read().split("\n")
    assert len(lines0) == y.size // 4 + 1 and lines0[0] == "".join("%g " % v for v in y.reshape(-1, 4)[0])
    assert json.load(open(summary_path(run_dir)))["latency_ms"]["count"] == 3


def test_missing_file_in_folder_2_and_wrong_size_write_nothing(model, tmp_path):
    write_bins(tmp_path / "in", 2)
    os.unlink(tmp_path / "in/u/b001.bin")
    with open_runner(model["onnx"]) as r:
        with pytest.raises(UserError, match=r"u/b001.bin: input file not found"):
            run_inputs(r, [tmp_path / "in/x", tmp_path / "in/u"], tmp_path / "o1", progress=False)
        np.zeros(7, np.float32).tofile(tmp_path / "in/u/b001.bin")
        with pytest.raises(UserError) as e:
            run_inputs(r, [tmp_path / "in/x", tmp_path / "in/u"], tmp_path / "o1", progress=False)
    assert "b001.bin" in str(e.value) and "1152 bytes" in str(e.value) and "found 28" in str(e.value)
    assert not os.path.exists(tmp_path / "o1") or not any(os.scandir(tmp_path / "o1"))


def test_resume_skips_finished(model, tmp_path):
    write_bins(tmp_path / "in", 3)
    ins = [tmp_path / "in/x", tmp_path / "in/u"]
    with open_runner(model["onnx"]) as r:
        run_dir = run_inputs(r, ins, tmp_path / "o", progress=False)
        os.unlink(os.path.join(run_dir, "b001_output_1.bin"))
        kept = os.path.getmtime(os.path.join(run_dir, "b000_output_0.bin"))
        again = run_inputs(r, ins, tmp_path / "o", resume=True, progress=False)
    assert again == run_dir and os.listdir(tmp_path / "o") == [os.path.basename(run_dir)]  # record inside
    assert os.path.isfile(os.path.join(run_dir, "b001_output_1.bin"))
    assert os.path.getmtime(os.path.join(run_dir, "b000_output_0.bin")) == kept
    s = json.load(open(summary_path(run_dir)))
    assert (s["files"], s["skipped_resume"], s["redone_resume"]) == (1, 2, 1) and s["complete"]
    assert s["previous"]["files"] == 3 and summary_path(run_dir) == os.path.join(run_dir, "run.json")


def test_backend_choice_and_om_without_msame(model, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="--backend"):
        open_runner(tmp_path / "m.xyz", model["json"])
    om = tmp_path / "tiny.om"
    om.write_bytes(b"\0")
    monkeypatch.setenv("PATH", str(tmp_path))
    r = open_runner(om, model["json"])
    with pytest.raises(UserError, match="msame on PATH"):
        r.activate()
