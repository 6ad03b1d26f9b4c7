"""The runner is never silently wrong: one test per fault class. Each asserts the exit
code (or UserError), the one-line message, and that no earlier result was lost or changed.
Also: msame's exact TXT/--debug/--input behaviour, and models run with no signature
beside them (a bare .onnx with a dynamic batch, a bare .pb with --input_shape)."""

import dataclasses
import errno
import json
import os
import shutil

import numpy as np
import pytest
from tiny_model import tiny_model, write_bins

from common import fsio
from common.errors import UserError
from data_tools.binfiles import FORMAT as INPUTS_FORMAT
from freeze.signature import Signature, Tensor
from infer import layout, msame
from infer.runner import is_file_mode, open_runner, run_inputs


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _snapshot(folder):
    """{relative path: (bytes, mtime)} of every file under folder: 'nothing changed'."""
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = (f.read(), os.stat(p).st_mtime_ns)
    return out


def _msame(capsys, *args):
    rc = msame.main([str(a) for a in args])
    cap = capsys.readouterr()
    shown = [ln.rsplit("\r", 1)[-1].strip() for ln in cap.err.split("\n")]  # what a terminal shows
    return rc, cap.out, [ln for ln in shown if ln]


def _one_line(err):
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _other_model(model, folder):
    """The tiny model again, as another file (another digest), with its own signature."""
    import onnx

    m = onnx.load(model["onnx"])
    m.doc_string = "another build"
    p = os.path.join(folder, "other.onnx")
    onnx.save(m, p)
    shutil.copyfile(model["json"], os.path.join(folder, "other.json"))
    return p


def _manifest(root, meanings=None):
    sig = Signature.load(tiny_model()["json"])
    ins = [dict(t.to_dict(), meaning=(meanings or {}).get(t.name, "")) for t in sig.inputs]
    stems = sorted(n[:-4] for n in os.listdir(os.path.join(root, "x")) if n.endswith(".bin"))
    fsio.write_json(
        os.path.join(root, "manifest.json"),
        {  # every file of the set, as img2bin lists them
            "format": INPUTS_FORMAT,
            "dataset": "tiny",
            "split": "test",
            "n_images": sig.batch * len(stems),
            "signature": {"model": "tiny", "batch": sig.batch, "inputs": ins},
            "inputs": [{"name": "x", "dir": "x"}, {"name": "u", "dir": "u"}],
            "files": [
                {"stem": s, "first": sig.batch * i, "n_real": sig.batch, "n_pad": 0} for i, s in enumerate(stems)
            ],
        },
    )


# --- run record, resume, run selection ------------------------------------------------


def test_run_record_says_what_made_the_run(model, tmp_path):
    write_bins(tmp_path / "in", 2)
    with open_runner(model["onnx"]) as r:
        d = run_inputs(r, [tmp_path / "in/x", tmp_path / "in/u"], tmp_path / "out", progress=False)
    rec = layout.read_record(d)
    assert rec["complete"] and rec["outfmt"] == "BIN" and rec["backend"] == "onnxruntime"
    assert rec["model"] == {"path": model["onnx"], "sha256": layout.file_digest(model["onnx"])}
    assert rec["signature"]["sha256"] == layout.file_digest(model["json"])
    assert [(i["name"], i["path"], i["files"]) for i in rec["inputs"]] == [
        ("x", str(tmp_path / "in/x"), 2),
        ("u", str(tmp_path / "in/u"), 2),
    ]
    assert rec["latency_ms"]["count"] == 2 and rec["images"] == 4
    assert os.listdir(tmp_path / "out") == [os.path.basename(d)]  # nothing beside the run


