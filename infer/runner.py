"""One runner interface for every backend, and the msame-style loop over input files.

A Runner turns ``{input name: array}`` into the outputs in signature order. Backends
(infer/backends/) import their heavy dependencies only when chosen, so the ONNX Runtime
path runs without TensorFlow being imported, and the om path needs neither.

    with open_runner("model.onnx") as r:
        z, logdet = r.infer({"x": x, "u": u})
    run_dir = run_inputs(r, ["bins/x", "bins/u"], "out")       # msame folder mode
"""

import contextlib
import dataclasses
import importlib
import itertools
import json
import math
import os
import re
import time
from collections.abc import Callable

import numpy as np

from common.errors import UserError
from freeze.signature import Signature, card_beside, find_beside
from infer import layout

BACKENDS = {
    "onnxruntime": "infer.backends.onnxrt",
    "tf": "infer.backends.tfgraph",
    "checkpoint": "infer.backends.checkpoint",
    "om": "infer.backends.om",
}
BY_EXTENSION = {".onnx": "onnxruntime", ".pb": "tf", ".om": "om"}
_MODEL_IDS = itertools.count(1)


class Runner:
    """Base class: public methods check state and inputs, backends implement ``*_impl``."""

    backend: str = "?"
    device_time = None  # a backend that measures the device itself (msame's own print) sets it

    def __init__(self, model: str | os.PathLike, signature: Signature) -> None:
        self.model, self.signature = os.fspath(model), signature
        self.inference_time = None
        self.is_active = False
        self.model_id = None  # ACL's model id: the n-th model loaded in this process, from 1

    @property
    def stem(self) -> str:
        """msame's file-mode output stem: the model file name up to its last '.'."""
        return layout.stem_of(self.model)

    def activate(self) -> "Runner":
        if not self.is_active:
            self.activate_impl()
            self.is_active = True
            self.model_id = self.model_id or next(_MODEL_IDS)
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def check_feed(self, feed: dict[str, np.ndarray]) -> None:
        want = [t.name for t in self.signature.inputs]
        if sorted(feed) != sorted(want):
            raise UserError(f"{self.model}: model inputs are {want}, feed has {sorted(feed)}")
        for t in self.signature.inputs:
            a = feed[t.name]
            if list(np.shape(a)) != t.shape or np.asarray(a).dtype != t.np_dtype:
                raise UserError(
                    f"{self.model}: input {t.name!r} expects {t.shape} {t.dtype}, "
                    f"got {list(np.shape(a))} {np.asarray(a).dtype}"
                )

    def infer(self, feed: dict[str, np.ndarray], check: bool = True) -> list[np.ndarray]:
        """{input name: array} -> list of output arrays in signature order."""
        if not self.is_active:
            raise UserError(f"{self.model}: runner not active (use 'with open_runner(...) as r')")
        if check:
            self.check_feed(feed)
        t0 = time.perf_counter()
        outs = self.infer_impl(feed)
        self.inference_time = time.perf_counter() - t0 if self.device_time is None else self.device_time
        res = []
        for t, a in zip(self.signature.outputs, outs):
            a = np.asarray(a)
            if a.size != t.size:
                raise UserError(
                    f"{self.model}: output {t.name!r} has shape {list(a.shape)}, the signature says {t.shape}"
                )
            if list(a.shape) != t.shape:
                a = a.reshape(t.shape)
            dtype = t.np_dtype
            res.append(a if a.dtype == dtype else a.astype(dtype))
        return res

    # --- for backends -----------------------------------------------------------
    def activate_impl(self) -> None:
        pass

    def deactivate_impl(self) -> None:
        pass

    def infer_impl(self, feed: dict[str, np.ndarray]) -> list:
        raise NotImplementedError


