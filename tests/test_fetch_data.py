"""fetch_data on small fake archives made on the fly (never the network)."""

import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from data_tools import datasets, fetch_data


def _cifar_batch(n, seed):
    rng = np.random.RandomState(seed)
    return pickle.dumps(
        {b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(rng.randint(0, 10, n))}, protocol=2
    )


def _fake_cifar_tgz(path, n=5):
    with tarfile.open(path, "w:gz") as tf:
        for i, name in enumerate(fetch_data.CIFAR_FILES):
            data = _cifar_batch(n, i) if name != "batches.meta" else pickle.dumps({b"label_names": []})
            ti = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_import_cifar_tarball_and_keep_existing(tmp_path):
    tgz = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar_tgz(tgz)
    data = tmp_path / "data"
    assert fetch_data.main(["--data-dir", str(data), "--from", str(tgz)]) == 0
    x, y = datasets.load_cifar10(data, "test")
    assert x.shape == (5, 32, 32, 3) and y.shape == (5,)
    assert [n for n in os.listdir(data) if n.startswith(".")] == []  # temp folders gone
    before = os.path.getmtime(data / "cifar-10-batches-py" / "test_batch")
    assert fetch_data.main(["--data-dir", str(data), "--from", str(tgz)]) == 0  # kept, not replaced
    assert os.path.getmtime(data / "cifar-10-batches-py" / "test_batch") == before


def test_import_mnist_folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.RandomState(0)
    for split in datasets.MNIST_SPLITS:
        rows = rng.randint(0, 2, (3, 784))
        (src / f"binarized_mnist_{split}.amat").write_text("\n".join(" ".join(map(str, r)) for r in rows))
    data = tmp_path / "data"
    assert fetch_data.main(["--data-dir", str(data), "--from", str(src)]) == 0
    got = datasets.load_binarized_mnist(data, "valid")
    assert got.shape == (3, 784) and set(np.unique(got)) <= {0, 1}


def test_broken_tarball_is_an_error_and_leaves_nothing(tmp_path, capsys):
    bad = tmp_path / "cifar-bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        data = b"not a pickle"
        ti = tarfile.TarInfo("cifar-10-batches-py/test_batch")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    data = tmp_path / "data"
    assert fetch_data.main(["--data-dir", str(data), "--from", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data_batch_1" in err and len(err.strip().splitlines()) == 1
    assert not (data / "cifar-10-batches-py").exists()


def test_offline_says_what_to_put_where(tmp_path):
    with pytest.raises(fetch_data.UserError) as e:  # closed local port: no network used
        fetch_data.fetch(str(tmp_path), cifar_url="http://127.0.0.1:9/cifar-10-python.tar.gz", timeout=2)
    msg = str(e.value)
    assert "--from" in msg and fetch_data.CIFAR_MD5 in msg and "cifar-10-batches-py" in msg
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_md5_mismatch_rejected(tmp_path):
    tgz = tmp_path / "c.tar.gz"
    _fake_cifar_tgz(tgz)
    with pytest.raises(fetch_data.UserError, match="md5 expected c58f"):
        fetch_data.fetch(str(tmp_path / "d"), cifar_url=tgz.as_uri())
