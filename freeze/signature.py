"""The signature: one JSON file written by freeze, read by every later stage.

It travels beside each model artifact with the same stem: ``realnvp.pb`` and
``realnvp.json``; ``realnvp.force_fp16.onnx`` and ``realnvp.force_fp16.json``; ``realnvp.om`` and
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
(``realnvp.onnx.json``); ``own_card`` also steps aside from a ``<stem>.json`` that another
artifact owns. ``find_beside`` looks for ``<file>.json`` first.

Input order is the order of the model's inputs (msame's --input order); output order is
ATC's --out_nodes order and so msame's ``_output_<i>`` index.
"""

import dataclasses
import json
import math
import os
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from common import fsio
from common.errors import UserError

FORMAT = "ascend-road-signature/1"
DTYPES = ("float32", "float16", "int32", "int64", "uint8", "int8", "uint32", "bool")
FP32_MODES = ("force_fp32", "must_keep_origin_dtype")
FP16_MODES = (
    "force_fp16",
    "allow_fp32_to_fp16",
    "allow_mix_precision",
    "cube_fp16in_fp32out",
    "allow_mix_precision_fp16",
)
# ATC's bf16 modes (Ascend910B): accepted; ONNX Runtime's CPU has no bf16, so the portable model computes fp32
BF16_MODES = ("allow_mix_precision_bf16", "allow_fp32_to_bf16")
PRECISION_MODES = FP32_MODES + FP16_MODES + BF16_MODES


@dataclass(frozen=True)
class Tensor:
    """One input or output of the offline model (``where``: the file named in errors).

    ``shape`` stays a list, as the JSON and every message print it; nothing mutates it."""

    name: str
    tensor: str
    shape: list[int]
    dtype: str = "float32"
    layout: str = "ND"
    meaning: str = ""
    where: InitVar[str] = "signature"

    def __post_init__(self, where: str) -> None:
        for key in ("name", "tensor", "layout", "meaning"):
            v = getattr(self, key)
            if not isinstance(v, str) or (key in ("name", "tensor") and not v):
                raise UserError(f"{where}: tensor {key} must be a non-empty string, found {v!r}")
        if self.dtype not in DTYPES:
            raise UserError(f"{where}: tensor {self.name!r}: dtype {self.dtype!r} not one of {DTYPES}")
        shape = self.shape
        if not isinstance(shape, (list, tuple)) or any(
            isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in shape
        ):
            raise UserError(
                f"{where}: tensor {self.name!r}: shape must be a list of static positive ints, found {shape!r}"
            )
        object.__setattr__(self, "shape", [int(d) for d in shape])  # normalised once, at construction

    @property
    def op(self) -> str:
        """Graph op name (tensor name without ':0'), as ATC's --input_shape wants it."""
        return self.tensor.split(":")[0]

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def size(self) -> int:
        return math.prod(self.shape)  # ~0.3 us; np.prod took ~16 us, which is why callers once cached it

    @property
    def nbytes(self) -> int:
        return self.size * self.np_dtype.itemsize

    def to_dict(self) -> dict:
        return dict(
            name=self.name,
            tensor=self.tensor,
            shape=list(self.shape),
            dtype=self.dtype,
            layout=self.layout,
            meaning=self.meaning,
        )

    @classmethod
    def from_dict(cls, d: Any, where: str = "signature") -> "Tensor":
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

    def __repr__(self) -> str:
        return f"Tensor({self.name!r}, {self.tensor!r}, {self.shape}, {self.dtype})"


_OBJECTS = ("config", "checkpoint", "checks", "artifact", "options", "source")


