"""Dataset loaders: real data shapes and checksums of content, and one-line errors
naming the file for every kind of bad input."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from common.errors import UserError
from data_tools import datasets


def test_real_cifar_any_batch_size(cifar_dir):
    x, y = datasets.load_cifar10(cifar_dir, "test")
    assert x.dtype == np.uint8 and x.shape[1:] == (32, 32, 3)
    assert len(x) == len(y) and len(x) > 0
    assert set(np.unique(y)) <= set(range(10))
    # NHWC from the R, G, B planes: pixel (0,0) channel c is row[c*1024]
    with open(os.path.join(cifar_dir, "cifar-10-batches-py", "test_batch"), "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]
    assert np.array_equal(x[0, 0, 0], raw[0, [0, 1024, 2048]])
    assert np.array_equal(x[3, 5, 7], raw[3, [5 * 32 + 7, 1024 + 5 * 32 + 7, 2048 + 5 * 32 + 7]])


def test_real_mnist_all_splits(mnist_dir):
    sizes = {s: datasets.load_binarized_mnist(mnist_dir, s) for s in datasets.MNIST_SPLITS}
    assert [len(v) for v in sizes.values()] == [50000, 10000, 10000]
    for v in sizes.values():
        assert v.dtype == np.uint8 and v.shape[1] == 784 and set(np.unique(v)) == {0, 1}


def _cifar(tmp_path, n=7):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.RandomState(0)
    d = {b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(range(n))}
    with open(root / "test_batch", "wb") as f:
        pickle.dump(d, f, protocol=2)
    return root


def test_cifar_small_batch_roundtrip(tmp_path):
    _cifar(tmp_path, n=7)
    x, y = datasets.load_cifar10(tmp_path, "test")
    assert x.shape == (7, 32, 32, 3) and list(y) == list(range(7))


@pytest.mark.parametrize("corrupt", ["truncated", "foreign", "wronglen"])
def test_cifar_bad_input_names_file(tmp_path, corrupt):
    root = _cifar(tmp_path)
    p = root / "test_batch"
    if corrupt == "truncated":
        p.write_bytes(p.read_bytes()[:1000])
    elif corrupt == "foreign":
        with open(p, "wb") as f:
            pickle.dump({"a": 1}, f)
    else:
        with open(p, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(UserError, match="test_batch"):
        datasets.load_cifar10(tmp_path, "test")


def test_missing_folders(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        datasets.load_cifar10(tmp_path / "nope", "train")
    with pytest.raises(UserError, match="binarized_mnist_valid"):
        datasets.load_binarized_mnist(tmp_path, "valid")


def test_mnist_amat_and_mat_agree(tmp_path):
    root = tmp_path / "binarized_mnist"
    root.mkdir()
    x = (np.random.RandomState(1).rand(5, 784) > 0.7).astype(np.uint8)
    (root / "binarized_mnist_test.amat").write_text("\n".join(" ".join(map(str, r)) for r in x) + "\n")
    scipy.io.savemat(root / "binarized_mnist_valid.mat", {"X": x})
    assert np.array_equal(datasets.load_binarized_mnist(tmp_path, "test"), x)
    assert np.array_equal(datasets.load_binarized_mnist(tmp_path, "valid"), x)


@pytest.mark.parametrize(
    "line,match",
    [
        ("0 1 1", r":1: expected 784 values per row, found 3"),
        (" ".join(["0"] * 783 + ["2"]), r"expected 0 or 1, found 2"),
    ],
)
def test_mnist_bad_rows(tmp_path, line, match):
    p = tmp_path / "binarized_mnist_train.amat"
    p.write_text(line + "\n")
    with pytest.raises(UserError, match=match) as e:
        datasets.read_mnist_file(str(p))
    assert "binarized_mnist_train.amat" in str(e.value)


def test_cli_error_is_one_line(tmp_path, repo_root):
    code = (
        "from common.errors import cli\nfrom data_tools.datasets import load\n"
        "@cli\ndef main(argv=None):\n    load('cifar10', 'test', %r)\nraise SystemExit(main())" % str(tmp_path)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