def test_resume_with_another_model_is_an_error(model, tmp_path, capsys):
    write_bins(tmp_path / "in", 2)
    ins = f"{tmp_path}/in/x,{tmp_path}/in/u"
    rc, out, err = _msame(capsys, "--model", model["onnx"], "--input", ins, "--output", tmp_path / "o")
    assert rc == 0
    before = _snapshot(tmp_path / "o")
    other = _other_model(model, tmp_path)
    rc, out, err = _msame(capsys, "--model", other, "--input", ins, "--output", tmp_path / "o", "--resume")
    line = _one_line(err)
    assert rc == 2 and "model digest differs: run was made by tiny.onnx, not other.onnx" in line
    assert _snapshot(tmp_path / "o") == before


def test_resume_redoes_a_truncated_output_and_keeps_the_rest(model, tmp_path):
    write_bins(tmp_path / "in", 3)
    ins = [tmp_path / "in/x", tmp_path / "in/u"]
    with open_runner(model["onnx"]) as r:
        d = run_inputs(r, ins, tmp_path / "o", progress=False)
        full = open(os.path.join(d, "b001_output_0.bin"), "rb").read()
        with open(os.path.join(d, "b001_output_0.bin"), "r+b") as f:
            f.truncate(100)  # an interrupted copy, a full disk: the file is there, but short
        kept = _snapshot(d)
        again = run_inputs(r, ins, tmp_path / "o", resume=True, progress=False)
    assert again == d
    assert open(os.path.join(d, "b001_output_0.bin"), "rb").read() == full
    now = _snapshot(d)
    for name in ("b000_output_0.bin", "b000_output_1.bin", "b002_output_0.bin", "b002_output_1.bin"):
        assert now[name] == kept[name]  # not rewritten
    rec = layout.read_record(d)
    assert (rec["files"], rec["skipped_resume"], rec["redone_resume"]) == (1, 2, 1)


def test_resume_on_other_inputs_is_an_error(model, tmp_path):
    write_bins(tmp_path / "a", 2)
    write_bins(tmp_path / "b", 3)
    with open_runner(model["onnx"]) as r:
        d = run_inputs(r, [tmp_path / "a/x", tmp_path / "a/u"], tmp_path / "o", progress=False)
        before = _snapshot(tmp_path / "o")
        with pytest.raises(UserError) as e:
            run_inputs(r, [tmp_path / "b/x", tmp_path / "b/u"], tmp_path / "o", resume=True, progress=False)
    assert "input 'x' differs" in str(e.value) and f"{tmp_path}/a/x (2 files)" in str(e.value)
    assert os.path.basename(d) in str(e.value) and _snapshot(tmp_path / "o") == before


def test_two_runs_loss_check_lists_both(model, tmp_path, capsys):
    from verify import loss_check

    write_bins(tmp_path / "in", 1)
    with open_runner(model["onnx"]) as r:
        d1 = run_inputs(r, [tmp_path / "in/x", tmp_path / "in/u"], tmp_path / "o", progress=False)
        d2 = run_inputs(r, [tmp_path / "in/x", tmp_path / "in/u"], tmp_path / "o", progress=False)
    before = _snapshot(tmp_path / "o")
    rc = loss_check.main(
        [
            "--signature",
            model["json"],
            "--offline",
            str(tmp_path / "o"),
            "--reference",
            d1,
            "--no-plot",
            "--no-progress",
        ]
    )
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("note: ")]
    line = _one_line(err)
    assert rc == 2 and "holds 2 runs" in line
    assert os.path.basename(d1) in line and os.path.basename(d2) in line
    assert _snapshot(tmp_path / "o") == before
    assert layout.select_run(d1) == d1  # naming one works


def test_plots_folder_and_old_report_change_nothing(model, tmp_path):
    write_bins(tmp_path / "in", 2)
    ins = [tmp_path / "in/x", tmp_path / "in/u"]
    with open_runner(model["onnx"]) as r:
        d = run_inputs(r, ins, tmp_path / "o", progress=False)
        os.mkdir(tmp_path / "o" / "plots")  # newer than the run: an mtime rule would pick it
        fsio.write_json(os.path.join(d, "loss_check.json"), {"passed": True})
        os.utime(d, (1, 1))
        assert layout.select_run(tmp_path / "o") == d
        assert sorted(layout.collect_outputs(tmp_path / "o")) == ["b000", "b001"]
        again = run_inputs(r, ins, tmp_path / "o", resume=True, progress=False)
    assert again == d and layout.read_record(d)["skipped_resume"] == 2


