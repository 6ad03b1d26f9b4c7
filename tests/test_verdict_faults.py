"""A verdict proves what it claims (issue 23): --resume proves the inputs are the same bytes,
loss_check holds the run records against what it is told, and the last tracebacks are one
line. Each test reproduces one case a hostile user found; expected digests are computed here
with hashlib, never taken from the project's own output."""

import dataclasses
import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from tiny_model import tiny_model, write_bins

from common import fsio
from common.errors import UserError
from data_tools import binfiles
from freeze.signature import Signature
from infer import layout, msame
from infer.runner import open_runner, run_inputs
from verify import loss_check


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _err(capsys):
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _run(model_path, ins, out, **kw):
    with open_runner(model_path, **kw) as r:
        return run_inputs(r, ins, out, progress=False)


# --- msame --resume: the inputs must be the same bytes ----------------------------------


def _killed_run(model, tmp_path, n=3):
    """A run of n files whose last output was lost (a killed run): (input folders, run dir)."""
    write_bins(tmp_path / "in", n, seed=0)
    ins = [tmp_path / "in/x", tmp_path / "in/u"]
    d = _run(model["onnx"], ins, tmp_path / "o")
    for i in range(2):
        os.remove(os.path.join(d, f"b{n - 1:03d}_output_{i}.bin"))
    return ins, d


def test_resume_with_same_names_other_contents_is_refused(model, tmp_path, capsys):
    ins, d = _killed_run(model, tmp_path)
    before = sorted(os.listdir(d)), open(layout.record_path(d), "rb").read()
    write_bins(tmp_path / "in", 3, seed=1)  # the same folder regenerated: same names, other noise
    args = ["--model", model["onnx"], "--input", f"{ins[0]},{ins[1]}", "--output", str(tmp_path / "o"), "--resume"]
    assert msame.main(args) == 2
    line = _err(capsys)
    assert "input 'x'" in line and "b000.bin" in line and "contents" in line, line
    assert (sorted(os.listdir(d)), open(layout.record_path(d), "rb").read()) == before


def test_resume_with_a_copy_of_the_same_bytes_continues(model, tmp_path):
    ins, d = _killed_run(model, tmp_path)
    shutil.copytree(tmp_path / "in", tmp_path / "copy")  # other folder, same contents
    with open_runner(model["onnx"]) as r:
        again = run_inputs(r, [tmp_path / "copy/x", tmp_path / "copy/u"], tmp_path / "o", resume=True, progress=False)
    rec = layout.read_record(again)
    assert again == d and (rec["files"], rec["skipped_resume"]) == (1, 2)
    x = rec["inputs"][0]
    assert x["files_sha256"]["b001.bin"] == _sha(tmp_path / "in/x/b001.bin")


# --- loss_check holds the records --------------------------------------------------------


@pytest.fixture
def road(model, tmp_path):
    """The tiny model's road: m/tiny.pb + tiny.json (the .pb's card), m/tiny.onnx + its own
    card tiny.onnx.json, a second 'fp16' model with its card, an input set with a manifest
    (per-file digests), golden outputs from the frozen graph, offline outputs from tiny.onnx."""
    m = tmp_path / "m"
    m.mkdir()
    shutil.copyfile(model["pb"], m / "tiny.pb")
    shutil.copyfile(model["onnx"], m / "tiny.onnx")
    sig = Signature.load(model["json"])
    pb_sig = dataclasses.replace(sig, artifact={"file": "tiny.pb", "kind": "pb"}).save(m / "tiny.json")
    dataclasses.replace(sig, artifact={"file": "tiny.onnx", "kind": "onnx", "source": "tiny.pb"}).save(
        m / "tiny.onnx.json"
    )
    import onnx

    o = onnx.load(model["onnx"])
    o.doc_string = "the fp16 build"
    onnx.save(o, str(m / "tiny.fp16.onnx"))
    dataclasses.replace(
        sig, precision_mode="force_fp16", artifact={"file": "tiny.fp16.onnx", "kind": "onnx", "source": "tiny.pb"}
    ).save(m / "tiny.fp16.json")
    bins = tmp_path / "bins"
    write_bins(bins, 3)
    _write_manifest(bins, pb_sig)
    ins = [bins / "x", bins / "u"]
    from verify.reference import make_reference

    ref = make_reference(pb_sig, ins, tmp_path / "ref", progress=False, model=str(m / "tiny.pb"))
    off = _run(str(m / "tiny.onnx"), ins, tmp_path / "off")
    return {"m": m, "bins": bins, "ins": ",".join(map(str, ins)), "ref": ref, "off": off, "tmp": tmp_path}


