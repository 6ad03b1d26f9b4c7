"""verify/compare_layers.py: the precision doctor finds an fp16-fragile layer and its fix."""

import json
import os

import numpy as np
import tiny_model as tiny

from common import loaders
from convert import parity, to_onnx
from data_tools import binfiles
from freeze.signature import Signature
from verify import compare_layers
from verify.doctor.diagnose import diagnose


def test_doctor_finds_fragile_exp_and_keep_dtype_fixes_it(tmp_path, capsys):
    pb = tiny.write(str(tmp_path), "frag", batch=2, fragile=True)
    sig = Signature.load(str(tmp_path / "frag.json"))
    to_onnx.convert(pb, str(tmp_path / "frag.fp16.onnx"), "force_fp16")
    feed = tiny.feed(sig)
    for t in sig.inputs:
        os.makedirs(tmp_path / "bins" / t.name)
        binfiles.write_bin(tmp_path / "bins" / t.name / "b_00000.bin", feed[t.name], t)
    keep = tmp_path / "keep.cfg"
    args = [
        "--pb",
        pb,
        "--onnx",
        str(tmp_path / "frag.fp16.onnx"),
        "--input",
        f"{tmp_path / 'bins' / 'x'},{tmp_path / 'bins' / 'u'}",
        "--keep-dtype-out",
        str(keep),
        "--report",
        str(tmp_path / "r.json"),
    ]
    assert compare_layers.main(args) == 0
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["first_failing"] == "scale_exp" and "Inf" in rep["first_failing_why"]
    assert rep["matched"] >= 20
    ops = [l["op"] for l in rep["layers"]]
    assert ops.index("Tanh") < ops.index("scale_exp")  # graph order
    assert all(l["passed"] for l in rep["layers"][: ops.index("scale_exp")])
    kept = keep.read_text().split()
    assert kept[0] == "scale_exp" and "Tanh" not in kept
    assert "first failing layer: scale_exp" in capsys.readouterr().out
    # the cfg goes straight back into the converter, and the layer is then healthy
    to_onnx.convert(pb, str(tmp_path / "fixed.fp16.onnx"), "force_fp16", str(keep))
    again = diagnose(loaders.load_graph_def(pb), sig, str(tmp_path / "fixed.fp16.onnx"), feed)
    assert again["first_failing"] is None
    exp = next(l for l in again["layers"] if l["op"] == "scale_exp")
    assert exp["inf"] == 0 and exp["cosine"] > 0.999
    assert compare_layers.main(args) == 2  # outputs exist: not overwritten


def test_healthy_model_keeps_nothing(tmp_path):
    pb = tiny.write(str(tmp_path), "ok", batch=2)
    sig = Signature.load(str(tmp_path / "ok.json"))
    to_onnx.convert(pb, str(tmp_path / "ok.fp16.onnx"), "force_fp16")
    r = diagnose(loaders.load_graph_def(pb), sig, str(tmp_path / "ok.fp16.onnx"), tiny.feed(sig))
    assert r["first_failing"] is None and r["keep_dtype"] == []
    worst = min(l["cosine"] for l in r["layers"])
    assert 0.99 <= worst < 1.0 or np.isclose(worst, 1.0)


def _rsqrt_model(out_dir, batch=2):
    """x -> rsqrt(x^2 + 1) -> 1x1 conv (NHWC 4x4x4, whose NCHW layout has the same shape)."""
    from common.tfcompat import tf
    from freeze.signature import Tensor

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [batch, 4, 4, 4], name="x")
        r = tf.math.rsqrt(x * x + 1.0, name="norm")
        w = tf.constant((np.random.RandomState(0).randn(1, 1, 4, 4) * 0.5).astype(np.float32))
        c = tf.nn.relu(tf.nn.conv2d(r, w, [1, 1, 1, 1], "SAME"), name="act")
        tf.identity(c * r, "y")
    pb = os.path.join(out_dir, "rs.pb")
    with open(pb, "wb") as f:
        f.write(g.as_graph_def().SerializeToString())
    Signature(
        "rs",
        "forward",
        batch,
        [Tensor("x", "x:0", [batch, 4, 4, 4], "float32", "NHWC")],
        [Tensor("y", "y:0", [batch, 4, 4, 4], "float32", "NHWC")],
        precision_mode="force_fp32",
        artifact={"file": "rs.pb", "kind": "pb"},
    ).save(os.path.join(out_dir, "rs.json"))
    return pb


