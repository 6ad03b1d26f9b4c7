"""The signature: one JSON file written by freeze, read by every later stage.

It travels beside each model artifact with the same stem: ``realnvp.pb`` and
``realnvp.json``; ``realnvp.fp16.onnx`` and ``realnvp.fp16.json``; ``realnvp.om`` and
``realnvp.json``. convert derives ATC's --input_shape and --out_nodes from it; img2bin
derives shapes and dtypes; the runner checks every input file against it; verify
knows what each output means and which tolerances apply.

    {
      "format": "ascend-road-signature/1",
      "model": "realnvp" | "rebar" | <a user model's name>,
      "source": {"kind": "builtin" | "checkpoint" | "saved_model" | "pb", ...},
                                            # what it was frozen from; a built-in model's
                                            # spec (models/spec.py) applies only to "builtin"
      "graph": "forward" | "sample" | ...,
      "batch": 16,
      "config": {...},                      # hyperparameters the graph was built from
      "checkpoint": {"path": "...", "step": 1234},
      "precision_mode": "force_fp32",       # ATC mode the artifact was built (or emulated) with
      "inputs":  [{"name": "x", "tensor": "x:0", "shape": [16,32,32,3], "dtype": "float32",
                   "layout": "NHWC", "meaning": "..."}, ...],
      "outputs": [{"name": "z", "tensor": "z:0", ...}, ...],
      "options": {"samples": 100},          # graph options beyond config (inference_graph **opts)
      "checks": {...},                      # what freeze verified (frozen vs checkpoint, ...)
      "artifact": {"file": "realnvp.pb", "kind": "pb", ...}
    }

Each artifact has its own signature, written by the stage that made it and never
rewritten by a later one: ``card_path(artifact, parent)`` is ``<stem>.json`` unless that
is the parent's card (``realnvp.onnx`` beside ``realnvp.pb``), then ``<file>.json``
(``realnvp.onnx.json``). ``find_beside`` looks for ``<file>.json`` first.

Input order is the order of the model's inputs (msame's --input order); output order is
ATC's --out_nodes order and so msame's ``_output_<i>`` index.
"""

import copy
import os

import numpy as np

from common import fsio
from common.errors import UserError

FORMAT = "ascend-road-signature/1"
DTYPES = ("float32", "float16", "int32", "int64", "uint8", "int8", "uint32", "bool")
FP32_MODES = ("force_fp32", "must_keep_origin_dtype")
FP16_MODES = ("force_fp16", "allow_fp32_to_fp16", "allow_mix_precision")
PRECISION_MODES = FP32_MODES + FP16_MODES


class Tensor:
    """One input or output of the offline model."""

    def __init__(self, name, tensor, shape, dtype="float32", layout="ND", meaning="", where="signature"):
        for key, v in (("name", name), ("tensor", tensor), ("layout", layout), ("meaning", meaning)):
            if not isinstance(v, str) or (key in ("name", "tensor") and not v):
                raise UserError(f"{where}: tensor {key} must be a non-empty string, found {v!r}")
        if dtype not in DTYPES:
            raise UserError(f"{where}: tensor {name!r}: dtype {dtype!r} not one of {DTYPES}")
        if not isinstance(shape, (list, tuple)) or any(
            isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape
        ):
            raise UserError(f"{where}: tensor {name!r}: shape must be a list of static positive ints, found {shape!r}")
        self.name, self.tensor, self.shape = name, tensor, [int(d) for d in shape]
        self.dtype, self.layout, self.meaning = dtype, layout, meaning

    @property
    def op(self):
        """Graph op name (tensor name without ':0'), as ATC's --input_shape wants it."""
        return self.tensor.split(":")[0]

    @property
    def np_dtype(self):
        return np.dtype(self.dtype)

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def nbytes(self):
        return self.size * self.np_dtype.itemsize

    def to_dict(self):
        return dict(
            name=self.name,
            tensor=self.tensor,
            shape=self.shape,
            dtype=self.dtype,
            layout=self.layout,
            meaning=self.meaning,
        )

    @classmethod
    def from_dict(cls, d, where="signature"):
        if not isinstance(d, dict):
            raise UserError(f"{where}: tensor entry must be an object, found {d!r}")
        try:
            return cls(
                d["name"],
                d["tensor"],
                d["shape"],
                d.get("dtype", "float32"),
                d.get("layout", "ND"),
                d.get("meaning", ""),
                where,
            )
        except KeyError as e:
            raise UserError(f"{where}: tensor entry missing key {e}") from None

    def __repr__(self):
        return f"Tensor({self.name!r}, {self.tensor!r}, {self.shape}, {self.dtype})"