def _write_manifest(bins, sig, n_images=None, digests=True):
    stems = sorted(n[:-4] for n in os.listdir(bins / "x"))
    files = [
        dict(
            binfiles.file_entry(s, i * sig.batch, sig.batch, sig.batch),
            **({"sha256": {k: _sha(bins / k / f"{s}.bin") for k in ("x", "u")}} if digests else {}),
        )
        for i, s in enumerate(stems)
    ]
    man = binfiles.new_manifest(sig, files, n_images or sig.batch * len(stems), "x", ["u"])
    fsio.write_json(binfiles.manifest_path(bins), man)


def _lc(road, sig="tiny.json", off=None, ref=None, *extra):
    return loss_check.main(
        [
            "--signature",
            str(road["m"] / sig),
            "--offline",
            str(off or road["off"]),
            "--reference",
            str(ref or road["ref"]),
            "--inputs",
            road["ins"],
            "--no-progress",
            "--no-plot",
            "--report",
            str(road["tmp"] / "lc.json"),
            "--force",
            *extra,
        ]
    )


def test_the_legitimate_road_passes(road):
    assert _lc(road) == 0  # the .pb's card for the .onnx converted from it (the README's road)
    assert _lc(road, "tiny.onnx.json") == 0  # the model's own card
    rep = json.loads((road["tmp"] / "lc.json").read_text())
    assert rep["records"]["offline"]["model_sha256"] == _sha(road["m"] / "tiny.onnx")


def test_reference_checked_against_itself_is_refused(road, capsys):
    assert _lc(road, "tiny.json", road["ref"], road["ref"]) == 2
    line = _err(capsys)
    assert "run.json" in line and "same run" in line, line
    copy = road["tmp"] / "ref_copy" / os.path.basename(road["ref"])
    shutil.copytree(road["ref"], copy)  # the golden folder copied beside: another folder, same run
    assert _lc(road, "tiny.json", copy, road["ref"]) == 2
    line = _err(capsys)
    assert "both made by tiny.pb" in line, line


def test_offline_run_of_another_model_than_the_signature_is_refused(road, capsys):
    assert _lc(road, "tiny.fp16.json") == 2  # outputs from tiny.onnx judged as the fp16 model
    line = _err(capsys)
    assert "tiny.onnx" in line and "tiny.fp16.onnx" in line and "tiny.fp16.json" in line, line


def test_offline_from_the_checkpoint_or_reference_from_an_offline_model_is_refused(road, capsys):
    assert _lc(road, "tiny.json", road["off"], road["off"]) == 2
    assert "reference" in _err(capsys)


@pytest.mark.parametrize("digests", [True, False])
def test_manifest_of_other_inputs_is_refused(road, capsys, digests):
    sig = Signature.load(road["m"] / "tiny.json")
    write_bins(road["bins"], 3, seed=7)  # the set regenerated (another seed) after both runs read it
    _write_manifest(road["bins"], sig, digests=digests)  # without digests: the files it lists are hashed
    assert _lc(road) == 2
    line = _err(capsys)
    assert "b000.bin" in line and "'x'" in line and "run.json" in line and "other contents" in line, line


def test_manifest_whose_digests_disagree_is_refused(road, capsys):
    man = json.loads((road["bins"] / "manifest.json").read_text())
    man["files"][1]["sha256"]["u"] = "0" * 64  # another set's manifest with these names
    fsio.write_json(road["bins"] / "manifest.json", man)
    assert _lc(road) == 2
    line = _err(capsys)
    assert "b001" in line and "'u'" in line and "manifest" in line, line


def test_manifest_listing_files_the_runs_did_not_read_is_refused(road, capsys):
    sig = Signature.load(road["m"] / "tiny.json")
    write_bins(road["bins"], 4)  # a fourth file now, listed by the manifest, read by no run
    _write_manifest(road["bins"], sig)
    assert _lc(road) == 2
    line = _err(capsys)
    assert "b003" in line and "run.json" in line, line


