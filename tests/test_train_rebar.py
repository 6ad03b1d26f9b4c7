"""The REBAR trainer and the variance comparison on real binarized MNIST."""

import json
import os

import numpy as np

from common.tfcompat import tf
from data_tools import datasets
from models import sbn
from train import rebar_variance, runinfo, train_rebar

FAST = ["--eval_limit", "50", "--eval_samples", "20", "--eval_freq", "0"]


def _train(mnist_dir, wd, steps, hparams="model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn", *extra):
    return train_rebar.main(
        [
            "--data_path",
            mnist_dir,
            "--working_dir",
            str(wd),
            "--steps",
            str(steps),
            "--hparams",
            hparams,
            "--log_every",
            "100",
            *FAST,
            *extra,
        ]
    )


def _records(wd, **match):
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        rs = [json.loads(line) for line in f]
    return [r for r in rs if all(r.get(k) == v for k, v in match.items())]


def test_short_run_raises_test_elbo_and_writes_everything(mnist_dir, tmp_path, capsys):
    wd = tmp_path / "run"
    assert _train(mnist_dir, wd, 1) == 0
    before = _records(wd, kind="eval", split="test")[-1]
    assert _train(mnist_dir, wd, 300) == 0  # resumes at step 1
    out = capsys.readouterr().out
    assert "resumed from" in out and "step 300 TEST: ELBO" in out
    after = _records(wd, kind="eval", split="test")[-1]
    assert (before["step"], after["step"]) == (1, 300)
    assert after["elbo"] > before["elbo"] + 40, (before, after)
    assert after["iwae"] >= after["elbo"]
    train_recs = _records(wd, kind="train")
    assert [r["step"] for r in train_recs] == [100, 200, 300]
    assert len(train_recs[-1]["etas"]) == 9 and train_recs[-1]["temperature"] != 0.5
    assert all(np.isfinite(r["log_grad_variance"]) for r in train_recs)
    ckpt, info = runinfo.resolve(str(wd))
    assert ckpt.endswith("model.ckpt-300") and info["model"] == "rebar" and info["step"] == 300
    assert info["config"]["model"] == "SBNDynamicRebar" and info["config"]["n_layer"] == 2
    mean_xs = tf.train.load_checkpoint(ckpt).get_tensor("mean_xs")  # data statistics travel in the checkpoint
    np.testing.assert_allclose(mean_xs, datasets.load_binarized_mnist(mnist_dir, "train").mean(0), atol=1e-6)
    assert (wd / "curve.png").stat().st_size > 1000


def test_resume_is_exact_and_nan_keeps_last_good(mnist_dir, tmp_path, capsys):
    hp = "model=SBNDynamicRebar,n_layer=1,n_hidden=20,learning_rate=0.001"
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(mnist_dir, a, 4, hp) == 0 and _train(mnist_dir, a, 8, hp) == 0
    assert _train(mnist_dir, b, 8, hp) == 0
    ra, rb = (tf.train.load_checkpoint(tf.train.latest_checkpoint(str(d))) for d in (a, b))
    names = sorted(ra.get_variable_to_shape_map())
    assert "cv/pre_temperature_variable" in names and "q_0/weights/Adam" in names
    for n in names:
        np.testing.assert_allclose(ra.get_tensor(n), rb.get_tensor(n), rtol=1e-5, atol=1e-7, err_msg=n)
    capsys.readouterr()
    assert _train(mnist_dir, a, 40, hp.replace("learning_rate=0.001", "learning_rate=1e30")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: training diverged at step") and "model.ckpt-8" in err
    assert tf.train.latest_checkpoint(str(a)).endswith("model.ckpt-8")
    assert _train(mnist_dir, a, 10, hp.replace("n_hidden=20", "n_hidden=30")) == 2
    assert "cannot resume with different n_hidden" in capsys.readouterr().err


def test_cli_user_errors(mnist_dir, tmp_path, capsys):
    assert _train(mnist_dir, tmp_path / "x", 5, "model=SBNRebar,eta=2") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown item 'eta=2'" in err and "learning_rate" in err
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "metrics.jsonl").write_text("{}\n")
    assert _train(mnist_dir, tmp_path / "y", 5) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_rebar_variance_below_reinforce_and_nvil(mnist_dir):
    hp = sbn.parse_hparams(train_rebar.ASCEND_HPARAMS)
    train = datasets.load_binarized_mnist(mnist_dir, "train")
    res = rebar_variance.measure(hp, train, None, ("REINFORCE", "NVIL", "REBAR"), draws=30, cv_steps=50, progress=False)
    assert len({r["params_sha256"] for r in res.values()}) == 1  # one set of parameters for all
    assert res["REBAR"]["log_variance_q"] < res["REINFORCE"]["log_variance_q"] - 1
    assert res["REBAR"]["log_variance_q"] < res["NVIL"]["log_variance_q"] - 1
    assert res["REBAR"]["log_variance"] < min(res["REINFORCE"]["log_variance"], res["NVIL"]["log_variance"])
