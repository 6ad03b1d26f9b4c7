"""TF2 control flow from a script that only called disable_eager_execution(): If/Case on a
constant predicate are folded into the frozen graph; an If on a real input and a While are
kept and converted by tf2onnx (run by ONNX Runtime); what neither can do is one line naming
the node. The models are built by tests/tf2_models.py in fresh processes; the expected
outputs come from that script's own session in inference mode."""

import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import tf2_models

from common.loaders import load_graph_def
from common.tfcompat import tf
from convert import to_onnx
from freeze import freeze_graph

HERE = os.path.dirname(os.path.abspath(__file__))
FOLDED_AWAY = {"If", "StatelessIf", "Case", "StatelessCase", "PartitionedCall", "StatefulPartitionedCall"}
SHAPE = f"images:{tf2_models.BATCH},{tf2_models.H},{tf2_models.W},{tf2_models.C}"


@pytest.fixture(scope="session")
def tf2_runs(tmp_path_factory):
    """{kind: folder}, the three models built in parallel fresh processes."""
    root = tmp_path_factory.mktemp("tf2")
    procs = {
        k: subprocess.Popen(
            [sys.executable, os.path.join(HERE, "tf2_models.py"), k, str(root / k)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in tf2_models.KINDS
    }
    for k, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{k}: {err[-2000:]}"
        ops = set(out.split())
        # the graphs are TF2's: functional control flow and resource variables, no Switch/Merge
        assert {"VarHandleOp", "ReadVariableOp"} <= ops and not ops & {"Switch", "Merge", "VariableV2"}, ops
        assert ops & {"If", "StatelessIf"}
        if k == "bn":  # what the fold must remove: tf.cond (both kinds), tf.switch_case, tf.function
            assert {"If", "StatelessIf", "StatelessCase", "PartitionedCall"} <= ops, ops
        if k == "flow":  # trained: the While carries the gradient's accumulators
            assert {"While", "EmptyTensorList"} <= ops, ops
    return {k: root / k for k in tf2_models.KINDS}


def _freeze(source, out, *extra, outputs="logits"):
    return freeze_graph.main(
        [*source, "--output_node_names", outputs, "--input_shape", SHAPE, "--output", str(out), *extra]
    )


def _run_pb(pb, x):
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(load_graph_def(str(pb)), name="")
    with tf.Session(graph=g) as s:
        return s.run("logits:0", {"images:0": x})


@pytest.mark.slow
@pytest.mark.parametrize("source", ["checkpoint", "saved_model"])
def test_batch_norm_cond_folds_to_inference_branch(tf2_runs, tmp_path, source):
    d = tf2_runs["bn"]
    src = ["--input_checkpoint", str(d)] if source == "checkpoint" else ["--input_saved_model_dir", str(d / "export")]
    # the SavedModel also names the batch norm's tf.cond itself as an output
    outputs = "logits" if source == "checkpoint" else "logits,bn_cond"
    assert _freeze(src, tmp_path / "bn", "--input_defaults", "is_training:false", outputs=outputs) == 0
    gd = load_graph_def(str(tmp_path / "bn.pb"))
    assert source == "checkpoint" or {n.name: n.op for n in gd.node}["bn_cond"] == "Identity"
    ops = {n.op for n in gd.node}
    assert not ops & FOLDED_AWAY, ops
    assert not ops & {"VarHandleOp", "ReadVariableOp", "RandomUniform"}, ops  # variables constant, dropout gone
    assert len(gd.library.function) == 0  # branches and gradient functions left the library
    exp = np.load(d / "expected.npz")
    for x, want in zip(exp["x"], exp["logits"]):  # inference mode: moving averages, no dropout, relu
        np.testing.assert_allclose(_run_pb(tmp_path / "bn.pb", x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_if_on_input_and_while_convert_and_run(tf2_runs, tmp_path, repo_root, capsys):
    d = tf2_runs["flow"]
    # the If tests the sum of the whole batch, so the model is batch-coupled by design: said explicitly
    assert _freeze(["--input_checkpoint", str(d), "--allow_batch_coupling"], tmp_path / "flow") == 0
    gd = load_graph_def(str(tmp_path / "flow.pb"))
    ops = {n.op for n in gd.node}
    assert "If" in ops and "While" in ops and not ops & {"VarHandleOp", "ReadVariableOp"}
    in_functions = {m.op for f in gd.library.function for m in f.node_def}
    assert {"MatMul", "Tanh"} <= in_functions  # the loop body and branches are there ...
    # ... without the gradient's accumulators and intermediates (no ONNX conversion for them)
    assert not (ops | in_functions) & {"EmptyTensorList", "TensorListPushBack", "OptionalFromValue", "OptionalNone"}
    r = subprocess.run(
        ["bash", "convert/atc.sh", "--model", str(tmp_path / "flow.pb"), "--output", str(tmp_path / "flow")]
        + ["--precision_mode", "force_fp32"],
        cwd=repo_root,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    capsys.readouterr()  # the fp16 emulation cannot do If/Loop bodies: one line, nothing written
    f16 = ["--model", str(tmp_path / "flow.pb"), "--output", str(tmp_path / "f16.onnx"), "--precision_mode"]
    assert to_onnx.main(f16 + ["force_fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "(Loop)" in err and "force_fp32" in err and not (tmp_path / "f16.onnx").exists()
    exp = np.load(d / "expected.npz")
    bins = tmp_path / "bins"
    bins.mkdir()
    for i, x in enumerate(exp["x"]):  # batch 0 takes the then branch, batch 1 (= -batch 0) the else
        x.astype(np.float32).tofile(bins / f"b{i}.bin")
    from infer import msame

    capsys.readouterr()
    argv = ["--model", str(tmp_path / "flow.onnx"), "--input", str(bins), "--output", str(tmp_path / "out")]
    assert msame.main(argv) == 0
    for i, want in enumerate(exp["logits"]):
        (got,) = glob.glob(str(tmp_path / "out" / "*" / f"b{i}_output_0.bin"))
        np.testing.assert_allclose(np.fromfile(got, np.float32).reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(exp["logits"][0], -exp["logits"][1])  # the branches differ: both were taken


@pytest.mark.slow  # (the models' session fixture; each case itself is fast)
@pytest.mark.parametrize(
    "kind,extra,want",
    [
        ("bad", [], ["igamma", "(Igamma)", "While 'loop'", "tf2onnx cannot convert"]),
        ("bn", ["--input_shape", f"{SHAPE};mode:", "--input_defaults", "is_training:false"], ["act_case", "Case)"]),
        ("bn", ["--input_defaults", "is_training:true"], ["bn_cond/", "(AssignVariableOp)", "is_training:false"]),
        ("noisy", [], ["random op", "(RandomUniform)", "sign_cond_true"]),
    ],
)
def test_what_neither_can_do_is_named(tf2_runs, tmp_path, capsys, kind, extra, want):
    # a While whose body holds an op tf2onnx lacks; a tf.switch_case on a real input; the
    # training branch taken (its moving-average updates would be frozen); dropout in an If
    # on a real input
    argv = ["--input_checkpoint", str(tf2_runs[kind]), "--output_node_names", "logits", "--input_shape", SHAPE]
    capsys.readouterr()
    assert freeze_graph.main(argv + extra + ["--output", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and err.count("\n") == 0 and all(w in err for w in want), err
    assert not list(tmp_path.iterdir())  # nothing half-written
