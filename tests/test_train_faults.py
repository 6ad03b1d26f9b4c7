"""Interrupted training resumes exactly; one trainer per folder; relocatable folders; broken
inputs are one-line errors.

The interrupt tests send a real SIGINT to a trainer subprocess once it has logged a step, then
resume it with --load_params 1 and compare every variable (parameters, Adam moments, global
step) and metrics.jsonl with an uninterrupted run (--deterministic; equal to float rounding).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common.tfcompat import tf
from train import runguard, runinfo, train_rebar
from train import train_realnvp as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = ("seconds", "steps_per_sec")


def _variables(d):
    r = tf.train.load_checkpoint(runinfo.latest(d))
    return {k: r.get_tensor(k) for k in r.get_variable_to_shape_map()}


def _records(d):
    with open(os.path.join(d, "metrics.jsonl")) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def _interrupt(cmd, timeout=240):
    """Run cmd, SIGINT it after its first 'step N' line; (exit status, stderr, the step it stopped at)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen(
        [sys.executable] + cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    end = time.time() + timeout
    for line in p.stdout:
        if line.startswith("step "):
            p.send_signal(signal.SIGINT)
            break
        assert time.time() < end, "no step line"
    out, err = p.communicate(timeout=timeout)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err[-2000:]
    step = int(lines[0].split("interrupted at step ")[1].split(";")[0])
    return p.returncode, lines[0], step


def _same_variables(a, b):
    """Bit for bit: with --deterministic, runs made by the same kind of process (here all
    subprocesses, or all in pytest's process) resume exactly. (The pytest process rounds
    differently from a fresh one, and Adam turns the rounding-level gradients of the
    normalised inner gains into lr-sized steps, so the two kinds are never mixed.)"""
    va, vb = _variables(a), _variables(b)
    assert va.keys() == vb.keys() and "global_step" in va
    assert int(va["global_step"]) == int(vb["global_step"])
    for k in va:
        np.testing.assert_array_equal(vb[k], va[k], err_msg=k)


def _same_records(a, b):
    ra, rb = _records(a), _records(b)
    assert [(r["kind"], r["step"]) for r in ra] == [(r["kind"], r["step"]) for r in rb]
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], float):
                assert x[k] == pytest.approx(y[k], rel=1e-5), (k, x, y)
            elif isinstance(x[k], list):
                assert x[k] == pytest.approx(y[k], rel=1e-5), (k, x, y)
            else:
                assert x[k] == y[k], (k, x, y)


