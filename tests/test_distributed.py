"""Data-parallel training on loopback clusters (2 worker processes, tf.train.Server + collective
all-reduce), the launcher, cluster errors, and the Ascend (HCCL) graph with npu_bridge stubbed.

Each cluster run costs two processes' graph construction, so the runs are few and tiny:
one RealNVP cluster trained 3 steps then resumed to 6 (the whole cluster, --load_params 1) is
compared with one process at the doubled batch; one REBAR cluster likewise without resume.
The workers start from different graph seeds, so agreement also proves the chief's broadcast.
"""

import json
import os
import socket
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from conftest import REALNVP_TRAIN_ARGS

from common.tfcompat import tf
from train import distributed, launch, runguard, runinfo
from train import train_realnvp as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def _without(args, *flags):
    """``args`` without each of ``flags`` and the value after it."""
    out, skip = [], False
    for a in args:
        if skip or a in flags:
            skip = not skip and a in flags
            continue
        out.append(a)
    return out


# conftest's run without dropout (its masks are drawn per worker and tower); batch per test
RN_ARGS = _without(REALNVP_TRAIN_ARGS, "--batch_size", "--dropout_p")


# The equivalence runs (the cluster and the one process at double batch) are all fresh
# processes with oneDNN's kernels off: oneDNN picks batch-size-dependent blocking, so batch 4
# in one process and batch 2 in each of two workers round differently in the last bits, and
# Adam's normalised update turns such differences on near-zero gradients into lr-sized steps
# (seen: 4.6e-4 relative on one weight). With TensorFlow's Eigen kernels the two agree to
# float32 reduction order, which is what the data-parallel equivalence claims.
ENV = dict(os.environ, PYTHONUNBUFFERED="1", TF_ENABLE_ONEDNN_OPTS="0")


def _launch(cmd, timeout=600, nproc=2):
    launcher = [PY, "train/launch.py", "--nproc", str(nproc), "--"] if nproc > 1 else []
    p = subprocess.run(launcher + [PY] + cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=ENV)
    return p.returncode, p.stdout, p.stderr


def _variables(d):
    r = tf.train.load_checkpoint(runinfo.latest(d))
    return {k: r.get_tensor(k) for k in r.get_variable_to_shape_map()}


def _close(a, b, rtol=1e-4):
    """Every variable the same up to float32 reduction order (amplified a little by Adam)."""
    va, vb = _variables(a), _variables(b)
    assert va.keys() == vb.keys() and int(va["global_step"]) == int(vb["global_step"])
    for k in va:
        scale = max(np.abs(vb[k]).max(), 1e-3) if np.size(vb[k]) else 1
        np.testing.assert_allclose(va[k], vb[k], rtol=rtol, atol=1e-4 * scale, err_msg=k)
    return va


