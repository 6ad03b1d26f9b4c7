"""freeze/freeze_rebar.py: a trained checkpoint's frozen graph gives the checkpoint's numbers."""

import numpy as np
import pytest

from common.tfcompat import tf
from data_tools import datasets
from freeze import freeze_rebar
from freeze.core import RANDOM_OPS, VARIABLE_OPS
from freeze.signature import Signature
from models import estimators
from train import runinfo, train_rebar

HP = "model=SBNRebar,n_layer=2,n_hidden=50,learning_rate=0.001"


@pytest.fixture(scope="module")
def trained(mnist_dir, tmp_path_factory):
    wd = tmp_path_factory.mktemp("rebar_run")
    assert (
        train_rebar.main(
            [
                "--data_path",
                mnist_dir,
                "--working_dir",
                str(wd),
                "--steps",
                "30",
                "--hparams",
                HP,
                "--eval_limit",
                "10",
                "--eval_samples",
                "5",
                "--eval_freq",
                "0",
            ]
        )
        == 0
    )
    return wd


def test_freeze_matches_checkpoint(trained, mnist_dir, tmp_path, capsys):
    out = tmp_path / "frozen"
    assert freeze_rebar.main(["--ckpt", str(trained), "--batch", "3", "--samples", "8", "--out", str(out)]) == 0
    sig = Signature.load(out / "rebar.json")
    assert sig.model == "rebar" and sig.checkpoint["step"] == 30 and sig.options == {"samples": 8}
    assert [t.shape for t in sig.inputs] == [[3, 784], [3, 8, 100]]
    assert [t.name for t in sig.outputs] == ["log_weights", "elbo", "iwae"]
    gd = tf.GraphDef()
    gd.ParseFromString((out / "rebar.pb").read_bytes())
    assert not {n.op for n in gd.node} & (RANDOM_OPS | VARIABLE_OPS)
    # real test images and fixed noise through the frozen graph ...
    x = datasets.load_binarized_mnist(mnist_dir, "test")[:3].astype(np.float32)
    u = np.random.RandomState(5).uniform(size=(3, 8, 100)).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    with tf.Session(graph=g) as s:
        lw, elbo, iwae = s.run(["log_weights:0", "elbo:0", "iwae:0"], {"x:0": x, "u:0": u})
    # ... and through the training graph restored from the checkpoint (the trainer's own evaluator)
    ckpt, info = runinfo.resolve(str(trained))
    with tf.Graph().as_default():
        m = estimators.build(info["config"])
        ev = train_rebar.Evaluator(m.net, 8)
        with tf.Session() as s:
            tf.train.Saver().restore(s, ckpt)
            ref = ev.log_weights_for(s, x, u)
    np.testing.assert_allclose(lw, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(elbo, ref.mean(1), rtol=1e-5)
    assert (iwae >= elbo).all() and -400 < elbo.mean() < -60
    # never overwritten silently
    capsys.readouterr()
    assert freeze_rebar.main(["--ckpt", str(trained), "--batch", "3", "--samples", "8", "--out", str(out)]) == 2
    assert "rebar.pb: already exists" in capsys.readouterr().err
    assert (
        freeze_rebar.main(["--ckpt", str(trained), "--batch", "2", "--samples", "4", "--out", str(out), "--force"]) == 0
    )
    assert Signature.load(out / "rebar.json").batch == 2


def test_freeze_refuses_other_model_kind(tmp_path, capsys):
    with tf.Graph().as_default():
        tf.get_variable("w", [2])
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            tf.train.Saver().save(s, str(tmp_path / "model.ckpt"), global_step=3)
    runinfo.save(str(tmp_path), "realnvp", {"depth": 1}, step=3)
    assert freeze_rebar.main(["--ckpt", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "is a 'realnvp' model, expected 'rebar'" in err and err.count("\n") == 1
