"""ais_bench on the portable backends: flags, input grouping, output files, TXT, summary,
console, one process per device, and its Python API. Expected files are written here
from ais_bench's source (Ascend/tools ais-bench_workload/tool/ais_bench: __main__.py,
io_oprations.py, utils.py, summary.py, interface.py), never from this project's writers."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from dyn_model import write as write_dyn
from tiny_model import B, C, F, H, W, tiny_model, write_bins

from infer import ais_bench, layout
from infer.runner import open_runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAMP = r"\d{4}_\d{2}_\d{2}-\d{2}_\d{2}_\d{2}"


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _ais(capsys, *args):
    rc = ais_bench.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out.splitlines(), out.err


def _savetxt(a):
    """utils.save_data_to_files, TXT: rows of the last dim, np.savetxt(np.c_[row], "%f" | "%d", newline=" ")."""
    a = np.asarray(a)
    rows = a.reshape(-1, a.shape[-1])
    fmt = "%f" if rows.dtype in (np.float16, np.float32, np.float64) else "%d"
    f = io.BytesIO()
    for r in rows:
        np.savetxt(f, np.c_[r], fmt=fmt, newline=" ")
        f.write(b"\n")
    return f.getvalue()


def test_folders_natural_sort_txt_summary_console(model, tmp_path, capsys):
    names = ["b10.bin", "b2.bin", "a.bin"]
    feeds = dict(zip(names, write_bins(tmp_path / "in", 3, names=names)))
    rc, out, err = _ais(
        capsys,
        "-m",
        model["onnx"],
        "-i",
        f"{tmp_path}/in/x,{tmp_path}/in/u",
        "-o",
        tmp_path / "o",
        "--outfmt",
        "TXT",
        "--loop",
        "2",
    )
    assert rc == 0, err
    (run,) = [d for d in os.listdir(tmp_path / "o") if os.path.isdir(tmp_path / "o" / d)]
    assert re.fullmatch(STAMP, run) and f"[INFO] output path:{tmp_path / 'o' / run}" in out
    assert sorted(os.listdir(tmp_path / "o")) == sorted([run, run + "_summary.json"])
    d = tmp_path / "o" / run
    assert sorted(os.listdir(d)) == sorted(f"{s}_{i}.txt" for s in ("a", "b2", "b10") for i in (0, 1))
    with open_runner(model["onnx"]) as r:
        for n, feed in feeds.items():
            for i, want in enumerate(r.infer(feed)):
                assert open(d / f"{n.split('.')[0]}_{i}.txt", "rb").read() == _savetxt(want)
    s = json.load(open(tmp_path / "o" / (run + "_summary.json")))
    assert set(s) == {
        "filesinfo",
        "args",
        "NPU_compute_time",
        "H2D_latency",
        "D2H_latency",
        "throughput",
        "npu_compute_time_list",
        "pid",
    }
    # natural sort: a, b2, b10 are samples 0, 1, 2
    assert [os.path.basename(s["filesinfo"][k]["infiles"][0]) for k in ("0", "1", "2")] == [
        "a.bin",
        "b2.bin",
        "b10.bin",
    ]
    assert s["filesinfo"]["2"]["outfiles"] == [str(d / "b10_0.txt"), str(d / "b10_1.txt")]
    t = s["npu_compute_time_list"]
    assert len(t) == 3 * 2 and s["NPU_compute_time"]["count"] == 6  # --loop 2: every run timed
    assert s["NPU_compute_time"]["median"] == pytest.approx(np.median(t))
    assert s["NPU_compute_time"]["percentile(99%)"] == pytest.approx(np.percentile(t, 99))
    assert s["throughput"] == pytest.approx(1000 * B / np.mean(t))
    assert s["H2D_latency"] == {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    assert out[:2] == [
        f"[INFO] try get model batchsize:{B}",
        f"[INFO] get filesperbatch files0 size:{B * H * W * C * 4} "
        f"tensor0size:{B * H * W * C * 4} filesperbatch:1 runcount:3",
    ]
    i = out.index("[INFO] -----------------Performance Summary------------------")
    assert out[i + 1].startswith("[INFO] NPU_compute_time (ms): min = ")
    assert (
        out[i + 2]
        == f"[INFO] throughput 1000*batchsize.mean({B})/NPU_compute_time.mean({np.mean(t)}): {s['throughput']}"
    )


def test_small_files_are_concatenated_and_split(model, tmp_path, capsys):
    """io_oprations: tensor size / file size files per inference, the last group padded with
    its first file (no output for the padding), outputs split along the batch axis; .npy in."""
    rng = np.random.RandomState(3)
    xs = [rng.randn(1, H, W, C).astype(np.float32) for _ in range(3)]
    us = [rng.rand(1, H, W, F).astype(np.float32) for _ in range(3)]
    for k in range(3):
        os.makedirs(tmp_path / "x", exist_ok=True), os.makedirs(tmp_path / "u", exist_ok=True)
        np.save(tmp_path / "x" / f"s{k}.npy", xs[k])
        us[k].tofile(tmp_path / "u" / f"s{k}.bin")
    rc, out, err = _ais(
        capsys,
        "-m",
        model["onnx"],
        "-i",
        f"{tmp_path}/x,{tmp_path}/u",
        "-o",
        tmp_path / "o",
        "--output_dirname",
        "run1",
        "--outfmt",
        "NPY",
    )
    assert rc == 0, err
    d = tmp_path / "o" / "run1"
    assert sorted(os.listdir(d)) == sorted(f"s{k}_{i}.npy" for k in range(3) for i in (0, 1))
    with open_runner(model["onnx"]) as r:
        y01 = r.infer({"x": np.concatenate(xs[:2]), "u": np.concatenate(us[:2])})
        y22 = r.infer({"x": np.concatenate([xs[2], xs[2]]), "u": np.concatenate([us[2], us[2]])})
    np.testing.assert_array_equal(np.load(d / "s1_0.npy"), y01[0][1:2])
    np.testing.assert_array_equal(np.load(d / "s2_1.npy"), y22[1][:1])
    assert json.load(open(tmp_path / "o" / "run1_summary.json"))["NPU_compute_time"]["count"] == 2


def test_pure_infer_and_nothing_saved_without_output(model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = _ais(capsys, "-m", model["onnx"], "--warmup_count", "0")
    assert rc == 0 and os.listdir(tmp_path) == [] and "[INFO] warm up 0 done" in out
    rc, out, err = _ais(capsys, "-m", model["onnx"], "-o", "o", "--output_dirname", "z", "--pure_data_type", "zero")
    assert sorted(os.listdir(tmp_path / "o" / "z")) == ["pure_infer_data_0.bin", "pure_infer_data_1.bin"]
    assert not np.fromfile(tmp_path / "o" / "z" / "pure_infer_data_0.bin", np.float32).any()  # tanh(conv(0)+0)


def test_bad_flags_one_line(model, tmp_path, capsys):
    for args, words in [
        (["--output_dirname", "x"], "cann't be used alone"),
        (["-o", tmp_path / "p", "--profiler", "1", "--dump", "true"], "cannot be true at the same time"),
        (["--dump", "true"], "miss output path"),
        (["--outfmt", "CSV"], "invalid choice"),
        (["--loop", "0"], "invalid positive int value"),
        (["--device", "256"], "valid value range is [0, 255]"),
        (["-i", tmp_path / "nope"], "is invalid"),
    ]:
        rc, out, err = _ais(capsys, "-m", model["onnx"], *args)
        assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
    write_bins(tmp_path / "in", 3)
    np.zeros(5, np.float32).tofile(tmp_path / "in" / "u" / "b002.bin")  # the last file short: found before any run
    rc, out, err = _ais(capsys, "-m", model["onnx"], "-i", f"{tmp_path}/in/x,{tmp_path}/in/u", "-o", tmp_path / "w")
    assert rc == 2 and "b002.bin: input 'u' expects 1152 bytes" in err and not os.path.exists(tmp_path / "w")
    rc, out, err = _ais(capsys, "-m", model["onnx"], "-o", tmp_path / "p", "--profiler", "true")
    assert rc == 0 and os.path.isdir(tmp_path / "p" / "profiler")
    cfg = json.load(open(tmp_path / "p" / "acl.json"))  # miscellaneous.get_acl_json_path
    assert cfg == {
        "profiler": {"switch": "on", "aicpu": "on", "output": str(tmp_path / "p" / "profiler"), "aic_metrics": ""}
    }


def test_layout_readers_take_ais_folders(model, tmp_path, capsys):
    """loss_check reads offline outputs through infer/layout.py: an ais_bench folder is
    found as a run, its files paired by input stem, read as msame's would be."""
    from verify import loss_check

    write_bins(tmp_path / "in", 2)
    ins = f"{tmp_path}/in/x,{tmp_path}/in/u"
    assert _ais(capsys, "-m", model["onnx"], "-i", ins, "-o", tmp_path / "ais")[0] == 0
    assert _ais(capsys, "-m", model["onnx"], "-i", ins, "-o", tmp_path / "aistxt", "--outfmt", "TXT")[0] == 0
    from infer import msame

    assert msame.main(["-m", model["onnx"], "-i", ins, "-o", str(tmp_path / "ms")]) in (0, None)
    capsys.readouterr()
    run = layout.select_run(tmp_path / "ais")
    assert os.path.dirname(run) == str(tmp_path / "ais")
    ais, ms = layout.collect_outputs(tmp_path / "ais"), layout.collect_outputs(tmp_path / "ms")
    assert sorted(ais) == sorted(ms) == ["b000", "b001"]
    from freeze.signature import Signature

    sig = Signature.load(model["json"])
    for stem in ms:
        for i, t in enumerate(sig.outputs):
            np.testing.assert_array_equal(layout.read_output(ais[stem][i], t), layout.read_output(ms[stem][i], t))
    from verify import reference  # the golden outputs: the frozen graph, as loss_check requires

    assert (
        reference.main(
            ["--signature", model["json"], "--model", model["pb"], "--input", ins, "--output", str(tmp_path / "ref")]
        )
        == 0
    )
    rc = loss_check.main(
        [
            "--signature",
            model["json"],
            "--offline",
            str(tmp_path / "aistxt"),
            "--reference",
            str(tmp_path / "ref"),
            "--report",
            str(tmp_path / "lc.json"),
        ]
    )
    capsys.readouterr()
    assert rc == 0 and json.load(open(tmp_path / "lc.json"))["passed"]


