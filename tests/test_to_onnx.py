"""convert/to_onnx.py: fp32 parity with TF, fp16 emulation, keep_dtype, refusals."""

import numpy as np
import onnx
import pytest
import tiny_model as tiny

from common import loaders
from common.errors import UserError
from convert import parity, to_onnx
from convert.fp16.blocklists import CUBE_OPS
from freeze.core import run_graph_def
from freeze.signature import Signature
from verify import metrics

F16 = onnx.TensorProto.FLOAT16


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    return tiny.write(str(tmp_path_factory.mktemp("tiny")), batch=2)


def _types(path):
    m = onnx.shape_inference.infer_shapes(onnx.load(path))
    t = {
        v.name: v.type.tensor_type.elem_type
        for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)
    }
    return m, t


def _node_type(m, t, name):
    """Element type the node named ``name`` computes in (kept nodes output fp32 before a Cast)."""
    return t[next(n for n in m.graph.node if n.name == name).output[0]]


def _run(path, sig):
    sess = loaders.ort_session(path)
    return parity.run_onnx(sess, sig, tiny.feed(sig, seed=3))


def test_fp32_matches_tf_and_gets_its_own_card(pb):
    out = pb[:-3] + ".onnx"
    before = open(pb[:-3] + ".json").read()
    to_onnx.convert(pb, out)
    assert open(pb[:-3] + ".json").read() == before  # the .pb's card is freeze's: never rewritten
    sig = Signature.load(out + ".json")  # tiny.onnx.json: tiny.json is the .pb's
    assert sig.artifact["file"] == "tiny.onnx" and sig.artifact["source"] == "tiny.pb"
    assert sig.checks["onnx_vs_frozen_max_rel"] <= 1e-5
    ref = run_graph_def(loaders.load_graph_def(pb), sig, tiny.feed(sig, seed=3))
    for g, r in zip(_run(out, sig), ref):
        assert metrics.elementwise_ok(g, r, atol=1e-5, rtol=1e-5)
    with pytest.raises(UserError, match="already exists"):
        to_onnx.convert(pb, out)


def test_fp16_internals_fp32_io_and_close(pb):
    out = pb[:-3] + ".fp16.onnx"
    sig16 = to_onnx.convert(pb, out, "force_fp16")
    assert Signature.load(pb[:-3] + ".fp16.json").precision_mode == "force_fp16" == sig16.precision_mode
    m, t = _types(out)
    io = list(m.graph.input) + list(m.graph.output)
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
    assert t["Tanh:0"] == F16 and t["scale_exp:0"] == F16
    sig = Signature.load(pb[:-3] + ".json")
    ref = run_graph_def(loaders.load_graph_def(pb), sig, tiny.feed(sig, seed=3))
    got = _run(out, sig)
    for g, r in zip(got, ref):
        assert metrics.compare(g, r)["cosine"] >= 0.99
    assert not all(metrics.elementwise_ok(g, r, 1e-6, 1e-6) for g, r in zip(got, ref))  # really fp16


def test_keep_dtype_and_mode_mapping(pb, tmp_path):
    cfg = tmp_path / "keep.cfg"
    cfg.write_text("scale_exp\nOpType::Tanh\n")
    out = str(tmp_path / "k.fp16.onnx")
    to_onnx.convert(pb, out, "force_fp16", str(cfg))
    m, t = _types(out)
    assert _node_type(m, t, "scale_exp") == _node_type(m, t, "Tanh") == onnx.TensorProto.FLOAT
    assert _node_type(m, t, "mul") == F16
    out = str(tmp_path / "a.fp16.onnx")
    to_onnx.convert(pb, out, "allow_fp32_to_fp16")
    m, t = _types(out)
    assert _node_type(m, t, "mul") == _node_type(m, t, "scale_exp") == onnx.TensorProto.FLOAT
    assert _node_type(m, t, next(n.name for n in m.graph.node if n.op_type == "Conv")) == F16
    out = str(tmp_path / "m.fp16.onnx")
    to_onnx.convert(pb, out, "allow_mix_precision")
    m, t = _types(out)
    assert _node_type(m, t, "scale_exp") == onnx.TensorProto.FLOAT and _node_type(m, t, "mul") == F16
    cfg.write_text("no_such_op\n")
    with pytest.raises(UserError, match="no_such_op"):
        to_onnx.convert(pb, str(tmp_path / "n.fp16.onnx"), "force_fp16", str(cfg))


def test_unsupported_op_named(tmp_path):
    pb = tiny.write(str(tmp_path), "sl", batch=2, slogdet=True)
    with pytest.raises(UserError, match="LogMatrixDeterminant"):
        to_onnx.convert(pb, str(tmp_path / "sl.onnx"))
    assert not (tmp_path / "sl.onnx").exists()


