"""One runner interface for every backend, and the msame-style loop over input files.

A Runner turns ``{input name: array}`` into the outputs in signature order. Backends
(infer/backends/) import their heavy dependencies only when chosen, so the ONNX Runtime
path runs without TensorFlow being imported, and the om path needs neither.

    with open_runner("model.onnx") as r:
        z, logdet = r.infer({"x": x, "u": u})
    run_dir = run_inputs(r, ["bins/x", "bins/u"], "out")       # msame folder mode
"""
import importlib
import json
import os
import stat
import time

import numpy as np

from common import fsio
from common.errors import UserError
from freeze.signature import Signature, find_beside
from infer import layout

BACKENDS = {"onnxruntime": "infer.backends.onnxrt", "tf": "infer.backends.tfgraph",
            "checkpoint": "infer.backends.checkpoint", "om": "infer.backends.om"}
BY_EXTENSION = {".onnx": "onnxruntime", ".pb": "tf", ".om": "om"}


class Runner:
    """Base class: public methods check state and inputs, backends implement ``*_impl``."""

    backend = "?"

    def __init__(self, model, signature):
        self.model, self.signature = os.fspath(model), signature
        self.inference_time = None
        self.is_active = False

    @property
    def stem(self):
        """msame's file-mode output stem: the model file name up to its last '.'."""
        return layout.stem_of(self.model)

    def activate(self):
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
        return self

    def deactivate(self):
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self):
        return self.activate()

    def __exit__(self, *exc):
        self.deactivate()

    def check_feed(self, feed):
        want = [t.name for t in self.signature.inputs]
        if sorted(feed) != sorted(want):
            raise UserError(f"{self.model}: model inputs are {want}, feed has {sorted(feed)}")
        for t in self.signature.inputs:
            a = feed[t.name]
            if list(np.shape(a)) != t.shape or np.asarray(a).dtype != t.np_dtype:
                raise UserError(f"{self.model}: input {t.name!r} expects {t.shape} {t.dtype}, "
                                f"got {list(np.shape(a))} {np.asarray(a).dtype}")

    def infer(self, feed, check=True):
        """{input name: array} -> list of output arrays in signature order."""
        if not self.is_active:
            raise UserError(f"{self.model}: runner not active (use 'with open_runner(...) as r')")
        if check:
            self.check_feed(feed)
        t0 = time.perf_counter()
        outs = self.infer_impl(feed)
        self.inference_time = time.perf_counter() - t0
        res = []
        for (t, size, shape, dtype), a in zip(self._output_specs(), outs):
            a = np.asarray(a)
            if a.size != size:
                raise UserError(f"{self.model}: output {t.name!r} has shape {list(a.shape)}, "
                                f"the signature says {t.shape}")
            if a.shape != shape:
                a = a.reshape(shape)
            res.append(a if a.dtype == dtype else a.astype(dtype))
        return res

    def _output_specs(self):
        """[(tensor, size, shape, dtype)] per output, computed once per signature (Tensor's
        size / np_dtype properties cost ~0.2 ms per file in the runner's loop)."""
        outputs = self.signature.outputs
        cached = getattr(self, "_specs", None)
        if cached is None or cached[0] is not outputs or len(cached[1]) != len(outputs):
            cached = self._specs = (outputs, [(t, t.size, tuple(t.shape), t.np_dtype) for t in outputs])
        return cached[1]

    # --- for backends -----------------------------------------------------------
    def activate_impl(self):
        pass

    def deactivate_impl(self):
        pass

    def infer_impl(self, feed):
        raise NotImplementedError


def load_signature(model, signature=None):
    if isinstance(signature, Signature):
        return signature
    if signature:
        return Signature.load(signature)
    return find_beside(model)


def pick_backend(model):
    ext = os.path.splitext(os.fspath(model))[1].lower()
    if ext in BY_EXTENSION:
        return BY_EXTENSION[ext]
    if os.path.isdir(model) or os.path.isfile(os.fspath(model) + ".index"):
        return "checkpoint"
    raise UserError(f"{model}: cannot tell the backend from the extension (expected .onnx, .pb, .om, "
                    "or a checkpoint); pass --backend")


