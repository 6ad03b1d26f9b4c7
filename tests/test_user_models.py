"""Any TF1 model on the road: a user-style graph per freezing pitfall, through freeze ->
to_onnx -> input bins -> runner -> reference (from the checkpoint) -> loss_check PASS, and
an altered offline output -> FAIL. Two graphs that must not freeze fail with one line
naming the node."""

import glob
import json
import os

import numpy as np
import pytest
import user_models

from convert import to_onnx
from freeze import freeze_graph
from freeze.signature import Signature
from infer import msame
from verify import compare_layers, loss_check, reference

BATCH, FILES = 4, 3


def _freeze(tmp_path, pitfall, extra=()):
    info = user_models.build(pitfall, str(tmp_path / "train"))
    argv = info["source"] + [
        "--output_node_names",
        info["outputs"],
        "--input_shape",
        info["input_shape"],
        "--output",
        str(tmp_path / "m" / "mine"),
        *extra,
    ]
    if info["defaults"]:
        argv += ["--input_defaults", info["defaults"]]
    return freeze_graph.main(argv), info


def _bins(folder, seed=0):
    rng = np.random.RandomState(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(FILES):
        rng.uniform(-1, 1, (BATCH, 8, 8, 3)).astype(np.float32).tofile(os.path.join(folder, f"b{i}.bin"))
    return folder


@pytest.mark.parametrize("pitfall", user_models.PITFALLS)
def test_user_model_road(tmp_path, pitfall, capsys):
    rc, info = _freeze(tmp_path, pitfall)
    err = capsys.readouterr().err
    assert rc == 0, err
    m = tmp_path / "m"
    sig = Signature.load(m / "mine.json")
    assert [t.name for t in sig.inputs] == ["images"] and sig.inputs[0].shape == [BATCH, 8, 8, 3]
    assert [t.name for t in sig.outputs] == info["outputs"].split(",")  # --output_node_names order
    assert sig.outputs[0].shape == [BATCH, user_models.CLASSES]
    if "pred" in info["outputs"]:
        assert sig.output("pred").dtype == "int64"
    assert sig.source["kind"] == {"saved_model": "saved_model", "frozen_pb": "pb"}.get(pitfall, "checkpoint")
    assert sig.checks["no_random_ops"] and sig.checks["batch_independent"] is True
    if pitfall == "placeholder_with_default":  # dropout at rate 0: its random op folded away
        assert sig.checks["folding"]["dropout_masks_folded"]
    if pitfall in ("cond_is_training", "batch_norm"):
        assert sig.checks["folding"]["tf_cond_folded"] > 0
    if pitfall not in ("saved_model", "frozen_pb"):
        assert sig.checkpoint["step"] == 3

    assert to_onnx.main(["--model", str(m / "mine.pb"), "--output", str(m / "mine.onnx")]) == 0
    bins = _bins(str(tmp_path / "bins" / "images"))
    out, ref = str(tmp_path / "out"), str(tmp_path / "ref")
    assert msame.main(["--model", str(m / "mine.onnx"), "--input", bins, "--output", out]) == 0
    assert reference.main(["--signature", str(m / "mine.json"), "--input", bins, "--output", ref]) == 0
    capsys.readouterr()
    lc = [
        "--signature",
        str(m / "mine.json"),
        "--offline",
        out,
        "--reference",
        ref,
        "--no-plot",
        "--no-progress",
        "--top1",
        "logits",
    ]
    assert loss_check.main(lc + ["--report", str(tmp_path / "pass.json")]) == 0
    rep = json.loads((tmp_path / "pass.json").read_text())
    assert rep["passed"] and rep["n_images"] == BATCH * FILES
    assert rep["classification"]["top1_agreement"] == 1.0
    worst = max(o["max_rel"] for o in rep["outputs"])
    assert worst < 1e-4

    if pitfall == "batch_norm":  # the precision doctor on a user model, force_fp16
        f16 = str(m / "mine.f16.onnx")
        assert to_onnx.main(["--model", str(m / "mine.pb"), "--output", f16, "--precision_mode", "force_fp16"]) == 0
        assert (
            compare_layers.main(
                [
                    "--pb",
                    str(m / "mine.pb"),
                    "--onnx",
                    f16,
                    "--input",
                    bins,
                    "--keep-dtype-out",
                    str(tmp_path / "keep.cfg"),
                    "--report",
                    str(tmp_path / "doc.json"),
                ]
            )
            == 0
        )
        doc = json.loads((tmp_path / "doc.json").read_text())
        assert doc["matched"] >= 4 and {"logits", "probs"} <= {layer["op"] for layer in doc["layers"]}

    # an altered offline output fails, and loss_check names the file
    logits = sorted(glob.glob(os.path.join(out, "*", "b1_output_0.bin")))[0]
    a = np.fromfile(logits, np.float32)
    a[3] += 0.5
    a.tofile(logits)
    assert loss_check.main(lc + ["--report", str(tmp_path / "fail.json")]) == 1
    rep = json.loads((tmp_path / "fail.json").read_text())
    assert not rep["passed"] and rep["failed_files"][0]["file"].endswith("b1_output_0.bin")


def test_random_op_left_is_named(tmp_path, capsys):
    rc, _ = _freeze(tmp_path, "random_op")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "noise" in err and "RandomStandardNormal" in err and "tf.placeholder(float32, [4, 8, 8, 6]" in err
    assert not (tmp_path / "m" / "mine.pb").exists()


def test_unconvertible_op_is_named_before_conversion(tmp_path, capsys):
    rc, _ = _freeze(tmp_path, "unconvertible_op")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "roundtrip (Bitcast)" in err and "tf2onnx cannot convert" in err
    assert not (tmp_path / "m" / "mine.pb").exists()


def test_freeze_graph_bad_flags(tmp_path, capsys):
    info = user_models.build("dynamic_batch", str(tmp_path / "train"))
    base = info["source"] + ["--output", str(tmp_path / "m" / "mine")]
    cases = [
        (["--output_node_names", "logits", "--input_shape", "images:4,8,8"], "does not fit"),
        (["--output_node_names", "logitz", "--input_shape", "images:4,8,8,3"], "no node 'logitz'"),
        (["--output_node_names", "logits", "--input_shape", "imgs:4,8,8,3"], "no node 'imgs'"),
        (["--output_node_names", "logits", "--input_shape", "images:4,x,8,3"], "positive dims"),
        (
            ["--output_node_names", "logits", "--input_shape", "images:4,8,8,3", "--input_defaults", "labels"],
            "name:value",
        ),
    ]
    for extra, want in cases:
        assert freeze_graph.main(base + extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and want in err and err.count("\n") == 0, err
    # a moved training folder still resolves (relative paths), the copy's files are named
    moved = tmp_path / "moved"
    os.rename(tmp_path / "train", moved)
    argv = [
        "--input_checkpoint",
        str(moved),
        "--output_node_names",
        "logits",
        "--input_shape",
        "images:2,8,8,3",
        "--output",
        str(tmp_path / "m2" / "mine"),
    ]
    assert freeze_graph.main(argv) == 0
    sig = Signature.load(tmp_path / "m2" / "mine.json")
    assert sig.source["checkpoint"].startswith(str(moved)) and sig.batch == 2
    assert freeze_graph.main(argv) == 2  # no overwrite without --force
    assert "already exists" in capsys.readouterr().err
