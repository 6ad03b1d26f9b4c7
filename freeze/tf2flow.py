"""TensorFlow 2 control flow in a user's graph: fold what is constant, keep the rest.

A script on TF 2.x that only calls ``tf.disable_eager_execution()`` builds functional
control flow: ``tf.cond`` is an If (StatelessIf) node whose branches are functions of the
GraphDef's library, ``tf.while_loop`` a While, ``tf.switch_case`` a Case, and resource
variables are read inside those functions. The passes, applied by freeze/sources.py in order:

    inline_constant_flow   an If/StatelessIf whose predicate, or a Case whose branch
                           index, is constant after --input_defaults is replaced by the
                           taken branch's body; PartitionedCall / StatefulPartitionedCall
                           are replaced by their body (the graph then folds as a TF1 one)
    refuse_updates         a variable update left on the outputs' path is one line naming it
    (variables -> constants: tf.graph_util.convert_variables_to_constants rewrites the
    functions' resource arguments too)
    drop_unused_outputs    If/While outputs only the gradients read (a graph trained with
                           its control flow) go, with their functions pruned to match
    strip_library          functions no node reaches any more leave the library

Why not grappler's function optimizer (what tf2onnx runs): it lowers every If and While
to Switch/Merge and Enter/Exit frames, the constant ones and the others alike; a While on a
real input then reaches ATC and tf2onnx as a TF1 frame instead of the functional op both
take (and a Case becomes a _SwitchN tf2onnx cannot convert). Only the constant ones are
folded here; the rest stays functional (tf2onnx converts If/While through their functions,
convert/preflight.py checks their bodies).
"""

import copy

import numpy as np

from common.errors import UserError
from common.tfcompat import tf
from freeze import fold

IFS = ("If", "StatelessIf")
CASES = ("Case", "StatelessCase")
CALLS = ("PartitionedCall", "StatefulPartitionedCall")


def _function_graph_def(gd, fname):
    """(GraphDef of function ``fname``'s body, its ret tensors in graph names)."""
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph_def

    fdefs = {f.signature.name: f for f in gd.library.function}
    fdef = fdefs.get(fname)
    if fdef is None:
        raise UserError(f"function {fname!r} is not in the graph's function library")
    lib = tf.GraphDef()
    lib.library.CopyFrom(gd.library)
    with tf.Graph().as_default():  # the body's nested function calls are checked against it
        tf.import_graph_def(lib, name="")
        body, names = function_def_to_graph_def(fdef)
    rets = [names[fdef.ret[a.name]] for a in fdef.signature.output_arg]
    return body, [a.name for a in fdef.signature.input_arg], rets


def _taken_function(n, value):
    """The function a constant predicate / branch index selects."""
    if n.op in IFS:  # If's rule: a scalar is true when nonzero, any other tensor when not empty
        v = np.asarray(value)
        return n.attr["then_branch" if (bool(v) if v.ndim == 0 else v.size > 0) else "else_branch"].func.name
    branches = n.attr["branches"].list.func
    i = int(value)
    return branches[i if 0 <= i < len(branches) else -1].name  # out of range: the last (Case's rule)


def _unique_prefix(names, base):
    prefix, k = base + "/inlined", 0
    while any(x == prefix or x.startswith(prefix + "/") for x in names):
        k += 1
        prefix = f"{base}/inlined_{k}"
    return prefix