def test_realnvp_sigint_saves_and_resumes_exactly(realnvp_runs, tmp_path):
    """SIGINT mid-run: one line naming the checkpoint, exit 130; resuming to step 6 gives the
    uninterrupted 6-step run ("full", same flags) bit for bit, metrics.jsonl included."""
    d = str(tmp_path / "r")
    cmd = ["train/train_realnvp.py"] + realnvp_runs["args"] + ["--train_url", d, "--max_steps", "6"]
    rc, line, k = _interrupt(cmd)
    assert rc == 130 and line.startswith("error: SIGINT: interrupted at step") and 1 <= k < 6, line
    assert f"model.ckpt-{k}" in line and os.path.isfile(os.path.join(d, f"model.ckpt-{k}.index"))
    assert not os.path.exists(os.path.join(d, runguard.LOCK))  # the lock goes with the process
    assert max(r["step"] for r in _records(d)) == k
    # the resumed run and the uninterrupted one as processes like the interrupted one: the
    # pytest process differs in ways (memory alignment, threads) that change float rounding,
    # and Adam turns the rounding-level gradients of the normalised inner gains into steps
    # of size lr, so runs from different kinds of process are not comparable to rounding
    ref = str(tmp_path / "ref")
    for argv in (
        ["--train_url", d, "--max_steps", "6", "--load_params", "1"],
        ["--train_url", ref, "--max_steps", "6"],
    ):
        r = subprocess.run(
            [sys.executable] + cmd[:1] + realnvp_runs["args"] + argv, cwd=ROOT, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr[-2000:]
    _same_variables(ref, d)
    # the whole record, epoch means included (the running sum travels in config.json)
    _same_records(d, ref)


def test_rebar_sigint_saves_and_resumes_exactly(mnist_dir, tmp_path):
    hp = "model=SBNDynamicRebar,n_layer=1,n_hidden=20,learning_rate=0.001,batch_size=8"
    common = [
        "--data_path",
        mnist_dir,
        "--hparams",
        hp,
        "--log_every",
        "1",
        "--eval_limit",
        "20",
        "--eval_samples",
        "10",
        "--eval_freq",
        "0",
        "--deterministic",
        "--seed",
        "2",
    ]
    d, ref = str(tmp_path / "r"), str(tmp_path / "ref")
    rc, line, k = _interrupt(["train/train_rebar.py"] + common + ["--working_dir", d, "--steps", "100000"])
    assert rc == 130 and "checkpoint saved" in line and f"model.ckpt-{k}" in line, line
    n = k + 7
    assert (
        train_rebar.main(common + ["--working_dir", d, "--steps", str(n), "--load_params", "1", "--log_every", "1"])
        == 0
    )
    assert train_rebar.main(common + ["--working_dir", ref, "--steps", str(n)]) == 0
    _same_variables(ref, d)
    _same_records(d, ref)


def test_second_trainer_on_a_folder_is_refused_and_stale_lock_taken(realnvp_runs, tmp_path, capsys):
    d = str(tmp_path / "r")
    os.makedirs(d)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with open(os.path.join(d, runguard.LOCK), "w") as f:
            json.dump({"pid": live.pid, "host": os.uname().nodename}, f)
        capsys.readouterr()
        assert T.main(realnvp_runs["args"] + ["--train_url", d, "--max_steps", "2"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {live.pid}" in err[0] and runguard.LOCK in err[0]
        assert os.listdir(d) == [runguard.LOCK]  # refused before writing anything
    finally:
        live.kill()
        live.wait()
    # the owner is gone: the lock is stale, taken over with one line, released at the end
    with runguard.FolderLock(d) as lock:
        assert json.load(open(lock.path))["pid"] == os.getpid()
    assert f"stale lock of pid {live.pid}" in capsys.readouterr().err
    assert not os.path.exists(os.path.join(d, runguard.LOCK))


def test_relocated_folder_resolves_its_own_checkpoints(realnvp_runs, tmp_path, capsys):
    src = str(tmp_path / "orig")
    shutil.copytree(realnvp_runs["full"], src)
    index = open(os.path.join(src, "checkpoint")).read()
    assert '"model.ckpt-6"' in index and tmp_path.name not in index  # written relative to the folder
    # an old-style index with absolute paths into the original folder
    with open(os.path.join(src, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{src}/model.ckpt-6"\nall_model_checkpoint_paths: "{src}/model.ckpt-6"\n')
    moved = str(tmp_path / "moved")
    shutil.copytree(src, moved)
    ckpt, info = runinfo.resolve(moved)  # the original still exists: the copy's files, not its
    assert ckpt == os.path.join(moved, "model.ckpt-6") and info["model"] == "realnvp"
    shutil.rmtree(src)
    assert runinfo.resolve(moved)[0] == os.path.join(moved, "model.ckpt-6")
    from freeze import core  # freeze restores the moved folder's checkpoint

    assert core.Restored(moved, 1).ckpt == os.path.join(moved, "model.ckpt-6")
    # nothing resolves: one line naming the folder and the .index files there
    for f in os.listdir(moved):
        if f.startswith("model.ckpt-6"):
            os.remove(os.path.join(moved, f))
    with pytest.raises(runguard.UserError) as e:
        runinfo.resolve(moved)
    msg = str(e.value)
    assert "\n" not in msg and moved in msg and "model.ckpt-5.index" in msg and "model.ckpt-6" in msg


def test_broken_inputs_are_one_line_errors(realnvp_runs, tmp_path, capsys):
    def err_of(d, *extra):
        capsys.readouterr()
        rc = T.main(realnvp_runs["args"] + ["--train_url", d, "--max_steps", "8", "--load_params", "1", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    def fresh(name):
        d = str(tmp_path / name)
        shutil.copytree(realnvp_runs["full"], d)
        return d

    d = fresh("trunc")
    data = [f for f in os.listdir(d) if f.startswith("model.ckpt-6.data")][0]
    with open(os.path.join(d, data), "r+b") as f:
        f.truncate(100)
    assert "model.ckpt-6" in err_of(d) and "unreadable checkpoint" in err_of(d)
    d = fresh("metrics")
    with open(os.path.join(d, "metrics.jsonl"), "a") as f:
        f.write('{"step": 7, "kind": "tr')
    assert "metrics.jsonl: line" in err_of(d)
    d = fresh("config")
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write("{not json")
    assert "config.json" in err_of(d) and "not valid JSON" in err_of(d)
    assert "--max_steps must be >= 0, got -5" in err_of(fresh("neg"), "--max_steps", "-5")
    assert "--seed must be >= 0" in err_of(fresh("seed"), "--seed", "-1")
    capsys.readouterr()
    assert train_rebar.main(["--working_dir", str(tmp_path / "rb"), "--seed", "-3"]) == 2
    assert "--seed must be >= 0, got -3" in capsys.readouterr().err
