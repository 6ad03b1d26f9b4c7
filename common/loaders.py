"""Loaders: the one place a frozen GraphDef is parsed and an ONNX Runtime session is built.

Polygraphy's split: a loader turns a file into a ready object, a runner (infer/backends/)
runs it. Freeze, convert, infer and verify all load through here, so a corrupt or missing
file gives the same one-line error everywhere.
"""

from __future__ import annotations

import os

from common.errors import UserError, first_line


def load_graph_def(pb_path: str, what: str = "frozen GraphDef .pb"):
    """The GraphDef in ``pb_path``; a one-line UserError when it is missing or not a GraphDef."""
    from common.tfcompat import tf

    if not os.path.isfile(pb_path):
        raise UserError(f"{pb_path}: {what} not found")
    gd = tf.GraphDef()
    try:
        with open(pb_path, "rb") as f:
            gd.ParseFromString(f.read())
    except Exception as e:  # protobuf's DecodeError has no stable import path
        raise UserError(f"{pb_path}: not a {what} ({type(e).__name__}: {first_line(e)})") from None
    return gd


def import_graph_def(gd, pb_path: str = "the graph", graph=None):
    """A new tf.Graph (or ``graph``) holding ``gd`` imported with no name prefix."""
    from common.tfcompat import tf

    g = graph if graph is not None else tf.Graph()
    try:
        with g.as_default():
            tf.import_graph_def(gd, name="")
    except Exception as e:  # a corrupt or partial GraphDef, an op this TensorFlow lacks
        raise UserError(f"{pb_path}: cannot import the GraphDef ({first_line(e)})") from None
    return g


def with_shapes(graph_def, shapes):
    """A copy of ``graph_def`` whose placeholders {op name: dims} have those shapes (-1: free)."""
    from common.tfcompat import tf

    gd = tf.GraphDef()
    gd.CopyFrom(graph_def)
    for n in gd.node:
        if n.op == "Placeholder" and n.name in shapes:
            n.attr["shape"].shape.Clear()
            for d in shapes[n.name]:
                n.attr["shape"].shape.dim.add().size = int(d)
    return gd


def ort_session_options(optimize: bool = True, threads: int | None = None):
    """ONNX Runtime options: all graph optimisations (or none, to keep every node observable),
    ``threads`` intra-op threads (default: every core), warnings off."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.log_severity_level = 3
    return so


def ort_session(model, optimize: bool = True, threads: int | None = None, providers=None, name=None):
    """An ONNX Runtime InferenceSession of ``model`` (a path, serialized bytes or an
    onnx.ModelProto); a one-line UserError naming ``name`` (or the path) if it cannot load."""
    import onnxruntime as ort

    if not isinstance(model, (str, bytes, os.PathLike)):
        model = model.SerializeToString()
    label = name or (os.fspath(model) if isinstance(model, (str, os.PathLike)) else "the ONNX model")
    if isinstance(model, (str, os.PathLike)) and not os.path.isfile(model):
        raise UserError(f"{label}: ONNX model not found")
    try:
        return ort.InferenceSession(
            model, ort_session_options(optimize, threads), providers=providers or ["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise UserError(f"{label}: ONNX Runtime cannot load it ({first_line(e)})") from None
