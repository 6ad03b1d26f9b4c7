"""Input .bin files and their manifest: the writer and the reader (this stage owns them).

An input .bin holds one static batch of one model input: raw C-order bytes in the
signature's dtype and shape, no header (what msame feeds to the model). A dataset
written for a model is a folder:

    DIR/manifest.json
    DIR/<input name>/<prefix>_<00000>.bin       one folder per model input, in signature order

so msame's multi-input form is ``--input DIR/x,DIR/u`` (files matched by name). The
manifest says which images are in which file and how many rows are padding:

    {"format": "ascend-road-inputs/1", "dataset": "cifar10", "split": "test",
     "signature": {...model, batch, inputs...}, "seed": 0, "n_images": 1017,
     "inputs": [{"name": "x", "dir": "x"}, {"name": "u", "dir": "u"}],
     "files": [{"stem": "cifar10_test_00000", "first": 0, "n_real": 16, "n_pad": 0}, ...]}
"""
import os

import numpy as np

from common import fsio
from common.errors import UserError

FORMAT = "ascend-road-inputs/1"
MANIFEST = "manifest.json"


def write_bin(path, array, tensor=None):
    """Write one input .bin atomically, checked against a signature Tensor if given."""
    array = np.ascontiguousarray(array)
    if tensor is not None:
        if list(array.shape) != tensor.shape or array.dtype != tensor.np_dtype:
            raise UserError(f"{path}: input {tensor.name!r} expects {tensor.shape} {tensor.dtype}, "
                            f"got {list(array.shape)} {array.dtype}")
    fsio.write_array(path, array)


def check_bin(path, tensor):
    """Raise a UserError naming the file unless it has exactly the tensor's byte size."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: input file not found (input {tensor.name!r})")
    n = os.path.getsize(path)
    if n != tensor.nbytes:
        raise UserError(f"{path}: input {tensor.name!r} expects {tensor.nbytes} bytes "
                        f"({tensor.shape} {tensor.dtype}), found {n}")


def read_bin(path, tensor):
    """One input .bin as an array of the tensor's shape and dtype (size checked)."""
    check_bin(path, tensor)
    return np.fromfile(path, dtype=tensor.np_dtype).reshape(tensor.shape)


class Manifest:
    def __init__(self, d, path):
        self.d, self.path = d, path
        self.root = os.path.dirname(os.path.abspath(path))

    @property
    def files(self):
        return self.d["files"]

    @property
    def inputs(self):
        return self.d["inputs"]

    @property
    def n_images(self):
        return int(self.d["n_images"])

    def input_dirs(self):
        return [os.path.join(self.root, i["dir"]) for i in self.inputs]

    def real_rows(self, stem):
        """Number of real (non-padding) rows at the start of the batch in file ``stem``."""
        for f in self.files:
            if f["stem"] == stem:
                return int(f["n_real"])
        raise UserError(f"{self.path}: no file with stem {stem!r} in the manifest")

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, MANIFEST)
        d = fsio.read_json(path, "manifest not found (img2bin --dataset writes it)")
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise UserError(f"{path}: not an input manifest (expected format {FORMAT!r}, found {found!r})")
        return cls(d, path)

    def save(self, path=None):
        fsio.write_json(path or self.path, self.d)


def find_manifest(path):
    """The manifest for an input folder: in it, or in its parent (DIR/x -> DIR)."""
    path = os.path.abspath(os.fspath(path))
    for d in (path, os.path.dirname(path)):
        p = os.path.join(d, MANIFEST)
        if os.path.isfile(p):
            return Manifest.load(p)
    return None
