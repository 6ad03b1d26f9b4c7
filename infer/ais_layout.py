"""ais_bench's output layout (msame's successor in CANN): the writer and the reader.
infer/layout.py (msame's layout) sends an ais_bench folder here, so loss_check, the
report and --resume's neighbours read both without knowing which tool wrote it.

    OUT/<%Y_%m_%d-%H_%M_%S>/          or OUT/<--output_dirname>/   (--device 0,1: .../device<N>/)
        <first input file's name up to its FIRST '.'>_<i>.bin|npy|txt  (pure_infer_data_<i> without input)
    OUT/<that folder's name>_summary.json                            (beside the folder, not in it)

``i`` is the output index. BIN is the raw bytes (``ndarray.tofile``), NPY ``np.save``.
TXT is ais_bench's own text, not msame's: the output as rows of its last dimension,
each value ``%f`` (float16/32/64) or ``%d`` (any other dtype, bool as 0/1) followed by a
space, a newline after each row (``np.savetxt(f, np.c_[row], fmt, newline=" ")`` then
``\\n``; utils.save_data_to_files). The summary (summary.Summary.report) holds
``filesinfo`` {sample id: {"infiles", "outfiles"}}, ``args`` (argv), ``NPU_compute_time`` /
``H2D_latency`` / ``D2H_latency`` {min, max, mean, median, percentile(99%), count} in ms,
``throughput`` (1000 x batch size / mean compute time), ``npu_compute_time_list``, ``pid``.
A folder is an ais_bench run when its summary stands beside it.
"""

import functools
import json
import os
import re
import time

import numpy as np

from common import fsio
from common.errors import UserError

SUMMARY_SUFFIX = "_summary.json"
PURE = "pure_infer_data"  # the name ais_bench gives the outputs of a run without --input
OUTPUT_RE = re.compile(r"^(?P<stem>.+)_(?P<index>\d+)\.(?P<ext>bin|npy|txt)$")
SCALE = 99  # the percentile ais_bench reports


def timestamp(now: float | None = None) -> str:
    return time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(now))


def run_dir(output: str, dirname: str | None = None) -> str:
    """``output/<T>`` or ``output/<dirname>``, made (an existing one is reused, as ais_bench does)."""
    d = os.path.join(output, dirname if dirname is not None else timestamp())
    fsio.make_dirs(d)
    return d


def summary_path(run: str) -> str:
    return os.path.normpath(run) + SUMMARY_SUFFIX


def stem_of(path: str) -> str:
    """ais_bench's stem: the file name up to its first '.' (msame cuts at the last)."""
    return os.path.basename(path).split(".")[0]


def output_name(stem: str, index: int, fmt: str = "BIN") -> str:
    return f"{stem}_{index}.{fmt.lower()}"


def format_txt(array: np.ndarray) -> bytes:
    a = np.asarray(array)
    a = a.reshape(-1, a.shape[-1] if a.ndim else 1)
    fmt = "%f" if a.dtype in (np.float16, np.float32, np.float64) else "%d"
    vals = a.astype(np.float64 if fmt == "%f" else np.int64).tolist()
    return "".join("".join(fmt % v + " " for v in row) + "\n" for row in vals).encode()


def write_output(path: str, array: np.ndarray) -> None:
    """One output file, its format from the extension (.bin, .npy, .txt), atomically."""
    try:
        if path.endswith(".npy"):
            with fsio.atomic_open(path) as f:
                np.save(f, np.asarray(array))
        elif path.endswith(".txt"):
            fsio.write_bytes(path, format_txt(array))
        else:
            fsio.write_array(path, np.ascontiguousarray(array))
    except OSError as e:
        raise UserError(f"{path}: cannot write the output ({e.strerror or e})") from None


def list_info(ms: list) -> dict:
    """ais_bench's ListInfo of a list of times (all 0.0 when empty), with its count."""
    a = np.asarray(ms, dtype=np.float64)
    vals = (a.min(), a.max(), a.mean(), np.median(a), np.percentile(a, SCALE)) if a.size else (0.0,) * 5
    keys = ("min", "max", "mean", "median", f"percentile({SCALE}%)")
    return {**{k: float(v) for k, v in zip(keys, vals)}, "count": int(a.size)}


def make_summary(filesinfo, args, compute_ms, batchsize, h2d_ms=(), d2h_ms=()):
    npu = list_info(compute_ms)
    return {
        "filesinfo": filesinfo,
        "args": list(args),
        "NPU_compute_time": npu,
        "H2D_latency": list_info(list(h2d_ms)),
        "D2H_latency": list_info(list(d2h_ms)),
        "throughput": 1000 * batchsize / npu["mean"] if npu["mean"] else 0,
        "npu_compute_time_list": [float(t) for t in compute_ms],
        "pid": os.getpid(),
    }


