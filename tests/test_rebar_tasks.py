"""REBAR's other tasks (tensorflow/models research/rebar): sp (the bottom half of a digit
given its top half), omni (Omniglot chardata.mat) and dynamic_b (float MNIST re-binarised
per batch). The loaders are tested on small files of the real layouts written here; the
expected values follow the reference's datasets.py and rebar.py, computed in numpy."""

import gzip
import json
import os
import struct

import numpy as np
import pytest
import scipy.io

from common.errors import UserError
from common.tfcompat import tf
from data_tools import datasets, fetch_data
from models import sbn
from train import runinfo, train_rebar

N_TRAIN, N_TEST = datasets.OMNI_VALID + 30, 12


# --- files of the reference's layouts ---------------------------------------------------------


def write_chardata(path, rng):
    """chardata.mat as Burda's: 'data' [784, N_train], 'testdata' [784, N_test], floats in [0,1]."""
    levels = np.array([0.0, 0.2, 0.7, 1.0])
    data = levels[rng.randint(0, 4, (784, N_TRAIN))]
    test = levels[rng.randint(0, 4, (784, N_TEST))]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scipy.io.savemat(path, {"data": data, "testdata": test})
    return data, test


def write_idx(path, images):
    """LeCun's idx3 layout: magic 2051, count, rows, cols (big-endian int32), then uint8 pixels."""
    n = len(images)
    raw = struct.pack(">iiii", 2051, n, 28, 28) + images.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith(".gz") else open)(path, "wb") as f:
        f.write(raw)


def write_binarized_mnist(folder, rng, n=(40, 10, 10)):
    os.makedirs(folder, exist_ok=True)
    for split, k in zip(datasets.MNIST_SPLITS, n):
        x = (rng.uniform(size=(k, 784)) < 0.15).astype(np.float64)
        scipy.io.savemat(os.path.join(folder, f"binarized_mnist_{split}.mat"), {"X": x})


@pytest.fixture(scope="module")
def omni_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("omni_data")
    data, test = write_chardata(str(d / "omniglot" / "chardata.mat"), np.random.RandomState(3))
    return d, data, test


# --- loaders ------------------------------------------------------------------------------------


def _fortran_rows(columns):
    """Each column of chardata (one image) as the reference lays it out: a 28x28 image read
    column by column (Fortran order), i.e. the C-order flattening of its transpose."""
    return np.stack([c.reshape(28, 28).T.ravel() for c in columns.T])


def test_omniglot_splits_as_the_reference(omni_dir):
    d, data, test = omni_dir
    floats = {s: datasets.load_omniglot(d, s, binarize=False) for s in datasets.MNIST_SPLITS}
    perm = np.random.RandomState(123).permutation(N_TRAIN)
    train_rows = _fortran_rows(data)[perm]
    np.testing.assert_array_equal(floats["train"], train_rows[: -datasets.OMNI_VALID].astype(np.float32))
    np.testing.assert_array_equal(floats["valid"], train_rows[-datasets.OMNI_VALID :].astype(np.float32))
    np.testing.assert_array_equal(floats["test"], _fortran_rows(test).astype(np.float32))
    assert len(floats["valid"]) == 1345 and len(floats["train"]) == 30
    # fixed binarisation: np.random.seed(5), train then test from the same stream, before the permutation
    rng = np.random.RandomState(5)
    b_train = (rng.rand(N_TRAIN, 784) < _fortran_rows(data).astype(np.float32))[perm]
    b_test = rng.rand(N_TEST, 784) < _fortran_rows(test).astype(np.float32)
    np.testing.assert_array_equal(datasets.load_omniglot(d, "valid"), b_train[-1345:])
    got = datasets.load_omniglot(d, "test")
    assert got.dtype == np.uint8 and set(np.unique(got)) <= {0, 1}
    np.testing.assert_array_equal(got, b_test)
    assert datasets.present("omniglot", d) and not datasets.present("omniglot", d / "omniglot" / "none")


