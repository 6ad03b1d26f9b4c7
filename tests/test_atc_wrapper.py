"""convert/atc.py and the shell wrappers, with a stand-in `atc` first on PATH."""
import json
import os
import shlex
import subprocess
import sys

import pytest

from convert import atc, tiny
from freeze.signature import Signature

STANDIN = r'''#!{py}
import json, os, sys
open(os.environ["ATC_ARGV"], "w").write(json.dumps(sys.argv[1:]))
print("ATC start working now, please wait for a moment.")
mode = os.environ.get("ATC_MODE", "ok")
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--output=")][0]
if mode == "fail":
    print("ATC run failed, Please check the detail log, Try 'atc --help' for more information")
    print("E10016: Opname [x] specified in [--input_shape] is not found in the model")
    sys.exit(255)
if mode != "noom":
    open(out + ".om", "wb").write(b"om")
print("ATC run success, welcome to the next use.")
'''


@pytest.fixture
def env(tmp_path, monkeypatch):
    pb = tiny.write(str(tmp_path / "m"), "realnvp", batch=2)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "atc").write_text(STANDIN.format(py=sys.executable))
    (bindir / "atc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ATC_ARGV", str(tmp_path / "argv.json"))
    return pb, tmp_path


def test_exact_argv_and_success(env, capsys):
    pb, tmp = env
    out = str(tmp / "m" / "realnvp")
    assert atc.main(["--model", pb, "--soc_version", "Ascend310P3", "--op_select_implmode=high_precision"]) == 0
    argv = json.loads((tmp / "argv.json").read_text())
    assert argv == [f"--model={pb}", "--framework=3", f"--output={out}", "--soc_version=Ascend310P3",
                    "--input_shape=x:2,4,4,3;u:2,4,4,3", "--out_nodes=z:0;logdet:0;bpd:0",
                    "--input_format=NHWC", "--output_type=FP32", "--precision_mode=force_fp32",
                    "--log=error", "--op_select_implmode=high_precision"]
    sig = Signature.load(out + ".json")  # the pb's card records the om
    assert sig.artifact["om"]["file"] == "realnvp.om" and sig.artifact["om"]["atc_argv"][1:] == argv
    assert atc.main(["--model", pb]) == 2  # the .om exists now
    assert "already exists" in capsys.readouterr().err


def test_fp16_om_gets_its_own_card_and_dynamic_batch(env):
    pb, tmp = env
    out = str(tmp / "m" / "realnvp_fp16")
    assert atc.main(["--model", pb, "--output", out, "--precision_mode", "force_fp16",
                     "--dynamic_batch_size", "1,2", "--keep_dtype", "k.cfg"]) == 0
    argv = json.loads((tmp / "argv.json").read_text())
    assert "--input_shape=x:-1,4,4,3;u:-1,4,4,3" in argv and "--dynamic_batch_size=1,2" in argv
    assert "--keep_dtype=k.cfg" in argv
    assert Signature.load(out + ".json").precision_mode == "force_fp16"


@pytest.mark.parametrize("mode,msg", [("fail", "E10016: Opname"), ("noom", "wrote no")])
def test_failures(env, capsys, monkeypatch, mode, msg):
    pb, tmp = env
    monkeypatch.setenv("ATC_MODE", mode)
    assert atc.main(["--model", pb]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # the command is echoed first
    assert last.startswith("error: ") and msg in last
    assert not (tmp / "m" / "realnvp.om").exists() or mode == "fail"


def test_dry_run_prints_quoted_command(env, capsys):
    pb, tmp = env
    assert atc.main(["--model", pb, "--dry-run"]) == 0
    cmd = capsys.readouterr().out.strip()
    assert "'--input_shape=x:2,4,4,3;u:2,4,4,3'" in cmd
    assert shlex.split(cmd)[1:3] == [f"--model={pb}", "--framework=3"]
    assert not (tmp / "argv.json").exists()


def test_fallback_builds_portable_model_when_atc_absent(env, monkeypatch, capsys):
    pb, tmp = env
    monkeypatch.setenv("PATH", str(tmp / "empty"))
    assert atc.main(["--model", pb, "--output", str(tmp / "m" / "realnvp"), "--precision_mode",
                     "force_fp16"]) == 0
    assert "atc not found on PATH" in capsys.readouterr().err
    assert Signature.load(str(tmp / "m" / "realnvp.fp16.json")).precision_mode == "force_fp16"
    onnx_path = tmp / "m" / "realnvp.fp16.onnx"
    assert onnx_path.exists()
    # again: up to date (make's rule), nothing rewritten; once the .pb is newer: refused without --force
    before = onnx_path.stat().st_mtime_ns
    args = ["--model", pb, "--output", str(tmp / "m" / "realnvp"), "--precision_mode", "force_fp16"]
    assert atc.main(args) == 0 and "up to date" in capsys.readouterr().err
    assert onnx_path.stat().st_mtime_ns == before
    os.utime(pb, (onnx_path.stat().st_mtime + 10,) * 2)
    assert atc.main(args) == 2 and "already exists" in capsys.readouterr().err
    assert atc.main(args + ["--force"]) == 0 and onnx_path.stat().st_mtime_ns != before


def test_shell_wrapper(env, repo_root):
    pb, tmp = env
    r = subprocess.run(["bash", os.path.join(repo_root, "convert", "atc_rebar.sh"), "--model", pb, "--dry-run"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable), cwd=str(tmp))
    assert r.returncode == 0, r.stderr
    assert "--out_nodes=z:0;logdet:0;bpd:0" in r.stdout
    r = subprocess.run(["bash", os.path.join(repo_root, "convert", "atc_rebar.sh")], capture_output=True,
                       text=True, env=dict(os.environ, PYTHON=sys.executable), cwd=str(tmp))
    if not os.path.exists(os.path.join(repo_root, atc.DEMO["rebar"])):
        assert r.returncode == 2 and "make demo" in r.stderr