def summary_lines(s: dict, batchsize, display_all=False) -> list[str]:
    """ais_bench's console "Performance Summary" block (its logger: ``[INFO] message``)."""

    def line(name, d):
        return (
            f"[INFO] {name} (ms): min = {d['min']}, max = {d['max']}, mean = {d['mean']}, "
            f"median = {d['median']}, percentile({SCALE}%) = {d[f'percentile({SCALE}%)']}"
        )

    out = ["[INFO] -----------------Performance Summary------------------"]
    out += [line("H2D_latency", s["H2D_latency"])] if display_all else []
    out.append(line("NPU_compute_time", s["NPU_compute_time"]))
    out += [line("D2H_latency", s["D2H_latency"])] if display_all else []
    out.append(
        f"[INFO] throughput 1000*batchsize.mean({batchsize})/NPU_compute_time.mean"
        f"({s['NPU_compute_time']['mean']}): {s['throughput']}"
    )
    out.append("[INFO] ------------------------------------------------------")
    return out


def write_summary(run: str, summary: dict) -> str:
    p = summary_path(run)
    try:
        fsio.write_json(p, summary)
    except OSError as e:
        raise UserError(f"{p}: cannot write the summary ({e.strerror or e})") from None
    return p


# --- the reader -------------------------------------------------------------------


def is_run(path: str) -> bool:
    """An ais_bench run folder: its ``<name>_summary.json`` stands beside it (and is
    ais_bench's: this project's runner once wrote a summary of that name beside msame runs)."""
    p = summary_path(path)
    try:
        st = os.stat(p)
    except OSError:
        return False
    return os.path.isdir(path) and _is_ais_summary(p, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=256)
def _is_ais_summary(path, mtime_ns, size):  # read once per file version: readers ask for every output
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(d, dict) and "NPU_compute_time" in d


def read_summary(run: str) -> dict:
    p = summary_path(run)
    try:
        with open(p) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{p}: not a valid ais_bench summary ({e})") from None
    if not isinstance(d, dict) or "NPU_compute_time" not in d:
        raise UserError(f"{p}: not an ais_bench summary (no NPU_compute_time)")
    return d


def collect(run: str) -> dict[str, dict[int, str]]:
    """{stem: {index: path}} of the output files in an ais_bench run folder."""
    found = {}
    for n in sorted(os.listdir(run)):
        m = OUTPUT_RE.match(n)
        if m:
            found.setdefault(m["stem"], {})[int(m["index"])] = os.path.join(run, n)
    return found


def read_output(path: str, tensor=None) -> np.ndarray:
    """One ais_bench output file (.bin, .npy, .txt) as an array of the tensor's shape and
    dtype; its size is checked against the signature Tensor when one is given."""
    dtype = tensor.np_dtype if tensor is not None else np.float32
    try:
        if path.endswith(".npy"):
            a = np.load(path, allow_pickle=False)
        elif path.endswith(".txt"):
            with open(path) as f:
                a = np.array(f.read().split(), dtype=np.float64).astype(dtype)
        else:
            nbytes = os.path.getsize(path)
            if nbytes % np.dtype(dtype).itemsize:
                raise UserError(f"{path}: {nbytes} bytes is not a whole number of {np.dtype(dtype).name}")
            a = np.fromfile(path, dtype=dtype)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not an ais_bench output ({e})") from None
    if tensor is not None:
        if a.size != tensor.size:
            raise UserError(
                f"{path}: expected {tensor.size} values for output {tensor.name!r} {tensor.shape} "
                f"{tensor.dtype}, found {a.size}"
            )
        a = a.astype(dtype, copy=False).reshape(tensor.shape)
    return a


def as_run_summary(d: dict, path: str) -> dict:
    """An ais_bench summary in the fields the report reads from a run record: latency
    (the NPU compute time), throughput, batch, images, the model from its argv."""
    args = [str(a) for a in d.get("args") or []]
    model = next((args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--model", "-m")), None)
    model = model or next((a.split("=", 1)[1] for a in args if a.startswith("--model=")), None)
    npu = d.get("NPU_compute_time") or {}
    thr = d.get("throughput") or None
    batch = round(thr * npu["mean"] / 1000) if thr and npu.get("mean") else None
    return {
        "run_dir": path[: -len(SUMMARY_SUFFIX)],
        "backend": "ais_bench",
        "model": model,
        "batch": batch,
        "images": None,  # filesinfo counts input files; how many rows each held is not recorded
        "files": len(d.get("filesinfo") or {}) or None,
        "latency_ms": {"median": npu.get("median"), "p99": npu.get(f"percentile({SCALE}%)"), "mean": npu.get("mean")},
        "throughput_images_per_s": thr,
    }