@dataclass(frozen=True)
class Signature:
    """A model's contract (the module docstring). Frozen: a changed signature is a new one,
    ``dataclasses.replace(sig, precision_mode=..., artifact=...)``. ``path`` is where it was
    loaded from or saved to, for error messages; it takes no part in equality."""

    model: str
    graph: str
    batch: int
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    config: dict = field(default_factory=dict)
    checkpoint: dict = field(default_factory=dict)
    precision_mode: str = "force_fp32"
    checks: dict = field(default_factory=dict)
    artifact: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)  # graph options beyond config (e.g. samples K)
    path: str | None = field(default=None, compare=False)
    source: dict = field(default_factory=lambda: {"kind": "builtin"})

    def __post_init__(self) -> None:
        where = self.path or "signature"
        batch = self.batch
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise UserError(f"{where}: batch must be a positive integer, found {batch!r}")
        if self.precision_mode not in PRECISION_MODES:
            raise UserError(
                f"{where}: precision_mode must be one of {', '.join(PRECISION_MODES)}, found {self.precision_mode!r}"
            )
        for key in ("model", "graph"):
            v = getattr(self, key)
            if not isinstance(v, str) or not v:
                raise UserError(f"{where}: {key} must be a non-empty string, found {v!r}")
        for key in _OBJECTS:
            v = getattr(self, key)
            if v is not None and not isinstance(v, dict):
                raise UserError(f"{where}: {key} must be an object, found {type(v).__name__}")
        # normalised once, at construction: None -> {}, lists -> tuples, every object a copy
        set_ = object.__setattr__
        set_(self, "inputs", tuple(self.inputs))
        set_(self, "outputs", tuple(self.outputs))
        for key in _OBJECTS:
            set_(self, key, dict(getattr(self, key) or ({"kind": "builtin"} if key == "source" else {})))

    # --- lookup -------------------------------------------------------------
    def input(self, name: str) -> Tensor:
        return self._find(self.inputs, name, "input")

    def output(self, name: str) -> Tensor:
        return self._find(self.outputs, name, "output")

    def _find(self, items, name, what):
        for t in items:
            if t.name == name or t.tensor == name or t.op == name:
                return t
        raise UserError(f"{self.path or 'signature'}: no {what} named {name!r}; {what}s are {[t.name for t in items]}")

    @property
    def is_fp16(self) -> bool:
        return self.precision_mode in FP16_MODES

    @property
    def batch_coupling_warning(self) -> str | None:
        """The loud line verify prints for a graph frozen with --allow_batch_coupling, else None."""
        if not self.checks.get("batch_coupling_allowed"):
            return None
        return (
            f"WARNING: {self.path or self.model}: frozen with --allow_batch_coupling: BATCH-COUPLED, each image's "
            "outputs depend on the other images of its batch (batch norm with is_training=True); the goldens "
            "come from the same graph, so a PASS here does not mean the inference-mode model"
        )

    # --- ATC -----------------------------------------------------------------
    def atc_input_shape(self) -> str:
        return ";".join(f"{t.op}:{','.join(map(str, t.shape))}" for t in self.inputs)

    def atc_out_nodes(self) -> str:
        return ";".join(t.tensor for t in self.outputs)

    # --- io ------------------------------------------------------------------
    def to_dict(self) -> dict:
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

    def save(self, path: str | os.PathLike) -> "Signature":
        """Write the signature to ``path``; returns it as known by that path."""
        fsio.write_json(path, self.to_dict())
        return dataclasses.replace(self, path=os.fspath(path))

    @classmethod
    def from_dict(cls, d: Any, path: str | None = None) -> "Signature":
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
    def load(cls, path: str | os.PathLike) -> "Signature":
        path = os.fspath(path)
        d = fsio.read_json(path, "signature file not found (freeze writes it beside the .pb)")
        return cls.from_dict(d, path)


def path_beside(model_path: str | os.PathLike) -> str:
    """The signature path for a model artifact: same folder, same stem, .json."""
    root, _ = os.path.splitext(os.fspath(model_path))
    return root + ".json"


def card_path(artifact_path: str | os.PathLike, parent_card: str | os.PathLike | None = None) -> str:
    """Where the signature of a new artifact goes: ``<stem>.json``, or ``<file>.json`` when
    that would be its parent's card (``m/realnvp.onnx`` from ``m/realnvp.pb``:
    ``m/realnvp.onnx.json``), so that no stage rewrites another artifact's signature."""
    p = path_beside(artifact_path)
    if parent_card and os.path.abspath(p) == os.path.abspath(os.fspath(parent_card)):
        return os.fspath(artifact_path) + ".json"
    return p


def own_card(artifact_path: str | os.PathLike, parent_card: str | os.PathLike | None = None) -> str:
    """Where an artifact's own signature goes: ``card_path``, and ``<file>.json`` too when
    ``<stem>.json`` already belongs to another artifact (``m/mine.fp16.om`` and
    ``m/mine.fp16.onnx`` would share ``m/mine.fp16.json``). find_beside reads
    ``<file>.json`` first, so readers find it either way."""
    p = card_path(artifact_path, parent_card)
    alt = os.fspath(artifact_path) + ".json"
    if p == alt or not os.path.isfile(p):
        return p
    try:
        with open(p) as f:
            owner = (json.load(f).get("artifact") or {}).get("file")
    except (OSError, ValueError, AttributeError):
        return p  # unreadable: the existence check reports it
    return p if owner in (None, os.path.basename(artifact_path)) else alt


def card_beside(model_path: str | os.PathLike) -> str | None:
    """The path of the signature beside a model, None when there is none: ``x.onnx.json``,
    else ``x.json`` (``x.fp16.onnx`` -> ``x.fp16.json``), else the first-dot stem's (``x.json``)."""
    p = path_beside(model_path)
    candidates = [os.fspath(model_path) + ".json", p]
    base = os.path.basename(p)
    if base.count(".") > 1:  # realnvp.fp16.json -> realnvp.json
        candidates.append(os.path.join(os.path.dirname(p), base.split(".")[0] + ".json"))
    return next((c for c in candidates if os.path.isfile(c)), None)


def find_beside(model_path: str | os.PathLike) -> Signature:
    """Load the signature beside a model (``card_beside``)."""
    c = card_beside(model_path)
    if c is None:
        raise UserError(f"{model_path}: no signature beside it (expected {path_beside(model_path)}; freeze writes it)")
    return Signature.load(c)