def _inline(gd, n, fname, args, keep_node):
    """Replace node ``n`` with the body of ``fname`` fed by the tensors ``args``; its
    consumers read the body's results. ``keep_node``: leave an Identity of its first result
    named as the node (it is a requested output)."""
    body, arg_names, rets = _function_graph_def(gd, fname)
    names = {m.name for m in gd.node}
    prefix = _unique_prefix(names, n.name)
    controls = [i for i in n.input if i.startswith("^")]

    def rename(ref):
        ctrl = ref.startswith("^")
        name, _, port = ref.lstrip("^").partition(":")
        return ("^" if ctrl else "") + f"{prefix}/{name}" + (f":{port}" if port else "")

    out = tf.GraphDef()
    out.versions.CopyFrom(gd.versions)
    out.library.CopyFrom(gd.library)
    for m in body.node:
        c = out.node.add()
        c.CopyFrom(m)
        c.name = f"{prefix}/{m.name}"
        del c.input[:]
        if m.name in arg_names:  # an argument: an Identity of what the node was given
            dtype = m.attr["dtype"].type
            for k in list(c.attr):
                del c.attr[k]
            c.op = "Identity"
            c.attr["T"].type = dtype
            c.input.extend([args[arg_names.index(m.name)], *controls])
        else:
            c.input.extend(rename(i) for i in m.input)
    results = [rename(r) for r in rets]
    for m in gd.node:
        if m.name == n.name:
            if keep_node:  # a requested output: msame's output is its tensor :0
                c = out.node.add()
                c.name, c.op = n.name, "Identity"
                c.input.append(results[0])
                c.attr["T"].type = n.attr["Tout"].list.type[0]
            continue
        c = out.node.add()
        c.CopyFrom(m)
        del c.input[:]
        for i in m.input:
            if fold.op_name(i) != n.name:
                c.input.append(i)
            elif i.startswith("^"):
                c.input.extend("^" + fold.op_name(r) for r in results)
            else:
                c.input.append(results[fold._port(i)])
    return out


def inline_constant_flow(gd, outputs):
    """Fold If/Case on constant predicates and inline function calls, to a fixpoint (an
    inlined body may hold more). Returns (graph_def, [(node, op, function inlined)])."""
    done = []
    for _ in range(100):  # bounded: a recursive function would never reach a fixpoint
        conds = [n for n in gd.node if n.op in IFS + CASES]
        consts = _static_values(gd, [fold._tensor(n.input[0]) for n in conds])
        consts.update(
            fold._constants(gd, [fold._tensor(n.input[0]) for n in conds if fold._tensor(n.input[0]) not in consts])
        )
        todo = [
            (n, _taken_function(n, consts[fold._tensor(n.input[0])]), 1)
            for n in conds
            if fold._tensor(n.input[0]) in consts
        ]
        todo += [(n, n.attr["f"].func.name, 0) for n in gd.node if n.op in CALLS]
        if not todo:
            return gd, done
        gd = copy.deepcopy(gd)
        for n, fname, skip in todo:  # the nodes stay distinct: each pass renames only its own
            node = next(m for m in gd.node if m.name == n.name)
            args = [i for i in node.input if not i.startswith("^")][skip:]
            gd = _inline(gd, node, fname, args, keep_node=n.name in outputs)
            done.append((n.name, n.op, fname))
    raise UserError(f"function calls nest deeper than 100 levels (last: {done[-1][0]!r}); recursion cannot be frozen")


def _static_values(gd, tensors):
    """{tensor: value} for those that are a Const read through Identity nodes. Read without a
    session: a graph TensorFlow froze itself may hold an invalid training-branch function
    (an AssignVariableOp fed a constant) that makes every session on it fail."""
    nodes, out = fold._nodes(gd), {}
    for t in tensors:
        n = nodes.get(fold.op_name(t))
        while n is not None and n.op == "Identity" and fold._port(t) == 0:
            t = fold._tensor(n.input[0])
            n = nodes.get(fold.op_name(t))
        if n is not None and n.op == "Const" and fold._port(t) == 0:
            out[t] = tf.make_ndarray(n.attr["value"].tensor)
    return out


def _called(attrs):
    for v in attrs.values():
        if v.HasField("func"):
            yield v.func.name
        yield from (f.name for f in v.list.func)