@pytest.fixture(scope="module")
def realnvp_cluster(fake_cifar, tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    two, one = str(d / "two"), str(d / "one")
    common = [
        "train/train_realnvp.py",
        "--data_url",
        fake_cifar,
        "--train_url",
        two,
        "--batch_size",
        "2",
        "--peer_timeout",
        "120",
    ] + RN_ARGS
    first = _launch(common + ["--max_steps", "3"])
    resumed = _launch(common + ["--max_steps", "6", "--load_params", "1"])
    single = _launch(
        [
            "train/train_realnvp.py",
            "--data_url",
            fake_cifar,
            "--train_url",
            one,
            "--batch_size",
            "4",
            "--max_steps",
            "6",
        ]
        + RN_ARGS,
        nproc=1,
    )
    assert single[0] == 0, single[2][-3000:]
    return {"two": two, "one": one, "first": first, "resumed": resumed}


def test_realnvp_two_workers_equal_one_at_double_batch_and_resume(realnvp_cluster):
    for rc, out, err in (realnvp_cluster["first"], realnvp_cluster["resumed"]):
        assert rc == 0, err[-3000:]
        assert "[1] worker 1 of 2" in out and "[0] worker 0 of 2" in out and "global batch 4" in out
    assert "resumed" in realnvp_cluster["resumed"][2] and "at step 3" in realnvp_cluster["resumed"][2]
    two, one = realnvp_cluster["two"], realnvp_cluster["one"]
    v = _close(two, one)
    assert int(v["global_step"]) == 6 and any(np.abs(v[k]).max() > 0 for k in v if k.endswith("/Adam"))
    m2, m1 = (runguard.read_metrics(os.path.join(d, "metrics.jsonl")) for d in (two, one))
    assert [(r["kind"], r["step"]) for r in m2] == [(r["kind"], r["step"]) for r in m1[:4]] + [("end", 3)] + [
        (r["kind"], r["step"]) for r in m1[4:]
    ]  # the first cluster run's end record
    for a, b in zip([r for r in m2 if r["kind"] == "train"], [r for r in m1 if r["kind"] == "train"]):
        assert a["train_bpd"] == pytest.approx(b["train_bpd"], rel=1e-5)
    info = runinfo.load(two)
    assert info["data_stats"]["workers"] == 2 and info["data_stats"]["global_batch"] == 4


def test_realnvp_chief_alone_writes_and_the_folder_freezes(realnvp_cluster):
    two = realnvp_cluster["two"]
    files = sorted(os.listdir(two))
    # one events file per chief run, no lock left behind, nothing from worker 1
    assert len([f for f in files if f.startswith("events.out.tfevents")]) == 2, files
    assert runguard.LOCK not in files and not [f for f in files if f.endswith(".tmp")]
    m = runguard.read_metrics(os.path.join(two, "metrics.jsonl"))
    assert len({(r["kind"], r["step"]) for r in m}) == len(m)  # no record written twice
    assert "[1] " not in "".join(
        ln for ln in realnvp_cluster["first"][1].splitlines() if "step " in ln and "train bpd" in ln
    )
    from freeze import core

    r = core.Restored(two, 2)
    assert r.ckpt == os.path.join(two, "model.ckpt-6") and r.info["model"] == "realnvp"


def test_rebar_two_workers_equal_one_at_double_batch(mnist_dir, tmp_path):
    hp = "model=SBNDynamicRebar,n_layer=1,n_hidden=20,learning_rate=0.001"
    common = [
        "--data_path",
        mnist_dir,
        "--steps",
        "5",
        "--log_every",
        "1",
        "--eval_limit",
        "20",
        "--eval_samples",
        "10",
        "--eval_freq",
        "0",
        "--seed",
        "1",
    ]
    two, one = str(tmp_path / "two"), str(tmp_path / "one")
    rc, out, err = _launch(
        ["train/train_rebar.py", "--working_dir", two, "--hparams", hp + ",batch_size=4", "--peer_timeout", "120"]
        + common
    )
    assert rc == 0, err[-3000:]
    rc, out, err = _launch(
        ["train/train_rebar.py", "--working_dir", one, "--hparams", hp + ",batch_size=8"] + common, nproc=1
    )
    assert rc == 0, err[-3000:]
    v = _close(two, one)
    assert "cv/pre_temperature_variable" in v and "q_0/weights/Adam" in v
    assert float(v["cv/pre_temperature_variable"]) != pytest.approx(np.log(0.5))  # it was trained


def test_killed_worker_stops_the_other_within_the_bound(mnist_dir, tmp_path):
    timeout = 8.0
    cfgs = launch.tf_configs(2)
    cmd = [
        PY,
        "train/train_rebar.py",
        "--data_path",
        mnist_dir,
        "--working_dir",
        str(tmp_path / "k"),
        "--hparams",
        "model=SBNRebar,n_layer=1,n_hidden=10",
        "--steps",
        "1000000",
        "--log_every",
        "1",
        "--eval_freq",
        "0",
        "--peer_timeout",
        str(timeout),
    ]
    procs = [
        subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=dict(os.environ, TF_CONFIG=c, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in cfgs
    ]
    try:
        for line in procs[0].stdout:
            if line.startswith("step "):
                break
        procs[1].kill()
        t = time.time()
        out, err = procs[0].communicate(timeout=timeout + 60)
        took = time.time() - t
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    errors = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert procs[0].returncode == 2 and len(errors) == 1, err[-2000:]
    assert errors[0].startswith("error: worker 0 of 2") and "task 1 (" in errors[0] and "--load_params 1" in errors[0]
    assert took < timeout + 20, took  # the collective timeout (or the watchdog) ends it, no hang
    assert "Traceback" not in err


def test_launcher_stops_all_when_one_fails(tmp_path):
    script = (
        "import json, os, sys, time\n"
        "i = json.loads(os.environ['TF_CONFIG'])['task']['index']\n"
        "print('hello from', i, json.loads(os.environ['TF_CONFIG'])['cluster']['worker'], flush=True)\n"
        "if i == 1: sys.exit(3)\n"
        "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)\n"
    )
    mark = str(tmp_path / "pid0")
    t = time.time()
    p = subprocess.run(
        [PY, "train/launch.py", "--nproc", "2", "--grace", "3", "--", PY, "-c", script, mark],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.time() - t < 30
    assert p.returncode == 3, p.stderr
    assert "launch.py: worker 1 exited with status 3; stopping the others" in p.stderr
    lines = p.stdout.splitlines()
    assert any(ln.startswith("[0] hello from 0") for ln in lines) and any(
        ln.startswith("[1] hello from 1") for ln in lines
    )
    hosts = json.loads(lines[0].split(" ", 4)[4].replace("'", '"'))
    assert len(set(hosts)) == 2 and all(h.startswith("localhost:") for h in hosts)
    if os.path.exists(mark):  # worker 0 got as far as sleeping: it must be gone now
        pid = int(open(mark).read())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_cluster_errors_are_one_line(fake_cifar, tmp_path, capsys, monkeypatch):
    base = ["--data_url", fake_cifar, "--train_url", str(tmp_path / "x")] + RN_ARGS

    def err_of(args, env=None):
        if env is not None:
            monkeypatch.setenv("TF_CONFIG", env)
        capsys.readouterr()
        rc = T.main(base + args)
        monkeypatch.delenv("TF_CONFIG", raising=False)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    assert "TF_CONFIG: not valid JSON" in err_of([], "{cluster:")
    assert "task index must be in 0..1" in err_of(
        [], json.dumps({"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 2}})
    )
    assert "only a 'worker' job" in err_of(
        [],
        json.dumps(
            {"cluster": {"worker": ["localhost:1"], "ps": ["localhost:2"]}, "task": {"type": "worker", "index": 0}}
        ),
    )
    assert "expected host:port" in err_of(["--worker_hosts", "localhost,localhost:5", "--task_index", "0"])
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        port = s.getsockname()[1]
        e = err_of(["--worker_hosts", f"localhost:{port},localhost:{port + 1}", "--task_index", "0"])
        assert f"cannot listen on localhost:{port}" in e and "task 0" in e


def test_npu_cluster_graph_with_hccl_stubbed(tmp_path, monkeypatch):
    """--device npu: the cluster from RANK_TABLE_FILE/RANK_ID/RANK_SIZE, the step's all-reduce and the
    broadcast through npu_bridge's hccl_ops (stubbed: this machine has no NPU)."""
    calls = []
    hccl_ops = types.SimpleNamespace(
        allreduce=lambda t, op: calls.append(("allreduce", op, t.shape.as_list())) or t * 2.0,  # 2 equal ranks
        broadcast=lambda ts, root_rank: calls.append(("broadcast", root_rank, len(ts))) or [tf.identity(t) for t in ts],
    )
    monkeypatch.setitem(sys.modules, "npu_bridge", types.ModuleType("npu_bridge"))
    monkeypatch.setitem(sys.modules, "npu_bridge.hccl", types.SimpleNamespace(hccl_ops=hccl_ops))
    table = tmp_path / "rank_table.json"
    table.write_text("{}")
    env = {"RANK_TABLE_FILE": str(table), "RANK_ID": "1", "RANK_SIZE": "2", "DEVICE_ID": "1"}
    a = types.SimpleNamespace(worker_hosts="", task_index=None, peer_timeout=30.0)
    cluster = distributed.from_args(a, env=env, device="npu")
    assert cluster.n == 2 and cluster.index == 1 and not cluster.is_chief and cluster.backend == "hccl"
    assert distributed.from_args(a, env={}, device="npu") is None
    with pytest.raises(runguard.UserError, match="RANK_TABLE_FILE"):
        distributed.from_args(a, env=dict(env, RANK_TABLE_FILE=str(tmp_path / "none.json")), device="npu")
    from models import realnvp

    cfg = realnvp.get_config("tiny")
    x = (np.random.RandomState(0).randint(0, 256, [2, 8, 8, 3]) - 127.5) / 127.5
    u = np.random.RandomState(1).uniform(0, 1, x.shape)
    with tf.Graph().as_default():
        coll = distributed.make_collectives(cluster, "npu")
        g = T.TrainGraph(cfg, 2, collectives=coll)
        sync = coll.broadcast_from_chief(tf.global_variables())
        n_params = sum(v.shape.num_elements() for v in g.params)
        assert calls[0] == ("allreduce", "sum", [n_params + 2])  # every gradient, the loss, the stop flag
        assert calls[1] == ("broadcast", 0, len(tf.global_variables()))
        local = tf.gradients(tf.reduce_mean(g.bpd), g.params)
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            s.run(sync)
            feed = {g.x: x, g.u: u, g.seed: [0, 0]}
            mine, ref = s.run([g.grads, local], feed)
    for a_, b_ in zip(mine, ref):  # (sum over 2 equal ranks) / 2 = this rank's gradient
        np.testing.assert_allclose(a_, b_, rtol=1e-5, atol=1e-7)
    monkeypatch.delitem(sys.modules, "npu_bridge.hccl")
    monkeypatch.setitem(sys.modules, "npu_bridge.hccl", None)
    with pytest.raises(runguard.UserError, match="npu_bridge"):
        distributed.make_collectives(cluster, "npu")
