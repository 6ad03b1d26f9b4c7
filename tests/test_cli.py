"""The command line every tool shares (common/cli.py, common/log.py): each old spelling of a
flag parses to the same value as the canonical one, -q/-v set what the logger prints, and
TensorFlow's start-up lines stay out of the user's console."""

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from common import cli
from common.log import log
from convert import atc, atc_flags, to_onnx
from data_tools import fetch_data, img2bin, staging
from freeze import freeze_graph
from infer import msame
from verify import compare_layers, loss_check, reference, report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _same(parser, dest, spellings, value="v", base=()):
    """Every spelling of a flag parses to the same value under ``dest``."""
    got = {flag: getattr(parser().parse_args([*base, flag, value]), dest) for flag in spellings}
    assert set(got.values()) == {value}, got


@pytest.mark.parametrize("flag", cli.DATA_DIR_FLAGS)
def test_data_dir_aliases(flag):
    a = img2bin.parser().parse_args(["--dataset", "cifar10", flag, "/d"])
    assert a.data_dir == "/d"
    p = cli.ArgumentParser()
    cli.add_data_dir(p, dest="data_url", default="data")
    assert p.parse_args([flag, "/d"]).data_url == "/d" and p.parse_args([]).data_url == "data"


def test_output_and_input_aliases_per_tool():
    _same(msame.parser, "output", ["-o", "--output"], base=["--model", "m.onnx"])
    _same(msame.parser, "input", ["--input"], base=["--model", "m.onnx", "-o", "o"])
    _same(img2bin.parser, "output", ["-o", "--output"])
    _same(img2bin.parser, "input", ["-i", "--input"])
    _same(to_onnx.build_parser, "output", ["-o", "--output"], base=["--model", "m.pb"])
    for flags in (["-o", "v"], ["--output", "v"], ["--output=v"], ["-output=v"]):  # atc's --output, ATC's spellings
        assert atc_flags.split(flags, atc.WRAPPER)[1].get("output") == "v"
    base = ["--output_node_names", "y", "--input_shape", "x:1"]
    _same(freeze_graph.build_parser, "output", ["-o", "--output"], base=base)
    _same(reference.build_parser, "output", ["-o", "--output"], base=["--signature", "s", "--input", "i"])
    _same(reference.build_parser, "input", ["--input"], base=["--signature", "s", "-o", "o"])
    _same(report.build_parser, "output", ["-o", "--output"], base=["--road", "r"])
    lc = ["--signature", "s", "--offline", "o"]
    _same(loss_check.build_parser, "inputs", ["--input", "--inputs"], base=lc)
    cl = ["--pb", "p", "--onnx", "o", "--keep-dtype-out", "k"]
    _same(compare_layers.build_parser, "input", ["--input"], base=cl)


def test_trainer_aliases_keep_the_ascend_names():
    from train import train_realnvp, train_rebar

    for flag in cli.DATA_DIR_FLAGS:
        assert train_realnvp.parser().parse_args([flag, "/d"]).data_url == "/d"
        assert train_rebar.parse_args([flag, "/d"]).data_path == "/d"
    for flag in ("--train_url", "-o", "--output"):
        assert train_realnvp.parser().parse_args([flag, "runs/x"]).train_url == "runs/x"
    for flag in ("--working_dir", "-o", "--output"):
        assert train_rebar.parse_args([flag, "runs/x"]).working_dir == "runs/x"


def test_old_flags_of_the_mirrored_tools_still_parse():
    a = msame.parser().parse_args(
        "--model m --input a,b --output o --outfmt TXT --loop 3 --device 1 --debug true --dymBatch 2 "
        "--dymShape x:1 --output_node_names y".split()
    )
    assert (a.input, a.output, a.outfmt, a.loop, a.device, a.dymBatch, a.output_node_names) == (
        "a,b",
        "o",
        "TXT",
        "3",
        "1",
        "2",
        "y",
    )
    a = img2bin.parser().parse_args("-i p -w 4 -h 5 -f RGB -a NHWC -c [1,1,1] -o b".split())
    assert (a.input, a.width, a.height, a.output_image_format, a.output_format, a.output) == (
        "p",
        4,
        5,
        "RGB",
        "NHWC",
        "b",
    )
    own, flags = atc_flags.split(
        "--model m.pb --output m --soc_version Ascend310 --input_format NHWC --keep_dtype k.cfg "
        "--dynamic_batch_size 1,8 --log info --out_nodes=y:0 --dry-run".split(),
        atc.WRAPPER,
    )
    assert [
        flags.get(k) for k in ("output", "soc_version", "keep_dtype", "dynamic_batch_size", "log", "out_nodes")
    ] == [
        "m",
        "Ascend310",
        "k.cfg",
        "1,8",
        "info",
        "y:0",
    ]
    assert own == ["--dry-run"] and flags.tokens[-1] == "--out_nodes=y:0"  # passed to atc as typed


