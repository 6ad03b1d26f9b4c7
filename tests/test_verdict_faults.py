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
    assert "run.json" in line and "offline" in line and "tiny.pb" in line, line


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