def load_signature(
    model,
    signature=None,
    backend=None,
    dym_batch=None,
    input_shape=None,
    output_nodes=None,
    first_files=None,
    dym_hw=None,
    dym_dims=None,
):
    """The model's Signature: ``signature`` (path or Signature), else the one beside the
    model, else (a bare .onnx or .pb) one read from the model itself (infer/modelsig.py);
    msame's dym flags choose a gear of a card's dynamic model (infer/gears.py)."""
    from infer import gears

    if isinstance(signature, Signature):
        sig = signature
    elif signature:
        sig = Signature.load(signature)
    else:
        sig = None
        bare = backend in ("onnxruntime", "tf") and (input_shape or output_nodes or card_beside(model) is None)
        if not bare:
            sig = find_beside(model)
        else:
            from infer import modelsig

            if dym_hw is not None:  # a bare model has no image-size gears: its free dims come from --input_shape
                raise UserError(f"--dymHW {dym_hw}: the dynamic_image_size parameter is not specified for {model}")
            if backend == "onnxruntime":
                return modelsig.from_onnx(model, dym_batch, input_shape or dym_dims, first_files)
            return modelsig.from_pb(model, input_shape or dym_dims, output_nodes, dym_batch, first_files)
    return gears.select(sig, model, dym_batch, dym_hw, dym_dims, require=not isinstance(signature, Signature))


def pick_backend(model):
    ext = os.path.splitext(os.fspath(model))[1].lower()
    if ext in BY_EXTENSION:
        return BY_EXTENSION[ext]
    if os.path.isdir(model) or os.path.isfile(os.fspath(model) + ".index"):
        return "checkpoint"
    raise UserError(
        f"{model}: cannot tell the backend from the extension (expected .onnx, .pb, .om, "
        "or a checkpoint); pass --backend"
    )


def open_runner(
    model,
    signature=None,
    backend=None,
    device="cpu",
    dym_batch=None,
    input_shape=None,
    output_nodes=None,
    inputs=None,
    dym_hw=None,
    dym_dims=None,
):
    """A Runner for the model; backend from the extension unless given; the signature is
    loaded from ``signature`` (path or Signature), found beside the model, or (a bare
    .onnx / .pb) read from the model: a dynamic batch is ``dym_batch`` or follows from
    the size of the first input file (``inputs``: msame's --input items)."""
    model = os.fspath(model)
    backend = backend or pick_backend(model)
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    if backend != "checkpoint" and not os.path.isfile(model):
        raise UserError(f"{model}: model file not found")
    if backend == "checkpoint" and signature is None:
        raise UserError(f"{model}: the checkpoint backend needs the model's signature (--signature)")
    first = _first_files([os.fspath(i) for i in inputs or []])
    sig = load_signature(model, signature, backend, dym_batch, input_shape, output_nodes, first, dym_hw, dym_dims)
    return importlib.import_module(BACKENDS[backend]).make(model, sig, device)


def _first_files(inputs):
    """The first file of each --input item (folder mode: the first name listed in folder 1)."""
    if not inputs:
        return None
    if is_file_mode(inputs):
        return list(inputs)
    try:
        names = _listing(inputs[0])
    except UserError:
        return None
    return [os.path.join(d, names[0]) for d in inputs] if names else None


# --- msame's loop over input files -------------------------------------------------


def is_file_mode(inputs):
    """msame's test: file mode when the first --input item contains ".bin" anywhere in
    its path string (``input_files[0].find(".bin")``), folder mode otherwise."""
    return ".bin" in os.fspath(inputs[0])


def _listing(folder):
    """msame's folder listing: entries not starting with '.', sorted byte-wise."""
    if not os.path.isdir(folder):
        raise UserError(f"{folder}: input folder not found")
    try:
        names = os.listdir(folder)
    except OSError as e:
        raise UserError(f"{folder}: cannot list the input folder ({e.strerror or e})") from None
    return sorted((n for n in names if not n.startswith(".")), key=os.fsencode)


