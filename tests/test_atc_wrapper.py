"""convert/atc.py and the shell wrappers, with a stand-in `atc` first on PATH."""

import dataclasses
import json
import os
import shlex
import subprocess
import sys

import pytest
import tiny_model as tiny

from convert import atc
from freeze.signature import Signature

STANDIN = r"""#!{py}
import json, os, sys
open(os.environ["ATC_ARGV"], "w").write(json.dumps(sys.argv[1:]))
print("ATC start working now, please wait for a moment.")
mode = os.environ.get("ATC_MODE", "ok")
args = sys.argv[1:]
out = [a.split("=", 1)[1] if "=" in a else args[i + 1] for i, a in enumerate(args) if a.split("=")[0] == "--output"][-1]
if mode == "fail":
    print("ATC run failed, Please check the detail log, Try 'atc --help' for more information")
    print("E10016: Opname [x] specified in [--input_shape] is not found in the model")
    sys.exit(255)
if mode != "noom":
    open(out + ".om", "wb").write(b"om")
print("ATC run success, welcome to the next use.")
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    pb = tiny.write(str(tmp_path / "m"), "realnvp", batch=2)
    # tiny.write's card says model "realnvp" with a builtin source, which makes the road apply
    # the real RealNVP spec (config keys tiny lacks): mark it what it is, a user's frozen .pb
    card = tmp_path / "m" / "realnvp.json"
    dataclasses.replace(Signature.load(str(card)), source={"kind": "pb"}).save(str(card))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "atc").write_text(STANDIN.format(py=sys.executable))
    (bindir / "atc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ATC_ARGV", str(tmp_path / "argv.json"))
    return pb, tmp_path


def test_exact_argv_and_success(env, capsys):
    """The line as typed goes to atc unchanged; the road adds only what it leaves out and the
    signature knows (ATC needs --framework, --output, --soc_version; the inputs and outputs),
    never --precision_mode: atc's own default (force_fp16) holds."""
    pb, tmp = env
    out = str(tmp / "m" / "realnvp")
    typed = ["--model", pb, "--soc_version", "Ascend310P3", "--op_select_implmode=high_precision"]
    assert atc.main(typed) == 0
    argv = json.loads((tmp / "argv.json").read_text())
    assert argv == typed + [
        "--framework=3",
        f"--output={out}",
        "--input_shape=x:2,4,4,3;u:2,4,4,3",
        "--out_nodes=z:0;logdet:0;bpd:0",
        "--input_format=NHWC",
    ]
    pb_card = (tmp / "m" / "realnvp.json").read_bytes()
    sig = Signature.load(out + ".om.json")  # the om's own card; the pb's card is the pb's
    assert sig.artifact["file"] == "realnvp.om" and sig.artifact["atc_argv"][1:] == argv
    assert sig.artifact["source"] == "realnvp.pb" and sig.artifact["kind"] == "om"
    assert Signature.load(out + ".json").artifact == {"file": "realnvp.pb", "kind": "pb"}
    assert Signature.load(out + ".om.json").precision_mode == "force_fp16"  # atc's default
    assert atc.main(["--model", pb]) == 2  # the .om exists now
    assert "realnvp.om: already exists" in capsys.readouterr().err
    assert (tmp / "m" / "realnvp.om").read_bytes() == b"om" and (tmp / "m" / "realnvp.json").read_bytes() == pb_card


def test_fp16_om_gets_its_own_card_and_dynamic_batch(env, monkeypatch):
    pb, tmp = env
    out = str(tmp / "m" / "realnvp_fp16")
    monkeypatch.chdir(tmp)
    (tmp / "k.cfg").write_text("scale_exp\n")
    assert (
        atc.main(
            [
                "--model",
                pb,
                "--output",
                out,
                "--precision_mode",
                "force_fp16",
                "--dynamic_batch_size",
                "1,2",
                "--keep_dtype",
                "k.cfg",
            ]
        )
        == 0
    )
    argv = json.loads((tmp / "argv.json").read_text())
    assert "--input_shape=x:-1,4,4,3;u:-1,4,4,3" in argv and argv[argv.index("--dynamic_batch_size") + 1] == "1,2"
    assert argv[argv.index("--keep_dtype") + 1] == "k.cfg"  # as typed
    card = Signature.load(out + ".json")
    assert card.precision_mode == "force_fp16"
    assert card.artifact["dynamic"] == {
        "flag": "dynamic_batch_size",
        "input_shape": "x:-1,4,4,3;u:-1,4,4,3",
        "gears": [[1], [2]],
    }
    assert Signature.load(str(tmp / "m" / "realnvp.json")).precision_mode == "force_fp32"  # the pb's


