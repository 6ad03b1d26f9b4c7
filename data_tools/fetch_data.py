"""Fetch the datasets into DATA_DIR, or import a local copy.

    DATA_DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    DATA_DIR/binarized_mnist/binarized_mnist_{train,valid,test}.amat|.mat
    DATA_DIR/omniglot/chardata.mat                      (--dataset omniglot: REBAR task=omni)
    DATA_DIR/mnist_float/train-images-idx3-ubyte.gz     (--dataset mnist_float: REBAR dynamic_b)

With network: the official CIFAR-10 python tarball (md5 checked) and Larochelle's
binarized MNIST .amat files (no published md5: checked by content instead, 784 values
in {0,1} per row and the 50000/10000/10000 row counts); with --dataset, also the files
the REBAR reference's download_data.py fetches: Burda's Omniglot chardata.mat from the
IWAE repository (no published md5: checked by content, 'data' [784, 24345] and
'testdata' [784, 8070] in [0,1]) and LeCun's train-images-idx3-ubyte.gz (md5 checked).
``--from PATH`` imports a local tarball, folder or file instead (the reference's own
omniglot_07-19-2017.mat and mnist_train_xs_07-19-2017.npy too). Everything is unpacked
into a hidden temporary folder and renamed into place, so a dataset folder is complete
or absent. Present datasets are kept unless --force.
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
OMNI_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"  # research/rebar's
OMNI_ROWS = (24345, 8070)  # chardata.mat's training and test images
FLOAT_URLS = (  # LeCun's page (as research/rebar's download_data.py), then torchvision's mirror
    "http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
)
FLOAT_MD5 = "f68b3c2dcbeaaa9fbdd348bbdeb94873"  # train-images-idx3-ubyte.gz, as LeCun's mirrors publish it
DEFAULT = ("cifar10", "binarized_mnist")  # what a bare fetch_data.py gets
CIFAR_FILES = datasets.CIFAR_TRAIN + datasets.CIFAR_TEST + ["batches.meta"]
EXAMPLE = """examples:
  python data_tools/fetch_data.py --data_dir data
  python data_tools/fetch_data.py --data_dir data --from ~/Downloads/cifar-10-python.tar.gz
  python data_tools/fetch_data.py --data_dir data --dataset omniglot --dataset mnist_float
  python data_tools/fetch_data.py --data_dir data --from ~/Downloads/chardata.mat"""


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


def _single_file(src, names):
    """A file named as one of ``names``, or the first such file inside a folder; None if none."""
    if os.path.isfile(src):
        return src if os.path.basename(src) in names else None
    if os.path.isdir(src):
        return next((p for p in (_find(src, n) for n in names) if p), None)
    return None


def import_omniglot(src, data_dir, force=False, full=False):
    """chardata.mat (or the reference's omniglot_07-19-2017.mat), a file or in a folder,
    checked by content and installed as DATA_DIR/omniglot/chardata.mat."""
    target = os.path.join(data_dir, datasets.OMNI_DIR)
    if os.path.exists(target) and not force:
        return f"kept {target} (exists)"
    p = _single_file(src, datasets.OMNI_FILES)
    if p is None:
        raise UserError(f"{src}: no Omniglot {' or '.join(datasets.OMNI_FILES)}")
    with _staged(data_dir, data_dir) as (_, out):
        dest = os.path.join(out, datasets.OMNI_FILES[0])
        shutil.copyfile(p, dest)
        train, test = datasets.read_omniglot(dest)
        if full and (len(train), len(test)) != OMNI_ROWS:
            raise UserError(f"{p}: expected {OMNI_ROWS} training/test images, found {(len(train), len(test))}")
        _install(out, target, force)
    return f"imported Omniglot into {target}"


def import_mnist_float(src, data_dir, force=False):
    """LeCun's train-images-idx3-ubyte[.gz] (the .gz md5-checked) or the reference's
    mnist_train_xs_07-19-2017.npy, a file or in a folder, checked by reading it, installed
    under DATA_DIR/mnist_float/ with its name."""
    target = os.path.join(data_dir, datasets.FLOAT_DIR)
    if os.path.exists(target) and not force:
        return f"kept {target} (exists)"
    p = _single_file(src, datasets.FLOAT_FILES)
    if p is None:
        raise UserError(f"{src}: no float MNIST {' or '.join(datasets.FLOAT_FILES)}")
    if p.endswith(".gz"):
        got = md5(p)
        if got != FLOAT_MD5:
            raise UserError(f"{p}: md5 expected {FLOAT_MD5} (LeCun's train-images-idx3-ubyte.gz), found {got}")
    with _staged(data_dir, data_dir) as (_, out):
        shutil.copyfile(p, os.path.join(out, os.path.basename(p)))
        datasets.load_mnist_float(out)
        _install(out, target, force)
    return f"imported float MNIST into {target}"


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


def fetch(data_dir, cifar_url=CIFAR_URL, mnist_url=MNIST_URL, force=False, timeout=30, which=DEFAULT):
    """Download the datasets in ``which`` (CIFAR-10 and binarized MNIST by default); one
    UserError saying what to put where when offline."""
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
        if "omniglot" in which and (force or not datasets.present("omniglot", data_dir)):
            mat = os.path.join(tmp, datasets.OMNI_FILES[0])
            _get(OMNI_URL, mat, data_dir, timeout)
            msgs.append(import_omniglot(mat, data_dir, force, full=True))
        if "mnist_float" in which and (force or not datasets.present("mnist_float", data_dir)):
            gz = os.path.join(tmp, datasets.FLOAT_FILES[2])
            _get_any(FLOAT_URLS, gz, data_dir, timeout)
            msgs.append(import_mnist_float(gz, data_dir, force))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return msgs or [f"kept {data_dir} ({', '.join(which)} present)"]


def ensure(data_dir, which=DEFAULT, timeout=30) -> list[str]:
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
        raise UserError(f"{url}: cannot download ({getattr(e, 'reason', e)}); {_offline_hint(url, data_dir)}") from None


def _get_any(urls, dest, data_dir, timeout):
    """The first of ``urls`` that answers (mirrors of one file); the last one's error otherwise."""
    for url in urls[:-1]:
        try:
            return download(url, dest, timeout)
        except (OSError, http.client.HTTPException):
            continue
    return _get(urls[-1], dest, data_dir, timeout)


def _offline_hint(url, data_dir):
    """What to fetch by hand for the file at ``url``, and where it goes."""
    if url in (OMNI_URL,) + FLOAT_URLS:
        what, where = (
            (f"{OMNI_URL}", os.path.join(data_dir, datasets.OMNI_DIR, datasets.OMNI_FILES[0]))
            if url == OMNI_URL
            else (f"{FLOAT_URLS[0]} (md5 {FLOAT_MD5})", os.path.join(data_dir, datasets.FLOAT_DIR) + "/")
        )
        return (
            f"without network, get {what}, then run 'python data_tools/fetch_data.py --data-dir {data_dir} "
            f"--from FILE', or put it in {where}"
        )
    return (
        f"without network, get {CIFAR_URL} (md5 {CIFAR_MD5}) and binarized_mnist_{{train,valid,test}}.amat, then run "
        f"'python data_tools/fetch_data.py --data-dir {data_dir} --from FILE_OR_FOLDER', or put "
        f"them in {os.path.join(data_dir, datasets.CIFAR_DIR)}/ and "
        f"{os.path.join(data_dir, datasets.MNIST_DIR)}/"
    )


@cli
def main(argv=None):
    ap = tool_parser(None, __doc__, EXAMPLE)
    add_data_dir(ap, default=datasets.default_data_dir(), help="default $DATA_DIR or ./data")
    ap.add_argument("--from", dest="src", help="local tarball, folder or file to import instead of downloading")
    ap.add_argument(
        "--dataset",
        action="append",
        choices=datasets.FETCHABLE,
        help=f"download this dataset (repeatable; default {' and '.join(DEFAULT)}); omniglot and "
        "mnist_float are the REBAR reference's task=omni and dynamic_b=true files",
    )
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
        if _single_file(a.src, datasets.OMNI_FILES):
            msgs.append(import_omniglot(a.src, a.data_dir, a.force))
        if _single_file(a.src, datasets.FLOAT_FILES):
            msgs.append(import_mnist_float(a.src, a.data_dir, a.force))
        if not msgs:
            raise UserError(
                f"{a.src}: holds no CIFAR-10 python batches, binarized_mnist_{{train,valid,test}}.amat|.mat, "
                f"{' or '.join(datasets.OMNI_FILES)} (Omniglot) or {' or '.join(datasets.FLOAT_FILES)} (float MNIST)"
            )
    else:
        msgs = fetch(a.data_dir, force=a.force, which=tuple(a.dataset or DEFAULT))
    return msgs


if __name__ == "__main__":
    run(main)
