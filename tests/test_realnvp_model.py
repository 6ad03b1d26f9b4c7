"""RealNVP model: exact inverse, log-det vs a numerical Jacobian, batch independence, contract.

Graphs are built on the smallest configs that show each property (tiny: 8x8; tiny32: the
CIFAR shapes) and run without grappler: building and rewriting graphs is what costs here."""

import numpy as np
import pytest

from common.tfcompat import tf
from models import realnvp

TINY = realnvp.get_config("tiny")
TINY32 = realnvp.get_config("tiny32")


def _session():
    config = tf.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return tf.Session(config=config)


def _randomise(sess, rng):
    """Non-trivial parameters (the default init is an exact identity flow), in one run, no new ops."""
    vs = tf.global_variables()
    vals = [rng.uniform(0.3, 0.8) if "tanh_scale" in v.name else rng.normal(0, 0.5, v.shape.as_list()) for v in vs]
    sess.run(
        [v.initializer for v in vs],
        {v.initial_value: np.asarray(val, v.dtype.base_dtype.as_numpy_dtype) for v, val in zip(vs, vals)},
    )


def _images(rng, n, shape):
    return (rng.randint(0, 256, [n] + list(shape)).astype(np.float32) - 127.5) / 127.5


def test_inverse_roundtrips_and_logdets_cancel():
    rng = np.random.RandomState(0)
    shape = TINY["image_shape"]
    with tf.Graph().as_default(), _session() as s:
        x = tf.placeholder(tf.float32, [None] + shape)
        u = tf.placeholder(tf.float32, [None] + shape)
        z, logdet, _ = realnvp.encode(x, u, TINY)
        y, logdet0 = realnvp.preprocess(x, u, TINY["alpha"])
        y_back, ld_back = realnvp.flow(z, TINY, logdet=logdet - logdet0, reverse=True)
        x_back = realnvp.postprocess(y_back, TINY["alpha"], u)
        _randomise(s, rng)
        feed = {x: _images(rng, 5, shape), u: rng.uniform(0.02, 0.98, [5] + shape)}
        zv, yv, ybv, xbv, ldb, ld = s.run([z, y, y_back, x_back, ld_back, logdet - logdet0], feed)
    assert zv.shape == (5, 4, 4, 12)
    np.testing.assert_allclose(ybv, yv, atol=1e-4)
    np.testing.assert_allclose(xbv, feed[x], atol=1e-4)
    assert np.abs(ld).min() > 1.0  # the flow really scales
    np.testing.assert_allclose(ldb, 0, atol=1e-3)


def test_logdet_matches_numerical_jacobian():
    """Central finite differences in float64 on the tiny flow; one batch holds all 2D probes."""
    rng = np.random.RandomState(1)
    shape = TINY["image_shape"]
    d = int(np.prod(shape))
    with tf.Graph().as_default(), _session() as s:
        y = tf.placeholder(tf.float64, [None] + shape)
        z, logdet = realnvp.flow(y, TINY)
        _randomise(s, rng)
        y0 = rng.normal(0, 1.5, shape)
        eps = 1e-5
        probes = np.repeat(y0[None], 2 * d + 1, 0).reshape(2 * d + 1, d)
        probes[1 : d + 1] += eps * np.eye(d)
        probes[d + 1 :] -= eps * np.eye(d)
        zv, ld = s.run([z, logdet], {y: probes.reshape([-1] + shape)})
    zv = zv.reshape(2 * d + 1, d)
    jac = (zv[1 : d + 1] - zv[d + 1 :]) / (2 * eps)  # row i: dz / dy_i
    sign, numeric = np.linalg.slogdet(jac)
    assert sign != 0 and abs(numeric) > 1.0
    assert ld[0] == pytest.approx(numeric, abs=1e-5)

    # the preprocessing log-det is that of the logit, elementwise (diagonal Jacobian)
    with tf.Graph().as_default(), _session() as s:
        x = tf.placeholder(tf.float64, [1] + shape)
        u = tf.placeholder(tf.float64, [1] + shape)
        yl, ld0 = realnvp.preprocess(x, u, TINY["alpha"])
        xv, uv = _images(rng, 1, shape).astype(np.float64), rng.uniform(0, 1, [1] + shape)
        alpha = TINY["alpha"]
        p = (((xv * 0.5 + 0.5) * 255 + uv) / 256) * (1 - alpha) + alpha / 2
        h = 1e-7
        dlogit = (np.log((p + h) / (1 - p - h)) - np.log((p - h) / (1 - p + h))) / (2 * h)
        assert s.run(ld0, {x: xv, u: uv})[0] == pytest.approx(np.log(dlogit).sum(), rel=1e-6)


def test_same_image_same_bpd_in_any_batch():
    rng = np.random.RandomState(2)
    shape = TINY["image_shape"]
    with tf.Graph().as_default(), _session() as s:
        ins, outs = realnvp.inference_graph(TINY, 4)
        _randomise(s, rng)
        a, b = _images(rng, 4, shape), _images(rng, 4, shape)
        ua, ub = rng.uniform(0, 1, [4] + shape), rng.uniform(0, 1, [4] + shape)
        b[2], ub[2] = a[0], ua[0]
        b[0] = 1.0  # a saturated batch-mate: whole-batch statistics would move row 2
        ra = s.run([o.tensor for o in outs], {"x:0": a, "u:0": ua})
        rb = s.run([o.tensor for o in outs], {"x:0": b, "u:0": ub})
    for va, vb in zip(ra, rb):
        np.testing.assert_allclose(vb[2], va[0], rtol=1e-5, atol=1e-5)
    assert abs(ra[2][1] - ra[2][0]) > 1e-3  # different images do differ


