"""Model specs: everything the road knows about a built-in model, in one object.

A spec says which graphs the model can build (its module, imported only when a graph is
built: it imports TensorFlow), which dataset and pixel mapping img2bin's dataset mode
uses, which inputs are noise generated from a seed, which per-image metrics loss_check
computes from the outputs and how closely an fp32 offline model must reproduce them.

A user model (frozen by freeze/freeze_graph.py from its own checkpoint, SavedModel or
.pb) has no spec: every stage then works from its signature alone (per-output checks,
top-1 agreement for classifiers). Adding a built-in model is one spec module here plus
its graph module; no other stage names a model.
"""

import dataclasses
import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import Callable, Mapping, Optional, Tuple

import numpy as np

from common.errors import UserError
from freeze.signature import Signature, Tensor

# name -> module holding ``SPEC`` (numpy only: loss_check and img2bin never import TF for it)
REGISTRY = {"realnvp": "models.realnvp_spec", "rebar": "models.sbn_spec"}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A per-image metric loss_check computes from a model's outputs."""

    name: str
    better: str  # "lower" | "higher"
    meaning: str
    fp32_tolerance: Callable[[float], float]  # reference mean -> allowed |mean difference|


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str  # the signature's / config.json's "model"
    module: str  # graph module: GRAPHS, inference_graph(config, batch, graph, **opts), example_feed
    graphs: Tuple[str, ...]
    stems: Mapping[str, str]  # graph -> file stem freeze writes (realnvp.pb, realnvp_sample.pb)
    dataset: str  # data_tools.datasets name of its evaluation data
    image_input: str  # the input img2bin's dataset mode fills with the images
    pixel_lut: Callable[[], np.ndarray]  # (256,) float32: uint8 pixel -> model value
    noise_inputs: Tuple[str, ...]  # inputs filled with uniform (0,1) noise from --seed
    metrics: Tuple[Metric, ...]
    per_image: Callable[[Mapping[str, np.ndarray]], dict]  # {output: array} -> {metric: [B]}
    options: Tuple[str, ...] = ()  # graph options recorded in the signature (e.g. samples)
    batch_independent: bool = True  # freeze refuses a batch-coupled graph
    # outputs computed through hard threshold draws (b = [logit + logit(u) > 0]): where the sum
    # is within float32 rounding of 0, two correct implementations draw different bits, and that
    # sample's value jumps. {output: fraction of its elements allowed beyond the fp32 tolerance}
    draw_outputs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # where one model's variants (its config) change the data: config -> dataset name, and
    # config -> {input: (first, stop) columns of the flattened image it takes}; None: the
    # fields above (``dataset``; the whole image into ``image_input``)
    dataset_for: Optional[Callable[[Mapping], str]] = None
    parts_for: Optional[Callable[[Mapping], Mapping[str, Tuple[int, int]]]] = None

    def dataset_of(self, config: Mapping) -> str:
        return self.dataset_for(config) if self.dataset_for else self.dataset

    def image_parts(self, config: Mapping) -> Optional[Mapping[str, Tuple[int, int]]]:
        """{input: (first, stop)} when the images fill several inputs, else None."""
        return self.parts_for(config) if self.parts_for else None

    def graph_module(self) -> ModuleType:
        return importlib.import_module(self.module)

    def stem(self, graph: str) -> str:
        return self.stems[graph]

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise UserError(f"model {self.name!r} has no metric {name!r}; metrics are {[m.name for m in self.metrics]}")

    def image_metrics(self, outputs: Mapping[str, np.ndarray]) -> dict:
        """Per-image metrics of one batch; {} for a graph without the outputs they need."""
        try:
            return self.per_image(outputs)
        except KeyError:
            return {}


def get(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise UserError(f"unknown model {name!r}; built-in models are {sorted(REGISTRY)}")
    return importlib.import_module(REGISTRY[name]).SPEC


def for_signature(sig: Signature) -> Optional[ModelSpec]:
    """The built-in spec a signature was frozen from, or None for a user model."""
    if sig.source.get("kind", "builtin") != "builtin" or sig.model not in REGISTRY:
        return None
    return get(sig.model)


def example_feed(sig: Signature, rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """Valid example inputs for a signature: the spec's own (in-range pixels, uniforms in
    (0,1)) for a built-in model, else values by dtype: floats uniform in [-1, 1], integers
    in [0, 10), bools random."""
    spec = for_signature(sig)
    if spec is not None:
        feed = spec.graph_module().example_feed(sig.config, sig.batch, sig.graph, rng, **sig.options)
        return {t.name: np.asarray(feed[t.name], t.np_dtype) for t in sig.inputs}
    return generic_feed(sig.inputs, rng)


def generic_feed(tensors: Iterable[Tensor], rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """{name: array} for signature Tensors by dtype: floats uniform in [-1, 1], integers in
    [0, 10), bools random."""
    feed = {}
    for t in tensors:
        if t.np_dtype.kind == "f":
            v = rng.uniform(-1.0, 1.0, t.shape)
        elif t.np_dtype.kind == "b":
            v = rng.randint(0, 2, t.shape)
        else:
            v = rng.randint(0, 10, t.shape)
        feed[t.name] = np.asarray(v).astype(t.np_dtype)
    return feed