def test_decomposed_op_is_not_a_false_match(tmp_path):
    """tf2onnx writes Rsqrt as Sqrt (named "norm") + Reciprocal: comparing TF's rsqrt with
    that Sqrt is a false match. Names are validated on the fp32 model and dropped."""
    pb = _rsqrt_model(str(tmp_path))
    sig = Signature.load(str(tmp_path / "rs.json"))
    out = str(tmp_path / "rs.fp16.onnx")
    to_onnx.convert(pb, out, "force_fp16")
    feed = {"x": np.random.RandomState(1).uniform(-3, 3, (2, 4, 4, 4)).astype(np.float32)}
    r = diagnose(loaders.load_graph_def(pb), sig, out, feed)
    assert r["first_failing"] is None and r["keep_dtype"] == []
    assert "norm:0" in r["dropped"] and r["name_matches_dropped"] >= 1  # the Sqrt named "norm"
    norm = next(l for l in r["layers"] if l["op"] == "norm")
    assert norm["onnx_op"] == "Reciprocal" and norm["passed"]  # matched through the helper
    assert {"act", "y"} <= {l["op"] for l in r["layers"]}  # NCHW tensors compared in TF's layout


def test_nonfinite_layer_fails_first_and_keep_names_resolve(tmp_path):
    pb = tiny.write(str(tmp_path), "frag", batch=2, fragile=True)
    sig = Signature.load(str(tmp_path / "frag.json"))
    to_onnx.convert(pb, str(tmp_path / "frag.fp16.onnx"), "force_fp16")
    r = diagnose(loaders.load_graph_def(pb), sig, str(tmp_path / "frag.fp16.onnx"), tiny.feed(sig))
    assert r["first_nonfinite"] == r["first_failing"] == "scale_exp"
    assert r["keep_dtype_unresolved"] == [] and r["dropped"] == []


def test_iterate_walks_up_to_the_fp16_rounding_that_one_shot_keep_misses(tmp_path, capsys):
    """Near-white pixels: p = alpha/2 + (1-alpha)(x+u)/256 rounds to 1.0 in fp16, so
    log(1 - p) is -inf/NaN. The doctor names the Log, but a Log kept fp32 still reads
    1 - 1.0: one-shot keep fixes nothing; --iterate keeps the producers until it is finite."""
    pb = tiny.write(str(tmp_path), "w", batch=2)
    sig = Signature.load(str(tmp_path / "w.json"))
    f16 = str(tmp_path / "w.fp16.onnx")
    to_onnx.convert(pb, f16, "force_fp16")
    feed = tiny.feed(sig)
    feed["x"][:, 0, :2, :] = 1.0  # white pixels
    feed["u"][:, 0, :2, :] = np.float32(0.999)  # 255 + 0.999 is 256 in fp16: p is 1.0
    for t in sig.inputs:
        os.makedirs(tmp_path / "bins" / t.name)
        binfiles.write_bin(tmp_path / "bins" / t.name / "b_00000.bin", feed[t.name], t)
    base = ["--pb", pb, "--onnx", f16, "--input", f"{tmp_path / 'bins' / 'x'},{tmp_path / 'bins' / 'u'}"]

    def outputs(keep):
        out = str(tmp_path / f"{keep.stem}.fp16.onnx")
        to_onnx.convert(pb, out, "force_fp16", str(keep))
        return parity.run_onnx(loaders.ort_session(out), sig, feed)

    one = tmp_path / "one.cfg"
    assert compare_layers.main(base + ["--keep-dtype-out", str(one)]) == 0
    assert one.read_text().split()  # names the log(1 - p) (or its tf2onnx twin) and its user
    assert not all(np.isfinite(v).all() for v in outputs(one))  # the named Log is not the cause

    it = tmp_path / "it.cfg"
    assert (
        compare_layers.main(
            base + ["--keep-dtype-out", str(it), "--iterate", "6", "--report", str(tmp_path / "it.json")]
        )
        == 0
    )
    rep = json.loads((tmp_path / "it.json").read_text())
    assert rep["converged"] and rep["first_failing"] is None and len(rep["rounds"]) >= 3
    r0 = rep["rounds"][0]
    assert r0["metric"]["nonfinite"] > 0 and r0["metric_tf"]["nonfinite"] == 0
    assert rep["rounds"][-1]["metric"]["nonfinite"] == 0
    kept = it.read_text().split()
    assert kept == rep["keep_dtype"] and 0 < len(kept) < 10  # minimal-ish
    got = outputs(it)
    assert all(np.isfinite(v).all() for v in got)
    assert "converged after" in capsys.readouterr().out