def test_inference_contract_and_bpd_formula():
    rng = np.random.RandomState(3)
    cfg = TINY32
    g = tf.Graph()
    with g.as_default(), _session() as s:
        ins, outs = realnvp.inference_graph(cfg, 3)
        assert [i.tensor.name for i in ins] == ["x:0", "u:0"]
        assert [o.tensor.name for o in outs] == ["z:0", "logdet:0", "bpd:0"]
        assert [o.tensor.shape.as_list() for o in outs] == [[3, 16, 16, 12], [3], [3]]
        assert g.get_operation_by_name("z").type == "Identity"
        _randomise(s, rng)
        feed = realnvp.example_feed(cfg, 3, "forward", rng)
        z, ld, bpd = s.run([o.tensor for o in outs], {"x:0": feed["x"], "u:0": feed["u"]})
        names = sorted(v.op.name for v in tf.global_variables())
    d = 3072
    want = 8 + (0.5 * (z.astype(np.float64) ** 2).sum((1, 2, 3)) + 0.5 * d * np.log(2 * np.pi) - ld) / (d * np.log(2))
    np.testing.assert_allclose(bpd, want, rtol=1e-6)
    assert feed["x"].min() >= -1 and feed["x"].max() <= 1 and 0 <= feed["u"].min() and feed["u"].max() < 1

    with tf.Graph().as_default():  # the sample graph shares every variable name
        ins, outs = realnvp.inference_graph(cfg, 2, "sample")
        assert ins[0].tensor.name == "z:0" and outs[0].tensor.shape.as_list() == [2, 32, 32, 3]
        assert sorted(v.op.name for v in tf.global_variables()) == names
    # 10 couplings x (in + 2*blocks + out) convs, each W and g, plus a tanh scale per coupling
    assert len(names) == 10 * (2 * (2 + 2 * cfg["n_blocks"]) + 1)


@pytest.mark.parametrize("scale_init", [1.0, "ddi"])
def test_data_dependent_init_sets_scales(scale_init):
    """Default (scale_init 1.0): the tanh scales stay 1 and the init pass sets each output gain so l
    and m have RMS ~0.1. "ddi" (the pre-issue-14 default): scales start at 0 (identity), and the
    init pass sets them instead."""
    rng = np.random.RandomState(4)
    cfg = realnvp.with_options(TINY32, scale_init=scale_init)
    with tf.Graph().as_default(), _session() as s:
        x = tf.placeholder(tf.float32, [None, 32, 32, 3])
        u = tf.placeholder(tf.float32, [None, 32, 32, 3])
        y, ld0 = realnvp.preprocess(x, u, cfg["alpha"])
        _, ld_init = realnvp.flow(y, cfg, init=True)
        _, ld = realnvp.flow(y, cfg)
        s.run(tf.global_variables_initializer())
        scales = [v for v in tf.global_variables() if "tanh_scale" in v.name]
        if scale_init == "ddi":
            assert not np.any(s.run(scales))  # zero init: identity flow
        feed = {x: _images(rng, 8, [32, 32, 3]), u: rng.uniform(0, 1, [8, 32, 32, 3])}
        a = s.run(ld_init, feed)
        b = s.run(ld, feed)  # the ordinary graph now uses the initialised values
        vals = s.run(scales)
    if scale_init == "ddi":
        assert all(v > 0 for v in vals)
    else:
        np.testing.assert_array_equal(vals, 1.0)
    np.testing.assert_allclose(a, b, rtol=1e-4)
    # l has RMS ~0.1 on half the dims of 10 couplings: per-dim log-det small but non-zero
    assert 0 < np.abs(b).max() / 3072 < 0.5 and np.std(b) > 0


def test_ablation_switches_build_invertible_flows():
    """Issue #14's switches (flow_ops.DEFAULT_OPTS): the reference-style variants are exact flows too,
    and mask_phase "ref" is the complement of ours (the reference's checkerboard0)."""
    from models import flow_ops

    ours, ref = flow_ops.checkerboard(4, 4, 1, 0), flow_ops.checkerboard(4, 4, 1, 0, "ref")
    np.testing.assert_array_equal(ours + ref, 1)
    assert ref[0, 0, 1, 0] == 1 and ref[0, 0, 0, 0] == 0  # the reference's 2x2 unit [[0,1],[1,0]]
    cfg = realnvp.with_options(TINY, scale_init="ref", scale_param="wn_vector", gain_init="ref", mask_phase="ref")
    with pytest.raises(Exception, match="scale_param"):
        realnvp.with_options(TINY, scale_param="vector")
    rng = np.random.RandomState(5)
    shape = TINY["image_shape"]
    with tf.Graph().as_default(), _session() as s:
        y = tf.placeholder(tf.float32, [None] + shape)
        z, ld = realnvp.flow(y, cfg)
        y_back, ld_back = realnvp.flow(z, cfg, logdet=ld, reverse=True)
        s.run(tf.global_variables_initializer())
        names = {v.op.name.split("/")[-1] for v in tf.global_variables()}
        yv = rng.normal(0, 1, [3] + shape)
        ybv, ldv, ldb = s.run([y_back, ld, ld_back], {y: yv})
    assert {"tanh_scale_v", "tanh_scale_g"} <= names and "tanh_scale" not in names
    np.testing.assert_allclose(ybv, yv, atol=1e-4)
    assert np.abs(ldv).min() > 0.1  # random-start scales: not the identity
    np.testing.assert_allclose(ldb, 0, atol=1e-3)