def plan(signature, inputs):
    """[(stem, [file per model input])] and the mode, every file checked against the
    signature before anything runs (data_tools/binfiles.py's check). ``inputs``: folders,
    .bin files, or [] (zeros)."""
    from data_tools.binfiles import check_bin

    n_in = len(signature.inputs)
    names = [t.name for t in signature.inputs]
    if not inputs:
        return "zero", [(None, [None] * n_in)]
    if len(inputs) != n_in:
        raise UserError(f"{inputs[0]}: the model has {n_in} inputs {names}, --input gave {len(inputs)} item(s)")
    folder = not is_file_mode(inputs)
    if folder:
        for d in inputs:
            if not os.path.isdir(d):
                what = "a file" if os.path.exists(d) else "not found"
                raise UserError(
                    f"--input {','.join(inputs)}: folder mode (the first item has no '.bin'), "
                    f"but {d} is {what}; give folders only, or .bin files only"
                )
        items, seen = [], {}
        for name in _listing(inputs[0]):
            stem = layout.stem_of(name)
            if stem in seen:
                raise UserError(
                    f"{os.path.join(inputs[0], name)}: same output stem {stem!r} as {seen[stem]}; rename one of them"
                )
            seen[stem] = name
            items.append((stem, [os.path.join(d, name) for d in inputs]))
        if not items:
            raise UserError(f"{inputs[0]}: input folder is empty")
    else:
        items = [(None, list(inputs))]
    want = [t.nbytes for t in signature.inputs]
    for _, files in items:
        for f, t, nbytes in zip(files, signature.inputs, want):
            check_bin(f, t, nbytes)
    return ("folder" if folder else "file"), items


def check_manifest(signature, inputs):
    """Match --input folders to the model's inputs by the manifest's record of which
    folder holds which input (data_tools/binfiles.py), not by position alone."""
    from data_tools.binfiles import find_manifest

    if not inputs or len(inputs) != len(signature.inputs):
        return  # plan() names a wrong count of --input items
    folders = [os.path.abspath(i if os.path.isdir(i) else os.path.dirname(i)) for i in inputs]
    names = [t.name for t in signature.inputs]
    for i, (item, folder) in enumerate(zip(inputs, folders)):
        try:
            m = find_manifest(folder)
            held = {os.path.normpath(os.path.join(m.root, e["dir"])): e["name"] for e in m.inputs} if m else {}
        except (UserError, KeyError, TypeError):
            continue  # not one of ours: nothing to check against
        name = held.get(os.path.normpath(folder))
        if name is None or name == names[i]:
            continue
        right = {v: k for k, v in held.items()}
        if name not in names:
            raise UserError(f"{item}: {m.path} says this folder holds input {name!r}; the model's inputs are {names}")
        fix = [right.get(n, "?") for n in names]
        raise UserError(
            f"--input {','.join(inputs)}: {item} holds input {name!r} ({m.path}), "
            f"but the model's input {i} is {names[i]!r}, held in "
            f"{right.get(names[i], 'no folder of that manifest')}; in model order: "
            f"--input {','.join(fix)}"
        )


_RANGE_RE = re.compile(r"in \[\s*(-?[0-9.]+)\s*,\s*(-?[0-9.]+)\s*[\])]")
IMAGE_LIMIT = 1e4  # an image value beyond this is not a pixel in any mapping we know


def value_range(tensor, meaning=""):
    """(lo, hi, what) the values of a float input must lie in, from its meaning (signature
    or manifest): "in [a, b]" / "in {0,1}", uniforms in [0, 1], images |v| <= 1e4; else None."""
    text = (tensor.meaning or meaning or "").lower()
    m = _RANGE_RE.search(text)
    if m:
        return float(m[1]), float(m[2]), f"in [{m[1]}, {m[2]}]"
    if "{0,1}" in text.replace(" ", ""):
        return 0.0, 1.0, "in {0, 1}"
    if "uniform" in text:
        return 0.0, 1.0, "uniform in [0, 1]"
    if "image" in text or "pixel" in text:
        return -IMAGE_LIMIT, IMAGE_LIMIT, f"image values within +-{IMAGE_LIMIT:g}"
    return None


def _content_checks(signature, inputs):
    """Per input, None or (lo, hi, what) for a float input (finite always checked)."""
    from data_tools.binfiles import find_manifest

    meanings = {}
    if inputs:
        try:
            m = find_manifest(inputs[0] if os.path.isdir(inputs[0]) else os.path.dirname(inputs[0]))
            for t in (m.d.get("signature") or {}).get("inputs", []) if m else []:
                meanings[t.get("name")] = t.get("meaning", "")
        except (UserError, AttributeError, TypeError):
            pass
    checks = []
    for t in signature.inputs:
        if t.np_dtype.kind != "f":
            checks.append(None)
            continue
        checks.append(value_range(t, meanings.get(t.name, "")) or (-np.inf, np.inf, "finite"))
    return checks


