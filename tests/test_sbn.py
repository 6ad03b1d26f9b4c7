"""SBN model and estimators: hparams, every estimator trains, fixed noise, bounds (tiny nets, no data)."""

import math

import numpy as np
import pytest

from common.errors import UserError
from common.tfcompat import tf
from models import estimators, sbn
from train.train_rebar import Evaluator

TINY = "n_hidden=6,n_layer=2,batch_size=4"


def _x(n, seed=0):
    return (np.random.RandomState(seed).rand(n, 784) < 0.2).astype(np.float32)


def test_hparams_parse_good_unknown_bad():
    hp = sbn.parse_hparams("model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn,nonlinear=True")
    assert (hp["model"], hp["learning_rate"], hp["n_layer"], hp["nonlinear"]) == ("SBNDynamicRebar", 3e-4, 2, True)
    assert hp["batch_size"] == 24 and hp["temperature"] == 0.5 and hp["beta2"] == 0.99999  # reference defaults
    assert sbn.parse_hparams(sbn.format_hparams(hp)) == hp
    with pytest.raises(UserError, match="unknown item 'lr=1'.*valid keys are model, n_hidden"):
        sbn.parse_hparams("lr=1")
    with pytest.raises(UserError, match="n_layer='two' is not a valid int"):
        sbn.parse_hparams("n_layer=two")
    with pytest.raises(UserError, match="model='Rebar'; expected one of SBN, SBNNVIL"):
        sbn.parse_hparams("model=Rebar")
    assert sbn.parse_hparams("task=sp,dynamic_b=true")["task"] == "sp"  # the reference's other tasks
    with pytest.raises(UserError, match="task='mnist'; expected sbn .*, sp .* or omni"):
        sbn.parse_hparams("task=mnist")
    with pytest.raises(UserError, match="nonlinear='maybe' is not a valid bool"):
        sbn.parse_hparams("nonlinear=maybe")


@pytest.mark.parametrize("name", list(estimators.CLASSES))
def test_estimator_builds_and_trains_one_step(name):
    with tf.Graph().as_default():
        tf.set_random_seed(1)
        m = estimators.build(sbn.parse_hparams(f"model={name},{TINY}"), mean_xs=_x(50).mean(0))
        names = [v.op.name for v in m.model_vars]
        assert names == [
            "p_prior",
            "q_0/weights",
            "q_0/biases",
            "q_1/weights",
            "q_1/biases",
            "p_1/weights",
            "p_1/biases",
            "p_0/weights",
            "p_0/biases",
        ]
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            before = s.run(m.model_vars)
            _, logs, g = s.run([m.train_op, m.logs, m.grad_vec], {m.x: _x(4)})
            after = s.run(m.model_vars)
            assert np.isfinite(logs["elbo"]) and np.isfinite(g).all() and np.abs(g).max() > 0
            assert all(not np.array_equal(a, b) for a, b in zip(before[1:], after[1:]))  # every layer moved
            if m.extra_grads:  # control variates move too
                ev = [v for _, v in m.extra_grads]
                b0 = s.run(ev)
                s.run(m.train_op, {m.x: _x(4)})
                assert any(not np.array_equal(a, b) for a, b in zip(b0, s.run(ev)))
            if name == "SBNDynamicRebar":
                assert logs["temperature"] == pytest.approx(0.5) and s.run(m.temperature) != pytest.approx(0.5)


def test_u_to_v_keeps_value_and_sample():
    with tf.Graph().as_default(), tf.Session() as s:
        logits = tf.constant(np.random.RandomState(0).randn(64, 5).astype(np.float32))
        u = tf.constant(np.random.RandomState(1).uniform(0.01, 0.99, (64, 5)).astype(np.float32))
        b = tf.cast(logits + sbn.logit(u) > 0, tf.float32)
        v = estimators.u_to_v(logits, u, b)
        dv = tf.gradients(tf.reduce_sum(v), logits)[0]
        uu, vv, d = s.run([u, v, dv])
        np.testing.assert_allclose(vv, uu, atol=1e-6)  # common random numbers: same value
        assert np.abs(d).max() > 0  # but the conditional reparameterisation's gradient


def test_fixed_noise_identical_across_sessions_and_checkpoint(tmp_path):
    hp = sbn.parse_hparams(f"model=SBNRebar,{TINY}")
    x, u = _x(4), np.random.RandomState(2).uniform(size=(4, 12)).astype(np.float32)
    with tf.Graph().as_default():
        m = estimators.build(hp)
        saver = tf.train.Saver()
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            a = s.run(m.f, {m.x: x, m.u: u})
            fresh = [s.run(m.f, {m.x: x}) for _ in range(2)]
            saver.save(s, str(tmp_path / "m.ckpt"))
        with tf.Session() as s:
            saver.restore(s, str(tmp_path / "m.ckpt"))
            b = s.run(m.f, {m.x: x, m.u: u})
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(fresh[0], fresh[1])  # the default draws fresh noise


def test_inference_graph_bounds_and_chunked_iwae():
    hp = sbn.parse_hparams(TINY)
    K = 200
    feed = sbn.example_feed(hp, 3, "forward", np.random.RandomState(0), samples=K)
    with tf.Graph().as_default():
        ins, outs = sbn.inference_graph(hp, 3, samples=K)
        assert [io.tensor.name for io in ins] == ["x:0", "u:0"]
        assert [io.tensor.name for io in outs] == ["log_weights:0", "elbo:0", "iwae:0"]
        assert all(io.tensor.shape[0] == 3 for io in ins + outs)  # batch first
        ops = {op.type for op in tf.get_default_graph().get_operations()}
        assert not ops & {"RandomUniform", "RandomStandardNormal"}
        ev = Evaluator(sbn.Net(hp), K)  # the trainer's evaluation: chunks of 100 samples
        assert ev.chunk == 100
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            lw, elbo, iwae = s.run([o.tensor for o in outs], {ins[0].tensor: feed["x"], ins[1].tensor: feed["u"]})
            chunked = ev.log_weights_for(s, feed["x"], feed["u"])
    np.testing.assert_allclose(elbo, lw.mean(1), rtol=1e-5)
    assert (iwae >= elbo).all() and (iwae > elbo + 1e-3).any()
    np.testing.assert_allclose(chunked, lw, rtol=1e-5)
    lse = np.logaddexp.reduce(chunked.astype(np.float64), 1) - math.log(K)
    np.testing.assert_allclose(lse, iwae, rtol=1e-5)
