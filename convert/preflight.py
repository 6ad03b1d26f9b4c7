"""Converter preflight: the nodes of a frozen graph that tf2onnx cannot convert, found
before conversion (tf2onnx only logs them and writes an invalid model).

A node converts when tf2onnx has a handler for its op type at the opset, or when one of
its graph rewriters consumes it (control flow it turns into If/Loop). TF2 control flow
(If/StatelessIf, While/StatelessWhile) converts through its functions, which tf2onnx reads
from the GraphDef's library: the nodes of every function the graph calls are checked too.
A Case is not converted (grappler lowers it to _SwitchN, which tf2onnx has no handler for).
"""

from common.errors import UserError
from freeze.tf2flow import reachable_functions

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
    """[(node, op type)] tf2onnx has no conversion for, in graph order; a node in a
    function is named ``NODE in OP 'CALLER' (ATTR FUNCTION)``, e.g. ``igamma in While 'loop'
    (body loop_body_7)``."""
    ok = handled_op_types(opset)
    bad = [(n.name, n.op) for n in graph_def.node if n.op not in ok]
    fdefs = {f.signature.name: f for f in graph_def.library.function}
    callers = _callers(graph_def)
    for f in reachable_functions(graph_def):
        where = f"{{}} in {callers[f]} {f})" if f in callers else f"{{}} in function {f}"
        bad += [(where.format(n.name), n.op) for n in fdefs[f].node_def if n.op not in ok and n.op not in fdefs]
    return bad


def _callers(graph_def):
    """{function name: "OP 'node' (ATTR"} for the functions the graph's own nodes call."""
    out = {}
    for n in graph_def.node:
        for k, v in n.attr.items():
            for f in [v.func.name] if v.HasField("func") else [g.name for g in v.list.func]:
                out.setdefault(f, f"{n.op} {n.name!r} ({k}")
    return out


_CASE = "a tf.switch_case converts only when its branch index is constant (freeze folds it: --input_defaults)"
HINTS = {"Case": _CASE, "StatelessCase": _CASE}


def check(graph_def, where, opset=13):
    bad = unsupported_nodes(graph_def, opset)
    if bad:
        shown = ", ".join(f"{n} ({op})" for n, op in bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        hints = sorted({HINTS[op] for _, op in bad if op in HINTS})
        raise UserError(
            f"{where}: {len(bad)} node(s) tf2onnx cannot convert at opset {opset}: {shown}; "
            + ("; ".join(hints) + "; otherwise " if hints else "")
            + "rewrite them with supported ops before freezing (or keep them off the output path)"
        )
