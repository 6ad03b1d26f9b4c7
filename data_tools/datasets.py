"""Loaders for the datasets, used by every stage.

CIFAR-10 in the official python layout (``cifar-10-batches-py/``; any number of
images per batch), returned as uint8 NHWC. Binarized MNIST as Larochelle's ``.amat``
text or as MATLAB ``.mat`` (key ``X``), returned as uint8 [N, 784] in {0, 1}.
The REBAR reference's other two files (tensorflow/models research/rebar datasets.py):
Omniglot ``omniglot/chardata.mat`` (Burda's IWAE file: ``data`` [784, N_train] and
``testdata`` [784, N_test], floats in [0,1]), and float MNIST for dynamic binarisation,
``mnist_float/`` holding LeCun's ``train-images-idx3-ubyte[.gz]`` (its first 50000
images / 255) or the reference's own ``mnist_train_xs_07-19-2017.npy``.
Every problem is a one-line UserError naming the file.
"""

import gzip
import os
import pickle
import struct

import numpy as np

from common.errors import UserError

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = ["test_batch"]
MNIST_DIR = "binarized_mnist"
MNIST_SPLITS = ("train", "valid", "test")
OMNI_DIR = "omniglot"
OMNI_FILES = ("chardata.mat", "omniglot_07-19-2017.mat")  # Burda's name, the reference's name
OMNI_VALID = 1345  # the reference's validation images, the last after its seeded permutation
OMNI_BINARIZE_SEED, OMNI_SHUFFLE_SEED = 5, 123
FLOAT_DIR = "mnist_float"
FLOAT_FILES = ("mnist_train_xs_07-19-2017.npy", "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz")
FLOAT_TRAIN = 50000  # LeCun's first 50000 training images: binarized MNIST's training split
DATASETS = ("cifar10", "binarized_mnist", "omniglot")  # evaluation data of the built-in models
FETCHABLE = DATASETS + ("mnist_float",)  # and the training-only float MNIST (dynamic_b)


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
    binarized MNIST splits; the Omniglot or float MNIST file), without reading it."""
    data_dir = os.fspath(data_dir or default_data_dir())
    if dataset == "cifar10":
        return _find_cifar(data_dir) is not None
    if dataset == "binarized_mnist":
        return all(_find_mnist(data_dir, split) is not None for split in MNIST_SPLITS)
    if dataset == "omniglot":
        return _find_file(data_dir, OMNI_DIR, OMNI_FILES) is not None
    if dataset == "mnist_float":
        return _find_file(data_dir, FLOAT_DIR, FLOAT_FILES) is not None
    raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(FETCHABLE)}")


def _find_file(data_dir, sub, names):
    for root in (os.path.join(data_dir, sub), data_dir):
        for n in names:
            if os.path.isfile(os.path.join(root, n)):
                return os.path.join(root, n)
    return None


def _missing(data_dir, sub, names, what, fetch):
    return UserError(
        f"{os.path.join(data_dir, sub)}: no {' or '.join(names)} ({what}); run 'python data_tools/fetch_data.py "
        f"--data-dir {data_dir} --dataset {fetch}' (or with --from a local copy)"
    )


# --- Omniglot (the REBAR reference's read_omniglot) ------------------------------------------


def read_omniglot(path):
    """chardata.mat -> (train, test) float32 [N, 784] in [0,1], as the reference lays them out:
    ``data``/``testdata`` transposed to one image a row, reshaped (-1, 28, 28), then flattened
    in Fortran order (column-major: each image transposed)."""
    import scipy.io

    try:
        m = scipy.io.loadmat(path)
    except Exception as e:
        raise UserError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    out = []
    for key in ("data", "testdata"):
        if key not in m:
            keys = [k for k in m if not k.startswith("__")]
            raise UserError(f"{path}: expected keys 'data' and 'testdata' (Omniglot chardata.mat), found {keys}")
        a = np.asarray(m[key])
        if a.ndim != 2 or a.shape[0] != 784 or not np.issubdtype(a.dtype, np.number):
            raise UserError(
                f"{path}: {key!r} must be numbers [784, N] (one image a column), found {a.dtype} {list(a.shape)}"
            )
        a = a.T.astype(np.float32)
        if not (np.isfinite(a).all() and a.min(initial=0) >= 0 and a.max(initial=0) <= 1):
            raise UserError(f"{path}: {key!r} must hold values in [0, 1]")
        out.append(a.reshape(-1, 28, 28).reshape(-1, 784, order="F"))
    if len(out[0]) <= OMNI_VALID:
        raise UserError(
            f"{path}: 'data' has {len(out[0])} images; the reference's split keeps the last {OMNI_VALID} for validation"
        )
    return out[0], out[1]


def load_omniglot(data_dir=None, split="train", binarize=True):
    """One Omniglot split (see omniglot_splits)."""
    if split not in MNIST_SPLITS:
        raise UserError(f"Omniglot split must be one of {MNIST_SPLITS}, got {split!r}")
    return omniglot_splits(data_dir, binarize)[split]


def omniglot_splits(data_dir=None, binarize=True):
    """{split: images} as the reference splits Omniglot: binarised once with seed 5 (train,
    then test, from one stream) unless ``binarize=False`` (floats, for dynamic binarisation),
    the training images permuted with seed 123 and the last 1345 kept for validation.
    uint8 {0,1} when binarized, else float32."""
    data_dir = os.fspath(data_dir or default_data_dir())
    path = _find_file(data_dir, OMNI_DIR, OMNI_FILES)
    if path is None:
        raise _missing(data_dir, OMNI_DIR, OMNI_FILES, "Omniglot for task=omni", "omniglot")
    train, test = read_omniglot(path)
    if binarize:
        rng = np.random.RandomState(OMNI_BINARIZE_SEED)
        train = (rng.rand(*train.shape) < train).astype(np.uint8)
        test = (rng.rand(*test.shape) < test).astype(np.uint8)
    train = train[np.random.RandomState(OMNI_SHUFFLE_SEED).permutation(len(train))]
    return {"train": train[:-OMNI_VALID], "valid": train[-OMNI_VALID:], "test": test}


# --- float MNIST (dynamic binarisation) ----------------------------------------------------


def _read_idx_images(path):
    """LeCun's idx3 file (optionally gzipped) -> uint8 [N, rows*cols]."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(16)
            if len(head) < 16 or struct.unpack(">i", head[:4])[0] != 2051:
                raise UserError(f"{path}: not an idx3 image file (expected magic 2051 in its first 4 bytes)")
            n, rows, cols = struct.unpack(">iii", head[4:])
            data = np.frombuffer(f.read(), np.uint8)
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: cannot read ({type(e).__name__}: {e}); a truncated download?") from None
    if data.size != n * rows * cols:
        raise UserError(f"{path}: header says {n} images of {rows}x{cols}, found {data.size} bytes of pixels")
    return data.reshape(n, rows * cols)