def test_omniglot_and_float_mnist_errors(tmp_path):
    with pytest.raises(UserError, match=r"no chardata.mat or omniglot_07-19-2017.mat .*--dataset omniglot"):
        datasets.load_omniglot(tmp_path, "test")
    with pytest.raises(UserError, match=r"--dataset mnist_float"):
        datasets.load_mnist_float(tmp_path)
    p = tmp_path / "omniglot" / "chardata.mat"
    p.parent.mkdir()
    scipy.io.savemat(str(p), {"data": np.zeros((784, 3))})
    with pytest.raises(UserError, match="expected keys 'data' and 'testdata'"):
        datasets.load_omniglot(tmp_path, "test")
    scipy.io.savemat(str(p), {"data": np.zeros((700, 1400)), "testdata": np.zeros((784, 2))})
    with pytest.raises(UserError, match=r"must be numbers \[784, N\]"):
        datasets.load_omniglot(tmp_path, "test")
    f = tmp_path / "mnist_float" / "train-images-idx3-ubyte"
    f.parent.mkdir()
    f.write_bytes(struct.pack(">iiii", 2049, 1, 28, 28) + bytes(784))  # a labels magic
    with pytest.raises(UserError, match="not an idx3 image file"):
        datasets.load_mnist_float(tmp_path)
    f.write_bytes(struct.pack(">iiii", 2051, 2, 28, 28) + bytes(784))  # one image short
    with pytest.raises(UserError, match="header says 2 images"):
        datasets.load_mnist_float(tmp_path)


def test_float_mnist_from_idx_and_npy(tmp_path):
    imgs = np.random.RandomState(0).randint(0, 256, (7, 784))
    (tmp_path / "a" / "mnist_float").mkdir(parents=True)
    write_idx(str(tmp_path / "a" / "mnist_float" / "train-images-idx3-ubyte.gz"), imgs)
    got = datasets.load_mnist_float(tmp_path / "a")
    assert got.dtype == np.float32 and got.shape == (7, 784)
    np.testing.assert_allclose(got, imgs / 255.0, rtol=0, atol=1e-7)
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "b" / "mnist_train_xs_07-19-2017.npy", (imgs / 255.0).reshape(7, 28, 28))
    np.testing.assert_allclose(datasets.load_mnist_float(tmp_path / "b"), imgs / 255.0, atol=1e-7)