def _check_content(path, buf, tensor, check):
    lo, hi, what = check
    if lo == -np.inf:  # finite only: a float64 sum is finite unless a value is NaN or inf
        if math.isfinite(buf.sum(dtype=np.float64)):
            return
    elif buf.min() >= lo and buf.max() <= hi:  # a NaN makes min/max NaN: caught too
        return
    flat = buf.reshape(-1)
    bad = np.flatnonzero(~np.isfinite(flat) | (flat < lo) | (flat > hi))
    if not bad.size:
        return
    k = int(bad[0])
    raise UserError(
        f"{path}: input {tensor.name!r} ({tensor.dtype}) holds {bad.size} value(s) not {what} "
        f"(first: {flat[k].item()!r} at index {k}); is the file written as {tensor.dtype} "
        f"{tensor.shape}?"
    )


_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _byte_view(a):
    return memoryview(a.reshape(-1).view(np.uint8))


def _read_into(path, view, tensor):
    """Read the input file ``path`` into ``view`` (a byte view of a preallocated input
    array of exactly the file's size, checked by plan(); a file changed since is an error)."""
    try:
        fd = os.open(path, _O_READ)
    except OSError as e:
        raise UserError(f"{path}: cannot read input {tensor.name!r} ({e.strerror or e})") from None
    try:
        n = 0
        while n < len(view):
            k = os.readv(fd, [view[n:]])
            if not k:
                break
            n += k
        if n != len(view) or os.read(fd, 1):
            raise UserError(
                f"{path}: input {tensor.name!r} expects {tensor.nbytes} bytes "
                f"({tensor.shape} {tensor.dtype}); the file changed while running"
            )
    except OSError as e:
        raise UserError(f"{path}: cannot read input {tensor.name!r} ({e.strerror or e})") from None
    finally:
        os.close(fd)