def test_iterate_needs_an_fp16_model(tmp_path):
    pb = tiny.write(str(tmp_path), "ok", batch=2)
    sig = Signature.load(str(tmp_path / "ok.json"))
    out = str(tmp_path / "ok32.onnx")
    to_onnx.convert(pb, out, "force_fp32")
    feed = tiny.feed(sig)
    for t in sig.inputs:
        os.makedirs(tmp_path / "bins" / t.name)
        binfiles.write_bin(tmp_path / "bins" / t.name / "b_00000.bin", feed[t.name], t)
    assert (
        compare_layers.main(
            [
                "--pb",
                pb,
                "--onnx",
                out,
                "--input",
                f"{tmp_path / 'bins' / 'x'},{tmp_path / 'bins' / 'u'}",
                "--keep-dtype-out",
                str(tmp_path / "k.cfg"),
                "--iterate",
                "3",
            ]
        )
        == 2
    )


def _two_branch_model(out_dir, batch=2):
    """y = concat(square(300 x0), square(300 x1)) / 1e5: x0 near 1 overflows fp16 (90000 >
    65504) in the first branch only, x1 near 1 in the second only."""
    from common.tfcompat import tf
    from freeze.signature import Tensor

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [batch, 2], name="x")
        a = tf.square(x[:, :1] * 300.0, name="sq_a")
        b = tf.square(x[:, 1:] * 300.0, name="sq_b")
        tf.identity(tf.concat([a, b], 1) * 1e-5, "y")
    pb = os.path.join(out_dir, "two.pb")
    with open(pb, "wb") as f:
        f.write(g.as_graph_def().SerializeToString())
    Signature(
        "two",
        "forward",
        batch,
        [Tensor("x", "x:0", [batch, 2], "float32", "ND")],
        [Tensor("y", "y:0", [batch, 2], "float32", "ND")],
        precision_mode="force_fp32",
        artifact={"file": "two.pb", "kind": "pb"},
    ).save(os.path.join(out_dir, "two.json"))
    return pb


def test_doctor_fixes_every_failing_batch_of_a_loss_check_report(tmp_path, capsys):
    """Batch b0 overflows in one branch, b1 in the other, b2 in none: a keep list found on
    b0 alone leaves b1 failing; from the loss_check report's failing files the doctor iterates
    until both pass and re-checks all three before writing the list."""
    pb = _two_branch_model(str(tmp_path))
    sig = Signature.load(str(tmp_path / "two.json"))
    f16 = str(tmp_path / "two.fp16.onnx")
    to_onnx.convert(pb, f16, "force_fp16")
    batches = {"b0": [[1.0, 0.1], [0.9, 0.2]], "b1": [[0.1, 1.0], [0.2, 0.9]], "b2": [[0.1, 0.1], [0.2, 0.2]]}
    os.makedirs(tmp_path / "bins" / "x")
    for stem, v in batches.items():
        binfiles.write_bin(tmp_path / "bins" / "x" / f"{stem}.bin", np.array(v, np.float32), sig.inputs[0])
    base = ["--pb", pb, "--onnx", f16, "--input", str(tmp_path / "bins" / "x")]

    def failing(keep):  # the batches with a failing layer, the model rebuilt with the keep list
        out = str(tmp_path / f"{keep.stem}.fp16.onnx")
        to_onnx.convert(pb, out, "force_fp16", str(keep))
        gd = loaders.load_graph_def(pb)
        return sorted(
            s for s, v in batches.items() if diagnose(gd, sig, out, {"x": np.array(v, np.float32)})["first_failing"]
        )

    one = tmp_path / "one.cfg"
    assert compare_layers.main(base + ["--keep-dtype-out", str(one), "--iterate", "4"]) == 0
    assert failing(one) == ["b1"]  # the first batch's list leaves the other branch failing

    report = tmp_path / "lc.json"  # the failing files as loss_check lists them
    out_files = [f"out/2026_1/{s}_output_0.bin" for s in ("b1", "b0")]
    report.write_text(json.dumps({"failed_files": [{"file": f, "output": "y", "why": "inf"} for f in out_files]}))
    capsys.readouterr()
    every = tmp_path / "every.cfg"
    rep_path = str(tmp_path / "every.json")
    argv = base + ["--keep-dtype-out", str(every), "--iterate", "4", "--from-report", str(report), "--report", rep_path]
    assert compare_layers.main(argv) == 0
    rep = json.loads(open(rep_path).read())
    assert rep["converged"] and rep["batches_checked"] == 3
    assert {r["batch"] for r in rep["rounds"] if r["first_failing"]} == {"b0", "b1"}
    assert failing(every) == []
    assert "nothing fails on 3 batch(es)" in capsys.readouterr().out
    assert compare_layers.main(base + ["--keep-dtype-out", str(tmp_path / "k2.cfg"), "--batch-file", "b9"]) == 2
    assert "b9" in capsys.readouterr().err