def test_report_reads_ais_summary(model, tmp_path, capsys):
    from verify.report_road import Road

    write_bins(tmp_path / "road" / "in", 1)
    assert (
        _ais(
            capsys,
            "-m",
            model["onnx"],
            "-i",
            f"{tmp_path}/road/in/x,{tmp_path}/road/in/u",
            "-o",
            tmp_path / "road" / "out",
            "--output_dirname",
            "r",
        )[0]
        == 0
    )
    (s,) = Road(str(tmp_path / "road")).found["summary"]
    raw = json.load(open(tmp_path / "road" / "out" / "r_summary.json"))
    assert s["backend"] == "ais_bench" and s["model"] == model["onnx"] and s["batch"] == B
    assert s["latency_ms"]["median"] == raw["NPU_compute_time"]["median"]
    assert s["throughput_images_per_s"] == raw["throughput"] and s["run_dir"] == str(tmp_path / "road" / "out" / "r")


@pytest.mark.slow
def test_one_process_per_device(model, tmp_path):
    """__main__.multidevice_run / split_inputs_new: all input files cut into one chunk per
    model input, each chunk dealt in consecutive parts, one per device; outputs in
    OUT/<T>/device<N>/; each process's throughput printed, then their sum."""
    write_bins(tmp_path / "in", 4)
    r = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "infer", "ais_bench.py"),
            "-m",
            model["onnx"],
            "-i",
            f"{tmp_path}/in/x,{tmp_path}/in/u",
            "-o",
            str(tmp_path / "o"),
            "--device",
            "0,1",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert r.returncode == 0, r.stderr
    (stamp,) = os.listdir(tmp_path / "o")
    base = tmp_path / "o" / stamp
    assert sorted(os.listdir(base)) == ["device0", "device0_summary.json", "device1", "device1_summary.json"]
    assert sorted(os.listdir(base / "device0")) == ["b000_0.bin", "b000_1.bin", "b001_0.bin", "b001_1.bin"]
    assert sorted(os.listdir(base / "device1")) == ["b002_0.bin", "b002_1.bin", "b003_0.bin", "b003_1.bin"]
    thr = [float(m) for m in re.findall(r"^i:\d device_\d throughput:(\S+) ", r.stdout, re.M)]
    assert len(thr) == 2
    assert float(re.search(r"\[INFO\] summary throughput:(\S+)", r.stdout)[1]) == pytest.approx(sum(thr))