def test_usage_error_is_one_line(capsys):
    assert msame.main(["--model", "m.onnx"]) == 2  # --output missing
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--output" in err and err.count("\n") == 1


def _stale_run_folder(out):
    """A staging folder left by a process that died (pid beyond any pid_max): img2bin
    removes it and says so on its logger at INFO."""
    os.makedirs(os.path.join(out, f"{staging.TMP_PREFIX}4194999-x"))


def test_quiet_hides_info_and_verbose_adds_debug(tmp_path, capsys):
    import cv2

    src = tmp_path / "pics"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.zeros((4, 4, 3), np.uint8))
    args = ["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "--force"]
    for flag in (None, "-q", "-v"):
        out = str(tmp_path / f"out{flag}")
        _stale_run_folder(out)
        assert img2bin.main(args + ["-o", out] + ([flag] if flag else [])) == 0
        o, err = capsys.readouterr()
        assert "bin file generated successfully" in o  # the result stays on stdout
        assert ("left by a run that died" in err) == (flag != "-q"), err
        assert ("img2bin.py: " in err and "output=" in err) == (flag == "-v"), err  # the parsed flags
    assert img2bin.main(args + ["-o", str(tmp_path / "o"), "-q", "-v"]) == 2  # one or the other
    assert "not allowed with" in capsys.readouterr().err


def test_each_run_starts_at_info(tmp_path, capsys):
    """-q in one call does not leak into the next one in the same process (tests, ascend-road)."""
    args = ["--data_dir", str(tmp_path / "d"), "--from", str(tmp_path / "missing")]
    assert fetch_data.main(["-q", *args]) == 2
    assert log.getEffectiveLevel() == logging.WARNING
    assert fetch_data.main(args) == 2
    assert log.getEffectiveLevel() == logging.INFO
    assert capsys.readouterr().err.count("--from path does not exist") == 2


def test_logger_writes_to_the_current_stderr(capsys):
    from common import log as logs

    logs.setup(logging.DEBUG)
    log.debug("dbg line")
    log.info("info line")
    logs.setup(logging.WARNING)
    log.info("hidden line")
    log.warning("warn line")
    logs.setup()
    assert capsys.readouterr() == ("", "dbg line\ninfo line\nwarn line\n")


def test_msame_runs_from_a_checkout_without_the_installed_package(tmp_path):
    """`python -S` sees no site-packages (no editable install): the shared sys.path idiom
    at the top of the tool is what finds the repo."""
    r = subprocess.run(
        [sys.executable, "-S", os.path.join(ROOT, "infer", "msame.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0 and "--output" in r.stdout, r.stderr


# --- TensorFlow's C++ start-up lines ---------------------------------------------------------

STARTUP = ("oneDNN custom operations are on", "All log messages before absl::InitializeLog() is called")


def _tool(tmp_path, env_level, *cmd):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if env_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = env_level
    return subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def test_tensorflow_startup_lines_are_silenced(tmp_path):
    # a trainer's --help imports TensorFlow (common.tfcompat) before parsing
    r = _tool(tmp_path, None, "train/train_rebar.py", "--help")
    assert r.returncode == 0 and "--data_dir" in r.stdout, r.stderr
    assert not any(s in r.stderr for s in STARTUP), r.stderr
    # freeze_graph imports TensorFlow, then fails on the missing source: the one error line only
    missing = str(tmp_path / "missing.pb")
    r = _tool(
        tmp_path,
        None,
        "freeze/freeze_graph.py",
        "--input_graph",
        missing,
        "--output_node_names",
        "y",
        "--input_shape",
        "x:1",
        "-o",
        str(tmp_path / "m"),
    )
    assert r.returncode == 2 and r.stderr == f"error: {missing}: frozen graph not found\n", r.stderr


def test_tensorflow_startup_lines_shown_when_the_user_asks(tmp_path):
    r = _tool(tmp_path, "0", "train/train_rebar.py", "--help")
    assert r.returncode == 0, r.stderr
    if not any(s in r.stderr for s in STARTUP):
        pytest.skip("this TensorFlow build prints no start-up lines on this host")
    assert "oneDNN custom operations are on" in r.stderr or "InitializeLog" in r.stderr