def _stats(times_s, batch):
    ms = np.asarray(times_s, dtype=np.float64) * 1e3
    if not ms.size:
        return {"count": 0}
    return {
        "count": int(ms.size),
        "min": float(ms.min()),
        "median": float(np.median(ms)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "max": float(ms.max()),
        "throughput_images_per_s": float(batch * ms.size / ms.sum() * 1e3) if ms.sum() else None,
    }


def summary_path(run_dir):
    """Where a run's record and latency summary are: ``OUT/<T>/run.json`` (layout.RECORD)."""
    return layout.record_path(run_dir)


# --- the run record: what made a run, so that --resume and loss_check pick by it -------


def _model_digest(model):
    if os.path.isfile(model):
        return layout.file_digest(model)
    if os.path.isfile(model + ".index"):  # a checkpoint prefix: its index names every tensor and shard
        return layout.file_digest(model + ".index")
    return None


def _signature_digest(sig):
    if sig.path and os.path.isfile(sig.path):
        return layout.file_digest(sig.path)
    import hashlib

    return hashlib.sha256(json.dumps(sig.to_dict(), sort_keys=True).encode()).hexdigest()


def make_record(runner, inputs, mode, items, fmt):
    """The identity part of a run record: model, signature, inputs, outfmt, backend.

    Each input's ``files_sha256`` holds every file's content digest (data_tools/binfiles.py,
    the digest its manifest records too): --resume and loss_check prove by it that a run read
    the same bytes, not only the same names. They are made before the run, so that the
    record of a run killed half-way already proves what its kept outputs came from; the cost
    is sha256's CPU time (bench/bench_input_digest.py: 0.05-0.07 s for 1000 CIFAR images as
    float32, 12 MB, on this loaded 2-core machine; hashing inside the read loop would cost the
    same CPU and leave a killed run's record without digests)."""
    from data_tools.binfiles import content_digest

    sig = runner.signature
    ins = []
    for k, t in enumerate(sig.inputs):
        if mode == "zero":
            ins.append({"name": t.name, "path": None, "files": 0, "listing_sha256": None, "files_sha256": {}})
            continue
        files = [f[k] for _, f in items]
        ins.append(
            {
                "name": t.name,
                "path": os.path.abspath(inputs[k]),
                "files": len(files),
                "listing_sha256": layout.listing_digest((os.path.basename(f), t.nbytes) for f in files),
                "files_sha256": {os.path.basename(f): content_digest(f) for f in files},
            }
        )  # plan() checked every size
    return {
        "model": {"path": os.path.abspath(runner.model), "sha256": _model_digest(runner.model)},
        "signature": {
            "path": sig.path and os.path.abspath(sig.path),
            "sha256": _signature_digest(sig),
            "model": sig.model,
            "batch": sig.batch,
        },
        "inputs": ins,
        "mode": mode,
        "outfmt": fmt,
        "backend": runner.backend,
    }


def record_differences(run, want):
    """What differs between a run's record and the run about to be made (empty: same)."""
    if run is None:
        return ["it has no run record (made by msame or before records existed)"]
    diffs = []
    rm, wm = _part(run, "model"), want["model"]
    if rm.get("sha256") != wm["sha256"]:
        a, b = os.path.basename(rm.get("path") or "?"), os.path.basename(wm["path"])
        if a == b:
            a = f"{rm.get('path')} (sha256 {str(rm.get('sha256'))[:12]})"
            b = f"{wm['path']} (sha256 {str(wm['sha256'])[:12]})"
        diffs.append(f"model digest differs: run was made by {a}, not {b}")
    if _part(run, "signature").get("sha256") != want["signature"]["sha256"]:
        diffs.append(
            f"signature digest differs: run used {_part(run, 'signature').get('path')}, not {want['signature']['path']}"
        )
    for key in ("outfmt", "backend", "mode"):
        if run.get(key) != want[key]:
            diffs.append(f"{key} differs: run has {run.get(key)!r}, not {want[key]!r}")
    ri = run.get("inputs") or []
    for k, w in enumerate(want["inputs"]):
        r = ri[k] if k < len(ri) and isinstance(ri[k], dict) else {}
        if r.get("listing_sha256") != w["listing_sha256"] or r.get("name") != w["name"]:
            diffs.append(
                f"input {w['name']!r} differs: run read {r.get('path')} ({r.get('files')} files), "
                f"not {w['path']} ({w['files']} files)"
            )
        elif r.get("files_sha256") != w["files_sha256"]:
            diffs.append(_content_difference(r, w))
    if len(ri) != len(want["inputs"]):
        diffs.append(f"run had {len(ri)} inputs, not {len(want['inputs'])}")
    return diffs


def _content_difference(r, w):
    """The first input file whose contents differ between a run's record ``r`` and ``w``."""
    had = r.get("files_sha256")
    if not isinstance(had, dict):
        return f"input {w['name']!r}: the run's record holds no content digests (made before they existed)"
    name = next(n for n in w["files_sha256"] if had.get(n) != w["files_sha256"][n])
    return (
        f"input {w['name']!r} differs: {os.path.join(w['path'], name)} has other contents than the "
        f"{name} the run read from {r.get('path')} (sha256 {w['files_sha256'][name][:12]}, "
        f"not {str(had.get(name))[:12]})"
    )


REFERENCE_BACKENDS = ("checkpoint", "tf")  # verify/reference.py: the checkpoint, or with --model the .pb


def _digest_or_none(path):
    return layout.file_digest(path) if path and os.path.isfile(path) else None


def describes(sig, run):
    """None when the run record ``run`` says its outputs came from the model the signature
    ``sig`` describes, else why not (one line). The model is described when the run used
    this very card, or ran the file the card names (``artifact.file`` beside it, same
    digest), or ran a model whose own card was converted from that file in the same
    precision mode (``m/realnvp.onnx`` + ``realnvp.onnx.json`` judged by ``realnvp.json``)."""
    rm, rs = _part(run, "model"), _part(run, "signature")
    if rs.get("sha256") and rs.get("sha256") == _digest_or_none(sig.path):
        return None
    art = (sig.artifact or {}).get("file")
    named = os.path.join(os.path.dirname(os.path.abspath(sig.path or "")), art) if art else None
    if rm.get("sha256") and rm.get("sha256") == _digest_or_none(named):
        return None
    card = rs.get("path")
    if card and rs.get("sha256") == _digest_or_none(card):
        try:
            own = Signature.load(card)
        except UserError:
            own = None
        if (
            own is not None
            and os.path.dirname(os.path.abspath(card)) == os.path.dirname(named or "")
            and (own.artifact or {}).get("source") == art
            and own.precision_mode == sig.precision_mode
            and (own.artifact or {}).get("file") == os.path.basename(rm.get("path") or "")
        ):
            return None
    return (
        f"the outputs came from {os.path.basename(rm.get('path') or '?')} (signature {card}), not "
        f"{art or 'the model'} that {sig.path} describes ({sig.precision_mode})"
    )


def hold_runs(offline, reference, sig):
    """Hold the run records of an offline and a reference run folder against each other and
    the signature (loss_check): the offline outputs came from the model the signature
    describes, the reference from the reference backends, both read the same input bytes.
    Returns (offline record, reference record) (None where a folder has none: msame's own
    runs); a mismatch is a UserError naming the record and the difference."""
    recs = []
    for d in (offline, reference):
        recs.append(layout.read_record(d))
    off, ref = recs
    po, pr = layout.record_path(offline), layout.record_path(reference)
    if ref is not None and ref.get("backend") not in REFERENCE_BACKENDS:
        raise UserError(
            f"{pr}: the reference outputs came from the {ref.get('backend')} backend "
            f"({os.path.basename(_part(ref, 'model').get('path') or '?')}), not the checkpoint: "
            "golden outputs come from verify/reference.py"
        )
    if off is not None:
        if off.get("backend") == "checkpoint":
            raise UserError(f"{po}: the offline outputs came from the checkpoint backend: they are golden outputs")
        why = describes(sig, off)
        if why:
            raise UserError(f"{po}: {why}; give the signature of the model that made them")
    if off is None or ref is None:
        return off, ref
    om, rm = _part(off, "model"), _part(ref, "model")
    if os.path.realpath(offline) == os.path.realpath(reference):
        raise UserError(f"{po}: --offline and --reference name the same run: a check against itself proves nothing")
    if om.get("sha256") == rm.get("sha256"):
        raise UserError(
            f"{po} and {pr}: offline and reference outputs were both made by "
            f"{os.path.basename(om.get('path') or '?')}: a check against itself proves nothing"
        )
    oi, ri = record_reads(off, po), record_reads(ref, pr)
    for name, files in oi.items():
        other = ri.get(name)
        if other != files:
            odd = sorted(n for n in set(files) | set(other or {}) if (other or {}).get(n) != files.get(n))
            raise UserError(
                f"{po} and {pr}: the offline and reference runs read other inputs: input {name!r} "
                f"differs in {odd[0] if odd else 'its files'}"
            )
    return off, ref


def _part(run, key):
    """A record's sub-object, {} when absent or not an object (a hand-edited record)."""
    v = run.get(key)
    return v if isinstance(v, dict) else {}


def record_reads(run, where):
    """{input name: {file name: content digest}} a run read, from its record."""
    out = {}
    for i in run.get("inputs") or []:
        if not isinstance(i, dict) or not isinstance(i.get("files_sha256"), dict):
            raise UserError(f"{where}: holds no content digests of its inputs (made before they existed); run it again")
        out[i.get("name")] = i["files_sha256"]
    return out


def resume_dir(output, want):
    """The run under ``output`` made by the same model on the same inputs (its record
    matches ``want``), None when ``output`` holds no run; an error naming the
    difference when runs exist but none matches, or several match."""
    runs = layout.run_dirs(output)
    if not runs:
        return None
    same, why = [], []
    for d in runs:
        diffs = record_differences(layout.read_record(d), want)
        (why.append(f"{os.path.basename(d)}: {diffs[0]}") if diffs else same.append(d))
    if len(same) == 1:
        return same[0]
    if same:
        raise UserError(
            f"{output}: --resume matches {len(same)} runs ({', '.join(os.path.basename(d) for d in same)}); keep one"
        )
    raise UserError(f"{output}: --resume found no run of this model on these inputs; " + "; ".join(why))


def _output_ok(path, tensor, fmt):
    """An output a resumed run may keep: present and complete (size against the signature)."""
    try:
        if fmt == "TXT":
            layout.read_output(path, tensor)
            return True
        return os.stat(path).st_size == tensor.nbytes
    except (OSError, UserError):
        return False


def run_inputs(runner, inputs, output, fmt="BIN", resume=False, loop=1, progress=True, log=None, output_size=None):
    """Run every input file (msame folder / file / zero mode), write msame's output layout
    under ``output/<T>/`` with the run record ``run.json`` in it; return the run folder.

    ``log``: a callable taking msame's console lines (None: silent); ``output_size``:
    msame's --outputSize (bytes per output buffer; files are written as whole buffers)."""
    from infer import gears

    sizes = gears.file_sizes(runner.signature, output_size)
    run = _plan_run(runner, [os.fspath(i) for i in inputs], output, fmt, resume, loop, log)
    run.sizes = sizes or [None] * len(runner.signature.outputs)
    try:
        return _execute(run, progress)
    except UserError:
        if run.previous is None:
            _drop_if_empty(run.run_dir)
        raise


@dataclasses.dataclass
class _Run:
    """One msame run: what was planned (files, checks, record, folder) and what was done."""

    runner: Runner
    mode: str  # "folder" | "file" | "zero"
    items: list  # [(stem, [file per model input])], from plan()
    checks: list  # per input: None or (lo, hi, what), from _content_checks()
    fmt: str  # "BIN" | "TXT"
    loop: int
    resume: bool
    record: dict  # make_record(): what makes this run this run
    run_dir: str
    previous: dict | None  # the record of the run resumed, None for a new run
    log: Callable[[str], object] | None
    times: list = dataclasses.field(default_factory=list)  # inference seconds, one per infer call
    done: list = dataclasses.field(default_factory=list)  # stems run
    skipped: list = dataclasses.field(default_factory=list)  # stems a resumed run already had
    redone: list = dataclasses.field(default_factory=list)  # stems a resumed run had in part
    sizes: list = dataclasses.field(default_factory=list)  # bytes per output file, None: the output's own
    # (a whole-buffer file, --outputSize or a gear, fails _output_ok's size check: --resume redoes it)

    def say(self, line):
        if self.log:
            self.log(line)


def _plan_run(runner, inputs, output, fmt, resume, loop, log):
    """Planning: every input file checked against the signature before anything runs, the
    run record made, the run folder chosen (with ``resume``, the run this one continues)."""
    sig = runner.signature
    fmt = "TXT" if fmt == "TXT" else "BIN"  # msame: exactly "TXT", anything else BIN
    if not 1 <= int(loop) <= 100:
        raise UserError(f"--loop must be in 1 to 100, got {loop}")
    check_manifest(sig, inputs)  # first: swapped folders are named as such, not as a size mismatch
    mode, items = plan(sig, inputs)
    checks = _content_checks(sig, inputs)
    record = make_record(runner, inputs, mode, items, fmt)
    run_dir = resume_dir(output, record) if resume else None
    previous = layout.read_record(run_dir) if run_dir else None
    if run_dir is None:
        run_dir = layout.new_run_dir(output)
    loop = int(loop) if mode != "folder" else 1  # msame loops in file and zero mode, not in folder mode
    return _Run(runner, mode, items, checks, fmt, loop, resume, record, run_dir, previous, log)


def _drop_if_empty(run_dir):
    """Remove a new run folder in which no output was written (it would be one more run in
    OUT for loss_check to refuse); one with outputs stays, its record saying incomplete."""
    with contextlib.suppress(OSError):
        names = os.listdir(run_dir)
        if not any(layout.OUTPUT_RE.match(n) for n in names):
            for n in names:
                os.unlink(os.path.join(run_dir, n))
            os.rmdir(run_dir)


def _execute(run, progress):
    """The run: its record marked incomplete, every file, the averages, the record completed."""
    t_start = time.time()
    layout.write_record(
        run.run_dir, dict(run.record, complete=False, started=t_start, run_dir=os.path.abspath(run.run_dir))
    )
    run.say("[INFO] create model output success")
    run.say(run.run_dir)
    t_wall = time.perf_counter()
    bar = None
    if progress and len(run.items) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(run.items), unit="file", desc="infer", leave=False)
    try:
        _run_files(run, bar)
    finally:
        bar and bar.close()  # leave=False: the bar's line is cleared, an error prints clean
    wall = time.perf_counter() - t_wall
    _say_averages(run)
    layout.write_record(run.run_dir, _summary(run, t_start, wall))
    return run.run_dir