SCRIPT = """
import sys
import numpy as np
from ais_bench.infer.interface import InferSession

session = InferSession(0, sys.argv[1])
ins = session.get_inputs()
print("inputs", [(d.name, d.shape, str(d.datatype), d.realsize) for d in ins])
rng = np.random.RandomState(0)
feeds = [rng.rand(*d.shape).astype(np.float32) for d in ins]
outs = session.infer(feeds)
np.save(sys.argv[2], outs[0])
print("outputs", [o.shape for o in outs], [d.name for d in session.get_outputs()])
print("times", len(session.sumary().exec_time_list))
session.reset_sumaryinfo()
session.set_loop_count(3)
session.run(feeds, out_array=True)
print("times", len(session.sumary().exec_time_list))
if len(sys.argv) > 3:  # a model converted with --dynamic_dims: the gear from the feed's shape
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    y, s = InferSession(0, sys.argv[3]).infer([x], mode="dymdims")
    print("dims", y.shape, float(s[0]))
session.finalize()
"""


def test_script_against_the_documented_api(model, tmp_path):
    """A script written for ais_bench's interface (InferSession(...).get_inputs() / infer /
    sumary()) runs unchanged here, with compat/ on PYTHONPATH."""
    (tmp_path / "s.py").write_text(SCRIPT)
    dims = write_dyn(tmp_path / "d", "dims", "x:-1,-1,3", [[1, 2], [2, 4]])
    r = subprocess.run(
        [sys.executable, str(tmp_path / "s.py"), model["onnx"], str(tmp_path / "y.npy"), dims],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "compat")),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert (
        lines[0] == f"inputs [('x', [{B}, {H}, {W}, {C}], 'dtype.float32', {B * H * W * C * 4}), "
        f"('u', [{B}, {H}, {W}, {F}], 'dtype.float32', {B * H * W * F * 4})]"
    )
    assert lines[1] == f"outputs [({B}, {H}, {W}, {F}), ({B},)] ['y', 's']"
    assert lines[2:4] == ["times 1", "times 3"]
    assert lines[4] == f"dims (1, 2, 3) {float((2 * np.arange(6) + 1).sum())}"
    rng = np.random.RandomState(0)
    feed = {"x": rng.rand(B, H, W, C).astype(np.float32), "u": rng.rand(B, H, W, F).astype(np.float32)}
    with open_runner(model["onnx"]) as ref:
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), ref.infer(feed)[0])