def open_runner(model, signature=None, backend=None, device="cpu"):
    """A Runner for the model; backend from the extension unless given; the signature is
    loaded from ``signature`` (path or Signature) or found beside the model."""
    model = os.fspath(model)
    backend = backend or pick_backend(model)
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    if backend != "checkpoint" and not os.path.isfile(model):
        raise UserError(f"{model}: model file not found")
    if backend == "checkpoint" and signature is None:
        raise UserError(f"{model}: the checkpoint backend needs the model's signature (--signature)")
    sig = load_signature(model, signature)
    return importlib.import_module(BACKENDS[backend]).make(model, sig, device)


# --- msame's loop over input files -------------------------------------------------

def _listing(folder):
    """msame's folder listing: entries not starting with '.', sorted byte-wise."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: input folder not found")
    return sorted(n for n in os.listdir(folder) if not n.startswith("."))


def plan(signature, inputs):
    """[(stem, [file per model input])] and the mode, every file checked against the
    signature before anything runs. ``inputs``: folders, .bin files, or [] (zeros)."""
    n_in = len(signature.inputs)
    names = [t.name for t in signature.inputs]
    if not inputs:
        return "zero", [(None, [None] * n_in)]
    if len(inputs) != n_in:
        raise UserError(f"{inputs[0]}: the model has {n_in} inputs {names}, --input gave "
                        f"{len(inputs)} item(s)")
    folder = ".bin" not in os.path.basename(os.fspath(inputs[0]))  # msame's substring test
    if folder:
        items, seen = [], {}
        for name in _listing(inputs[0]):
            stem = layout.stem_of(name)
            if stem in seen:
                raise UserError(f"{os.path.join(inputs[0], name)}: same output stem {stem!r} as "
                                f"{seen[stem]}; rename one of them")
            seen[stem] = name
            items.append((stem, [os.path.join(d, name) for d in inputs]))
        if not items:
            raise UserError(f"{inputs[0]}: input folder is empty")
    else:
        items = [(None, list(inputs))]
    want = [t.nbytes for t in signature.inputs]
    for _, files in items:
        for f, t, nbytes in zip(files, signature.inputs, want):
            try:
                st = os.stat(f)  # one stat per file (isfile + getsize took two)
            except OSError:  # as os.path.isfile: any error means "not found"
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                raise UserError(f"{f}: input file not found (input {t.name!r})")
            n = st.st_size
            if n != nbytes:
                raise UserError(f"{f}: input {t.name!r} expects {t.nbytes} bytes "
                                f"({t.shape} {t.dtype}), found {n}")
    return ("folder" if folder else "file"), items


_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _byte_view(a):
    return memoryview(a.reshape(-1).view(np.uint8))


def _read_into(path, view, tensor):
    """Read the input file ``path`` into ``view`` (a byte view of a preallocated input
    array of exactly the file's size, checked by plan(); a file changed since is an error)."""
    fd = os.open(path, _O_READ)
    try:
        n = 0
        while n < len(view):
            k = os.readv(fd, [view[n:]])
            if not k:
                break
            n += k
        if n != len(view) or os.read(fd, 1):
            raise UserError(f"{path}: input {tensor.name!r} expects {tensor.nbytes} bytes "
                            f"({tensor.shape} {tensor.dtype}); the file changed while running")
    finally:
        os.close(fd)


def _newest_run_dir(output):
    if os.path.isdir(output):
        subs = [os.path.join(output, n) for n in os.listdir(output)]
        subs = [d for d in subs if os.path.isdir(d)]
        if subs:
            return max(subs, key=lambda d: (os.path.getmtime(d), d))
    return None


def _stats(times_s, batch):
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    if not ms.size:
        return {"count": 0}
    return {"count": int(ms.size), "min": float(ms.min()), "median": float(np.median(ms)),
            "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "max": float(ms.max()),
            "throughput_images_per_s": float(batch * ms.size / ms.sum() * 1e3) if ms.sum() else None}


def summary_path(run_dir):
    """``OUT/<T>_summary.json``: beside the run folder (ais_bench's place), so the run
    folder holds only msame's output files."""
    return os.path.normpath(run_dir) + "_summary.json"


def run_inputs(runner, inputs, output, fmt="BIN", resume=False, loop=1, progress=True, log=None):
    """Run every input file (msame folder / file / zero mode), write msame's output layout
    under ``output/<T>/`` and a summary JSON beside it; return the run folder.

    ``log``: a callable taking msame's console lines (None: silent)."""
    say = log or (lambda s: None)
    sig = runner.signature
    fmt = "TXT" if fmt == "TXT" else "BIN"  # msame: exactly "TXT", anything else BIN
    mode, items = plan(sig, [os.fspath(i) for i in inputs])
    if mode != "file":
        loop = 1
    if not 1 <= int(loop) <= 100:
        raise UserError(f"--loop must be in 1 to 100, got {loop}")
    run_dir = (_newest_run_dir(output) if resume else None) or layout.new_run_dir(output)
    say("[INFO] create model output success")
    say(run_dir)
    n_out = len(sig.outputs)
    times, done, skipped = [], [], []
    t_wall = time.perf_counter()
    bar = None
    if progress and len(items) > 1:
        from tqdm import tqdm
        bar = tqdm(total=len(items), unit="file", desc="infer", leave=False)
    # one input buffer per model input, reused for every file (outputs are written
    # before the next file is read): no per-file allocation, memory flat
    bufs = [np.zeros(t.shape, t.np_dtype) for t in sig.inputs]
    views = [_byte_view(b) for b in bufs]
    prefix = os.path.join(run_dir, "")
    for stem, files in items:
        stem = stem or runner.stem
        outs = [prefix + layout.output_name(stem, i, fmt) for i in range(n_out)]
        if resume and all(os.path.isfile(p) for p in outs):
            skipped.append(stem)
            bar and bar.update()
            continue
        feed = {}
        for f, t, buf, view in zip(files, sig.inputs, bufs, views):
            if f is not None:
                log and say(f"[INFO] start to process file:{f}")
                _read_into(f, view, t)
            feed[t.name] = buf  # zero mode: the zero-filled buffer
        for _ in range(int(loop)):
            res = runner.infer(feed, check=False)  # plan() checked every file's size
            times.append(runner.inference_time)
            if log:
                say("[INFO] model execute success")
                say(f"Inference time: {runner.inference_time * 1e3:g}ms")
        log and say("[INFO] get max dynamic batch size success")
        for p, a in zip(outs, res):
            layout.write_output(p, a, fmt)
        if log:
            say("[INFO] output data success")
            if mode == "folder":
                say("[INFO] destroy model input success")
        done.append(stem)
        bar and bar.update()
    bar and bar.close()
    wall = time.perf_counter() - t_wall
    ms = [t * 1e3 for t in times]
    if mode == "folder":
        say(f"Inference average time : {np.mean(ms) if ms else 0:.2f} ms")
        if len(ms) > 1:
            say(f"Inference average time without first time: {np.mean(ms[1:]):.2f} ms")
    else:
        say(f"Inference average time: {np.mean(ms) if ms else 0:f} ms")
        if len(ms) > 1:
            say(f"Inference average time without first time: {np.mean(ms[1:]):f} ms")
    summary = {
        "format": "ascend-road-run/1", "run_dir": os.path.abspath(run_dir), "mode": mode,
        "backend": runner.backend, "model": os.path.abspath(runner.model),
        "signature": sig.path and os.path.abspath(sig.path), "batch": sig.batch, "outfmt": fmt,
        "loop": int(loop), "files": len(done), "skipped_resume": len(skipped),
        "images": len(done) * sig.batch, "wall_s": wall,
        "wall_throughput_images_per_s": len(done) * sig.batch / wall if wall and done else None, "latency_ms": _stats(times, sig.batch),
        "throughput_images_per_s": _stats(times, sig.batch).get("throughput_images_per_s"),
        "inputs": [os.path.abspath(os.fspath(i)) for i in inputs],
    }
    sp = summary_path(run_dir)
    if resume and os.path.isfile(sp):
        with open(sp) as f:
            prev = json.load(f)
        prev.pop("previous", None)
        summary["previous"] = prev
    fsio.write_json(sp, summary)
    return run_dir
