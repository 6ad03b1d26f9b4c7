"""Fetch the two datasets into DATA_DIR, or import a local copy.

    DATA_DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    DATA_DIR/binarized_mnist/binarized_mnist_{train,valid,test}.amat|.mat

With network: the official CIFAR-10 python tarball (md5 checked) and Larochelle's
binarized MNIST .amat files (no published md5: checked by content instead, 784 values
in {0,1} per row and the 50000/10000/10000 row counts). ``--from PATH`` imports a local
tarball or folder instead. Everything is unpacked into a hidden temporary folder and
renamed into place, so a dataset folder is complete or absent. Present datasets are
kept unless --force.
"""

import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zlib

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import fsio  # noqa: E402
from common.cli import add_data_dir, add_force, tool_parser  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from data_tools import datasets  # noqa: E402

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"
MNIST_ROWS = {"train": 50000, "valid": 10000, "test": 10000}
CIFAR_FILES = datasets.CIFAR_TRAIN + datasets.CIFAR_TEST + ["batches.meta"]
EXAMPLE = """examples:
  python data_tools/fetch_data.py --data_dir data
  python data_tools/fetch_data.py --data_dir data --from ~/Downloads/cifar-10-python.tar.gz"""


def md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url, dest, timeout=30):
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=timeout) as r, open(dest, "wb") as f:
        total = int(r.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(url), leave=False) as bar:
            for block in iter(lambda: r.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))


def _install(tmp_folder, target, force):
    """Rename a finished folder into place (replacing the old one only with force)."""
    fsio.refuse_overwrite(target, force)
    if os.path.exists(target):
        shutil.rmtree(target)
    os.replace(tmp_folder, target)


def _check_cifar(folder):
    for n in datasets.CIFAR_TRAIN + datasets.CIFAR_TEST:
        datasets.read_cifar_batch(os.path.join(folder, n))


def _check_mnist(folder, split, full=False):
    for ext in (".amat", ".mat"):
        p = os.path.join(folder, f"binarized_mnist_{split}{ext}")
        if os.path.isfile(p):
            x = datasets.read_mnist_file(p)
            if full and len(x) != MNIST_ROWS[split]:
                raise UserError(f"{p}: expected {MNIST_ROWS[split]} rows, found {len(x)}")
            return p
    raise UserError(f"{folder}: no binarized_mnist_{split}.amat or .mat")


def _extract(src, dest):
    with tarfile.open(src) as tf:
        if hasattr(tarfile, "data_filter"):  # no absolute paths or links out of dest
            tf.extractall(dest, filter="data")
        else:
            tf.extractall(dest)


def _find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    return None


@contextlib.contextmanager
def _staged(src, data_dir):
    """(root to search, empty folder to fill): a tarball is unpacked into a hidden work folder
    inside data_dir (so the final rename stays on one filesystem); removed afterwards."""
    fsio.make_dirs(data_dir)
    work = tempfile.mkdtemp(prefix=".fetch-", dir=data_dir)
    try:
        root = src
        if os.path.isfile(src):
            try:
                _extract(src, work)
            except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
                # EOFError / zlib.error: a truncated or corrupt .tar.gz (an interrupted download)
                raise UserError(
                    f"{src}: not a complete, readable tar archive ({type(e).__name__}: {e}); download it again"
                ) from None
            root = work
        out = os.path.join(work, "out")
        os.mkdir(out)
        yield root, out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def import_cifar(src, data_dir, force=False):
    """From a tarball (any compression) or a folder holding the batches (at any depth)."""
    target = os.path.join(data_dir, datasets.CIFAR_DIR)
    if os.path.exists(target) and not force:
        return f"kept {target} (exists)"
    with _staged(src, data_dir) as (root, out):
        first = _find(root, datasets.CIFAR_TEST[0])
        if first is None:
            raise UserError(f"{src}: no CIFAR-10 python batches (expected test_batch, data_batch_1..5)")
        batches = os.path.dirname(first)
        for n in CIFAR_FILES:
            p = os.path.join(batches, n)
            if os.path.isfile(p):
                shutil.copyfile(p, os.path.join(out, n))
            elif n != "batches.meta":
                raise UserError(f"{p}: missing CIFAR-10 batch")
        _check_cifar(out)
        _install(out, target, force)
    return f"imported CIFAR-10 into {target}"


def import_mnist(src, data_dir, force=False, full=False):
    """From a folder (or tarball) holding binarized_mnist_{train,valid,test}.amat|.mat."""
    target = os.path.join(data_dir, datasets.MNIST_DIR)
    if os.path.exists(target) and not force:
        return f"kept {target} (exists)"
    with _staged(src, data_dir) as (root, out):
        for split in datasets.MNIST_SPLITS:
            p = next((q for q in (_find(root, f"binarized_mnist_{split}{e}") for e in (".amat", ".mat")) if q), None)
            if p is None:
                raise UserError(f"{src}: no binarized_mnist_{split}.amat or .mat in it")
            shutil.copyfile(p, os.path.join(out, os.path.basename(p)))
            _check_mnist(out, split, full)
        _install(out, target, force)
    return f"imported binarized MNIST into {target}"


