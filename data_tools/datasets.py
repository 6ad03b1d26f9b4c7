"""Loaders for the two datasets, used by every stage.

CIFAR-10 in the official python layout (``cifar-10-batches-py/``; any number of
images per batch), returned as uint8 NHWC. Binarized MNIST as Larochelle's ``.amat``
text or as MATLAB ``.mat`` (key ``X``), returned as uint8 [N, 784] in {0, 1}.
Every problem is a one-line UserError naming the file.
"""

import os
import pickle

import numpy as np

from common.errors import UserError

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]
MNIST_DIR = "binarized_mnist"
MNIST_SPLITS = ("train", "valid", "test")
DATASETS = ("cifar10", "binarized_mnist")


def default_data_dir():
    return os.environ.get("DATA_DIR", "data")


def _find_cifar(data_dir):
    """The folder holding the CIFAR-10 batches: DATA_DIR/cifar-10-batches-py or DATA_DIR
    itself; None if neither has one."""
    data_dir = os.fspath(data_dir)
    for root in (os.path.join(data_dir, CIFAR_DIR), data_dir):
        if os.path.isfile(os.path.join(root, CIFAR_TEST[0])) or os.path.isfile(os.path.join(root, CIFAR_TRAIN[0])):
            return root
    return None


def _cifar_root(data_dir):
    """Accept DATA_DIR or the cifar-10-batches-py folder itself."""
    root = _find_cifar(data_dir)
    if root is not None:
        return root
    raise UserError(
        f"{os.path.join(data_dir, CIFAR_DIR)}: no CIFAR-10 python batches found "
        "(expected data_batch_1..5 and test_batch; run "
        f"'python data_tools/fetch_data.py --data-dir {data_dir}')"
    )


def read_cifar_batch(path):
    """One official pickle batch -> (uint8 [N,32,32,3] NHWC, int64 labels [N])."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found (expected a CIFAR-10 python batch)")
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated, not a pickle, ...
        raise UserError(f"{path}: not a readable CIFAR-10 pickle batch ({type(e).__name__}: {e})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(d)[:5] if isinstance(d, dict) else type(d).__name__
        raise UserError(f"{path}: expected a dict with b'data' and b'labels', found {keys}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise UserError(f"{path}: b'data' must be uint8 [N, 3072], found {data.dtype} {list(data.shape)}")
    if labels.shape != (data.shape[0],):
        raise UserError(f"{path}: {data.shape[0]} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def load_cifar10(data_dir=None, split="train"):
    """(uint8 NHWC images, labels) for split 'train' or 'test'."""
    if split not in ("train", "test"):
        raise UserError(f"CIFAR-10 split must be 'train' or 'test', got {split!r}")
    root = _cifar_root(data_dir or default_data_dir())
    names = CIFAR_TRAIN if split == "train" else CIFAR_TEST
    parts = [read_cifar_batch(os.path.join(root, n)) for n in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _read_amat(path):
    """Larochelle's text: 784 numbers a row. Binary garbage, non-numbers, NaN/inf and an
    empty file are one-line errors naming the file and line."""
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("ascii")
            except UnicodeDecodeError as e:
                raise UserError(
                    f"{path}:{lineno}: expected text (784 numbers per row), found byte "
                    f"0x{raw[e.start]:02x}; not an .amat file"
                ) from None
            if not line.strip():
                continue
            vals = line.split()
            if len(vals) != 784:
                raise UserError(f"{path}:{lineno}: expected 784 values per row, found {len(vals)}")
            try:
                row = np.asarray(vals, dtype=np.float64)
            except ValueError:
                bad = next(v for v in vals if not _is_number(v))
                raise UserError(f"{path}:{lineno}: expected numbers, found {bad[:20]!r}") from None
            rows.append(row)
    if not rows:
        raise UserError(f"{path}: expected rows of 784 values, found an empty file")
    return np.stack(rows)


def _is_number(v):
    try:
        float(v)
        return True
    except ValueError:
        return False


def _read_mat(path):
    import scipy.io

    try:
        m = scipy.io.loadmat(path)
    except Exception as e:
        raise UserError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    if "X" not in m:
        keys = [k for k in m if not k.startswith("__")]
        raise UserError(f"{path}: expected key 'X' in the .mat file, found {keys}")
    return np.asarray(m["X"])


def read_mnist_file(path):
    """One binarized MNIST file (.amat text, or .mat even when named .amat) -> uint8 [N,784]."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: file not found (expected binarized MNIST .amat or .mat)")
    with open(path, "rb") as f:
        is_mat = f.read(6) == b"MATLAB"
    x = _read_mat(path) if is_mat else _read_amat(path)
    if x.ndim != 2 or x.shape[1] != 784:
        raise UserError(f"{path}: expected [N, 784] pixels, found {list(x.shape)}")
    bad = ~np.isin(x, (0, 1))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise UserError(f"{path}: row {r + 1} pixel {c}: expected 0 or 1, found {x[r, c]:g}")
    return x.astype(np.uint8)


def _find_mnist(data_dir, split):
    """DATA_DIR/binarized_mnist (or DATA_DIR itself)/binarized_mnist_<split>.mat|.amat; None
    if absent."""
    for root in (os.path.join(data_dir, MNIST_DIR), data_dir):
        for ext in (".mat", ".amat"):
            p = os.path.join(root, f"binarized_mnist_{split}{ext}")
            if os.path.isfile(p):
                return p
    return None


def present(dataset: str, data_dir=None) -> bool:
    """True when the loaders find the dataset in ``data_dir`` (CIFAR-10's batches; all three
    binarized MNIST splits), without reading it."""
    data_dir = os.fspath(data_dir or default_data_dir())
    if dataset == "cifar10":
        return _find_cifar(data_dir) is not None
    if dataset == "binarized_mnist":
        return all(_find_mnist(data_dir, split) is not None for split in MNIST_SPLITS)
    raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def load_binarized_mnist(data_dir=None, split="train"):
    """uint8 [N, 784] in {0,1} for split 'train', 'valid' or 'test'."""
    if split not in MNIST_SPLITS:
        raise UserError(f"binarized MNIST split must be one of {MNIST_SPLITS}, got {split!r}")
    data_dir = os.fspath(data_dir or default_data_dir())
    p = _find_mnist(data_dir, split)
    if p is not None:
        return read_mnist_file(p)
    raise UserError(
        f"{os.path.join(data_dir, MNIST_DIR)}: no binarized_mnist_{split}.mat or .amat found "
        f"(run 'python data_tools/fetch_data.py --data-dir {data_dir}')"
    )


def load(dataset, split, data_dir=None):
    """Images of a dataset split as uint8: CIFAR-10 [N,32,32,3], MNIST [N,784]."""
    return load_labeled(dataset, split, data_dir)[0]


def load_labeled(dataset, split, data_dir=None):
    """(images, labels or None): CIFAR-10's int64 class labels; binarized MNIST has none."""
    if dataset == "cifar10":
        return load_cifar10(data_dir, split)
    if dataset == "binarized_mnist":
        return load_binarized_mnist(data_dir, split), None
    raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def image_shape(dataset):
    """(H, W, C) of one image as a picture: CIFAR-10 RGB 32x32, binarized MNIST gray 28x28."""
    return {"cifar10": (32, 32, 3), "binarized_mnist": (28, 28, 1)}[dataset]
