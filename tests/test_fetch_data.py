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


# --- `make demo` without data: fetch what is missing, or stop with one line -----------------


def _road(repo_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_road", os.path.join(repo_root, "demo", "road.py"))
    road = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(road)
    return road


def _listing(folder):
    """Every entry under ``folder``, hidden ones too; None if it does not exist."""
    if not os.path.exists(folder):
        return None
    return sorted(
        os.path.relpath(os.path.join(d, n), folder) for d, subs, files in os.walk(folder) for n in subs + files
    )


def _no_steps(monkeypatch, road):
    def refuse(*a, **k):
        raise AssertionError(f"the demo ran a step without data: {a}")

    monkeypatch.setattr(road.subprocess, "call", refuse)


def test_demo_offline_stops_with_one_line_naming_from(tmp_path, monkeypatch, capsys, repo_root):
    road = _road(repo_root)
    _no_steps(monkeypatch, road)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setattr(fetch_data, "CIFAR_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")  # closed port
    monkeypatch.setattr(fetch_data, "MNIST_URL", "http://127.0.0.1:9/binarized_mnist_{}.amat")
    data = tmp_path / "data"
    with pytest.raises(SystemExit) as e:
        road.main(["--data-dir", str(data), "--out", str(tmp_path / "out")])
    msg = str(e.value.code)
    assert msg.startswith("error: http://127.0.0.1:9/cifar-10-python.tar.gz: cannot download") and "\n" not in msg
    assert f"python data_tools/fetch_data.py --data-dir {data} --from " in msg
    assert _listing(data) is None  # the folder the fetch created is gone again: nothing half-written


class _CutResponse:
    """An HTTP response whose connection drops after ``keep`` bytes of ``data``."""

    def __init__(self, data, keep):
        self.data, self.keep, self.pos = data, keep, 0
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n):
        if self.pos >= self.keep:
            raise ConnectionResetError(104, "Connection reset by peer")
        block = self.data[self.pos : min(self.pos + n, self.keep)]
        self.pos += len(block)
        return block


def _fake_mnist(folder):
    rng = np.random.RandomState(0)
    os.makedirs(folder)
    for split in datasets.MNIST_SPLITS:
        rows = rng.randint(0, 2, (2, 784))
        with open(os.path.join(folder, f"binarized_mnist_{split}.amat"), "w") as f:
            f.write("\n".join(" ".join(map(str, r)) for r in rows))


def test_demo_download_cut_midway_leaves_nothing_half_written(tmp_path, monkeypatch, capsys, repo_root):
    road = _road(repo_root)
    tgz = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar_tgz(tgz)
    body = tgz.read_bytes()
    urls = []

    def urlopen(url, timeout=None):
        urls.append(url)
        return _CutResponse(body, len(body) // 2)

    monkeypatch.setattr(fetch_data.urllib.request, "urlopen", urlopen)
    data = tmp_path / "data"
    _fake_mnist(data / datasets.MNIST_DIR)  # MNIST present: only CIFAR-10 is fetched
    before = _listing(data)
    with pytest.raises(SystemExit) as e:
        road.fetch_missing_data(str(data))
    msg = str(e.value.code)
    assert urls == [fetch_data.CIFAR_URL]
    assert (
        "Connection reset by peer" in msg and "\n" not in msg and "fetch_data.py --data-dir" in msg and "--from" in msg
    )
    assert _listing(data) == before  # no partial tarball, no temporary folder, no cifar-10-batches-py


def test_demo_fetches_only_what_is_missing(tmp_path, monkeypatch, capsys, repo_root):
    road = _road(repo_root)
    tgz = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar_tgz(tgz)
    monkeypatch.setattr(fetch_data, "CIFAR_URL", tgz.as_uri())  # a local file: no network
    monkeypatch.setattr(fetch_data, "CIFAR_MD5", fetch_data.md5(tgz))
    monkeypatch.setattr(fetch_data, "MNIST_URL", "http://127.0.0.1:9/binarized_mnist_{}.amat")  # never asked
    data = tmp_path / "data"
    road.fetch_missing_data(str(data), only="classifier")  # CIFAR-10 only
    assert capsys.readouterr().out.startswith("imported CIFAR-10 into ")
    assert datasets.load_cifar10(data, "test")[0].shape == (5, 32, 32, 3)
    assert _listing(data) == [datasets.CIFAR_DIR] + [
        os.path.join(datasets.CIFAR_DIR, n) for n in sorted(fetch_data.CIFAR_FILES)
    ]
    road.fetch_missing_data(str(data), only="realnvp")  # present now: nothing fetched, nothing said
    assert capsys.readouterr().out == ""
