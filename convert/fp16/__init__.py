"""ATC's --precision_mode emulated on an ONNX model, as an ordered list of graph passes.

Precision modes map to onnxconverter_common's fp16 conversion (fp32 graph I/O kept, as an
om built with --output_type=FP32 and no --input_fp16_nodes):

    force_fp32, must_keep_origin_dtype   no conversion (fp32 everywhere)
    force_fp16                           every float op in fp16 (converter's default block list)
    allow_fp32_to_fp16                   only Cube (matrix) ops in fp16: CUBE_OPS; all else fp32
    allow_mix_precision                  fp16 except MIX_BLACK_LIST, the numerically fragile
    (= allow_mix_precision_fp16)         ops ATC's built-in black list keeps in fp32
    cube_fp16in_fp32out                  as allow_fp32_to_fp16: Cube ops take fp16, the rest fp32
    allow_mix_precision_bf16,            no conversion: ONNX Runtime's CPU has no bf16 kernels
    allow_fp32_to_bf16
    keep_dtype (names, types)            ATC's cfg: a TF op name keeps that node fp32;
                                         an ONNX op type keeps every node of that type fp32

On ONNX Runtime's CPU provider the fp16 nodes compute in fp32 between fp16 roundings
(it inserts casts), close to but not bit-exact with the NPU: judge with cosine / RED.

A pass is ``pass_(model, ctx) -> model`` (``ctx``: ``context.Context``); PASSES run in order.
"""

import onnx

from common.errors import UserError
from convert.fp16 import blocklists, casts, converter, graph_outputs, initializers
from convert.fp16.context import Context
from freeze.signature import FP16_MODES, PRECISION_MODES

# ATC modes whose fp16 ops are those of another mode here
SAME_AS = {"cube_fp16in_fp32out": "allow_fp32_to_fp16", "allow_mix_precision_fp16": "allow_mix_precision"}

PASSES = [
    graph_outputs.split_consumed_outputs,  # first: its Identity nodes are blocked like the rest
    blocklists.choose,  # which ops and nodes stay fp32 (ctx.block_ops, ctx.block_nodes)
    initializers.unshare_initializers,  # a constant read by fp32 and fp16 nodes: one copy each
    converter.to_fp16,  # onnxconverter_common, with those block lists
    casts.fold_round_trips,  # fp32 -> fp16 -> fp32 between fp32 nodes: the fp32 tensor itself
    casts.fp32_outputs,  # graph outputs that were fp32 are fp32 again
]


def to_precision(
    model: onnx.ModelProto, precision_mode: str, keep_names=(), keep_types=()
) -> tuple[onnx.ModelProto, list[str]]:
    """(the model in ``precision_mode``, names of the nodes kept fp32 by name). fp32 modes
    return ``model`` itself; UserError on an unknown mode."""
    if precision_mode not in PRECISION_MODES:
        raise UserError(f"--precision_mode must be one of {', '.join(PRECISION_MODES)}, got {precision_mode!r}")
    if precision_mode not in FP16_MODES:
        return model, []
    flow = [f"{n.name} ({n.op_type})" for n in model.graph.node if n.op_type in ("If", "Loop", "Scan")]
    if flow:  # onnxconverter_common mistypes the tensors a body reads from its parent graph
        raise UserError(
            f"--precision_mode {precision_mode}: the fp16 emulation cannot convert a model with control "
            f"flow subgraphs ({', '.join(flow[:3])}, from TF2 If/While); build the portable model with "
            "--precision_mode force_fp32 (ATC on an Ascend host applies the mode itself)"
        )
    ctx = Context(SAME_AS.get(precision_mode, precision_mode), list(keep_names), list(keep_types))
    for pass_ in PASSES:
        model = pass_(model, ctx)
    return model, ctx.block_nodes
