"""The shared formats: signature, input .bin files, msame output layout, atomic writes."""

import os
import re

import numpy as np
import pytest

from common import fsio
from common.errors import UserError
from data_tools import binfiles
from freeze.signature import Signature, Tensor, find_beside
from infer import layout


def _sig():
    return Signature(
        "realnvp",
        "forward",
        4,
        [Tensor("x", "x:0", [4, 32, 32, 3], layout="NHWC"), Tensor("u", "u:0", [4, 32, 32, 3])],
        [Tensor("z", "z:0", [4, 16, 16, 12]), Tensor("logdet", "logdet:0", [4])],
        config={"a": 1},
        checkpoint={"path": "/x", "step": 3},
        options={"k": 2},
    )


def test_signature_roundtrip_and_atc_args(tmp_path):
    s = _sig()
    s.save(tmp_path / "m.json")
    t = find_beside(tmp_path / "m.fp16.onnx")  # falls back to the stem before the first dot
    assert t.to_dict() == s.to_dict()
    assert t.atc_input_shape() == "x:4,32,32,3;u:4,32,32,3"
    assert t.atc_out_nodes() == "z:0;logdet:0"
    assert t.input("x").nbytes == 4 * 32 * 32 * 3 * 4
    with pytest.raises(UserError, match="no output named 'bpd'"):
        t.output("bpd")


def test_signature_rejects_foreign_json(tmp_path):
    (tmp_path / "m.json").write_text('{"format": "other"}')
    with pytest.raises(UserError, match="m.json: not a signature"):
        Signature.load(tmp_path / "m.json")
    with pytest.raises(UserError, match="no signature beside it"):
        find_beside(tmp_path / "zz.onnx")


def test_bin_checked_against_signature(tmp_path):
    t = _sig().input("x")
    a = np.random.rand(*t.shape).astype(np.float32)
    binfiles.write_bin(tmp_path / "a.bin", a, t)
    assert np.array_equal(binfiles.read_bin(tmp_path / "a.bin", t), a)
    (tmp_path / "b.bin").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match=r"b.bin: input 'x' expects 49152 bytes .* found 100"):
        binfiles.read_bin(tmp_path / "b.bin", t)
    with pytest.raises(UserError, match="expects"):
        binfiles.write_bin(tmp_path / "c.bin", a.astype(np.float64), t)
    assert not (tmp_path / "c.bin").exists()


def test_msame_txt_format():
    a = np.array([[1.0, 0.1234567, 1e-5], [-3.0, 2.5e10, 100000.0]], np.float32)
    assert layout.format_txt(a) == "1 0.123457 1e-05 \n-3 2.5e+10 100000 \n"
    assert layout.format_txt(np.array([1.5, -2], np.float32)) == "1.5 -2 "  # rank 1: one line
    b = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert layout.format_txt(b).count("\n") == 4


def test_layout_roundtrip_and_run_selection(tmp_path):
    t = Tensor("z", "z:0", [2, 3])
    a = np.random.rand(2, 3).astype(np.float32)
    d1 = layout.new_run_dir(tmp_path)
    assert re.fullmatch(r"\d{6,8}_\d{1,2}_\d{1,2}_\d{1,2}_\d{1,6}", os.path.basename(d1))
    layout.write_output(os.path.join(d1, layout.output_name("b0", 0)), a)
    d2 = layout.new_run_dir(tmp_path)
    layout.write_output(os.path.join(d2, layout.output_name("b0", 0, "TXT")), a)
    with pytest.raises(UserError, match="holds 2 runs"):
        layout.select_run(tmp_path)  # never by modification time
    assert layout.select_run(d2) == d2
    got = layout.collect_outputs(d2)
    assert list(got) == ["b0"] and got["b0"][0].endswith("b0_output_0.txt")
    np.testing.assert_allclose(layout.read_output(got["b0"][0], t), a, rtol=1e-5)
    np.testing.assert_array_equal(layout.read_output(os.path.join(d1, "b0_output_0.bin"), t), a)
    with pytest.raises(UserError, match="expected 12 bytes .* found 24"):
        layout.read_output(os.path.join(d1, "b0_output_0.bin"), Tensor("q", "q:0", [2, 3], "float16"))
    assert layout.stem_of("dir/a.b.bin") == "a.b"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    p = tmp_path / "r.json"
    fsio.write_json(p, {"v": 1})
    with pytest.raises(RuntimeError):
        with fsio.atomic_open(p, "w") as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert p.read_text().strip().startswith("{") and '"v": 1' in p.read_text()
    assert os.listdir(tmp_path) == ["r.json"]


def test_unwritable_output_is_one_line_naming_the_target(tmp_path, capsys):
    from common.errors import cli

    target = tmp_path / "a_file" / "out.json"  # its folder is a file: cannot be created
    (tmp_path / "a_file").write_text("x")

    @cli
    def tool(argv=None):
        fsio.write_json(target, {"k": 1})

    assert tool([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {target}: cannot write the output")
    assert ".tmp" not in err and sorted(os.listdir(tmp_path)) == ["a_file"]

    @cli
    def buggy(argv=None):
        open(tmp_path / "missing.txt")  # an OSError that is not an output: still a traceback

    with pytest.raises(FileNotFoundError):
        buggy([])


def test_unwritable_folder_is_one_line(tmp_path, capsys):
    from common.errors import cli

    (tmp_path / "f").write_text("x")

    @cli
    def tool(argv=None):
        fsio.make_dirs(tmp_path / "f" / "runs")

    assert (
        tool([]) == 2
        and capsys.readouterr().err == f"error: {tmp_path / 'f' / 'runs'}: cannot write the output (Not a directory)\n"
    )