def test_cli_bad_opset_and_mode(pb, capsys):
    assert to_onnx.main(["--model", pb, "--output", pb[:-3] + ".o9.onnx", "--opset", "9"]) == 2
    assert "--opset must be in 11..15" in capsys.readouterr().err
    # a usage error is one line and exit 2, like every user error (common.cli.ArgumentParser)
    assert to_onnx.main(["--model", pb, "--output", pb[:-3] + ".onnx", "--precision_mode", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "invalid choice: 'bogus'" in err and err.count("\n") == 1
    # an fp16 model under the .pb's stem: its own card says so, the .pb's card stays fp32
    assert (
        to_onnx.main(["--model", pb, "--output", pb[:-3] + ".onnx", "--precision_mode", "force_fp16", "--force"]) == 0
    )
    assert Signature.load(pb[:-3] + ".onnx.json").precision_mode == "force_fp16"
    assert Signature.load(pb[:-3] + ".json").precision_mode == "force_fp32"


def test_allow_fp32_to_fp16_keeps_non_cube_tensors_fp32(pb, tmp_path):
    """The fp16 converter rounded tensors passed between fp32 nodes to fp16 (and typed a
    graph output fp16): the logit 1 - p of a white pixel became 0, log(0) = -inf, NaN z.
    Only the Cube ops' own inputs and outputs may be fp16."""
    out = str(tmp_path / "w.fp16.onnx")
    to_onnx.convert(pb, out, "allow_fp32_to_fp16")
    m, t = _types(out)
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in m.graph.output)
    cube = {n.name for n in m.graph.node if n.op_type in CUBE_OPS}
    near = {i for n in m.graph.node if n.name in cube for i in list(n.input) + list(n.output)}
    for n in m.graph.node:
        if n.op_type in ("Cast", *CUBE_OPS):
            continue
        assert all(t.get(v) != F16 for v in list(n.input) + list(n.output)), n.name
    for n in m.graph.node:  # a Cast to fp16 feeds a Cube op
        if n.op_type == "Cast" and n.attribute[0].i == F16:
            assert n.output[0] in near, n.name
    sig = Signature.load(pb[:-3] + ".json")
    feed = tiny.feed(sig, seed=3)
    feed["x"][:] = 1.0  # white pixels and noise near 1: p within 1e-5 of 1
    feed["u"][:] = 0.999
    got = parity.run_onnx(loaders.ort_session(out), sig, feed)
    ref = run_graph_def(loaders.load_graph_def(pb), sig, feed)
    assert all(np.isfinite(g).all() for g in got)
    assert abs(float(np.mean(got[2])) / float(np.mean(ref[2])) - 1) < 1e-4  # bits/dim


def test_graph_casts_under_fp16_modes(tmp_path):
    """A graph with its own Cast converts in every fp16 mode (blocking the Cast op type
    made the converter wrap its own inserted Casts without end) and stays close to TF."""
    p = tiny.write(str(tmp_path), cast=True)
    sig = Signature.load(str(tmp_path / "tiny.json"))
    for mode in ("allow_fp32_to_fp16", "allow_mix_precision", "force_fp16"):
        out = str(tmp_path / f"tiny.{mode}.onnx")
        to_onnx.convert(p, out, mode)
        ref = run_graph_def(loaders.load_graph_def(p), sig, tiny.feed(sig, seed=3))
        for g, r in zip(_run(out, sig), ref):
            assert np.isfinite(g).all() and metrics.compare(g, r)["cosine"] > 0.99


def test_conversion_writes_only_the_onnx_and_its_own_card(tmp_path):
    """freeze's MODEL.pb and MODEL.json (and any other artifact's card) keep their bytes;
    each conversion adds exactly its .onnx and that file's own card, also under --force and
    when the output's stem card belongs to another frozen model."""
    m = tmp_path / "m"
    tiny.write(str(m), "mine", batch=2)
    tiny.write(str(m), "other", batch=2)
    pb = str(m / "mine.pb")

    def snapshot():
        return {p.name: p.read_bytes() for p in m.iterdir()}

    for out, mode, argv_extra, card in [
        ("mine.onnx", "force_fp32", [], "mine.onnx.json"),  # mine.json is the .pb's
        ("mine.fp16.onnx", "force_fp16", [], "mine.fp16.json"),
        ("mine.onnx", "allow_mix_precision", ["--force"], "mine.onnx.json"),  # rebuilt in place
        ("other.onnx", "force_fp16", [], "other.onnx.json"),  # other.json is other.pb's
    ]:
        before = snapshot()
        argv = ["--model", pb, "--output", str(m / out), "--precision_mode", mode]
        assert to_onnx.main(argv + argv_extra) == 0
        after = snapshot()
        assert set(after) - set(before) <= {out, card} and {out, card} <= set(after)
        for name, data in before.items():
            if name not in (out, card):
                assert after[name] == data, f"{name} rewritten by converting to {out}"
        assert Signature.load(str(m / card)).artifact["file"] == out
