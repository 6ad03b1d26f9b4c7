"""Every layer's output on one batch, and the models the doctor runs.

The TF side: every float output of every computing op of the frozen graph. The ONNX side:
every float node output of a model, run unoptimised so that every node stays observable.
The models: the fp32 ONNX conversion of the graph (what convert/to_onnx.py builds) and the
fp32 twin of an fp16 model (its own nodes and names, computed in fp32).
"""

from __future__ import annotations

import hashlib

import numpy as np

from common.loaders import import_graph_def, ort_session

SKIP_OPS = {"Const", "Placeholder", "NoOp", "Identity"}  # ops that compute nothing to compare


def tensor_name(inp: str) -> str:
    """The tensor a NodeDef input names (``op`` stands for ``op:0``)."""
    return inp if ":" in inp else inp + ":0"


def data_inputs(node) -> list[str]:
    """The tensors a NodeDef reads, control inputs (``^op``) left out."""
    return [tensor_name(i) for i in node.input if not i.startswith("^")]


def _is_float(t) -> bool:
    from common.tfcompat import tf

    return t.dtype.base_dtype in (tf.float32, tf.float16, tf.float64)


def float_tensors(graph_def) -> set[str]:
    """Names of the float tensors of the graph (without running it)."""
    g = import_graph_def(graph_def)
    return {t.name for op in g.get_operations() for t in op.outputs if _is_float(t)}


def tf_layers(graph_def, sig, feed: dict) -> tuple[dict, dict]:
    """{tensor name: array} for every float output of every computing op, and the node map."""
    from common.tfcompat import tf

    g = import_graph_def(graph_def)
    # an op's first output, and any other output a node reads (FusedBatchNorm's saved
    # statistics are not computed in inference: Grappler rewrites it to Mul + Add)
    read = {i.name for op in g.get_operations() for i in op.inputs}
    fetch = [
        t
        for op in g.get_operations()
        if op.type not in SKIP_OPS
        for t in op.outputs
        if _is_float(t) and (t.value_index == 0 or t.name in read)
    ]
    fetch += [g.get_tensor_by_name(t.tensor) for t in sig.outputs]
    with tf.Session(graph=g) as s:
        vals = s.run(fetch, {t.tensor: feed[t.name] for t in sig.inputs})
    nodes = {n.name: n for n in graph_def.node}
    return {t.name: v for t, v in zip(fetch, vals)}, nodes


def load_model(model):
    """``model`` as an onnx.ModelProto: loaded when a path, as is otherwise."""
    import onnx

    return onnx.load(model) if isinstance(model, str) else model


def opset_of(model) -> int:
    """The default-domain opset a ModelProto was converted with (13 when it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def onnx_layers(model, sig, feed: dict) -> list[tuple]:
    """[(node name, output index, op type, array)] for every float node output, in node order.

    ``model``: a path or ModelProto (left unchanged). Keyed by node, not tensor, name: the
    fp16 converter renames the outputs of the nodes it keeps fp32 but never renames a node."""
    import onnx

    m = onnx.load(model) if isinstance(model, str) else onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    have = {o.name for o in m.graph.output}
    order = []
    for n in m.graph.node:
        for k, o in enumerate(n.output):
            if o and o in types:
                order.append((n.name, k, n.op_type, o))
                if o not in have:
                    m.graph.output.append(types[o])
                    have.add(o)
    sess = ort_session(m, optimize=False)  # keep every node observable
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(names, {i.name: feed[t.name] for i, t in zip(sess.get_inputs(), sig.inputs)})
    got = dict(zip(names, vals))
    return [(node, k, op, got[o]) for node, k, op, o in order if o in got and np.asarray(got[o]).dtype.kind == "f"]


def fp32_model(graph_def, sig, opset: int = 13):
    """The fp32 ONNX model of the frozen graph, as convert/to_onnx.py builds it."""
    from convert.to_onnx import tf_to_onnx

    return tf_to_onnx(graph_def, sig, opset)


def _digest16(v) -> tuple:
    """A float weight as the fp16 converter stores it (clamped, IEEE fp16), hashed."""
    from convert.fp16.converter import FP16_MAX, FP16_MIN_POSITIVE

    v = np.asarray(v, np.float64)
    tiny = (np.abs(v) < FP16_MIN_POSITIVE) & (v != 0)
    v = np.where(tiny, np.sign(v) * FP16_MIN_POSITIVE, np.clip(v, -FP16_MAX, FP16_MAX)).astype(np.float16)
    return v.shape, hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest()


def fp32_twin(model, fp32):
    """``model`` (an fp16 conversion) computed in fp32: its own nodes and names, every fp16
    Cast made fp32, every fp16 weight replaced by the exact fp32 weight of ``fp32`` that it
    was rounded from (found by value: tf2onnx's names and even its graph rewrites differ
    from one conversion to the next, so the separately built fp32 model cannot be matched
    node by node)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    exact = {}
    for t in fp32.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            v = numpy_helper.to_array(t)
            exact.setdefault(_digest16(v), v)

    def restored(t):
        v = numpy_helper.to_array(t)
        return numpy_helper.from_array(exact.get(_digest16(v), v.astype(np.float32)), t.name)

    m = onnx.ModelProto.FromString(model.SerializeToString())
    g = m.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT16:
            t.CopyFrom(restored(t))
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16:
                a.t.CopyFrom(restored(a.t))
    for v in list(g.value_info) + list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    return m