# --- labels out of range -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["10", "-1", "99"])
def test_labels_out_of_range_name_the_line(tmp_path, bad):
    from freeze.signature import Tensor

    sig = Signature("cls", "forward", 4, [Tensor("x", "x:0", [4, 3])], [Tensor("logits", "logits:0", [4, 10])])
    rng = np.random.RandomState(0)
    outs = {f"b{i}": [rng.randn(4, 10).astype(np.float32)] for i in range(2)}
    dirs = []
    for side in ("off", "ref"):
        d = layout.new_run_dir(tmp_path / side)
        for stem, arrs in outs.items():
            layout.write_output(os.path.join(d, layout.output_name(stem, 0)), arrs[0])
        dirs.append(d)
    files = [binfiles.file_entry(s, 4 * i, 4, 4) for i, s in enumerate(sorted(outs))]
    man = binfiles.Manifest(binfiles.new_manifest(sig, files, 8, "x"), str(tmp_path / "manifest.json"))
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(["1"] * 4 + [bad] + ["2"] * 3) + "\n")  # one-based 10 of 10 classes too
    with pytest.raises(UserError) as e:
        loss_check.check(sig, dirs[0], dirs[1], man, progress=False, top1="logits", labels=str(labels))
    assert f"{labels}:5" in str(e.value) and bad in str(e.value) and "[0, 10)" in str(e.value)


# --- the report never says passed for what it could not read ------------------------------


