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


# --- TF-Slim and tf.keras nets, through the README's commands ("TF-Slim and Keras models") ---

NET_BATCH = 4
NETS = {  # name: (trainer, its kwargs)
    "slim_resnet_v1": (user_models.train_slim, {"kind": "resnet"}),
    "slim_inception_v1": (user_models.train_slim, {"kind": "inception"}),
    "keras_sequential_ckpt": (user_models.train_keras, {"kind": "sequential"}),
    "keras_sequential_saved_model": (user_models.train_keras, {"kind": "sequential", "save": "saved_model"}),
    "keras_mobilenet": (user_models.train_keras, {"kind": "mobilenet"}),
}


@pytest.fixture(scope="session")
def cifar_images(cifar_dir, tmp_path_factory):
    """12 real CIFAR-10 test images as PNGs + labels.txt (export_images, the README's step)."""
    from data_tools import export_images

    d = str(tmp_path_factory.mktemp("cifar_png") / "images")
    argv = ["--dataset", "cifar10", "--split", "test", "--data_dir", cifar_dir, "--limit", "10", "-o", d]
    assert export_images.main(argv) == 0
    return d


@pytest.fixture(scope="session")
def user_nets(tmp_path_factory):
    """Every net of NETS trained once (the user's own script), shared by the tests."""
    return {name: fn(str(tmp_path_factory.mktemp(name)), **kw) for name, (fn, kw) in NETS.items()}


def _freeze_net(info, out, extra=()):
    inp = info.get("input", "images")
    argv = info["source"] + ["--output_node_names", info["outputs"], "--input_shape", f"{inp}:{NET_BATCH},32,32,3"]
    if info["defaults"]:
        argv += ["--input_defaults", info["defaults"]]
    return freeze_graph.main(argv + ["--output", out, *extra])


def _readme_road(tmp_path, info, images, capsys):
    """freeze_graph -> atc (force_fp32, allow_fp32_to_fp16) -> img2bin --signature -> msame ->
    reference -> loss_check --top1 --labels, as the README writes them; the loss_check reports."""
    from convert import atc
    from data_tools import img2bin

    m = str(tmp_path / "m" / "net")
    assert _freeze_net(info, m) == 0
    sig = Signature.load(m + ".json")
    n_defaults = len(sig.checks["folding"]["defaults_folded"])
    assert f"folded: {n_defaults} placeholder default(s)" in capsys.readouterr().out
    top1 = sig.outputs[0].name
    norm = ["-m", "[127.5,127.5,127.5]", "-c", "[0.00784313725490196,0.00784313725490196,0.00784313725490196]"]
    bins = str(tmp_path / "bins")
    img = ["-i", images, "-w", "32", "-h", "32", "-f", "RGB", "-a", "NHWC", "-t", "float32", *norm]
    capsys.readouterr()
    assert img2bin.main(img + ["--signature", m + ".json", "-o", bins, "-q"]) == 0
    assert "img2bin" not in capsys.readouterr().err  # -q: no progress bar
    feed = os.path.join(bins, sig.inputs[0].name)
    ref = str(tmp_path / "ref")
    assert reference.main(["--signature", m + ".json", "--input", feed, "--output", ref, "-q"]) == 0
    reports = {}
    for mode in ("force_fp32", "allow_fp32_to_fp16"):
        before = set(glob.glob(str(tmp_path / "m" / "*.onnx")))
        assert atc.main(["--model", m + ".pb", "--output", m, "--precision_mode", mode]) == 0
        (onnx,) = set(glob.glob(str(tmp_path / "m" / "*.onnx"))) - before  # the portable model it wrote
        out = str(tmp_path / f"out_{mode}")
        capsys.readouterr()
        assert msame.main(["--model", onnx, "--input", feed, "--output", out, "-q"]) == 0
        said = capsys.readouterr()
        assert "[INFO]" not in said.out and "infer" not in said.err, said  # -q: no chatter, no bar
        rep = str(tmp_path / f"lc_{mode}.json")
        lc = ["--signature", onnx[: -len(".onnx")] + ".json" if mode != "force_fp32" else m + ".json"]
        lc += ["--offline", out, "--reference", ref, "--inputs", feed, "--top1", top1]
        lc += ["--labels", os.path.join(images, "labels.txt"), "--report", rep, "--no-plot", "--no-progress"]
        assert loss_check.main(lc) == 0, mode
        reports[mode] = json.loads(open(rep).read())
    return sig, reports


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETS))
def test_slim_and_keras_nets_reach_loss_check_pass(name, user_nets, cifar_images, tmp_path, capsys):
    sig, reports = _readme_road(tmp_path, user_nets[name], cifar_images, capsys)
    assert sig.checks["batch_independent"] is True and not sig.checks.get("batch_coupling_allowed")
    fp32, fp16 = reports["force_fp32"], reports["allow_fp32_to_fp16"]
    assert fp32["passed"] and fp32["classification"]["top1_agreement"] == 1.0 and fp32["n_images"] == 10
    assert fp16["passed"] and fp16["precision_mode"] == "allow_fp32_to_fp16"
    f = sig.checks["folding"]
    if name.startswith("slim"):  # is_training folded to false: its tf.cond keeps the moving averages
        assert f["defaults_folded"] == {"is_training": False} and f["tf_cond_folded"] > 0
        assert sig.outputs[0].shape == [NET_BATCH, 1, 1, user_models.NET_CLASSES]  # --top1 squeezes it
    if name.startswith("keras_sequential"):  # Keras' learning phase: a placeholder_with_default(False)
        assert "keras_learning_phase" in f["defaults_folded"] and f["dropout_masks_folded"] == []
    if name.endswith("saved_model"):  # the signature key names the output; the op is the Softmax
        assert sig.outputs[0].name == "probs" and sig.outputs[0].tensor == "probs/Softmax:0"
        assert sig.inputs[0].name == "images" and sig.source["output_node_names"] == "probs"


