"""msame's output layout: the writer and the reader. Every stage that reads offline
outputs goes through here.

    OUT/<T>/<stem>_output_<i>.bin|.txt

``T`` is msame's timestamp, not zero-padded: ``{Y}{M}{D}_{h}_{m}_{s}_{usec}``
(e.g. ``2023610_22_48_32_123456``). ``stem`` is the input file name without its last
extension (folder mode) or the model file name without its extension (file mode).
``i`` is the output index, in ATC's --out_nodes order (= signature outputs order).

BIN is the raw C-order bytes of the output in its dtype. TXT is what msame writes:
every value as C++ ``ostream << value`` (``%g``, 6 significant digits) followed by one
space, a newline after each row of the last dimension; rank-1 outputs on one line with
no newline.
"""
import datetime
import os
import re

import numpy as np

from common import fsio
from common.errors import UserError

OUTPUT_RE = re.compile(r"^(?P<stem>.+)_output_(?P<index>\d+)\.(?P<ext>bin|txt)$")


def timestamp(now=None):
    t = now or datetime.datetime.now()
    return f"{t.year}{t.month}{t.day}_{t.hour}_{t.minute}_{t.second}_{t.microsecond}"


def new_run_dir(output, now=None):
    """Create ``output/<T>`` (output itself is created if missing; msame needs it to exist)."""
    os.makedirs(output, exist_ok=True)
    while True:
        d = os.path.join(output, timestamp(now))
        try:
            os.mkdir(d)
            return d
        except FileExistsError:
            now = None  # same microsecond: take a fresh timestamp


def output_name(stem, index, fmt="BIN"):
    return f"{stem}_output_{index}.{'txt' if fmt == 'TXT' else 'bin'}"


def stem_of(path):
    """msame's stem: the file name up to its last '.'."""
    base = os.path.basename(os.fspath(path))
    return base.rsplit(".", 1)[0] if "." in base else base


def format_txt(array):
    """msame's TXT text for one output array."""
    a = np.asarray(array)
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    flat = a.reshape(-1)
    vals = [_g6(v) for v in flat.tolist()] if a.dtype.kind == "f" else [
        str(int(v)) for v in flat.tolist()]
    if a.ndim <= 1:
        return "".join(v + " " for v in vals)
    last = a.shape[-1]
    rows = [" ".join(vals[i:i + last]) + " \n" for i in range(0, len(vals), last)]
    return "".join(rows)


def _g6(v):
    if v != v:
        return "nan" if not str(v).startswith("-") else "-nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return "%g" % v


def write_output(path, array, fmt=None):
    """Write one output file atomically, BIN (raw bytes) or TXT (msame's text); the
    format follows the file extension unless given."""
    if fmt is None:
        fmt = "TXT" if os.fspath(path).endswith(".txt") else "BIN"
    if fmt == "TXT":
        fsio.write_text(path, format_txt(array))
    else:
        fsio.write_array(path, array)  # C-order bytes; copies only a non-contiguous array


def read_output(path, tensor=None):
    """Read one output file (BIN or TXT) as a flat array; checks its size against the
    signature Tensor when one is given."""
    path = os.fspath(path)
    if path.endswith(".txt"):
        try:
            with open(path) as f:
                a = np.array(f.read().split(), dtype=np.float64)
        except ValueError as e:
            raise UserError(f"{path}: not msame TXT output ({e})") from None
        a = a.astype(np.float32)
        n = a.size
        what = "values"
    else:
        dtype = tensor.np_dtype if tensor is not None else np.float32
        nbytes = os.path.getsize(path)
        if nbytes % np.dtype(dtype).itemsize:
            raise UserError(f"{path}: {nbytes} bytes is not a whole number of {np.dtype(dtype).name}")
        a = np.fromfile(path, dtype=dtype)
        n = nbytes
        what = "bytes"
    if tensor is not None:
        want = tensor.size if what == "values" else tensor.nbytes
        if n != want:
            raise UserError(f"{path}: expected {want} {what} for output {tensor.name!r} "
                            f"{tensor.shape} {tensor.dtype}, found {n}")
        a = a.reshape(tensor.shape)
    return a


def latest_run_dir(path):
    """Given msame's --output folder or one of its <T> folders, the folder holding outputs.

    If ``path`` holds output files itself it is returned; else its newest sub-folder
    (by modification time, never by parsing T) that holds output files."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise UserError(f"{path}: output folder not found")
    if any(OUTPUT_RE.match(n) for n in os.listdir(path)):
        return path
    subs = [os.path.join(path, n) for n in os.listdir(path)]
    subs = [d for d in subs if os.path.isdir(d) and any(OUTPUT_RE.match(n) for n in os.listdir(d))]
    if not subs:
        raise UserError(f"{path}: no msame outputs (<stem>_output_<i>.bin|.txt) in it or its sub-folders")
    return max(subs, key=lambda d: (os.path.getmtime(d), d))


def collect_outputs(path):
    """{stem: {index: file path}} for the output files in a run folder (or newest one)."""
    d = latest_run_dir(path)
    found = {}
    for n in sorted(os.listdir(d)):
        m = OUTPUT_RE.match(n)
        if m:
            found.setdefault(m["stem"], {})[int(m["index"])] = os.path.join(d, n)
    return found