def _run_files(run, bar):
    """Every planned file: read, check, infer ``loop`` times, write msame's outputs."""
    sig = run.runner.signature
    n_out = len(sig.outputs)
    # one input buffer per model input, reused for every file (outputs are written
    # before the next file is read): no per-file allocation, memory flat
    bufs = [np.zeros(t.shape, t.np_dtype) for t in sig.inputs]
    views = [_byte_view(b) for b in bufs]
    prefix = os.path.join(run.run_dir, "")
    for stem, files in run.items:
        stem = stem or run.runner.stem
        outs = [prefix + layout.output_name(stem, i, run.fmt) for i in range(n_out)]
        if not (run.resume and _kept_by_resume(run, stem, outs)):
            _read_inputs(run, files, bufs, views)
            res = _infer(run, {t.name: b for t, b in zip(sig.inputs, bufs)})  # zero mode: zero-filled
            _write_outputs(run, outs, res)
            run.done.append(stem)
        bar and bar.update()


def _kept_by_resume(run, stem, outs):
    """True when a resumed run already holds this file's complete outputs."""
    present = [os.path.exists(p) for p in outs]
    if all(present) and all(_output_ok(p, t, run.fmt) for p, t in zip(outs, run.runner.signature.outputs)):
        run.skipped.append(stem)
        return True
    if any(present):
        run.redone.append(stem)
    return False