def reachable_functions(gd):
    """Names of the library functions the graph's nodes call, transitively, in order found."""
    fdefs = {f.signature.name: f for f in gd.library.function}
    seen, stack = [], [f for n in gd.node for f in _called(n.attr)]
    while stack:
        f = stack.pop(0)
        if f in seen or f not in fdefs:
            continue
        seen.append(f)
        stack += [g for m in fdefs[f].node_def for g in _called(m.attr)]
    return seen


def strip_library(gd):
    """``gd`` with only the functions its nodes still call (gradients, dead branches go)."""
    keep = set(reachable_functions(gd))
    out = copy.deepcopy(gd)
    del out.library.function[:]
    out.library.function.extend(f for f in gd.library.function if f.signature.name in keep)
    del out.library.gradient[:]
    out.library.gradient.extend(g for g in gd.library.gradient if g.function_name in keep)
    return out


def refuse_updates(gd):
    """A variable update left on the outputs' path (a training branch taken, or not folded)
    is one line naming it: freezing would turn its variable into a constant it cannot
    assign, a graph TensorFlow itself then refuses to import."""
    fdefs = {f.signature.name: f for f in gd.library.function}
    found = [(n.name, n.op) for n in gd.node if _updates(n.op)]
    found += [
        (f"{n.name} in function {f}", n.op)
        for f in reachable_functions(gd)
        for n in fdefs[f].node_def
        if _updates(n.op)
    ]
    if found:
        name, op = found[0]
        raise UserError(
            f"node {name!r} ({op}) updates a variable on the path to the outputs"
            + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
            + ": a training branch (e.g. batch norm's moving averages); fold the placeholder that "
            "switches it off with --input_defaults (e.g. is_training:false)"
        )


def _updates(op):
    return op.startswith(("Assign", "ResourceApply", "Apply", "ResourceScatter", "Scatter"))


# --- outputs nobody reads: gradient intermediates of a graph trained with TF2 control flow ---
WHILES = ("While", "StatelessWhile")


def drop_unused_outputs(gd, outputs):
    """If/While outputs no node reads (and While loop variables nothing needed depends on)
    removed, with their functions pruned to match. Training built them for the gradients:
    an If's Optional intermediates and a While's TensorList accumulators, ops tf2onnx has no
    conversion for. Returns the new graph_def (prune it again: their inputs may be unused)."""
    gd = copy.deepcopy(gd)
    fdefs = {f.signature.name: f for f in gd.library.function}
    used = {}  # node -> ports read
    for m in gd.node:
        for i in m.input:
            if not i.startswith("^"):
                used.setdefault(fold.op_name(i), set()).add(fold._port(i))
    for name in outputs:
        used.setdefault(name, set()).add(0)
    remap = {}  # node -> {old port: new port}
    for n in gd.node:
        if n.op in IFS:
            keep = sorted(used.get(n.name, ()))
            if keep and len(keep) < len(n.attr["Tout"].list.type):
                for b in ("then_branch", "else_branch"):
                    n.attr[b].func.name = _add(gd, _pruned(fdefs[n.attr[b].func.name], keep))
                _filter_list_attrs(n, keep, ("Tout", "output_shapes", "_output_shapes"))
                remap[n.name] = {old: new for new, old in enumerate(keep)}
        elif n.op in WHILES:
            keep = _needed_loop_vars(n, used.get(n.name, set()), fdefs)
            if len(keep) < len(n.attr["T"].list.type):
                body, cond = fdefs[n.attr["body"].func.name], fdefs[n.attr["cond"].func.name]
                n.attr["body"].func.name = _add(gd, _pruned(body, keep, keep))
                n.attr["cond"].func.name = _add(gd, _pruned(cond, range(len(cond.signature.output_arg)), keep))
                data = [i for i in n.input if not i.startswith("^")]
                ctrl = [i for i in n.input if i.startswith("^")]
                del n.input[:]
                n.input.extend([data[k] for k in keep] + ctrl)
                _filter_list_attrs(n, keep, ("T", "output_shapes", "_output_shapes"))
                for k in ("_num_original_outputs", "_read_only_resource_inputs"):  # index bookkeeping of TF's
                    n.attr.pop(k, None)
                remap[n.name] = {old: new for new, old in enumerate(keep)}
    for m in gd.node:
        for j, i in enumerate(m.input):
            if not i.startswith("^") and fold.op_name(i) in remap:
                m.input[j] = f"{fold.op_name(i)}:{remap[fold.op_name(i)][fold._port(i)]}"
    return gd


