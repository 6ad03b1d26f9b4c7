"""Which nodes stay fp32 in each ATC precision mode (the converter's block lists)."""

import onnx

from convert.fp16.context import Context

CUBE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Einsum", "ConvInteger", "MatMulInteger"}
MIX_BLACK_LIST = {
    "Exp",
    "Log",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Div",
    "Softplus",
    "Softsign",
    "Sigmoid",
    "Tanh",
    "Softmax",
    "LogSoftmax",
    "Erf",
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceProd",
    "ReduceL2",
    "SquaredDifference",
    "LpNormalization",
    "InstanceNormalization",
    "LayerNormalization",
    "BatchNormalization",
}


def fp16_block_lists(
    model: onnx.ModelProto, precision_mode: str, keep_names=(), keep_types=()
) -> tuple[list[str], list[str]]:
    """(op_block_list, node_block_list) for convert_float_to_float16 emulating the ATC mode."""
    from onnxconverter_common import float16

    ops = set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_types)
    if precision_mode == "allow_fp32_to_fp16":
        ops |= {n.op_type for n in model.graph.node} - CUBE_OPS
    elif precision_mode == "allow_mix_precision":
        ops |= MIX_BLACK_LIST
    # The graph's own Casts stay as they are, blocked by name: the converter mistypes a
    # Cast it retargets to fp16, and blocking the "Cast" op type makes it wrap the Casts it
    # inserts itself again and again, without end.
    ops.discard("Cast")
    keep = set(keep_names)
    # tf2onnx names a node after its TF op, or "<op>__<n>" for helpers it adds for that op
    nodes = [
        n.name
        for n in model.graph.node
        if n.name in keep
        or n.name.split("__")[0] in keep
        or any(o.split(":")[0] in keep for o in n.output)
        or n.op_type == "Cast"
    ]
    return sorted(ops), nodes


def choose(model: onnx.ModelProto, ctx: Context) -> onnx.ModelProto:
    """Pass: fill ``ctx.block_ops`` / ``ctx.block_nodes``; the model is unchanged."""
    ctx.block_ops, ctx.block_nodes = fp16_block_lists(model, ctx.mode, ctx.keep_names, ctx.keep_types)
    return model
