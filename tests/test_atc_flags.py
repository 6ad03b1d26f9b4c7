"""A porting team's own ATC command line through convert/atc.sh: every flag of issue 18's
table, on a .pb frozen by the team's own script (convert_variables_to_constants, no card).

Expected values come from ATC's documentation (flag spellings, defaults, value sets, mutual
exclusions; output order = --out_nodes order; --output_type FP16 = 2-byte outputs) and from
the frozen graph run in TensorFlow here, never from this project's converter.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from convert import atc, atc_flags

H = W = 8
CLASSES = 5


def freeze_like_a_team(path, batch=1):
    """A ModelZoo-style freeze script: build, init, convert_variables_to_constants, write."""
    import tensorflow.compat.v1 as tf

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [batch, H, W, 3], name="images")
        k = tf.get_variable("k", initializer=(np.random.RandomState(0).randn(3, 3, 3, 4) * 0.3).astype(np.float32))
        h = tf.nn.relu(tf.nn.conv2d(x, k, [1, 1, 1, 1], "SAME"))
        w = tf.get_variable("w", initializer=(np.random.RandomState(1).randn(4, CLASSES)).astype(np.float32))
        logits = tf.identity(tf.matmul(tf.reduce_mean(h, axis=[1, 2]), w), name="logits")
        tf.nn.softmax(logits, name="probs")
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            gd = tf.compat.v1.graph_util.convert_variables_to_constants(s, g.as_graph_def(), ["logits", "probs"])
    with open(path, "wb") as f:
        f.write(gd.SerializeToString())
    return path


def tf_run(pb, images, fetches=("logits:0", "probs:0")):
    """The frozen graph in TensorFlow, any batch (the placeholder remapped to [None, ...])."""
    import tensorflow.compat.v1 as tf

    gd = tf.GraphDef()
    with open(pb, "rb") as f:
        gd.ParseFromString(f.read())
    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [None, None, None, 3])
        outs = tf.import_graph_def(gd, input_map={"images:0": x}, return_elements=list(fetches), name="")
        with tf.Session() as s:
            return s.run(outs, {x: images})


@pytest.fixture(scope="session")
def team_pb(tmp_path_factory):
    return freeze_like_a_team(str(tmp_path_factory.mktemp("team") / "model.pb"))


@pytest.fixture
def work(team_pb, tmp_path, monkeypatch):
    """A copy of the team's .pb in a fresh folder, no card beside it, no atc on PATH."""
    pb = tmp_path / "model.pb"
    pb.write_bytes(open(team_pb, "rb").read())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-cann"))
    return tmp_path


ISSUE_LINE = (
    "--model=model.pb --framework=3 --output=model --soc_version=Ascend310 "
    '--input_shape="images:1,8,8,3" --out_nodes="logits:0" --output_type=FP32 --log=info'
)


def base(*more):
    return ["--model=model.pb", "--framework=3", "--output=model", "--soc_version=Ascend310", *more]


def card(path):
    with open(path) as f:
        return json.load(f)


def msame(model, inputs, out):
    from infer import msame as m

    assert m.main(["--model", model, "--input", inputs, "--output", out]) == 0
    (run,) = glob.glob(os.path.join(out, "*", ""))
    return run


def write_images(folder, n=2, batch=1, dtype=np.float32, hw=H):
    os.makedirs(folder, exist_ok=True)
    xs = []
    for i in range(n):
        x = np.random.RandomState(10 + i).rand(batch, hw, hw, 3).astype(np.float32)
        x.astype(dtype).tofile(os.path.join(folder, f"img{i}.bin"))
        xs.append(x.astype(dtype).astype(np.float32))
    return xs


# --- the command line, as ATC reads it -------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--input_shape=images:1,8,8,3"],
        ["--input_shape", "images:1,8,8,3"],
        ["-input_shape=images:1,8,8,3"],
        ["--input-shape", "images:1,8,8,3"],
        ["-input-shape", "images:1,8,8,3"],
        ["--input_shape=a:1", "--input_shape=images:1,8,8,3"],  # gflags: the last one counts
    ],
)
def test_spellings_atc_accepts(argv):
    own, flags = atc_flags.split(argv + ["--dry-run"], atc.WRAPPER)
    assert flags.get("input_shape") == "images:1,8,8,3" and own == ["--dry-run"]


