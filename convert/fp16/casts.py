"""Passes over the Casts the fp16 converter inserts: fold its fp32 -> fp16 -> fp32 round
trips, and give the graph's fp32 outputs back their fp32 type.

onnxconverter_common (1.16) turns every float tensor's type to fp16, then wraps each
blocked (fp32) node in Cast(fp32) ... Cast(fp16). ATC keeps fp32 what fp32 nodes pass each
other: only the inputs and outputs of fp16 nodes are fp16. Casts that were in the model
before conversion (``ctx.original_nodes``) are never touched."""

import onnx
from onnx import NodeProto, TensorProto, helper

from convert.fp16.context import Context


def _cast_to(n: NodeProto):
    return next((a.i for a in n.attribute if a.name == "to"), None)


def _made(n: NodeProto, ctx: Context) -> bool:
    """A Cast the converter inserted."""
    return n.op_type == "Cast" and n.name not in ctx.original_nodes


def _fp32_tensors(g: onnx.GraphProto) -> set:
    fp32 = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    fp32 |= {i.name for i in g.initializer if i.data_type == TensorProto.FLOAT}
    fp32 |= {v.name for v in g.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    return fp32


def fold_round_trips(model: onnx.ModelProto, ctx: Context) -> onnx.ModelProto:
    """Drop the fp32 -> fp16 -> fp32 Cast pairs the converter puts between fp32 nodes.

    Without this a tensor passed from one fp32 node to another is rounded to fp16 on the
    way (and a graph input is rounded before an fp32 node reads it). A converter-made
    Cast-to-fp32 that reads a converter-made Cast-to-fp16 of an fp32 tensor is replaced by
    that fp32 tensor; the fp16 Cast goes when nothing reads it. In place; returns ``model``."""
    g = model.graph
    fp32 = _fp32_tensors(g)
    down = {
        n.output[0]: n.input[0]
        for n in g.node
        if _made(n, ctx) and _cast_to(n) == TensorProto.FLOAT16 and n.input[0] in fp32
    }
    outs = {o.name for o in g.output}
    nodes = list(g.node)
    alias, drop = {}, set()
    for k, n in enumerate(nodes):
        if _made(n, ctx) and _cast_to(n) == TensorProto.FLOAT and n.input[0] in down and n.output[0] not in outs:
            alias[n.output[0]] = down[n.input[0]]
            drop.add(k)
    for n in nodes:
        for k, v in enumerate(n.input):
            if v in alias:
                n.input[k] = alias[v]
    read = {i for k, n in enumerate(nodes) if k not in drop for i in n.input} | outs
    drop |= {k for k, n in enumerate(nodes) if _made(n, ctx) and n.output[0] in down and n.output[0] not in read}
    keep = []
    for k, n in enumerate(nodes):
        if k not in drop:
            keep.append(NodeProto())
            keep[-1].CopyFrom(n)
    del g.node[:]
    g.node.extend(keep)
    return model


def fp32_outputs(model: onnx.ModelProto, ctx: Context) -> onnx.ModelProto:
    """Retype to fp32 each graph output that was fp32 before conversion. In place.

    A blocked node writing a graph output: the converter casts it to fp16 and retypes the
    output fp16 despite keep_io_types. The om's outputs are fp32 (--output_type FP32): a
    converter-made Cast of an fp32 tensor becomes Cast(fp32 -> fp32), a plain copy; any
    other writer gets a Cast to fp32 after it."""
    g = model.graph
    fp32 = _fp32_tensors(g)
    for o in g.output:
        if o.type.tensor_type.elem_type != TensorProto.FLOAT16 or o.name not in ctx.fp32_outputs:
            continue
        o.type.tensor_type.elem_type = TensorProto.FLOAT
        n = next(n for n in g.node if o.name in n.output)
        if _made(n, ctx) and _cast_to(n) == TensorProto.FLOAT16 and n.input[0] in fp32:
            n.attribute[0].i = TensorProto.FLOAT
        else:
            n.output[list(n.output).index(o.name)] = o.name + "__fp16"
            cast = helper.make_node(
                "Cast", [o.name + "__fp16"], [o.name], to=TensorProto.FLOAT, name=o.name.split(":")[0] + "__out_cast"
            )
            g.node.append(cast)
    return model