def test_report_names_a_truncated_loss_check_and_says_no_pass(model, tmp_path, capsys):
    from verify import report

    road = tmp_path / "road"
    (road / "model").mkdir(parents=True)
    Signature.load(model["json"]).save(road / "model" / "tiny.json")
    (road / "loss_check_fp32.json").write_text('{"passed": true, "outputs": [{"name": "y", "cos')  # cut short
    assert report.main(["--road", str(road), "-o", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "REPORT.md").read_text()
    assert "loss_check_fp32.json" in md and "Unreadable" in md
    assert "Every loss_check under the road passed" not in md and "loss_check not run" not in md
    assert "loss_check_fp32.json" in capsys.readouterr().err


# --- the last tracebacks: one line, exit 2 -------------------------------------------------


@pytest.fixture(scope="module")
def bn_model(tmp_path_factory):
    """A user's batch-norm classifier: is_training placeholder without default, Adam."""
    import user_models

    d = tmp_path_factory.mktemp("bn")
    info = user_models.build("batch_norm", str(d / "train"))
    return info, d


def _freeze_graph(info, out, *extra, outputs=None, shape=None):
    from freeze import freeze_graph

    return freeze_graph.main(
        info["source"]
        + ["--output_node_names", outputs or info["outputs"], "--input_shape", shape or info["input_shape"]]
        + ["--output", str(out), "--force", *extra]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "extra, outputs, want",
    [
        ((), None, ["'is_training'", "--input_defaults"]),  # the README's own road without its flag
        (("--input_defaults", "is_training:true"), None, ["updates", "is_training"]),
        (("--input_defaults", "is_training:false"), "logits,Adam", ["'Adam'", "training step"]),
    ],
)
def test_freeze_graph_training_leftovers_are_one_line(bn_model, capsys, extra, outputs, want):
    info, d = bn_model
    assert _freeze_graph(info, d / "m" / "mine", *extra, outputs=outputs) == 2
    line = _err(capsys)
    assert all(w in line for w in want), line
    assert not os.path.exists(d / "m" / "mine.pb")


@pytest.mark.slow
def test_freeze_graph_size_that_cannot_fit_is_refused(bn_model, capsys):
    info, d = bn_model
    rc = _freeze_graph(info, d / "m" / "big", "--input_defaults", "is_training:false", shape="images:100000000,8,8,3")
    assert rc == 2
    line = _err(capsys)
    assert "images" in line and "100000000" in line and "memory" in line, line


@pytest.fixture(scope="module")
def realnvp_ckpt(fake_cifar, tmp_path_factory):
    """One step of RealNVP on the fake CIFAR (32x32 images): a built-in model's checkpoint."""
    from conftest import REALNVP_TRAIN_ARGS

    from train import train_realnvp

    d = str(tmp_path_factory.mktemp("rn") / "run")
    assert (
        train_realnvp.main(["--data_url", fake_cifar, *REALNVP_TRAIN_ARGS, "--train_url", d, "--max_steps", "1"]) == 0
    )
    return d


@pytest.mark.slow
def test_freeze_realnvp_batch_that_cannot_fit_is_refused(realnvp_ckpt, tmp_path, capsys):
    from freeze import freeze_realnvp

    assert freeze_realnvp.main(["--ckpt", realnvp_ckpt, "--batch", "1000000000", "--out", str(tmp_path)]) == 2
    line = _err(capsys)
    assert "1000000000" in line and "memory" in line and "TiB" in line, line


@pytest.mark.slow
def test_bit_flipped_checkpoint_is_diagnosed_as_corrupt(realnvp_ckpt, tmp_path, capsys):
    from freeze import freeze_realnvp

    run = tmp_path / "run"
    shutil.copytree(realnvp_ckpt, run)
    data = next(p for p in run.iterdir() if ".data-" in p.name)
    b = np.frombuffer(data.read_bytes(), np.uint8).copy()
    b[::997] ^= 0xFF  # bits flipped all over the file: every variable's shard is hit
    data.write_bytes(b.tobytes())
    assert freeze_realnvp.main(["--ckpt", str(run), "--out", str(tmp_path / "m")]) == 2
    line = _err(capsys)
    assert "corrupt" in line and "Checksum does not match" in line and "does not match the model" not in line


@pytest.mark.slow
def test_checkpoint_backend_on_another_models_checkpoint_is_one_line(realnvp_ckpt, model, tmp_path, capsys):
    import tiny_model as tm

    from verify import reference

    tm.write(str(tmp_path), "small", batch=2)  # a RealNVP-shaped 4x4 model ...
    sig = Signature.load(tmp_path / "small.json")
    ckpt = dataclasses.replace(sig, checkpoint={"path": realnvp_ckpt, "step": 1})  # ... given a 32x32 checkpoint
    ckpt.save(tmp_path / "small.json")
    rng = np.random.RandomState(0)
    for name in ("x", "u"):
        (tmp_path / "in" / name).mkdir(parents=True)
        rng.uniform(0, 1, sig.input(name).shape).astype(np.float32).tofile(tmp_path / "in" / name / "b.bin")
    ins = f"{tmp_path}/in/x,{tmp_path}/in/u"
    assert (
        reference.main(["--signature", str(tmp_path / "small.json"), "--input", ins, "--output", str(tmp_path / "r")])
        == 2
    )
    line = _err(capsys)
    assert realnvp_ckpt in line and "[2, 4, 4, 3]" in line and "32, 32, 3]" in line, line


def test_reference_with_an_input_given_twice_is_one_line(road, capsys):
    from verify import reference

    ins = f"{road['bins']}/x,{road['bins']}/u,{road['bins']}/x"
    sig, pb = str(road["m"] / "tiny.json"), str(road["m"] / "tiny.pb")
    assert reference.main(["--signature", sig, "--model", pb, "--input", ins, "--output", str(road["tmp"] / "r2")]) == 2
    line = _err(capsys)
    assert "2 inputs" in line and "3 item" in line, line


@pytest.mark.parametrize("how", ["truncated", "another model"])
def test_compare_layers_on_a_broken_or_foreign_onnx_is_one_line(road, tmp_path, capsys, how):
    from verify import compare_layers

    bad = tmp_path / "bad.onnx"
    if how == "truncated":
        data = (road["m"] / "tiny.onnx").read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        import tf2onnx
        import tiny_model as tm

        from common.loaders import load_graph_def

        pb = tm.write(str(tmp_path), "rn", batch=2)
        proto, _ = tf2onnx.convert.from_graph_def(
            load_graph_def(pb), input_names=["x:0", "u:0"], output_names=["z:0", "logdet:0", "bpd:0"], opset=13
        )
        bad.write_bytes(proto.SerializeToString())
    rc = compare_layers.main(
        [
            "--pb",
            str(road["m"] / "tiny.pb"),
            "--onnx",
            str(bad),
            "--input",
            road["ins"],
            "--keep-dtype-out",
            str(tmp_path / "k.cfg"),
        ]
    )
    assert rc == 2
    line = _err(capsys)
    assert str(bad) in line, line
    assert not (tmp_path / "k.cfg").exists()


# --- smaller ---------------------------------------------------------------------------------


def test_run_device_npu_for_onnx_is_refused(road, capsys):
    rc = msame.main(
        [
            "--model",
            str(road["m"] / "tiny.onnx"),
            "--input",
            road["ins"],
            "--output",
            str(road["tmp"] / "o"),
            "--run-device",
            "npu",
        ]
    )
    assert rc == 2
    line = _err(capsys)
    assert "npu" in line and ".om" in line, line
    assert not (road["tmp"] / "o").exists() or not os.listdir(road["tmp"] / "o")


def test_garbage_lock_file_is_said_as_such(tmp_path, capsys):
    from train.runguard import LOCK, FolderLock

    (tmp_path / LOCK).write_bytes(b"\x00garbage{")
    with FolderLock(str(tmp_path)):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "pid None" not in err and "no pid" in err and LOCK in err, err


@pytest.mark.parametrize("flag", ["--abs-diff", "--max-diff"])
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_compare_runs_refuses_non_finite_bounds(tmp_path, capsys, flag, value):
    from verify import compare_runs

    assert compare_runs.main([str(tmp_path), f"{flag}={value}"]) == 2
    assert flag in _err(capsys)


def test_train_realnvp_refuses_an_unknown_precision_mode(tmp_path, capsys):
    from train import train_realnvp

    rc = train_realnvp.main(
        ["--data_url", str(tmp_path), "--train_url", str(tmp_path / "t"), "--precision_mode", "bogus"]
    )
    assert rc == 2
    line = _err(capsys)
    assert "bogus" in line and "force_fp16" in line, line
    assert not (tmp_path / "t").exists()


def test_sigterm_removes_the_temporary_file(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import time, sys\n"
        "from common import fsio\n"
        "from common.errors import cli, run\n"
        "@cli\n"
        "def main(argv=None):\n"
        f"    with fsio.atomic_path({str(tmp_path / 'big.pb')!r}) as tmp:\n"
        "        open(tmp, 'wb').write(b'x' * 1000)\n"
        "        print('writing', flush=True)\n"
        "        time.sleep(60)\n"
        "run(main)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    time.sleep(0.1)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert os.listdir(tmp_path) == [] and "terminated" in err


@pytest.mark.parametrize("where", ["output", "batch"])
def test_to_onnx_refuses_a_card_the_graph_contradicts(tmp_path, capsys, where):
    import tiny_model as tm

    from convert import to_onnx

    pb = tm.write(str(tmp_path), "rn", batch=2)
    sig = Signature.load(tmp_path / "rn.json")
    if where == "output":  # z is [2, 4, 4, 3] in the graph
        outs = [dataclasses.replace(sig.outputs[0], shape=[2, 4, 4, 6])] + list(sig.outputs[1:])
        sig = dataclasses.replace(sig, outputs=outs)
    else:
        grow = lambda ts: [dataclasses.replace(t, shape=[4] + t.shape[1:]) for t in ts]  # noqa: E731
        sig = dataclasses.replace(sig, batch=4, inputs=grow(sig.inputs), outputs=grow(sig.outputs))
    sig.save(tmp_path / "rn.json")
    assert to_onnx.main(["--model", pb, "--output", str(tmp_path / "rn.onnx")]) == 2
    line = _err(capsys)
    assert pb in line and "rn.json" in line and ("[2, 4, 4, 6]" in line or "[4, 4, 4, 3]" in line), line
    assert not (tmp_path / "rn.onnx").exists() and not (tmp_path / "rn.onnx.json").exists()


def test_img2bin_manifest_records_each_files_sha256(tmp_path, fake_cifar):
    from test_img2bin import _sig

    from data_tools import img2bin

    sig = _sig(tmp_path / "m.json", 3, [32, 32, 3], [32, 32, 3])  # 8 test images: 3 files, 1 padding row
    out = tmp_path / "bins"
    assert (
        img2bin.main(
            ["--dataset", "cifar10", "--split", "test", "--signature", sig, "-o", str(out), "--data-dir", fake_cifar]
        )
        == 0
    )
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["files"]) == 3
    for f in m["files"]:
        assert f["sha256"] == {k: _sha(out / k / f"{f['stem']}.bin") for k in ("x", "u")}