class Signature:
    def __init__(
        self,
        model,
        graph,
        batch,
        inputs,
        outputs,
        config=None,
        checkpoint=None,
        precision_mode="force_fp32",
        checks=None,
        artifact=None,
        options=None,
        path=None,
        source=None,
    ):
        where = path or "signature"
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UserError(f"{where}: batch must be a positive integer, found {batch!r}")
        if precision_mode not in PRECISION_MODES:
            raise UserError(
                f"{where}: precision_mode must be one of {', '.join(PRECISION_MODES)}, found {precision_mode!r}"
            )
        for key, v in (("model", model), ("graph", graph)):
            if not isinstance(v, str) or not v:
                raise UserError(f"{where}: {key} must be a non-empty string, found {v!r}")
        for key, v in (
            ("config", config),
            ("checkpoint", checkpoint),
            ("checks", checks),
            ("artifact", artifact),
            ("options", options),
            ("source", source),
        ):
            if v is not None and not isinstance(v, dict):
                raise UserError(f"{where}: {key} must be an object, found {type(v).__name__}")
        self.model, self.graph, self.batch = model, graph, batch
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.config = dict(config or {})
        self.checkpoint = dict(checkpoint or {})
        self.precision_mode = precision_mode
        self.checks = dict(checks or {})
        self.artifact = dict(artifact or {})
        self.options = dict(options or {})  # graph options beyond config (e.g. samples K)
        self.source = dict(source or {"kind": "builtin"})
        self.path = path  # where it was loaded from, for error messages

    # --- lookup -------------------------------------------------------------
    def input(self, name):
        return self._find(self.inputs, name, "input")

    def output(self, name):
        return self._find(self.outputs, name, "output")

    def _find(self, items, name, what):
        for t in items:
            if t.name == name or t.tensor == name or t.op == name:
                return t
        raise UserError(f"{self.path or 'signature'}: no {what} named {name!r}; {what}s are {[t.name for t in items]}")

    @property
    def is_fp16(self):
        return self.precision_mode in FP16_MODES

    # --- ATC -----------------------------------------------------------------
    def atc_input_shape(self):
        return ";".join(f"{t.op}:{','.join(map(str, t.shape))}" for t in self.inputs)

    def atc_out_nodes(self):
        return ";".join(t.tensor for t in self.outputs)

    # --- io ------------------------------------------------------------------
    def to_dict(self):
        return {
            "format": FORMAT,
            "model": self.model,
            "graph": self.graph,
            "batch": self.batch,
            "config": self.config,
            "checkpoint": self.checkpoint,
            "precision_mode": self.precision_mode,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "checks": self.checks,
            "artifact": self.artifact,
            "options": self.options,
            "source": self.source,
        }

    def save(self, path):
        fsio.write_json(path, self.to_dict())
        self.path = os.fspath(path)

    def copy(self, **changes):
        s = Signature.from_dict(copy.deepcopy(self.to_dict()), self.path)
        for k, v in changes.items():
            setattr(s, k, v)
        return s

    @classmethod
    def from_dict(cls, d, path=None):
        where = path or "signature"
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            found = d.get("format") if isinstance(d, dict) else type(d).__name__
            raise UserError(f"{where}: not a signature (expected format {FORMAT!r}, found {found!r})")
        try:
            for key in ("inputs", "outputs"):
                if not isinstance(d[key], list) or not d[key]:
                    raise UserError(f"{where}: {key} must be a non-empty list, found {d[key]!r}")
            return cls(
                d["model"],
                d["graph"],
                d["batch"],
                [Tensor.from_dict(t, where) for t in d["inputs"]],
                [Tensor.from_dict(t, where) for t in d["outputs"]],
                d.get("config"),
                d.get("checkpoint"),
                d.get("precision_mode", "force_fp32"),
                d.get("checks"),
                d.get("artifact"),
                d.get("options"),
                path,
                d.get("source"),
            )
        except KeyError as e:
            raise UserError(f"{where}: signature missing key {e}") from None

    @classmethod
    def load(cls, path):
        path = os.fspath(path)
        d = fsio.read_json(path, "signature file not found (freeze writes it beside the .pb)")
        return cls.from_dict(d, path)


def path_beside(model_path):
    """The signature path for a model artifact: same folder, same stem, .json."""
    root, _ = os.path.splitext(os.fspath(model_path))
    return root + ".json"


def card_path(artifact_path, parent_card=None):
    """Where the signature of a new artifact goes: ``<stem>.json``, or ``<file>.json`` when
    that would be its parent's card (``m/realnvp.onnx`` from ``m/realnvp.pb``:
    ``m/realnvp.onnx.json``), so that no stage rewrites another artifact's signature."""
    p = path_beside(artifact_path)
    if parent_card and os.path.abspath(p) == os.path.abspath(os.fspath(parent_card)):
        return os.fspath(artifact_path) + ".json"
    return p


def find_beside(model_path):
    """Load the signature beside a model: ``x.onnx.json``, else ``x.json`` (``x.fp16.onnx``
    -> ``x.fp16.json``), else the first-dot stem's (``x.json``)."""
    p = path_beside(model_path)
    candidates = [os.fspath(model_path) + ".json", p]
    base = os.path.basename(p)
    if base.count(".") > 1:  # realnvp.fp16.json -> realnvp.json
        candidates.append(os.path.join(os.path.dirname(p), base.split(".")[0] + ".json"))
    for c in candidates:
        if os.path.isfile(c):
            return Signature.load(c)
    raise UserError(f"{model_path}: no signature beside it (expected {p}; freeze writes it)")