def load_mnist_float(data_dir=None):
    """float32 [N, 784] in [0,1]: the training images the reference re-binarises each batch
    (its .npy as it is, or LeCun's first 50000 training images / 255, as its download_data.py)."""
    data_dir = os.fspath(data_dir or default_data_dir())
    path = _find_file(data_dir, FLOAT_DIR, FLOAT_FILES)
    if path is None:
        raise _missing(data_dir, FLOAT_DIR, FLOAT_FILES, "float MNIST for dynamic_b=true", "mnist_float")
    if path.endswith(".npy"):
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
        x = np.asarray(x, np.float32).reshape(len(x), -1)
    else:
        x = (_read_idx_images(path)[:FLOAT_TRAIN] / 255.0).astype(np.float32)
    if x.shape[1:] != (784,) or not len(x):
        raise UserError(f"{path}: expected [N, 784] images, found {list(x.shape)}")
    if not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
        raise UserError(f"{path}: expected pixel values in [0, 1] (float MNIST / 255)")
    return x


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
    if dataset == "omniglot":
        return load_omniglot(data_dir, split), None
    raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")


def image_shape(dataset):
    """(H, W, C) of one image as a picture: CIFAR-10 RGB 32x32, binarized MNIST gray 28x28."""
    return {"cifar10": (32, 32, 3), "binarized_mnist": (28, 28, 1), "omniglot": (28, 28, 1)}[dataset]