def _filter_list_attrs(n, keep, keys):
    for k in keys:
        if k not in n.attr:
            continue
        lst = n.attr[k].list
        for field in ("type", "shape"):
            vals = list(getattr(lst, field))
            if vals:
                del getattr(lst, field)[:]
                getattr(lst, field).extend(vals[i] for i in keep)


def _fn_deps(fdef, refs):
    """(input arg names, node names) that the function's ``refs`` depend on."""
    nodes = {m.name: m for m in fdef.node_def}
    args = {a.name for a in fdef.signature.input_arg}
    seen, found, stack = set(), set(), [r.lstrip("^").split(":")[0] for r in refs]
    while stack:
        x = stack.pop()
        if x in args:
            found.add(x)
        elif x in nodes and x not in seen:
            seen.add(x)
            stack += [i.lstrip("^").split(":")[0] for i in nodes[x].input]
    return found, seen


def _needed_loop_vars(n, read, fdefs):
    """Indices of the loop variables the read outputs and the loop condition depend on."""
    body, cond = fdefs[n.attr["body"].func.name], fdefs[n.attr["cond"].func.name]
    b_args = [a.name for a in body.signature.input_arg]
    c_args = [a.name for a in cond.signature.input_arg]
    rets = [body.ret[a.name] for a in body.signature.output_arg]
    c_found, _ = _fn_deps(cond, list(cond.ret.values()) + list(cond.control_ret.values()))
    b_ctrl, _ = _fn_deps(body, list(body.control_ret.values()))
    need = set(read) | {c_args.index(a) for a in c_found} | {b_args.index(a) for a in b_ctrl}
    stack = list(need)
    while stack:
        found, _ = _fn_deps(body, [rets[stack.pop()]])
        for k in (b_args.index(a) for a in found):
            if k not in need:
                need.add(k)
                stack.append(k)
    return sorted(need)


def _pruned(fdef, keep_out, keep_in=None):
    """A copy of ``fdef`` with only the output args ``keep_out`` (and input args ``keep_in``),
    its nodes pruned to what the kept outputs and control outputs need."""
    f = copy.deepcopy(fdef)
    outs = [fdef.signature.output_arg[k] for k in keep_out]
    del f.signature.output_arg[:]
    f.signature.output_arg.extend(outs)
    for k in [k for k in f.ret if k not in {a.name for a in outs}]:
        del f.ret[k]
    if keep_in is not None:
        del f.signature.input_arg[:]
        f.signature.input_arg.extend(fdef.signature.input_arg[k] for k in keep_in)
        f.arg_attr.clear()  # both keyed by input index
        f.resource_arg_unique_id.clear()
        for new, k in enumerate(keep_in):
            if k in fdef.arg_attr:
                f.arg_attr[new].CopyFrom(fdef.arg_attr[k])
            if k in fdef.resource_arg_unique_id:
                f.resource_arg_unique_id[new] = fdef.resource_arg_unique_id[k]
    _, needed = _fn_deps(f, list(f.ret.values()) + list(f.control_ret.values()))
    kept = [m for m in fdef.node_def if m.name in needed]
    del f.node_def[:]
    f.node_def.extend(kept)
    return f


def _add(gd, fdef):
    """Add ``fdef`` to the library under a new name; returns the name."""
    names = {f.signature.name for f in gd.library.function}
    base, k = fdef.signature.name + "_inference", 0
    name = base
    while name in names:
        k += 1
        name = f"{base}_{k}"
    fdef.signature.name = name
    gd.library.function.add().CopyFrom(fdef)
    return name
