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
no newline; NaN with its sign bit set is ``-nan`` (glibc); int8/uint8 values are written
as one character each (C++ streams ``int8_t`` as ``char``: msame's behaviour, kept).

An ais_bench run folder (its ``<name>_summary.json`` beside it) is read through
infer/ais_layout.py, its owner: ``select_run``, ``collect_outputs`` and ``read_output``
take either tool's folders.

Each run folder also holds ``run.json`` (``RECORD``): what produced it (model and
signature digests, input folders and a digest of their file lists, outfmt, backend) and
the latency summary. Runs are chosen by ``select_run`` (content, never modification time).
"""

import datetime
import hashlib
import json
import math
import os
import re
from collections.abc import Iterable

import numpy as np

from common import fsio
from common.errors import UserError
from freeze.signature import Tensor
from infer import ais_layout

OUTPUT_RE = re.compile(r"^(?P<stem>.+)_output_(?P<index>\d+)\.(?P<ext>bin|txt)$")


def timestamp(now: datetime.datetime | None = None) -> str:
    t = now or datetime.datetime.now()
    return f"{t.year}{t.month}{t.day}_{t.hour}_{t.minute}_{t.second}_{t.microsecond}"


def new_run_dir(output: str | os.PathLike, now: datetime.datetime | None = None) -> str:
    """Create ``output/<T>`` (output itself is created if missing; msame needs it to exist)."""
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:  # a file stands there, read-only parent, ...
        raise UserError(f"{output}: cannot create the output folder ({e.strerror or e})") from None
    while True:
        d = os.path.join(output, timestamp(now))
        try:
            os.mkdir(d)
            return d
        except FileExistsError:
            now = None  # same microsecond: take a fresh timestamp
        except OSError as e:
            raise UserError(f"{d}: cannot create the run folder ({e.strerror or e})") from None


def output_name(stem: str, index: int, fmt: str = "BIN") -> str:
    return f"{stem}_output_{index}.{'txt' if fmt == 'TXT' else 'bin'}"


def stem_of(path: str | os.PathLike) -> str:
    """msame's stem: the file name up to its last '.'."""
    base = os.path.basename(os.fspath(path))
    return base.rsplit(".", 1)[0] if "." in base else base


def format_txt(array: np.ndarray) -> str:
    """msame's TXT text for one output array (a str; int8/uint8 values are one character
    each, as msame streams them, so write it with ``txt_bytes``)."""
    a = np.asarray(array)
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    flat = a.reshape(-1)
    if a.dtype.kind == "f":
        vals = [_g6(v) for v in flat.tolist()]
    elif a.dtype in (np.int8, np.uint8):  # C++ streams (u)int8_t as a char: msame's bug, kept
        vals = [chr(v & 0xFF) for v in flat.tolist()]
    else:  # ints; bool as 0/1
        vals = [str(int(v)) for v in flat.tolist()]
    if a.ndim <= 1:
        return "".join(v + " " for v in vals)
    last = a.shape[-1]
    if last == 0:
        return ""
    rows = [" ".join(vals[i : i + last]) + " \n" for i in range(0, len(vals), last)]
    return "".join(rows)


def txt_bytes(text: str) -> bytes:
    """The bytes of msame's TXT file: every char one byte (ASCII, or an int8 value)."""
    return text.encode("latin-1")


def _g6(v):
    if v != v:  # glibc's %g prints the sign bit of a NaN: "-nan"
        return "-nan" if math.copysign(1.0, v) < 0 else "nan"
    if v in (float("inf"), float("-inf")):
        return "inf" if v > 0 else "-inf"
    return "%g" % v


def write_output(path: str | os.PathLike, array: np.ndarray, fmt: str | None = None) -> None:
    """Write one output file atomically, BIN (raw bytes) or TXT (msame's text); the
    format follows the file extension unless given. A failed write (read-only or full
    folder, a file where a folder should be) is a UserError naming the path."""
    if fmt is None:
        fmt = "TXT" if os.fspath(path).endswith(".txt") else "BIN"
    try:
        if fmt == "TXT":
            fsio.write_bytes(path, txt_bytes(format_txt(array)))
        else:
            fsio.write_array(path, array)  # C-order bytes; copies only a non-contiguous array
    except OSError as e:
        raise UserError(f"{path}: cannot write the output ({e.strerror or e})") from None


def _read_txt_chars(path, tensor):
    """An int8/uint8 TXT output: one byte per value, each followed by a space, a newline
    after each row of the last dimension (msame streams these types as characters)."""
    with open(path, "rb") as f:
        data = f.read()
    last = tensor.shape[-1] if len(tensor.shape) > 1 else 0
    vals, i = [], 0
    while i + 1 < len(data) and len(vals) < tensor.size:
        vals.append(data[i])
        if data[i + 1 : i + 2] != b" ":
            raise UserError(
                f"{path}: not msame TXT output for {tensor.dtype} "
                f"(byte {i + 1} is {data[i + 1 : i + 2]!r}, expected a space)"
            )
        i += 2
        if last and len(vals) % last == 0 and data[i : i + 1] == b"\n":
            i += 1
    if i != len(data) or len(vals) != tensor.size:
        raise UserError(
            f"{path}: expected {tensor.size} values for output {tensor.name!r} "
            f"{tensor.shape} {tensor.dtype}, found {len(vals)} and {len(data) - i} extra bytes"
        )
    return np.array(vals, np.uint8).view(tensor.np_dtype).reshape(tensor.shape)


def read_output(path: str | os.PathLike, tensor: Tensor | None = None) -> np.ndarray:
    """Read one output file (BIN or TXT) as a flat array; checks its size against the
    signature Tensor when one is given."""
    path = os.fspath(path)
    if path.endswith(".npy") or ais_layout.is_run(os.path.dirname(path) or "."):
        return ais_layout.read_output(path, tensor)
    if path.endswith(".txt"):
        if tensor is not None and tensor.dtype in ("int8", "uint8"):
            return _read_txt_chars(path, tensor)
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
            raise UserError(
                f"{path}: expected {want} {what} for output {tensor.name!r} {tensor.shape} {tensor.dtype}, found {n}"
            )
        a = a.reshape(tensor.shape)
    return a


# --- the run record: what produced a run folder --------------------------------------

RECORD = "run.json"
RECORD_FORMAT = "ascend-road-run/2"


def record_path(run_dir: str | os.PathLike) -> str:
    """``OUT/<T>/run.json``: the record of what produced the run, and its latency summary.
    Its name never matches msame's output pattern, so readers of outputs skip it."""
    return os.path.join(os.fspath(run_dir), RECORD)


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The run record of a run folder, or None when it has none (msame's own runs,
    or runs made before records existed); a record that is not valid is an error."""
    p = record_path(run_dir)
    if not os.path.isfile(p):
        return None
    try:
        with open(p) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a valid run record ({e})") from None
    if not isinstance(d, dict) or d.get("format") != RECORD_FORMAT:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise UserError(f"{p}: not a run record (expected format {RECORD_FORMAT!r}, found {found!r})")
    return d


def write_record(run_dir: str | os.PathLike, record: dict) -> str:
    p = record_path(run_dir)
    try:
        fsio.write_json(p, dict(record, format=RECORD_FORMAT))
    except OSError as e:
        raise UserError(f"{p}: cannot write the run record ({e.strerror or e})") from None
    return p


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    return h.hexdigest()


def listing_digest(names_sizes: Iterable[tuple[str, int]]) -> str:
    """sha256 of a file list: names and sizes, in order (what a run read, cheaply)."""
    h = hashlib.sha256()
    for name, size in names_sizes:
        h.update(f"{name}\0{size}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _has_outputs(d):
    try:
        return any(OUTPUT_RE.match(n) for n in os.listdir(d)) or ais_layout.is_run(d)
    except OSError:
        return False


def run_dirs(path: str | os.PathLike) -> list[str]:
    """The run folders directly under msame's --output folder ``path``: sub-folders
    holding a run record or msame output files (others, e.g. ``plots/``, are ignored)."""
    path = os.fspath(path)
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return []
    subs = [os.path.join(path, n) for n in names]
    return [d for d in subs if os.path.isdir(d) and (os.path.isfile(record_path(d)) or _has_outputs(d))]


def select_run(path: str | os.PathLike) -> str:
    """The run folder that ``path`` names, chosen by content, never by modification time.

    ``path`` holding output files (or a run record) itself is the run; else its run
    sub-folders (``run_dirs``): exactly one is the run; several are an error listing
    them (name one: ``OUT/<T>``)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise UserError(f"{path}: output folder not found")
    if _has_outputs(path) or os.path.isfile(record_path(path)):
        return path
    runs = run_dirs(path)
    if not runs:
        raise UserError(f"{path}: no msame outputs (<stem>_output_<i>.bin|.txt) in it or its sub-folders")
    if len(runs) > 1:
        raise UserError(
            f"{path}: holds {len(runs)} runs ({', '.join(os.path.basename(d) for d in runs)}); "
            f"name one, e.g. {runs[-1]}"
        )
    return runs[0]


def latest_run_dir(path: str | os.PathLike) -> str:
    """Kept for callers of the old name: the run folder ``select_run`` picks."""
    return select_run(path)


def collect_outputs(path: str | os.PathLike) -> dict[str, dict[int, str]]:
    """{stem: {index: file path}} for the output files in a run folder (``select_run``)."""
    d = select_run(path)
    if ais_layout.is_run(d):
        return ais_layout.collect(d)
    found = {}
    for n in sorted(os.listdir(d)):
        m = OUTPUT_RE.match(n)
        if m:
            found.setdefault(m["stem"], {})[int(m["index"])] = os.path.join(d, n)
    return found