def test_bare_enable_small_channel_and_argv_as_typed():
    _, flags = atc_flags.split(["--enable_small_channel", "--log", "info", "-o", "m"], atc.WRAPPER)
    assert flags.values == {"enable_small_channel": "1", "log": "info", "output": "m"}
    assert flags.tokens == ["--enable_small_channel", "--log", "info", "--output=m"]  # atc has no -o


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--framework=5"], "--framework=5: this road converts TensorFlow"),
        (["--framework=0"], "Caffe"),
        (["--soc_version=Ascend999"], "--soc_version=Ascend999: expected one of"),
        (["--log=verbose"], "--log=verbose: expected one of debug, info, warning, error, null"),
        (["--precision_mode=fp16"], "--precision_mode=fp16: expected one of"),
        (["--precision_mode=force_fp16", "--precision_mode_v2=fp16"], "exclusive"),
        (["--input_format=NWHC"], "--input_format=NWHC: expected one of NCHW, NHWC, ND, NCDHW, NDHWC"),
        (['--input_shape="images:-1,8,8,3"'], "-1 needs a dynamic flag"),
        (["--input_shape=images:-1,8,8,3", "--dynamic_batch_size=1,2", "--dynamic_dims=1;2"], "exclusive"),
        (["--input_shape=images:-1,8,8,3", "--dynamic_dims=1;2"], "--dynamic_dims needs --input_format=ND"),
        (["--input_shape=images:-1,8,8,3", "--dynamic_batch_size=4"], "2 to 100 gears"),
        (["--input_shape=images:-1,8,8,3", "--dynamic_batch_size=1,4096"], "at most 2048"),
        (["--input_shape=images:1,-1,-1,3", "--dynamic_image_size=8;16"], "height,width"),
        (["--input_shape=images:1,8,8,3", "--dynamic_batch_size=1,2"], "has no -1 dim for the gears"),
        (["--input_shape=images:-1,x,8,3", "--dynamic_batch_size=1,2"], "expected input_name1:n1,c1,h1,w1"),
        (["--input_shape=images:1~4,8,8,3"], "shape ranges n1~n2 are not taken here"),
        (["--insert_op_conf=missing.cfg"], "missing.cfg: --insert_op_conf file not found"),
        (["--fusion_switch_file=nofile.cfg"], "nofile.cfg: --fusion_switch_file file not found"),
        (["--op_debug_level=7"], "--op_debug_level=7: expected an integer 0..4"),
        (["--enable_small_channel=2"], "expected an integer 0..1"),
        (["--save_original_model=maybe"], "expected true or false"),
        (["--op_select_implmode=fast"], "high_precision, high_performance"),
        (["--optypelist_for_implmode=Exp"], "needs --op_select_implmode"),
        (["--output_type=DOUBLE"], "DOUBLE is an ATC type the road's .bin files do not carry"),
        (["--output_type=FP64"], "expected one of FP32, FP16"),
        (["--output_type=logits:0:FP16"], "a type per node needs --out_nodes"),
        (["--out_nodes=probs:0", "--output_type=logits:0:FP16"], "logits:0 is not one of --out_nodes"),
        (["--mode=1"], "--mode=1: this road runs atc's model conversion"),
        (["--no_such_flag=1"], "--no_such_flag: not an ATC flag"),
        (["--log"], "--log: expects a value"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_what_atc_refuses_is_one_line(work, capsys, extra, msg):
    assert atc.main(base(*extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and msg in err and err.count("\n") == 1, err
    assert not glob.glob(str(work / "model*.onnx")) and not glob.glob(str(work / "model*.json"))


def test_dynamic_dims_with_aipp_is_refused(work, capsys):
    (work / "aipp.cfg").write_text("aipp_op {\n  aipp_mode: static\n}\n")
    args = ["--input_shape=images:-1,8,8,3", "--input_format=ND", "--dynamic_dims=1;2", "--insert_op_conf=aipp.cfg"]
    assert atc.main(base(*args)) == 2
    assert "does not support AIPP" in capsys.readouterr().err


def test_precision_mode_values_and_v2():
    for mode in (
        "force_fp16",
        "force_fp32",
        "cube_fp16in_fp32out",
        "allow_mix_precision",
        "allow_mix_precision_fp16",
        "allow_fp32_to_fp16",
        "must_keep_origin_dtype",
        "allow_mix_precision_bf16",
        "allow_fp32_to_bf16",
    ):  # ATC's documented --precision_mode values
        flags = atc_flags.Flags(values={"framework": "3", "soc_version": "Ascend310", "precision_mode": mode})
        atc_flags.check(flags)
        assert atc_flags.precision_mode(flags) == (mode, True)
    v2 = atc_flags.Flags(values={"precision_mode_v2": "origin"})
    assert atc_flags.precision_mode(v2) == ("must_keep_origin_dtype", True)
    assert atc_flags.precision_mode(atc_flags.Flags()) == ("force_fp16", False)  # ATC's documented default


# --- the issue's line, and the road after it ---------------------------------------------------


@pytest.mark.slow
def test_issue_line_verbatim_then_msame_reference_loss_check(work, repo_root):
    """The exact command of issue 18 on a bare .pb: force_fp16 (ATC's default, said in one line),
    one output (logits), and msame / reference / loss_check on it, PASS."""
    r = subprocess.run(
        f"bash {os.path.join(repo_root, 'convert', 'atc.sh')} {ISSUE_LINE}",
        shell=True,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable, PATH="/usr/bin:/bin"),
        cwd=str(work),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    default = [ln for ln in lines if "--precision_mode not given" in ln]
    assert len(default) == 1 and "force_fp16" in default[0] and "--precision_mode=force_fp32" in default[0]
    assert any(ln.startswith("--log=info: recorded only") for ln in lines)
    assert any(ln.startswith("--soc_version=Ascend310: recorded only") for ln in lines)
    c = card(work / "model.force_fp16.json")
    assert c["precision_mode"] == "force_fp16" and c["artifact"]["file"] == "model.force_fp16.onnx"
    assert [o["tensor"] for o in c["outputs"]] == ["logits:0"] and c["outputs"][0]["dtype"] == "float32"
    assert c["inputs"][0]["shape"] == [1, 8, 8, 3] and c["inputs"][0]["layout"] == "NHWC"  # ATC's TF default
    rec = c["artifact"]["atc"]
    assert rec["argv"] == [
        "--model=model.pb",
        "--framework=3",
        "--output=model",
        "--soc_version=Ascend310",
        "--input_shape=images:1,8,8,3",
        "--out_nodes=logits:0",
        "--output_type=FP32",
        "--log=info",
    ]
    assert {k: v["portable"] for k, v in rec["flags"].items()} == {
        "model": "applied",
        "framework": "applied",
        "output": "applied",
        "soc_version": "recorded only",
        "input_shape": "applied",
        "out_nodes": "applied",
        "output_type": "applied",
        "log": "recorded only",
    }
    xs = write_images(str(work / "in"))
    run = msame("model.force_fp16.onnx", "in", "out")
    from verify import loss_check, reference

    assert reference.main(["--signature", "model.force_fp16.json", "--input", "in", "--output", "gold"]) == 0
    for i, x in enumerate(xs):
        got = np.fromfile(os.path.join(run, f"img{i}_output_0.bin"), np.float32)
        (gold,) = glob.glob(f"gold/*/img{i}_output_0.bin")
        want = tf_run("model.pb", x, ["logits:0"])[0].ravel()
        np.testing.assert_allclose(np.fromfile(gold, np.float32), want, rtol=1e-6, atol=1e-6)  # the frozen graph
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)  # fp16 inside
    args = ["--signature", "model.force_fp16.json", "--offline", "out", "--reference", "gold", "--no-plot"]
    assert loss_check.main(args) == 0
    from verify import compare_layers  # the precision doctor, on the bare .pb and its portable model

    doctor = ["--pb", "model.pb", "--onnx", "model.force_fp16.onnx", "--input", "in", "--keep-dtype-out", "k.cfg"]
    assert compare_layers.main(doctor) == 0 and os.path.isfile("k.cfg")


def test_out_nodes_order_and_output_type_per_node(work):
    """--out_nodes gives the om's outputs in its order (_output_0 = probs, _output_1 = logits,
    a bare name meaning :0); --output_type per node gives each its dtype."""
    args = base(
        "--input_shape=images:1,8,8,3",
        "--out_nodes=probs:0;logits",
        "--output_type=probs:0:FP16;logits:0:FP32",
        "--precision_mode=force_fp32",
    )
    assert atc.main(args) == 0
    c = card(work / "model.onnx.json")
    assert [(o["tensor"], o["dtype"]) for o in c["outputs"]] == [("probs:0", "float16"), ("logits:0", "float32")]
    (x,) = write_images(str(work / "in"), n=1)
    run = msame("model.onnx", "in", "out")
    logits, probs = tf_run("model.pb", x)
    assert os.path.getsize(os.path.join(run, "img0_output_0.bin")) == CLASSES * 2  # float16 bytes
    np.testing.assert_allclose(np.fromfile(os.path.join(run, "img0_output_0.bin"), np.float16), probs[0], atol=1e-3)
    np.testing.assert_allclose(np.fromfile(os.path.join(run, "img0_output_1.bin"), np.float32), logits[0], rtol=1e-5)


def test_output_type_fp16_and_input_fp16_nodes(work):
    """--output_type=FP16: 2-byte outputs; --input_fp16_nodes=images: the model takes float16
    .bin files (half the bytes); the reference (the frozen graph) casts them back."""
    args = base("--input_shape=images:1,8,8,3", "--output_type=FP16", "--input_fp16_nodes=images")
    assert atc.main(args + ["--precision_mode=force_fp32"]) == 0
    c = card(work / "model.onnx.json")
    assert c["inputs"][0]["dtype"] == "float16" and {o["dtype"] for o in c["outputs"]} == {"float16"}
    import onnx

    m = onnx.load(str(work / "model.onnx"))
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    (x,) = write_images(str(work / "in"), n=1, dtype=np.float16)
    assert os.path.getsize(work / "in" / "img0.bin") == H * W * 3 * 2
    run = msame("model.onnx", "in", "out")
    want = dict(zip(("logits:0", "probs:0"), tf_run("model.pb", x)))
    for i, o in enumerate(c["outputs"]):
        f = os.path.join(run, f"img0_output_{i}.bin")
        assert os.path.getsize(f) == CLASSES * 2
        np.testing.assert_allclose(np.fromfile(f, np.float16), want[o["tensor"]][0], rtol=2e-3, atol=2e-3)
    from verify import reference

    assert (
        reference.main(["--signature", "model.onnx.json", "--model", "model.pb", "--input", "in", "--output", "g"]) == 0
    )
    (g,) = glob.glob("g/*/img0_output_0.bin")
    assert os.path.getsize(g) == CLASSES * 2


def test_dynamic_batch_size(work):
    """Gears in the card (dyn.md), the card's shapes the largest gear, the ONNX batch symbolic:
    each gear runs and matches the frozen graph."""
    args = base('--input_shape="images:-1,8,8,3"', "--dynamic_batch_size=1,4", "--precision_mode=force_fp32")
    assert atc.main(args) == 0
    c = card(work / "model.onnx.json")
    assert c["artifact"]["dynamic"] == {
        "flag": "dynamic_batch_size",
        "input_shape": '"images:-1,8,8,3"'.strip('"'),
        "gears": [[1], [4]],
    }
    assert c["inputs"][0]["shape"] == [4, 8, 8, 3] and c["outputs"][0]["shape"] == [4, CLASSES]
    assert [o["tensor"] for o in c["outputs"]] == ["probs:0"]  # no --out_nodes: the net's last op (ATC's default)
    import onnx

    from common.loaders import ort_session

    dim0 = onnx.load(str(work / "model.onnx")).graph.input[0].type.tensor_type.shape.dim[0]
    assert not dim0.HasField("dim_value")
    sess = ort_session(str(work / "model.onnx"))
    for b in (1, 4):
        x = np.random.RandomState(b).rand(b, H, W, 3).astype(np.float32)
        (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
        np.testing.assert_allclose(got, tf_run("model.pb", x, ["probs:0"])[0], rtol=1e-5, atol=1e-6)


def test_dynamic_image_size(work):
    args = base(
        "--input_shape=images:1,-1,-1,3",
        "--dynamic_image_size=8,8;16,16",
        "--out_nodes=logits:0",
        "--precision_mode=force_fp32",
    )
    assert atc.main(args) == 0
    c = card(work / "model.onnx.json")
    assert c["artifact"]["dynamic"]["gears"] == [[8, 8], [16, 16]] and c["inputs"][0]["shape"] == [1, 16, 16, 3]
    from common.loaders import ort_session

    sess = ort_session(str(work / "model.onnx"))
    x = np.random.RandomState(0).rand(1, 8, 8, 3).astype(np.float32)  # the smaller gear runs too
    np.testing.assert_allclose(sess.run(None, {sess.get_inputs()[0].name: x})[0], tf_run("model.pb", x)[0], rtol=1e-5)


def test_check_report_lists_every_op(work, tmp_path):
    """--check_report: every op of the graph, converted or not; written even when the
    conversion then fails on an op tf2onnx cannot convert."""
    import tensorflow.compat.v1 as tf

    assert atc.main(base("--check_report=report.json", "--precision_mode=force_fp32")) == 0
    rep = card(work / "report.json")
    gd = tf.GraphDef()
    gd.ParseFromString((work / "model.pb").read_bytes())
    assert [o["op_name"] for o in rep["op"]] == [n.name for n in gd.node]
    assert {o["result"] for o in rep["op"]} == {"success"} and rep["summary"]["op_failed"] == 0
    import tiny_model as tiny

    bad = tiny.write(str(tmp_path / "bad"), "bad", batch=1, slogdet=True)
    os.remove(str(tmp_path / "bad" / "bad.json"))
    assert atc.main(["--model", bad, "--framework=3", "--soc_version=Ascend310", "--check_report=bad.json"]) == 2
    failed = [o for o in card(work / "bad.json")["op"] if o["result"] == "failed"]
    assert [o["op_type"] for o in failed] == ["LogMatrixDeterminant"]


def test_recorded_flags_each_say_what_happened(work, capsys):
    """Flags the portable model cannot apply: accepted, recorded in the card with their fate,
    one console line each; none silent."""
    (work / "fusion.cfg").write_text("{}\n")
    (work / "aipp.cfg").write_text("aipp_op {\n  aipp_mode: static\n  input_format: RGB888_U8\n}\n")
    given = {
        "enable_small_channel": "1",
        "op_select_implmode": "high_precision",
        "optypelist_for_implmode": "Exp,Sigmoid",
        "save_original_model": "true",
        "debug_dir": "dbg",
        "op_debug_level": "2",
        "fusion_switch_file": "fusion.cfg",
        "enable_scope_fusion_passes": "ScopeLayerNormPass",
        "log": "debug",
        "insert_op_conf": "aipp.cfg",
        "input_format": "NHWC",
    }
    assert atc.main(base(*[f"--{k}={v}" for k, v in given.items()], "--precision_mode=force_fp32")) == 0
    flags = card(work / "model.onnx.json")["artifact"]["atc"]["flags"]
    err = capsys.readouterr().err
    for k, v in given.items():
        assert flags[k]["value"] == v and flags[k]["note"]
        if flags[k]["portable"] != "applied":
            assert f"--{k}={v}: {flags[k]['portable']}" in err
    assert flags["input_format"]["portable"] == "applied"
    assert flags["insert_op_conf"]["portable"] == "applied"
    assert {flags[k]["portable"] for k in ("debug_dir", "op_debug_level", "fusion_switch_file")} == {
        "not applicable here"
    }


def test_input_format_recorded_in_the_card(work):
    assert atc.main(base("--input_format=NCHW", "--precision_mode=force_fp32")) == 0
    assert card(work / "model.onnx.json")["inputs"][0]["layout"] == "NCHW"


def test_precision_modes_name_their_files(work):
    """Issue 19: two precision modes of one --output never collide."""
    for mode, name, card_name in (
        ("allow_fp32_to_fp16", "model.allow_fp32_to_fp16.onnx", "model.allow_fp32_to_fp16.json"),
        ("force_fp32", "model.onnx", "model.onnx.json"),  # model.json would pass for the bare .pb's card
    ):
        assert atc.main(base(f"--precision_mode={mode}")) == 0 and os.path.isfile(work / name)
        assert card(work / card_name)["precision_mode"] == mode
    assert atc.main(base("-precision_mode", "force_fp16")) == 0
    assert os.path.exists(work / "model.force_fp16.onnx") and os.path.exists(work / "model.allow_fp32_to_fp16.onnx")


def test_with_cann_the_line_reaches_atc_unchanged(work, monkeypatch):
    from test_atc_wrapper import STANDIN

    bindir = work / "bin"
    bindir.mkdir()
    (bindir / "atc").write_text(STANDIN.format(py=sys.executable))
    (bindir / "atc").chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setenv("ATC_ARGV", str(work / "argv.json"))
    typed = base("--input_shape", "images:1,8,8,3", "-out_nodes=logits:0", "--output-type=FP32", "--log=info")
    assert atc.main(typed) == 0
    assert json.loads((work / "argv.json").read_text()) == typed
    c = card(work / "model.om.json")
    assert c["artifact"]["kind"] == "om" and c["precision_mode"] == "force_fp16"
    assert [o["tensor"] for o in c["outputs"]] == ["logits:0"]


def test_several_named_inputs_and_dynamic_dims(work, tmp_path):
    """--input_shape names several inputs (their order is the model's input order, msame's
    --input order); --dynamic_dims fills the -1 dims in that order from each gear (needs ND)."""
    import tiny_model as tiny

    pb = tiny.write(str(tmp_path / "two"), "two", batch=2)
    os.remove(str(tmp_path / "two" / "two.json"))  # a bare .pb
    args = ["--model", pb, "--framework=3", "--soc_version=Ascend310", "--output=two", "--precision_mode=force_fp32"]
    shape = "--input_shape=u:-1,4,4,3;x:-1,4,4,3"
    assert atc.main(args + [shape, "--input_format=ND", "--dynamic_dims=1,1;2,2", "--out_nodes=bpd:0"]) == 0
    c = card(work / "two.json")  # the .pb is elsewhere: its card-to-be is not in the way
    assert [(i["name"], i["shape"], i["layout"]) for i in c["inputs"]] == [
        ("u", [2, 4, 4, 3], "ND"),
        ("x", [2, 4, 4, 3], "ND"),
    ]
    assert c["artifact"]["dynamic"]["gears"] == [[1, 1], [2, 2]] and [o["name"] for o in c["outputs"]] == ["bpd"]


def test_output_type_absent_keeps_the_original_dtype(work):
    """ATC's rule without --output_type: each output has its original last op's dtype, here
    float32 even when the ops run in fp16."""
    assert atc.main(base("--precision_mode=force_fp16", "--out_nodes=logits:0;probs:0")) == 0
    c = card(work / "model.force_fp16.json")
    assert [o["dtype"] for o in c["outputs"]] == ["float32", "float32"]
    import onnx

    m = onnx.load(str(work / "model.force_fp16.onnx"))
    assert [o.type.tensor_type.elem_type for o in m.graph.output] == [onnx.TensorProto.FLOAT] * 2


def test_a_card_of_another_artifact_is_not_the_pb_s(work):
    """model.json beside a bare model.pb that belongs to model.onnx (an older run's) is not
    the .pb's signature: its float16 input does not leak into the next conversion."""
    assert atc.main(base("--input_fp16_nodes=images", "--precision_mode=force_fp32")) == 0
    onnx_card = card(work / "model.onnx.json")
    assert onnx_card["inputs"][0]["dtype"] == "float16" and not (work / "model.json").exists()
    (work / "model.json").write_text(json.dumps(onnx_card))  # as an older road left it
    assert atc.main(base("--precision_mode=allow_fp32_to_fp16")) == 0
    c = card(work / "model.allow_fp32_to_fp16.json")
    assert c["inputs"][0]["dtype"] == "float32" and [o["tensor"] for o in c["outputs"]] == ["probs:0"]


def test_input_shape_over_a_static_placeholder_says_so(work, capsys):
    """ATC's --input_shape may change a placeholder's static dims (the .om takes it); the
    portable model does too, and one line says the frozen graph itself does not."""
    assert atc.main(base("--input_shape=images:2,8,8,3", "--precision_mode=force_fp32")) == 0
    err = capsys.readouterr().err
    assert "--input_shape images:2,8,8,3 changes the graph's own [1, 8, 8, 3]" in err
    assert card(work / "model.onnx.json")["inputs"][0]["shape"] == [2, 8, 8, 3]


@pytest.mark.parametrize(
    "name,values",
    [
        ("log", ["debug", "info", "warning", "error", "null"]),
        ("input_format", ["NCHW", "NHWC", "ND", "NCDHW", "NDHWC"]),
        ("soc_version", ["Ascend310", "Ascend310P3", "Ascend710", "Ascend910", "Ascend910A", "Ascend910B3"]),
        ("op_select_implmode", ["high_precision", "high_performance"]),
        ("op_debug_level", ["0", "4"]),
        ("precision_mode_v2", ["fp16", "origin", "cube_fp16in_fp32out", "mixed_float16", "mixed_bfloat16"]),
    ],
)
def test_values_atc_documents_are_accepted(name, values):
    for v in values:
        atc_flags.check(atc_flags.Flags(values={"framework": "3", "soc_version": "Ascend310", name: v}))
