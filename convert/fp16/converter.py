"""Pass: onnxconverter_common's fp16 conversion with the chosen block lists."""

import warnings

import onnx

from convert.fp16.context import Context

FP16_MIN_POSITIVE = 5.96e-8  # smallest fp16 subnormal: ATC casts weights plainly (IEEE)
FP16_MAX = 65504.0


def to_fp16(model: onnx.ModelProto, ctx: Context) -> onnx.ModelProto:
    """The converted model (fp32 graph inputs and outputs kept, as an om built with
    --output_type=FP32 and no --input_fp16_nodes). Records in ``ctx`` the node names and
    fp32 outputs the graph had before: what the converter added is what later passes fix."""
    from onnxconverter_common import float16

    ctx.original_nodes = {n.name for n in model.graph.node}
    ctx.fp32_outputs = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float16.convert_float_to_float16(
            model,
            min_positive_val=FP16_MIN_POSITIVE,
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            op_block_list=ctx.block_ops,
            node_block_list=ctx.block_nodes,
        )