def test_msame_run_with_an_old_summary_beside_stays_msame(tmp_path):
    """This project's runner once wrote OUT/<T>_summary.json beside msame runs: only a
    summary with ais_bench's fields makes a folder an ais_bench run."""
    run = tmp_path / "2023610_22_48_32_123456"
    run.mkdir()
    np.arange(3, dtype=np.float32).tofile(run / "b000_output_0.bin")
    (tmp_path / (run.name + "_summary.json")).write_text(json.dumps({"latency_ms": {}, "backend": "onnxruntime"}))
    assert layout.collect_outputs(tmp_path) == {"b000": {0: str(run / "b000_output_0.bin")}}


def test_auto_set_dymdims_mode_one_gear_per_file(tmp_path, capsys):
    """--auto_set_dymdims_mode: no concatenation, each .npy file's shape sets the dims gear
    of its inference (__main__.set_dymdims_shape); the batch size is the mean of theirs."""
    m = write_dyn(tmp_path / "m", "dims", "x:-1,-1,3", [[1, 2], [2, 4]])
    (tmp_path / "in").mkdir()
    a, b = np.ones((1, 2, 3), np.float32), np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    np.save(tmp_path / "in" / "a.npy", a)
    np.save(tmp_path / "in" / "b.npy", b)
    rc, out, err = _ais(
        capsys,
        "-m",
        m,
        "-i",
        tmp_path / "in",
        "-o",
        tmp_path / "o",
        "--output_dirname",
        "r",
        "--auto_set_dymdims_mode",
        "1",
        "--outfmt",
        "NPY",
    )
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "r" / "a_0.npy"), 2 * a + 1)
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "r" / "b_0.npy"), 2 * b + 1)
    assert any(ln.startswith("[INFO] throughput 1000*batchsize.mean(1.5)/") for ln in out)
