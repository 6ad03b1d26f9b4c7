"""Parity of a converted model with its frozen graph: both run on the same example inputs,
the largest error relative to each output's scale (freeze's measure)."""

import numpy as np

from freeze.signature import Signature


def example_feed(signature: Signature, seed: int = 0) -> dict:
    """Example inputs: the built-in model's own, else values by dtype (models/spec.py)."""
    from models import spec

    return spec.example_feed(signature, np.random.RandomState(seed))


def run_onnx(sess, signature: Signature, feed: dict) -> list:
    """The outputs of an ONNX Runtime session, its inputs fed in the signature's order from
    ``feed`` ({signature input name: array})."""
    names = [o.name for o in sess.get_outputs()]
    return sess.run(names, {i.name: feed[t.name] for i, t in zip(sess.get_inputs(), signature.inputs)})


def max_rel(got: list, ref: list) -> float:
    """Largest difference relative to each output's largest magnitude (freeze's measure)."""
    from freeze.core import rel_err

    return max((rel_err(g, r) for g, r in zip(got, ref)), default=0.0)


def onnx_vs_frozen(sess, graph_def, signature: Signature, seed: int = 0) -> float:
    """max_rel of the ONNX session's outputs against the frozen graph's on example inputs."""
    from freeze.core import run_graph_def

    feed = example_feed(signature, seed)
    return max_rel(run_onnx(sess, signature, feed), run_graph_def(graph_def, signature, feed))