def _read_inputs(run, files, bufs, views):
    """File IO: each input file into its buffer, its values checked (zero mode: no files)."""
    for f, t, buf, view, check in zip(files, run.runner.signature.inputs, bufs, views, run.checks):
        if f is not None:
            run.say(f"[INFO] start to process file:{f}")
            _read_into(f, view, t)
            if check is not None:
                _check_content(f, buf, t, check)


def _infer(run, feed):
    res = None
    for _ in range(run.loop):
        res = run.runner.infer(feed, check=False)  # plan() checked every file's size
        run.times.append(run.runner.inference_time)
        run.say("[INFO] model execute success")
        run.say(f"Inference time: {run.runner.inference_time * 1e3:g}ms")
    run.say("[INFO] get max dynamic batch size success")
    return res


def _write_outputs(run, outs, res):
    from infer.gears import fit

    for p, a, n in zip(outs, res, run.sizes):
        layout.write_output(p, fit(a, n), run.fmt)
    run.say("[INFO] output data success")
    if run.mode == "folder":
        run.say("[INFO] destroy model input success")


def _say_averages(run):
    """msame's closing console lines: folder mode prints 2 decimals, file mode %f."""
    ms = [t * 1e3 for t in run.times]
    if run.mode == "folder":
        run.say(f"Inference average time : {np.mean(ms) if ms else 0:.2f} ms")
        if len(ms) > 1:
            run.say(f"Inference average time without first time: {np.mean(ms[1:]):.2f} ms")
    else:
        run.say(f"Inference average time: {np.mean(ms) if ms else 0:f} ms")
        if len(ms) > 1:
            run.say(f"Inference average time without first time: {np.mean(ms[1:]):f} ms")


def _summary(run, t_start, wall):
    """The completed run record: identity, counts, wall time and latency statistics."""
    batch, n = run.runner.signature.batch, len(run.done)
    lat = _stats(run.times, batch)
    summary = dict(
        run.record,
        complete=True,
        started=t_start,
        run_dir=os.path.abspath(run.run_dir),
        batch=batch,
        loop=run.loop,
        files=n,
        skipped_resume=len(run.skipped),
        redone_resume=len(run.redone),
        images=n * batch,
        wall_s=wall,
        wall_throughput_images_per_s=n * batch / wall if wall and n else None,
        latency_ms=lat,
        throughput_images_per_s=lat.get("throughput_images_per_s"),
    )
    if run.previous is not None:
        run.previous.pop("previous", None)
        summary["previous"] = run.previous
    return summary