def test_fetch_data_imports_and_checks(tmp_path, omni_dir, capsys, monkeypatch):
    d, _, _ = omni_dir
    data = tmp_path / "data"
    assert fetch_data.main(["--data-dir", str(data), "--from", str(d / "omniglot" / "chardata.mat")]) == 0
    assert "imported Omniglot" in capsys.readouterr().out
    np.testing.assert_array_equal(datasets.load_omniglot(data, "test"), datasets.load_omniglot(d, "test"))
    # LeCun's .gz has a published md5: a different file of that name is refused, nothing installed
    gz = tmp_path / "dl" / "train-images-idx3-ubyte.gz"
    gz.parent.mkdir()
    write_idx(str(gz), np.zeros((3, 784)))
    assert fetch_data.main(["--data-dir", str(data), "--from", str(gz)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"md5 expected {fetch_data.FLOAT_MD5}" in err[0]
    assert not datasets.present("mnist_float", data)
    raw = tmp_path / "dl" / "train-images-idx3-ubyte"  # the unpacked file: checked by reading it
    write_idx(str(raw), np.full((3, 784), 255))
    assert fetch_data.main(["--data-dir", str(data), "--from", str(gz.parent)]) == 0
    assert datasets.load_mnist_float(data).min() == 1.0
    # offline: one line naming the file to get and where it goes
    monkeypatch.setattr(fetch_data, "OMNI_URL", "http://127.0.0.1:9/chardata.mat")
    assert fetch_data.main(["--data-dir", str(tmp_path / "empty"), "--dataset", "omniglot"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot download" in err[0] and "--from FILE" in err[0]
    assert os.path.join("empty", "omniglot", "chardata.mat") in err[0]


# --- the sp network -----------------------------------------------------------------------------


def _sigmoid_ll(y, logits):
    return np.sum(y * np.log(1 / (1 + np.exp(-logits))) + (1 - y) * np.log(1 / (1 + np.exp(logits))), -1)


def test_sp_log_weights_are_log_p_bottom_given_sampled_top_code():
    """q(b|x_top) through q_0, q_1 on the centered top half; one generator layer p_1 from b_1 to
    the 392 bottom pixels plus the bottom half of train_bias; f = log p(x_bottom | b)."""
    hp = sbn.parse_hparams("task=sp,n_layer=2,n_hidden=6")
    rng = np.random.RandomState(1)
    mean_xs = rng.uniform(0.05, 0.95, 784).astype(np.float32)
    B, K = 3, 4
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        net = sbn.Net(hp, mean_xs)
        x = tf.placeholder(tf.float32, [B, 784])
        u = tf.placeholder(tf.float32, [B, K, 12])
        lw = net.log_weights(x, u)
        names = {v.op.name: v for v in tf.global_variables()}
        assert "p_0/weights" not in names and names["p_1/weights"].shape == (6, 392)
        assert names["q_0/weights"].shape == (392, 6)
        with tf.Session() as s:
            s.run(tf.global_variables_initializer())
            W = s.run({k: v for k, v in names.items()})
            xs = (rng.uniform(size=(B, 784)) < 0.3).astype(np.float32)
            us = rng.uniform(size=(B, K, 12)).astype(np.float32)
            got = s.run(lw, {x: xs, u: us})
    bias = np.log(mean_xs) - np.log1p(-mean_xs)
    for i in range(B):
        for k in range(K):
            h = xs[i, :392] - mean_xs[:392]
            b = None
            for layer in range(2):
                logits = h @ W[f"q_{layer}/weights"] + W[f"q_{layer}/biases"]
                b = (us[i, k, 6 * layer : 6 * layer + 6] > 1 / (1 + np.exp(logits))).astype(np.float32)
                h = 2 * b - 1
            out = (2 * b - 1) @ W["p_1/weights"] + W["p_1/biases"] + bias[392:]
            np.testing.assert_allclose(got[i, k], _sigmoid_ll(xs[i, 392:], out), rtol=1e-5)


# --- training -------------------------------------------------------------------------------


def _train(data, wd, hparams, steps=6):
    argv = ["--data_path", str(data), "--working_dir", str(wd), "--steps", str(steps), "--hparams", hparams]
    return train_rebar.main(argv + ["--eval_limit", "4", "--eval_samples", "5", "--eval_freq", "0", "--log_every", "3"])


def _test_record(wd):
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r.get("split") == "test"][-1]


def test_omni_dynamic_b_data_is_the_references_floats(omni_dir):
    """datasets.load_data(binarize=not dynamic_b): with dynamic_b every Omniglot split stays float."""
    d = omni_dir[0]
    train, valid, test = train_rebar.load_task_data(d, sbn.parse_hparams("task=omni,dynamic_b=true"))
    assert train.dtype == np.float32 and np.isclose(train, 0.2).any() and np.isclose(train, 0.7).any()  # grey, not bits
    np.testing.assert_array_equal(valid, datasets.load_omniglot(d, "valid", binarize=False))
    np.testing.assert_array_equal(test, datasets.load_omniglot(d, "test", binarize=False))
    fixed = train_rebar.load_task_data(d, sbn.parse_hparams("task=omni"))
    np.testing.assert_array_equal(fixed[2], datasets.load_omniglot(d, "test"))


@pytest.fixture(scope="module")
def omni_run(omni_dir, tmp_path_factory):
    d, _, _ = omni_dir
    wd = tmp_path_factory.mktemp("omni_run")
    assert _train(d, wd, "model=SBNDynamicRebar,task=omni,n_layer=2,n_hidden=8,batch_size=6") == 0
    return wd


@pytest.mark.slow
def test_omni_trains_on_chardata(omni_dir, omni_run):
    d, wd = omni_dir[0], omni_run
    _, info = runinfo.resolve(str(wd))
    st = info["data_stats"]
    assert (st["dataset"], st["n_train"], st["n_valid"], st["n_test"]) == ("omniglot", 30, 4, 4)  # --eval_limit 4
    mean_xs = tf.train.load_checkpoint(str(wd / "model.ckpt-6")).get_tensor("mean_xs")
    np.testing.assert_allclose(mean_xs, datasets.load_omniglot(d, "train").mean(0), atol=1e-6)
    assert np.isfinite(_test_record(wd)["iwae"])


@pytest.mark.slow
def test_omni_freezes_and_takes_omniglot_bins(omni_dir, omni_run, tmp_path, capsys):
    from data_tools import img2bin
    from freeze import freeze_rebar
    from verify import loss_check

    d = omni_dir[0]
    model, bins = tmp_path / "model", tmp_path / "bins"
    assert freeze_rebar.main(["--ckpt", str(omni_run), "--batch", "2", "--samples", "3", "--out", str(model)]) == 0
    sig = str(model / "rebar.json")
    argv = ["--split", "test", "--signature", sig, "--data-dir", str(d), "-o", str(bins), "--limit", "3"]
    assert img2bin.main(["--dataset", "binarized_mnist"] + argv) == 2  # an Omniglot model is evaluated on Omniglot
    assert "is evaluated on omniglot, found --dataset binarized_mnist" in capsys.readouterr().err
    assert img2bin.main(["--dataset", "omniglot"] + argv) == 0
    first = sorted(os.listdir(bins / "x"))[0]
    got = np.fromfile(bins / "x" / first, np.float32).reshape(2, 784)
    np.testing.assert_array_equal(got, datasets.load_omniglot(d, "test")[:2])
    # the frozen graph itself as the offline model, against golden outputs from the checkpoint
    from infer import msame

    ins = f"{bins / 'x'},{bins / 'u'}"
    assert msame.main(["--model", str(model / "rebar.pb"), "--input", ins, "--output", str(tmp_path / "out")]) == 0
    argv = ["--signature", sig, "--offline", str(tmp_path / "out"), "--reference", str(tmp_path / "ref")]
    assert loss_check.main(argv + ["--checkpoint-reference", "--inputs", ins, "--no-progress"]) == 0


def test_dynamic_b_trains_on_float_mnist(tmp_path):
    rng = np.random.RandomState(2)
    write_binarized_mnist(str(tmp_path / "binarized_mnist"), rng)
    (tmp_path / "mnist_float").mkdir()
    imgs = rng.randint(0, 256, (30, 784))
    write_idx(str(tmp_path / "mnist_float" / "train-images-idx3-ubyte"), imgs)
    wd = tmp_path / "dyn"
    assert _train(tmp_path, wd, "model=SBNNVIL,task=sp,dynamic_b=true,n_layer=1,n_hidden=8,batch_size=5") == 0
    _, info = runinfo.resolve(str(wd))
    assert info["data_stats"]["n_train"] == 30 and info["data_stats"]["dynamic_b"] is True
    # the reference centers with the mean of the float training images, not of a binarisation
    mean_xs = tf.train.load_checkpoint(str(wd / "model.ckpt-6")).get_tensor("mean_xs")
    np.testing.assert_allclose(mean_xs, (imgs / 255.0).mean(0), atol=1e-6)
    # each step's batch is a fresh binarisation (x > u) of the float images
    xs = (imgs / 255.0).astype(np.float32)[:5]
    b1, b2 = train_rebar.binarize(0, 1, xs), train_rebar.binarize(0, 2, xs)
    assert set(np.unique(b1)) <= {0.0, 1.0} and not np.array_equal(b1, b2)
    assert abs(float(b1.mean()) - float(xs.mean())) < 0.05


# --- sp through the road ------------------------------------------------------------------------


@pytest.mark.slow
def test_sp_trains_freezes_and_walks_the_road(mnist_dir, tmp_path, capsys):
    from convert import to_onnx
    from data_tools import img2bin
    from freeze import freeze_rebar
    from freeze.signature import Signature
    from infer import msame
    from verify import loss_check, reference, report

    wd, road = tmp_path / "train", tmp_path / "road"
    model = road / "model"
    assert _train(mnist_dir, wd, "model=SBNNVIL,task=sp,n_layer=2,n_hidden=16", steps=20) == 0
    assert freeze_rebar.main(["--ckpt", str(wd), "--batch", "4", "--samples", "6", "--out", str(model)]) == 0
    sig = Signature.load(model / "rebar.json")
    assert [(t.name, t.shape) for t in sig.inputs] == [
        ("x_top", [4, 392]),
        ("x_bottom", [4, 392]),
        ("u", [4, 6, 32]),
    ]
    onnx = model / "rebar.onnx"
    assert to_onnx.main(["--model", str(model / "rebar.pb"), "--output", str(onnx)]) == 0
    bins = road / "inputs"
    argv = ["--dataset", "binarized_mnist", "--split", "test", "--signature", str(model / "rebar.json")]
    assert img2bin.main(argv + ["--data-dir", mnist_dir, "-o", str(bins), "--limit", "10", "--seed", "1"]) == 0
    test = datasets.load_binarized_mnist(mnist_dir, "test")[:4].astype(np.float32)
    first = sorted(os.listdir(bins / "x_top"))[0]
    np.testing.assert_array_equal(np.fromfile(bins / "x_top" / first, np.float32).reshape(4, 392), test[:, :392])
    np.testing.assert_array_equal(np.fromfile(bins / "x_bottom" / first, np.float32).reshape(4, 392), test[:, 392:])
    ins = ",".join(str(bins / n) for n in ("x_top", "x_bottom", "u"))
    # image mode fills one input: for sp it says to use dataset mode, and writes nothing
    from data_tools import export_images

    pngs = tmp_path / "png"
    assert (
        export_images.main(
            [
                "--dataset",
                "binarized_mnist",
                "--split",
                "test",
                "-o",
                str(pngs),
                "--limit",
                "2",
                "--data_dir",
                mnist_dir,
            ]
        )
        == 0
    )
    capsys.readouterr()
    flags = [
        "-w",
        "28",
        "-h",
        "28",
        "-f",
        "GRAY",
        "-a",
        "NHWC",
        "-t",
        "float32",
        "--signature",
        str(model / "rebar.json"),
    ]
    assert img2bin.main(["-i", str(pngs), *flags, "-o", str(tmp_path / "img_bins")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 inputs (x_top, x_bottom)" in err[0] and "--dataset binarized_mnist" in err[0]
    assert not (tmp_path / "img_bins").exists()
    assert msame.main(["--model", str(onnx), "--input", ins, "--output", str(road / "out")]) == 0
    assert (
        reference.main(["--signature", str(model / "rebar.json"), "--input", ins, "--output", str(tmp_path / "ref")])
        == 0
    )
    lc = road / "loss_check_rebar.json"
    argv = ["--signature", str(onnx) + ".json", "--offline", str(road / "out"), "--reference", str(tmp_path / "ref")]
    assert loss_check.main(argv + ["--inputs", ins, "--report", str(lc), "--no-progress"]) == 0
    rep = json.loads(lc.read_text())
    assert rep["passed"] and rep["n_images"] == 10
    # the per-image bounds were compared image by image; IWAE-K >= the mean of the K log weights
    per = {m["name"]: m for m in rep["model_metrics"]}
    assert all(m["passed"] and m["n_images"] == 10 and m["max_abs_diff_per_image"] < 1e-3 for m in per.values())
    assert per["iwae"]["offline_mean"] >= per["elbo"]["offline_mean"]
    assert report.main(["--road", str(road), "--train", f"{wd}:CPU", "-o", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "index.html").read_text()
    assert "x_top" in html and "PASS" in html


@pytest.mark.slow
def test_variance_table_for_sp(mnist_dir, tmp_path, capsys):
    from train import rebar_variance

    argv = ["--data_path", mnist_dir, "--hparams", "model=SBNRebar,task=sp,n_layer=2,learning_rate=0.0003"]
    argv += ["--estimators", "REINFORCE,REBAR", "--draws", "20", "--cv_steps", "30", "--out", str(tmp_path / "v")]
    assert rebar_variance.main(argv) == 0
    assert "task=sp" in capsys.readouterr().out
    res = json.loads((tmp_path / "v" / "variance.json").read_text())
    assert res["hparams"]["task"] == "sp"
    r = res["results"]
    assert r["REBAR"]["log_variance_q"] < r["REINFORCE"]["log_variance_q"] - 1