def _is_tar(src):
    try:
        return tarfile.is_tarfile(src)
    except (OSError, EOFError, zlib.error):
        return False


def has_cifar(src):
    return (os.path.isfile(src) and "cifar" in os.path.basename(src).lower() and _is_tar(src)) or (
        os.path.isdir(src) and _find(src, datasets.CIFAR_TEST[0]) is not None
    )


def has_mnist(src):
    if os.path.isdir(src):
        return any(_find(src, f"binarized_mnist_test{e}") for e in (".amat", ".mat"))
    return os.path.isfile(src) and "mnist" in os.path.basename(src).lower() and _is_tar(src)


def fetch(data_dir, cifar_url=CIFAR_URL, mnist_url=MNIST_URL, force=False, timeout=30, which=datasets.DATASETS):
    """Download the datasets in ``which`` (both by default); one UserError saying what to put
    where when offline."""
    msgs = []
    fsio.make_dirs(data_dir)
    tmp = tempfile.mkdtemp(prefix=".download-", dir=data_dir)
    try:
        if "cifar10" in which and (force or not os.path.exists(os.path.join(data_dir, datasets.CIFAR_DIR))):
            tgz = os.path.join(tmp, "cifar-10-python.tar.gz")
            _get(cifar_url, tgz, data_dir, timeout)
            got = md5(tgz)
            if got != CIFAR_MD5:
                raise UserError(f"{cifar_url}: md5 expected {CIFAR_MD5}, found {got}")
            msgs.append(import_cifar(tgz, data_dir, force))
        if "binarized_mnist" in which and (force or not os.path.exists(os.path.join(data_dir, datasets.MNIST_DIR))):
            d = os.path.join(tmp, "mnist")
            os.mkdir(d)
            for split in datasets.MNIST_SPLITS:
                _get(mnist_url.format(split), os.path.join(d, f"binarized_mnist_{split}.amat"), data_dir, timeout)
            msgs.append(import_mnist(d, data_dir, force, full=True))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return msgs or [f"kept {data_dir} (both datasets present)"]


def ensure(data_dir, which=datasets.DATASETS, timeout=30) -> list[str]:
    """Download those of ``which`` that the loaders do not find in ``data_dir`` (what
    `make demo` does first on a machine without data); [] when all are there. Offline or
    unwritable: one UserError naming ``--from``, nothing half-written left in data_dir
    (and data_dir removed again if this call created it and it is still empty)."""
    need = [d for d in which if not datasets.present(d, data_dir)]
    if not need:
        return []
    created = not os.path.isdir(data_dir)
    try:
        return fetch(data_dir, CIFAR_URL, MNIST_URL, timeout=timeout, which=need)
    except OSError as e:
        raise _unwritable(e, data_dir) from None
    finally:
        if created:  # removed only while empty: a failed first fetch leaves no trace
            with contextlib.suppress(OSError):
                os.rmdir(data_dir)


def _unwritable(e, data_dir):
    return UserError(f"{e.filename or data_dir}: cannot write ({e.strerror or e}); nothing was installed")


def _get(url, dest, data_dir, timeout):
    try:
        download(url, dest, timeout)
    except (OSError, http.client.HTTPException) as e:  # URLError, timeouts, refused or cut connections
        raise UserError(
            f"{url}: cannot download ({getattr(e, 'reason', e)}); without network, get "
            f"{CIFAR_URL} (md5 {CIFAR_MD5}) and binarized_mnist_{{train,valid,test}}.amat, then run "
            f"'python data_tools/fetch_data.py --data-dir {data_dir} --from FILE_OR_FOLDER', or put "
            f"them in {os.path.join(data_dir, datasets.CIFAR_DIR)}/ and "
            f"{os.path.join(data_dir, datasets.MNIST_DIR)}/"
        ) from None


@cli
def main(argv=None):
    ap = tool_parser(None, __doc__, EXAMPLE)
    add_data_dir(ap, default=datasets.default_data_dir(), help="default $DATA_DIR or ./data")
    ap.add_argument("--from", dest="src", help="local tarball or folder to import instead of downloading")
    add_force(ap, help="replace datasets already in --data_dir")
    a = ap.parse_args(argv)
    try:
        msgs = _run(a)
    except OSError as e:  # unwritable or full --data-dir (downloads report their own errors)
        raise _unwritable(e, a.data_dir) from None
    for m in msgs:
        print(m)
    return 0


def _run(a):
    if a.src:
        if not os.path.exists(a.src):
            raise UserError(f"{a.src}: --from path does not exist")
        msgs = []
        if has_cifar(a.src):
            msgs.append(import_cifar(a.src, a.data_dir, a.force))
        if has_mnist(a.src):
            msgs.append(import_mnist(a.src, a.data_dir, a.force))
        if not msgs:
            raise UserError(
                f"{a.src}: holds neither CIFAR-10 python batches nor binarized_mnist_{{train,valid,test}}.amat|.mat"
            )
    else:
        msgs = fetch(a.data_dir, force=a.force)
    return msgs


if __name__ == "__main__":
    run(main)
