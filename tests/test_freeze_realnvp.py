"""freeze_realnvp: a trained checkpoint -> .pb matching the checkpoint; overwrite and kind checks.

The checkpoint is the session's short fake-data run (``realnvp_runs`` in conftest.py)."""

import json
import os
import shutil

import numpy as np

from freeze import core
from freeze import freeze_realnvp as F
from freeze.signature import Signature


def test_freeze_forward_and_sample_match_checkpoint(realnvp_runs, tmp_path, capsys):
    trained = realnvp_runs["full"]
    out = str(tmp_path / "model")
    assert F.main(["--ckpt", trained, "--batch", "3", "--out", out]) == 0
    assert F.main(["--ckpt", trained + "/model.ckpt-6", "--batch", "3", "--out", out, "--graph", "sample"]) == 0
    sig = Signature.load(os.path.join(out, "realnvp.json"))
    assert sig.atc_input_shape() == "x:3,32,32,3;u:3,32,32,3" and sig.atc_out_nodes() == "z:0;logdet:0;bpd:0"
    assert sig.checkpoint["step"] == 6 and sig.checks["batch_independent"] is True
    gd = core.tf.GraphDef()
    gd.ParseFromString(open(os.path.join(out, "realnvp.pb"), "rb").read())
    rng = np.random.RandomState(5)
    with core.Restored(trained, 3) as r:
        feed = r.example_feed(rng)
        feed["u"][:] = 0.5  # the sample graph removes the noise's mean: exact inverse at u = 0.5
        want = r.run(feed)
    z, logdet, bpd = core.run_graph_def(gd, sig, feed)
    for got, ref in zip((z, logdet, bpd), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    assert np.abs(logdet - logdet.mean()).max() > 1e-3  # a trained, image-dependent flow
    d = 3072
    np.testing.assert_allclose(
        bpd,
        8 + (0.5 * (z.astype(np.float64) ** 2).sum((1, 2, 3)) + 0.5 * d * np.log(2 * np.pi) - logdet) / (d * np.log(2)),
        rtol=1e-6,
    )
    ssig = Signature.load(os.path.join(out, "realnvp_sample.json"))
    sgd = core.tf.GraphDef()
    sgd.ParseFromString(open(os.path.join(out, "realnvp_sample.pb"), "rb").read())
    (x_back,) = core.run_graph_def(sgd, ssig, {"z": z})
    np.testing.assert_allclose(x_back, feed["x"], atol=1e-3)

    capsys.readouterr()
    assert F.main(["--ckpt", trained, "--batch", "3", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "realnvp.pb: already exists" in err[0] and "--force" in err[0]


def test_refuses_other_model_kind(realnvp_runs, tmp_path, capsys):
    other = str(tmp_path / "other")
    shutil.copytree(realnvp_runs["full"], other)
    info = json.load(open(os.path.join(other, "config.json")))
    info["model"] = "rebar"
    json.dump(info, open(os.path.join(other, "config.json"), "w"))
    capsys.readouterr()
    assert F.main(["--ckpt", other, "--batch", "2", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'rebar'" in err[0] and "expected 'realnvp'" in err[0]
    assert not os.path.exists(tmp_path / "m" / "realnvp.pb")
