"""RealNVP trainer: towers, NPU config, exact resume, NaN stop, and learning on real CIFAR-10.

The fake-data runs are made once per session (``realnvp_runs`` in conftest.py, with
--deterministic): graph construction, not training, is what a run costs here.
"""

import json
import os
import shutil

import numpy as np
import pytest

from common.tfcompat import tf
from models import realnvp
from train import train_realnvp as T


def _params(train_url):
    r = tf.train.load_checkpoint(tf.train.latest_checkpoint(train_url))
    return {k: r.get_tensor(k) for k in r.get_variable_to_shape_map()}


def _metrics(train_url):
    with open(os.path.join(train_url, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _ckpt_files(d):
    return {f: open(os.path.join(d, f), "rb").read() for f in os.listdir(d) if "ckpt" in f or f == "checkpoint"}


def test_two_towers_same_loss_and_gradients_as_one_device():
    """A 2-tower TrainGraph against the plain full-batch loss and gradients in the same graph."""
    cfg = realnvp.get_config("tiny")
    rng = np.random.RandomState(0)
    x = (rng.randint(0, 256, [4, 8, 8, 3]).astype(np.float32) - 127.5) / 127.5
    u = rng.uniform(0, 1, x.shape).astype(np.float32)
    with tf.Graph().as_default():
        g = T.TrainGraph(cfg, 4, n_towers=2, device="cpu")
        devs = {op.device for op in tf.get_default_graph().get_operations() if "tower1/" in op.name}
        assert any(d.lower().endswith("cpu:1") for d in devs), devs
        _, _, bpd = realnvp.encode(g.x, g.u, cfg)  # one device, one batch, the same variables
        loss = tf.reduce_mean(bpd)
        grads = tf.gradients(loss, g.params)
        config = T.make_session_config("cpu", 2)
        config.graph_options.rewrite_options.disable_meta_optimizer = True  # grappler: seconds, no news
        with tf.Session(config=config) as s:
            prng = np.random.RandomState(1)  # non-trivial parameters (the default init is the identity)
            vals = [
                prng.uniform(0.3, 0.8) if "tanh_scale" in v.name else prng.normal(0, 0.5, v.shape.as_list())
                for v in g.params
            ]
            s.run([v.initializer for v in g.params], {v.initial_value: val for v, val in zip(g.params, vals)})
            feed = {g.x: x, g.u: u, g.seed: [0, 0]}
            n = 2 + len(grads)
            res = s.run([g.loss, g.bpd] + g.grads + [loss, bpd] + grads, feed)
            two, one = res[:n], res[n:]
            # evaluation pads a short batch through the towers and returns its own rows
            np.testing.assert_allclose(g.eval_bpd(s, x[1:4], u[1:4]), one[1][1:4], rtol=1e-6)
    assert two[0] == pytest.approx(one[0], rel=1e-6)
    np.testing.assert_allclose(two[1], one[1], rtol=1e-6)  # per-image bpd in batch order
    assert np.ptp(one[1]) > 1e-3
    scale = max(np.abs(a).max() for a in one[2:])
    assert scale > 1e-3
    for a, b in zip(one[2:], two[2:]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5 * scale)


def test_npu_session_config_and_missing_bridge(tmp_path, capsys):
    cfg = T.make_session_config("npu", precision_mode="allow_mix_precision", check_bridge=False)
    rw = cfg.graph_options.rewrite_options
    opt = {o.name: o for o in rw.custom_optimizers}["NpuOptimizer"]
    assert opt.parameter_map["precision_mode"].s == b"allow_mix_precision"
    from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig

    assert rw.remapping == RewriterConfig.OFF
    det = T.make_session_config("cpu", deterministic=True)
    assert det.intra_op_parallelism_threads == det.inter_op_parallelism_threads == 1 and det.use_per_session_threads
    try:
        import npu_bridge  # noqa: F401

        pytest.skip("npu_bridge is installed here")
    except ImportError:
        pass
    rc = T.main(["--device", "npu", "--train_url", str(tmp_path / "r"), "--data_url", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "npu_bridge" in err[0]


def test_resume_is_exact(realnvp_runs, capsys):
    full, part = realnvp_runs["full"], realnvp_runs["part"]
    # a new run never overwrites an old one silently
    before = _ckpt_files(part)
    capsys.readouterr()
    assert T.main(realnvp_runs["args"] + ["--train_url", part, "--max_steps", "3"]) == 2
    assert "--load_params 1" in capsys.readouterr().err
    assert _ckpt_files(part) == before

    a, b = _params(full), _params(part)
    assert a.keys() == b.keys() and "global_step" in a and any("Adam" in k for k in a)
    assert int(b["global_step"]) == 6
    # --deterministic: the resumed run is the uninterrupted one, bit for bit (parameters and Adam
    # moments); any slip in data order, noise, dropout, lr or optimizer state shows at once
    for k in a:
        np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    assert any(np.abs(a[k]).max() > 0 for k in a if k.endswith("/Adam"))
    mf, mp = _metrics(full), _metrics(part)
    assert [(r["step"], r["train_bpd"]) for r in mp if r["kind"] == "train"] == [
        (r["step"], r["train_bpd"]) for r in mf if r["kind"] == "train"
    ]
    # (an epoch record's train_bpd averages the steps this process ran, so only test_bpd is compared)
    assert [r["test_bpd"] for r in mp if r["kind"] == "epoch"] == [r["test_bpd"] for r in mf if r["kind"] == "epoch"]
    assert mp[-1] == mf[-1] and mp[-1]["kind"] == "end" and mp[-1]["step"] == 6 and "test_bpd" in mp[-1]

    info = json.load(open(os.path.join(part, "config.json")))
    assert info["model"] == "realnvp" and info["step"] == 6 and info["data_stats"]["steps_per_epoch"] == 5
    assert info["config"] == realnvp.get_config("tiny32")
    assert all("step" in r for r in mp)
    assert [r["epoch"] for r in mp if r["kind"] == "epoch"] == [1]
    assert sorted(r["step"] for r in mp if r["kind"] == "train") == list(range(1, 7))
    assert [r["kind"] for r in mp].count("end") == 2  # the step-3 end record, then the step-6 one
    for f in ("samples.png", "learning_curve.png"):
        assert os.path.getsize(os.path.join(part, f)) > 500
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(part))
    assert os.path.isfile(os.path.join(part, "model.ckpt-3.index"))


def test_nan_stops_and_keeps_last_checkpoint(realnvp_runs, tmp_path, capsys):
    """A diverging resumed run stops with one error line and leaves the step-6 checkpoint as it was."""
    part = str(tmp_path / "part")
    shutil.copytree(realnvp_runs["part"], part)
    files = _ckpt_files(part)
    capsys.readouterr()
    rc = T.main(
        realnvp_runs["args"]
        + ["--train_url", part, "--max_steps", "12", "--load_params", "1", "--learning_rate", "1e10"]
    )  # (at 1e30 the weight-norm
    # sums overflow to inf, every kernel becomes 0 and the flow a finite identity: no divergence)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "diverged" in err[-1] and "model.ckpt-6" in err[-1]
    assert _ckpt_files(part) == files


def test_short_run_lowers_real_test_bpd(cifar_dir, tmp_path):
    out = str(tmp_path / "run")
    # the small config, as the demo trains it, with a higher learning rate for 30 steps
    assert (
        T.main(
            [
                "--data_url",
                cifar_dir,
                "--train_url",
                out,
                "--config",
                "small",
                "--batch_size",
                "16",
                "--max_steps",
                "30",
                "--learning_rate",
                "0.005",
                "--init_batch_size",
                "32",
                "--test_images",
                "100",
                "--log_every",
                "10",
                "--sample_batch_size",
                "4",
            ]
        )
        == 0
    )
    m = _metrics(out)
    start, end = m[0], m[-1]
    assert start["kind"] == "start" and end["kind"] == "end" and end["step"] == 30
    assert 7.5 < start["test_bpd"] < 10  # untrained (near-identity) model on real images
    assert end["test_bpd"] < start["test_bpd"] - 0.7, (start, end)


def test_eps_inside_adam_matches_the_formula():
    """The reference's Adam (--adam_eps_inside): lr * m_hat / sqrt(v_hat + eps), bias-corrected."""
    b1, b2, eps, lr = T.ADAM["beta1"], T.ADAM["beta2"], 1e-3, 0.1
    grads_seen = []
    with tf.Graph().as_default(), tf.Session() as s:
        w = tf.get_variable("w", [2], tf.float32, tf.constant_initializer([1.0, -2.0]))
        step = tf.train.get_or_create_global_step()
        g = 2 * w  # the gradient of sum(w^2)
        op = T.EpsInsideAdam(lr, b1, b2, eps).apply_gradients([(g, w)], step)
        s.run(tf.global_variables_initializer())
        for _ in range(3):
            grads_seen.append(s.run(g))
            s.run(op)
        got, n = s.run([w, step])
    want, m, v = np.array([1.0, -2.0]), 0, 0
    for t, gr in enumerate(grads_seen, 1):
        m, v = b1 * m + (1 - b1) * gr, b2 * v + (1 - b2) * gr**2
        want = want - lr * (m / (1 - b1**t)) / np.sqrt(v / (1 - b2**t) + eps)
    assert n == 3
    np.testing.assert_allclose(got, want, rtol=1e-5)