@pytest.mark.slow
def test_training_mode_graphs_are_refused_by_name(tmp_path, capsys):
    """is_training=True as a Python bool: batch norm on the batch's statistics is refused
    (--allow_batch_coupling freezes it, and verify says so); dropout's random op gets the
    export advice; the exported inference graph freezes."""
    resnet = user_models.train_slim(str(tmp_path / "rb"), "resnet", is_training="python_bool")
    out = str(tmp_path / "m" / "rb")
    assert _freeze_net(resnet, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "batch-coupled" in err and "FusedBatchNormV3, is_training=True" in err
    assert "is_training=False" in err and "--input_defaults is_training:false" in err
    assert not os.path.exists(out + ".pb")

    assert _freeze_net(resnet, out, ["--allow_batch_coupling"]) == 0
    sig = Signature.load(out + ".json")
    assert sig.checks["batch_coupling_allowed"] and sig.checks["batch_independent"] is False
    assert "BATCH-COUPLED" in capsys.readouterr().err
    bins = _bins_net(str(tmp_path / "bins" / "images"))
    ref = str(tmp_path / "ref")
    assert reference.main(["--signature", out + ".json", "--input", bins, "--output", ref]) == 0
    assert "BATCH-COUPLED" in capsys.readouterr().err
    off = str(tmp_path / "off")  # the frozen graph itself as the offline model
    assert msame.main(["--model", out + ".pb", "--input", bins, "--output", off, "-q"]) in (0, None)
    capsys.readouterr()
    lc = ["--signature", out + ".json", "--offline", off, "--reference", ref, "--no-plot", "--no-progress"]
    assert loss_check.main(lc + ["--report", str(tmp_path / "lc.json")]) == 0
    said = capsys.readouterr()
    assert "BATCH-COUPLED" in said.err and "WARNING | " in said.out and "BATCH-COUPLED" in said.out

    fixed = user_models.export_slim_inference(str(tmp_path / "rb"), str(tmp_path / "rb_inf"), "resnet")
    assert _freeze_net(fixed, str(tmp_path / "m" / "fixed")) == 0
    assert Signature.load(tmp_path / "m" / "fixed.json").checks["batch_independent"] is True

    inception = user_models.train_slim(str(tmp_path / "ib"), "inception", is_training="python_bool")
    capsys.readouterr()
    assert _freeze_net(inception, str(tmp_path / "m" / "ib")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Dropout_0b" in err and "no placeholder switches it off" in err
    assert "is_training=False" in err and "img2bin" not in err


def _bins_net(folder):
    rng = np.random.RandomState(1)
    os.makedirs(folder, exist_ok=True)
    for i in range(2):
        rng.uniform(-1, 1, (NET_BATCH, 32, 32, 3)).astype(np.float32).tofile(os.path.join(folder, f"b{i}.bin"))
    return folder


@pytest.mark.slow
def test_saved_model_output_key_unknown_lists_the_keys(user_nets, tmp_path, capsys):
    info = dict(user_nets["keras_sequential_saved_model"], outputs="probz")
    assert _freeze_net(info, str(tmp_path / "m" / "x")) == 2
    err = capsys.readouterr().err.strip()
    assert "no node 'probz'" in err and "probs -> probs/Softmax" in err and err.count("\n") == 0


def _outputs(folder, arrays):
    from infer import layout

    run = layout.new_run_dir(folder)
    for i, a in enumerate(arrays):
        layout.write_output(os.path.join(run, layout.output_name(f"b{i}", 0)), a)
    return folder


def test_an_output_equal_for_every_image_is_said_to_prove_nothing(tmp_path, capsys):
    """A degenerate model (the same scores whatever the image) agrees with itself in every
    precision mode: loss_check passes, and says the PASS proves nothing."""
    from freeze.signature import Tensor

    sig = Signature(
        "deg",
        "forward",
        2,
        [Tensor("images", "images:0", [2, 4], "float32", "ND")],
        [Tensor("probs", "probs:0", [2, 1, 1, 3], "float32", "ND")],  # slim's [N, 1, 1, classes]
        precision_mode="force_fp32",
    ).save(tmp_path / "deg.json")
    same = np.tile(np.array([0.2, 0.7, 0.1], np.float32).reshape(1, 1, 1, 3), (2, 1, 1, 1))
    ref = _outputs(str(tmp_path / "ref"), [same, same])
    off = _outputs(str(tmp_path / "out"), [same, same + 1e-7])
    argv = ["--signature", sig.path, "--offline", off, "--reference", ref, "--top1", "probs", "--no-plot"]
    assert loss_check.main(argv + ["--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "WARNING | output(s) probs are the same for every one of the 4 images" in out
    assert "predicts class 1 for every image" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["classification"]["top1_agreement"] == 1.0 and len(rep["warnings"]) == 2
    varied = same.copy()
    varied[1, 0, 0] = [0.6, 0.3, 0.1]  # one image differs: no warning
    ref2, off2 = _outputs(str(tmp_path / "ref2"), [same, varied]), _outputs(str(tmp_path / "out2"), [same, varied])
    argv = ["--signature", sig.path, "--offline", off2, "--reference", ref2, "--top1", "probs", "--no-plot"]
    assert loss_check.main(argv + ["--report", str(tmp_path / "r2.json")]) == 0
    assert json.loads((tmp_path / "r2.json").read_text())["warnings"] == []


def test_batch_statistics_ops_are_the_batch_axis_reductions_and_training_batch_norms():
    from common.tfcompat import tf
    from freeze import core

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [4, 8, 8, 3], name="x")
        mean, var = tf.nn.moments(x, [0, 1, 2], name="bn_moments")  # an unfused batch norm's statistics
        per_image = tf.reduce_mean(x, [1, 2], name="per_image")  # not over the batch
        y, _, _ = tf.nn.fused_batch_norm(x, tf.ones([3]), tf.zeros([3]), is_training=True, name="bn_train")
        z = tf.nn.fused_batch_norm(x, tf.ones([3]), tf.zeros([3]), tf.zeros([3]), tf.ones([3]), is_training=False)[0]
        tf.identity(y + z + mean + var + tf.reshape(per_image, [4, 1, 1, 3]), name="out")
    found = core.batch_statistics_ops(g.as_graph_def())
    assert any(f.startswith("bn_moments/mean (Mean over axes [0, 1, 2])") for f in found)
    assert "bn_train (FusedBatchNormV3, is_training=True)" in found
    assert not any(f.startswith("per_image") or "is_training=False" in f for f in found)
    assert sum("FusedBatchNorm" in f for f in found) == 1  # the inference-mode one is not listed


def test_a_plain_is_training_placeholder_left_unfolded_is_named(tmp_path, capsys):
    """A plain tf.placeholder(bool) is_training without --input_defaults: one line saying how
    to fold it (it was a traceback: the training branch's Assign cannot be frozen)."""
    info = user_models.build("batch_norm", str(tmp_path / "train"))
    argv = info["source"] + ["--output_node_names", "logits", "--input_shape", info["input_shape"]]
    assert freeze_graph.main(argv + ["--output", str(tmp_path / "m" / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'is_training' (bool)" in err and '--input_defaults "is_training:false"' in err
    assert not (tmp_path / "m" / "x.pb").exists()