def test_sibling_om_is_not_this_output(env, capsys, monkeypatch):
    """<output>.om exactly, never a glob: realnvp.fp16.om is not realnvp.om."""
    pb, tmp = env
    m = tmp / "m"
    assert atc.main(["--model", pb, "--output", str(m / "realnvp.fp16"), "--precision_mode", "force_fp16"]) == 0
    assert (m / "realnvp.fp16.om").exists()
    capsys.readouterr()
    monkeypatch.setenv("ATC_MODE", "noom")  # atc says success but writes nothing: the sibling is no proof
    assert atc.main(["--model", pb, "--output", str(m / "realnvp")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: ") and f"wrote no {m / 'realnvp'}.om" in last
    assert not (m / "realnvp.om").exists() and not (m / "realnvp.om.json").exists()
    monkeypatch.setenv("ATC_MODE", "ok")
    assert atc.main(["--model", pb, "--output", str(m / "realnvp")]) == 0
    assert "already exists" not in capsys.readouterr().err
    assert Signature.load(str(m / "realnvp.om.json")).artifact["file"] == "realnvp.om"
    assert Signature.load(str(m / "realnvp.fp16.json")).artifact["file"] == "realnvp.fp16.om"


def test_forced_rebuild_needs_a_new_om(env, capsys, monkeypatch):
    pb, tmp = env
    assert atc.main(["--model", pb]) == 0
    monkeypatch.setenv("ATC_MODE", "noom")  # the old .om is still there: not this run's
    assert atc.main(["--model", pb, "--force"]) == 2
    assert "the old one is unchanged" in capsys.readouterr().err


@pytest.mark.parametrize("layouts,want", [(("NCHW", "ND"), "NCHW"), (("ND", "ND"), "ND"), (("NHWC", "NCHW"), None)])
def test_input_format_from_signature_layouts(env, capsys, layouts, want):
    pb, tmp = env
    card = tmp / "m" / "realnvp.json"
    sig = Signature.load(str(card))
    inputs = tuple(dataclasses.replace(t, layout=lay) for t, lay in zip(sig.inputs, layouts, strict=True))
    dataclasses.replace(sig, inputs=inputs).save(str(card))
    rc = atc.main(["--model", pb, "--dry-run"])
    out, err = capsys.readouterr()
    if want:
        assert rc == 0 and f"--input_format={want}" in out
    else:
        assert rc == 2 and "--input_format" in err and "NCHW" in err and "NHWC" in err
        assert atc.main(["--model", pb, "--dry-run", "--input_format", "ND"]) == 0
        assert "--input_format ND" in capsys.readouterr().out  # as typed


def test_bogus_precision_mode_is_one_line(env, capsys):
    pb, tmp = env
    assert atc.main(["--model", pb, "--precision_mode", "bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "bogus" in err and "force_fp32" in err and err.count("\n") == 1
    assert not (tmp / "argv.json").exists() and not (tmp / "m" / "realnvp.om").exists()


@pytest.mark.parametrize("mode,msg", [("fail", "E10016: Opname"), ("noom", "wrote no")])
def test_failures(env, capsys, monkeypatch, mode, msg):
    pb, tmp = env
    monkeypatch.setenv("ATC_MODE", mode)
    pb_card = (tmp / "m" / "realnvp.json").read_bytes()
    assert atc.main(["--model", pb]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # the command is echoed first
    assert last.startswith("error: ") and msg in last
    assert json.loads((tmp / "argv.json").read_text())[:2] == ["--model", pb]  # atc did run
    assert not (tmp / "m" / "realnvp.om").exists() and not (tmp / "m" / "realnvp.om.json").exists()
    assert (tmp / "m" / "realnvp.json").read_bytes() == pb_card


def test_dry_run_prints_quoted_command(env, capsys):
    pb, tmp = env
    assert atc.main(["--model", pb, "--dry-run"]) == 0
    cmd = capsys.readouterr().out.strip()
    assert "'--input_shape=x:2,4,4,3;u:2,4,4,3'" in cmd
    assert shlex.split(cmd)[1:4] == ["--model", pb, "--framework=3"]
    assert not (tmp / "argv.json").exists()


def test_fallback_builds_portable_model_when_atc_absent(env, monkeypatch, capsys):
    pb, tmp = env
    monkeypatch.setenv("PATH", str(tmp / "empty"))
    assert atc.main(["--model", pb, "--output", str(tmp / "m" / "realnvp"), "--precision_mode", "force_fp16"]) == 0
    assert "atc not found on PATH" in capsys.readouterr().err
    assert Signature.load(str(tmp / "m" / "realnvp.force_fp16.json")).precision_mode == "force_fp16"
    onnx_path = tmp / "m" / "realnvp.force_fp16.onnx"
    assert onnx_path.exists()
    # again: up to date (make's rule), nothing rewritten; once the .pb is newer: refused without --force
    before = onnx_path.stat().st_mtime_ns
    args = ["--model", pb, "--output", str(tmp / "m" / "realnvp"), "--precision_mode", "force_fp16"]
    assert atc.main(args) == 0 and "up to date" in capsys.readouterr().err
    assert onnx_path.stat().st_mtime_ns == before
    pb_card = (tmp / "m" / "realnvp.json").read_bytes()
    # an fp32 portable model beside the pb gets its own card (the pb's is never rewritten)
    fp32 = ["--model", pb, "--output", str(tmp / "m" / "realnvp"), "--precision_mode", "force_fp32"]
    assert atc.main(fp32) == 0
    assert Signature.load(str(tmp / "m" / "realnvp.onnx.json")).artifact["source"] == "realnvp.pb"
    assert (tmp / "m" / "realnvp.json").read_bytes() == pb_card
    assert atc.main(fp32) == 0
    assert "up to date" in capsys.readouterr().err
    os.utime(pb, (onnx_path.stat().st_mtime + 10,) * 2)
    assert atc.main(args) == 2 and "already exists" in capsys.readouterr().err
    assert atc.main(args + ["--force"]) == 0 and onnx_path.stat().st_mtime_ns != before


def test_shell_wrapper(env, repo_root, capsys):
    pb, tmp = env
    r = subprocess.run(
        ["bash", os.path.join(repo_root, "convert", "atc_rebar.sh"), "--model", pb, "--dry-run"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
        cwd=str(tmp),
    )
    assert r.returncode == 0, r.stderr
    assert "--out_nodes=z:0;logdet:0;bpd:0" in r.stdout
    # the preset's default model is the demo's, whether `make demo` has run or not
    r = subprocess.run(
        ["bash", os.path.join(repo_root, "convert", "atc_rebar.sh"), "--dry-run"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
        cwd=str(tmp),
    )
    assert os.path.join("runs", "demo", "rebar", "model", "rebar.pb") in r.stdout + r.stderr
    # and a default model that does not exist says how to make it
    assert atc.main(["--default-model", "runs/no-such-demo/model/rebar.pb"]) == 2
    err = capsys.readouterr().err
    assert "make demo" in err and "no-such-demo" in err
    # the generic wrapper: no model kind, no default model
    r = subprocess.run(
        ["bash", os.path.join(repo_root, "convert", "atc.sh"), "--model", pb, "--dry-run"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
        cwd=str(tmp),
    )
    assert r.returncode == 0 and "--out_nodes=z:0;logdet:0;bpd:0" in r.stdout, r.stderr
    r = subprocess.run(
        ["bash", os.path.join(repo_root, "convert", "atc.sh")],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable),
        cwd=str(tmp),
    )
    assert r.returncode == 2 and r.stderr.startswith("error: --model is required") and r.stderr.count("\n") == 1


def test_om_and_onnx_of_one_stem_keep_their_own_cards(env, monkeypatch, capsys):
    """m/realnvp.force_fp16.om and m/realnvp.force_fp16.onnx would share m/realnvp.force_fp16.json:
    the second artifact gets <file>.json, and neither stage rewrites the other's card."""
    pb, tmp = env
    m = tmp / "m"
    om_args = ["--model", pb, "--output", str(m / "realnvp.force_fp16"), "--precision_mode", "force_fp16"]
    assert atc.main(om_args) == 0
    om_card = (m / "realnvp.force_fp16.json").read_bytes()
    monkeypatch.setenv("PATH", str(tmp / "empty"))  # no atc: the portable fp16 model, same stem
    args = ["--model", pb, "--output", str(m / "realnvp"), "--precision_mode", "force_fp16"]
    assert atc.main(args) == 0
    card = Signature.load(str(m / "realnvp.force_fp16.onnx.json"))
    assert card.artifact["file"] == "realnvp.force_fp16.onnx" and card.artifact["source"] == "realnvp.pb"
    assert (m / "realnvp.force_fp16.json").read_bytes() == om_card
    capsys.readouterr()
    assert atc.main(args) == 0 and "up to date" in capsys.readouterr().err  # its own card is read