# --- inputs: matched by the manifest, content checked ---------------------------------


def test_swapped_input_folders_name_both(model, tmp_path, capsys):
    write_bins(tmp_path / "B", 1)
    _manifest(tmp_path / "B")
    rc, out, err = _msame(
        capsys, "--model", model["onnx"], "--input", f"{tmp_path}/B/u,{tmp_path}/B/x", "--output", tmp_path / "o"
    )
    line = _one_line(err)
    assert rc == 2 and f"{tmp_path}/B/u holds input 'u'" in line and f"held in {tmp_path}/B/x" in line
    assert f"--input {tmp_path}/B/x,{tmp_path}/B/u" in line
    assert not os.path.exists(tmp_path / "o") or not os.listdir(tmp_path / "o")


def test_float64_bytes_in_a_float32_input(model, tmp_path, capsys):
    write_bins(tmp_path / "B", 2)
    _manifest(tmp_path / "B", {"u": "uniform (0,1) noise"})
    ins = f"{tmp_path}/B/x,{tmp_path}/B/u"
    rc, _, _ = _msame(capsys, "--model", model["onnx"], "--input", ins, "--output", tmp_path / "o")
    assert rc == 0
    before = _snapshot(tmp_path / "o")
    bad = tmp_path / "B/u/b000.bin"
    # same byte count; values k/1024 leave the low word 0, so every float32 read is finite and
    # the high words (about 1.9) are out of the uniform's range
    (np.random.RandomState(0).randint(1, 1024, 2 * 6 * 6 * 4 // 2) / 1024.0).tofile(bad)
    rc, _, err = _msame(capsys, "--model", model["onnx"], "--input", ins, "--output", tmp_path / "o")
    line = _one_line(err)
    assert rc == 2 and f"{bad}: input 'u' (float32) holds" in line and "uniform in [0, 1]" in line
    assert _snapshot(tmp_path / "o") == before  # no half-made run left beside the good one


def test_nonfinite_input_is_an_error(model, tmp_path):
    write_bins(tmp_path / "in", 1)
    x = np.fromfile(tmp_path / "in/x/b000.bin", np.float32)
    x[5] = np.nan
    x.tofile(tmp_path / "in/x/b000.bin")
    with (
        open_runner(model["onnx"]) as r,
        pytest.raises(
            UserError,
            match=r"b000.bin: input 'x' .* not finite "
            r"\(first: nan at index 5\)",
        ),
    ):
        run_inputs(r, [tmp_path / "in/x", tmp_path / "in/u"], tmp_path / "o", progress=False)
    assert not os.path.exists(tmp_path / "o") or not os.listdir(tmp_path / "o")


# --- msame exactness ---------------------------------------------------------------------


def test_txt_negative_nan_and_int8_as_msame_writes_them(tmp_path):
    neg = np.float32(np.copysign(np.nan, -1))
    assert layout.format_txt(np.array([neg, np.nan, -np.inf, 1.5], np.float32)) == "-nan nan -inf 1.5 "
    p = tmp_path / "m_output_0.txt"
    layout.write_output(p, np.array([[neg, 2.0]], np.float32))
    assert p.read_bytes() == b"-nan 2 \n"
    q = np.array([[65, -1], [0, 10]], np.int8)  # C++ streams int8_t as a char: 'A', 0xff, NUL, LF
    layout.write_output(tmp_path / "q_output_0.txt", q)
    assert (tmp_path / "q_output_0.txt").read_bytes() == b"A \xff \n\x00 \n \n"
    back = layout.read_output(tmp_path / "q_output_0.txt", Tensor("q", "q:0", [2, 2], "int8"))
    np.testing.assert_array_equal(back, q)
    assert layout.format_txt(np.array([True, False])) == "1 0 "


def test_bin_anywhere_in_the_path_means_file_mode(model, tmp_path, capsys):
    assert is_file_mode(["data.bins/x", "data.bins/u"]) and not is_file_mode(["data/x"])
    write_bins(tmp_path / "data.bins", 1)
    rc, out, err = _msame(
        capsys,
        "--model",
        model["onnx"],
        "--input",
        f"{tmp_path}/data.bins/x,{tmp_path}/data.bins/u",
        "--output",
        tmp_path / "o",
    )
    assert rc == 2 and _one_line(err).endswith("input file is a folder, not a file (input 'x')")


def test_input_folder_and_file_mixed_or_empty(model, tmp_path, capsys):
    write_bins(tmp_path / "in", 1)
    rc, _, err = _msame(
        capsys,
        "--model",
        model["onnx"],
        "--input",
        f"{tmp_path}/in/x,{tmp_path}/in/u/b000.bin",
        "--output",
        tmp_path / "o",
    )
    assert rc == 2 and f"but {tmp_path}/in/u/b000.bin is a file" in _one_line(err)
    rc, _, err = _msame(capsys, "--model", model["onnx"], "--input", ",", "--output", tmp_path / "o")
    assert rc == 2 and "--input ',': an empty item" in _one_line(err)
    assert not os.path.exists(tmp_path / "o")


def test_debug_lines_in_msames_order(model, tmp_path, capsys):
    write_bins(tmp_path / "in", 1)
    rc, out, _ = _msame(
        capsys,
        "--model",
        model["onnx"],
        "--input",
        f"{tmp_path}/in/x/b000.bin,{tmp_path}/in/u/b000.bin",
        "--output",
        tmp_path / "o",
        "--debug",
        "true",
    )
    lines = out.splitlines()
    assert rc == 0
    i = lines.index("[DEBUG] start print model description")
    assert lines[i - 1] == "[INFO] get input dynamic gear count success"
    assert lines[i + 1 : i + 10] == [
        "[DEBUG] NumInputs: 2",
        "[DEBUG] NumOutputs: 2",
        "[DEBUG] the size of 0 input: 864",
        "[DEBUG] the dims of 0 input:",
        "2 6 6 3 ",
        "[DEBUG] the name of 0 input: x:0",
        "[DEBUG] the Format of 0 input: 1",
        "[DEBUG] the DataType of 0 input: 0",
        "[DEBUG] the size of 1 input: 1152",
    ]
    j = lines.index("[DEBUG] end print model description")
    assert lines[j + 1] == "[INFO] create model output success" and lines[j - 4] == "2 "


# --- no traceback ---------------------------------------------------------------------


def test_output_path_is_a_file_or_unwritable(model, tmp_path, capsys, monkeypatch):
    write_bins(tmp_path / "in", 1)
    ins = f"{tmp_path}/in/x,{tmp_path}/in/u"
    (tmp_path / "taken").write_text("keep me")
    rc, _, err = _msame(capsys, "--model", model["onnx"], "--input", ins, "--output", tmp_path / "taken")
    assert rc == 2 and f"{tmp_path}/taken: cannot create the output folder" in _one_line(err)
    assert (tmp_path / "taken").read_text() == "keep me"

    def full(path, data, nbytes):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(fsio, "_atomic_write", full)
    rc, _, err = _msame(capsys, "--model", model["onnx"], "--input", ins, "--output", tmp_path / "o")
    line = _one_line(err)
    assert rc == 2 and "run.json: cannot write the run record (No space left on device)" in line


def test_read_only_output_folder(model, tmp_path, capsys, monkeypatch):
    write_bins(tmp_path / "in", 1)
    real = fsio._atomic_write

    def read_only(path, data, nbytes):
        if path.endswith(".bin"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(path, data, nbytes)

    monkeypatch.setattr(fsio, "_atomic_write", read_only)
    rc, _, err = _msame(
        capsys, "--model", model["onnx"], "--input", f"{tmp_path}/in/x,{tmp_path}/in/u", "--output", tmp_path / "o"
    )
    line = _one_line(err)
    assert rc == 2 and "b000_output_0.bin: cannot write the output (Read-only file system)" in line


def test_model_disagrees_with_signature(model, tmp_path, capsys):
    sig = Signature.load(model["json"])
    sig = dataclasses.replace(sig, inputs=(sig.inputs[0], Tensor("u", "u:0", [2, 6, 6, 5])))
    for ext in ("onnx", "pb"):
        m = tmp_path / f"bad.{ext}"
        shutil.copyfile(model[ext], m)
        sig.save(tmp_path / "bad.json")
        rc, _, err = _msame(capsys, "--model", m, "--output", tmp_path / "o")
        line = _one_line(err)
        assert rc == 2 and f"{m}: input 'u:0' has shape [2, 6, 6, 4] in the " in line and "says [2, 6, 6, 5]" in line
    sig = Signature.load(model["json"])
    sig = dataclasses.replace(sig, outputs=(Tensor("y", "y:0", [2, 6, 6, 4], "int32"), *sig.outputs[1:]))
    sig.save(tmp_path / "bad.json")
    rc, _, err = _msame(capsys, "--model", tmp_path / "bad.onnx", "--output", tmp_path / "o")
    assert rc == 2 and "output 'y:0' is float32 in the model" in _one_line(err)
    assert not os.path.exists(tmp_path / "o")


def test_corrupt_model_bad_loop_bad_device(model, tmp_path, capsys):
    shutil.copyfile(model["json"], tmp_path / "c.json")
    for ext in ("onnx", "pb"):
        (tmp_path / f"c.{ext}").write_bytes(b"\x08\x01garbage" * 10)
        rc, _, err = _msame(capsys, "--model", tmp_path / f"c.{ext}", "--output", tmp_path / "o")
        assert rc == 2 and _one_line(err).startswith(f"error: {tmp_path}/c.{ext}: ")
    rc, _, err = _msame(capsys, "--model", model["onnx"], "--output", tmp_path / "o", "--loop", "0")
    assert rc == 2 and "loop must be in 1 to 100" in _one_line(err)
    rc, _, err = _msame(capsys, "--model", model["onnx"], "--output", tmp_path / "o", "--device", "gpu0")
    assert rc == 2 and "--device must be an integer 0..255, got 'gpu0'" in _one_line(err)
    assert not os.path.exists(tmp_path / "o")


# --- any model --------------------------------------------------------------------------


def _dynamic_onnx(path):
    """y = 2 x, s = sum(x, axis 1): x [N, 3] float32, the batch N symbolic."""
    import onnx
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("ReduceSum", ["x", "axes"], ["s"], keepdims=0)],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"]),
        ],
        [two, axes],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_bare_onnx_with_dynamic_batch(tmp_path, capsys):
    m = _dynamic_onnx(str(tmp_path / "dyn.onnx"))
    x4 = np.arange(12, dtype=np.float32).reshape(4, 3)
    x4.tofile(tmp_path / "x4.bin")
    rc, out, err = _msame(
        capsys,
        "--model",
        m,
        "--input",
        tmp_path / "x4.bin",
        "--output",
        tmp_path / "a",
        "--dymBatch",
        "4",
        "--outfmt",
        "TXT",
    )
    assert rc == 0, err
    d = layout.select_run(tmp_path / "a")
    assert open(os.path.join(d, "dyn_output_0.txt")).read() == "".join(
        "".join(f"{v:g} " for v in row) + "\n" for row in 2 * x4
    )
    assert open(os.path.join(d, "dyn_output_1.txt")).read() == "3 12 21 30 "
    rec = layout.read_record(d)
    assert rec["signature"]["path"] is None and rec["signature"]["batch"] == 4
    # no --dymBatch: the batch follows from the file size (5 rows of 3 float32 = 60 bytes)
    os.makedirs(tmp_path / "fold")
    x5 = np.ones((5, 3), np.float32)
    x5.tofile(tmp_path / "fold/a.bin")
    rc, _, err = _msame(capsys, "--model", m, "--input", tmp_path / "fold", "--output", tmp_path / "b")
    assert rc == 0, err
    y = np.fromfile(os.path.join(layout.select_run(tmp_path / "b"), "a_output_0.bin"), np.float32)
    np.testing.assert_array_equal(y, 2 * x5.ravel())
    # not a whole number of rows; a --dymBatch that disagrees with the file
    np.zeros(7, np.float32).tofile(tmp_path / "x7.bin")
    rc, _, err = _msame(capsys, "--model", m, "--input", tmp_path / "x7.bin", "--output", tmp_path / "c")
    assert (
        rc == 2
        and "x7.bin: input 'x' has a dynamic batch, [3] float32 = 12 bytes per row; "
        "the file's 28 bytes is not a whole number of rows"
        in _one_line(err)
    )
    rc, _, err = _msame(
        capsys, "--model", m, "--input", tmp_path / "x4.bin", "--output", tmp_path / "c", "--dymBatch", "2"
    )
    assert rc == 2 and "x4.bin: input 'x' expects 24 bytes ([2, 3] float32), found 48" in _one_line(err)
    assert not os.path.exists(tmp_path / "c") or not os.listdir(tmp_path / "c")


def test_bare_pb_with_input_shape_and_output_names(tmp_path, capsys):
    from common.tfcompat import tf

    g = tf.Graph()
    with g.as_default():
        a = tf.placeholder(tf.float32, [None, 4], name="inp")
        tf.identity(a * 3.0, name="out")
        tf.cast(tf.reduce_sum(a, axis=1), tf.int32, name="total")
    pb = tmp_path / "any.pb"
    pb.write_bytes(g.as_graph_def().SerializeToString())
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    x.tofile(tmp_path / "in.bin")
    rc, out, err = _msame(
        capsys,
        "--model",
        pb,
        "--input",
        tmp_path / "in.bin",
        "--output",
        tmp_path / "o",
        "--input_shape",
        "inp:2,4",
        "--output_node_names",
        "out,total",
    )
    assert rc == 0, err
    d = layout.select_run(tmp_path / "o")
    np.testing.assert_array_equal(np.fromfile(os.path.join(d, "any_output_0.bin"), np.float32), 3 * x.ravel())
    np.testing.assert_array_equal(np.fromfile(os.path.join(d, "any_output_1.bin"), np.int32), [6, 22])
    assert json.load(open(os.path.join(d, "run.json")))["backend"] == "tf"
    rc, _, err = _msame(capsys, "--model", pb, "--output", tmp_path / "p", "--output_node_names", "nope")
    assert rc == 2 and "has no tensor 'nope:0'" in _one_line(err)


def test_bare_onnx_other_dynamic_dims_need_shapes(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "dims",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "dims.onnx")
    np.arange(10, dtype=np.float32).tofile(tmp_path / "x.bin")
    rc, _, err = _msame(
        capsys, "--model", tmp_path / "dims.onnx", "--input", tmp_path / "x.bin", "--output", tmp_path / "o"
    )
    assert (
        rc == 2
        and "input 'x' has dynamic dims ['N', 'L'] beyond the batch; give --input_shape "
        '"x:N,L" with numbers for the symbols (msame: --dymDims)'
        in _one_line(err)
    )
    assert not os.path.exists(tmp_path / "o")
    rc, _, err = _msame(
        capsys,
        "--model",
        tmp_path / "dims.onnx",
        "--input",
        tmp_path / "x.bin",
        "--output",
        tmp_path / "o",
        "--dymDims",
        "x:2,5",
    )
    assert rc == 0, err
    y = np.fromfile(os.path.join(layout.select_run(tmp_path / "o"), "dims_output_0.bin"), np.float32)
    np.testing.assert_array_equal(y, -np.arange(10, dtype=np.float32))
