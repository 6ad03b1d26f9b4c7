"""Pass: give the fp32-kept and the fp16 readers of one constant their own copies."""

import onnx

from convert.fp16.context import Context


def unshare_initializers(model: onnx.ModelProto, ctx: Context) -> onnx.ModelProto:
    """Copy each constant read by both blocked (fp32) and unblocked (fp16) nodes; the
    blocked readers get the copy (``<name>__fp32_<node>``). In place; returns ``model``.

    The converter keeps a constant fp32 if any blocked node reads it, and then feeds that
    fp32 constant to the fp16 readers too (ORT: "bound to different types")."""
    block_ops, block_nodes = set(ctx.block_ops), set(ctx.block_nodes)
    inits = {i.name: i for i in model.graph.initializer}
    users = {}
    for n in model.graph.node:
        blocked = n.op_type in block_ops or n.name in block_nodes
        for i in n.input:
            if i in inits:
                users.setdefault(i, []).append((n, blocked))
    for name, us in users.items():
        if len({b for _, b in us}) < 2:
            continue
        for n, blocked in us:
            if blocked:
                copy = model.graph.initializer.add()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__fp32_{n.name}"
                for k, v in enumerate(n.input):
                    if v == name:
                        n.input[k] = copy.name
    return model
