"""Pass: give every graph output that other nodes also read its own Identity."""

import onnx
from onnx import helper

from convert.fp16.context import Context


def split_consumed_outputs(model: onnx.ModelProto, ctx: Context) -> onnx.ModelProto:
    """A copy of ``model`` where no graph output is also read inside the graph.

    convert_float_to_float16(keep_io_types=True) casts a graph output back to fp32 under
    its old name, and nodes still reading that name then get fp32 where fp16 is declared
    (ORT: "Type Error ... does not match expected type"). Runs before the block lists are
    chosen: its Identity nodes are blocked like the rest."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    outs = {o.name for o in model.graph.output}
    read = {i for n in model.graph.node for i in n.input}
    for name in sorted(outs & read):
        inner = name + "__inner"
        for n in model.graph.node:
            for k, v in enumerate(n.input):
                if v == name:
                    n.input[k] = inner
            for k, v in enumerate(n.output):
                if v == name:
                    n.output[k] = inner
        model.graph.node.append(helper.make_node("Identity", [inner], [name], name=name.split(":")[0] + "__out"))
    return model
