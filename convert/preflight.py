"""Converter preflight: the nodes of a frozen graph that tf2onnx cannot convert, found
before conversion (tf2onnx only logs them and writes an invalid model).

A node converts when tf2onnx has a handler for its op type at the opset, or when one of
its graph rewriters consumes it (control flow it turns into If/Loop).
"""

from common.errors import UserError

REWRITTEN = {
    "Switch",
    "Merge",
    "RefSwitch",
    "RefMerge",
    "Enter",
    "RefEnter",
    "Exit",
    "RefExit",
    "NextIteration",
    "RefNextIteration",
    "LoopCond",
    "TensorArrayV3",
    "TensorArrayReadV3",
    "TensorArrayWriteV3",
    "TensorArrayGatherV3",
    "TensorArrayScatterV3",
    "TensorArraySizeV3",
}


def handled_op_types(opset=13):
    import tf2onnx.onnx_opset  # noqa: F401  (registers the handlers)
    from tf2onnx.handler import tf_op

    return set(tf_op.create_mapping(opset, [])) | REWRITTEN


def unsupported_nodes(graph_def, opset=13):
    """[(node name, op type)] tf2onnx has no conversion for, in graph order."""
    ok = handled_op_types(opset)
    return [(n.name, n.op) for n in graph_def.node if n.op not in ok]


def check(graph_def, where, opset=13):
    bad = unsupported_nodes(graph_def, opset)
    if bad:
        shown = ", ".join(f"{n} ({op})" for n, op in bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise UserError(
            f"{where}: {len(bad)} node(s) tf2onnx cannot convert at opset {opset}: {shown}; "
            "rewrite them with supported ops before freezing (or keep them off the output path)"
        )
