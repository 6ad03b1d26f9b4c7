"""GraphDef passes that turn a user's training graph into an inference graph.

Each pass is a function of a GraphDef returning a new one (and what it did), applied
by freeze/sources.py in this order:

    set_inputs         the inputs get the static shapes of --input_shape (ATC's syntax); a
                       placeholder_with_default named as an input becomes a placeholder
    fold_defaults      placeholders of --input_defaults become constants; every other
                       placeholder_with_default becomes its default
    (freeze/tf2flow.py: TF2 If/Case on a now-constant predicate and function calls inlined)
    fold_switches      tf.cond on a predicate that is now constant: the taken branch stays,
                       the other one and its Switch/Merge nodes go
    fold_dropout       dropout at rate <= 0 (``uniform >= rate``, always true): its mask
                       becomes a constant fill, so no random op remains
    prune              only what the outputs need (optimizer, saver, summary nodes go)
    (then variables -> constants: tf.graph_util.convert_variables_to_constants)

Constant predicates and rates are found by evaluating them in a session with nothing
fed: whatever evaluates without an input is a constant of the frozen graph.
"""

import copy

import numpy as np

from common.errors import UserError
from common.tfcompat import tf

PLACEHOLDERS = ("Placeholder", "PlaceholderWithDefault")


def op_name(name):
    """'^a', 'a:1', 'a' -> 'a'."""
    return name.lstrip("^").split(":")[0]


def parse_input_shape(text, flag="--input_shape"):
    """ATC's ``"a:16,28,28,1;b:16"`` -> [(name, [16, 28, 28, 1]), ("b", [16])] in order."""
    out = []
    for item in [s for s in (text or "").split(";") if s.strip()]:
        name, sep, dims = item.strip().rpartition(":")
        try:
            shape = [int(d) for d in dims.split(",")] if dims.strip() else []
        except ValueError:
            shape = None
        if not sep or not name or shape is None or any(d < 1 for d in shape):
            raise UserError(
                f"{flag}: expected name:d1,d2,... with positive dims, separated by ';' "
                f'(e.g. "images:16,28,28,1"), found {item.strip()!r}'
            )
        out.append((op_name(name), shape))
    names = [n for n, _ in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise UserError(f"{flag}: input {sorted(dup)[0]!r} given twice")
    return out


def parse_defaults(text):
    """``"is_training:false;drop_rate:0"`` -> {"is_training": "false", "drop_rate": "0"}."""
    out = {}
    for item in [s for s in (text or "").split(";") if s.strip()]:
        name, sep, value = item.strip().rpartition(":")
        if not sep or not name or not value.strip():
            raise UserError(
                f"--input_defaults: expected name:value separated by ';' "
                f'(e.g. "is_training:false;drop_rate:0"), found {item.strip()!r}'
            )
        out[op_name(name)] = value.strip()
    return out


def _nodes(gd):
    return {n.name: n for n in gd.node}


def _dtype(node):
    return tf.as_dtype(node.attr["dtype"].type)


def set_inputs(gd, shapes):
    """Give each input placeholder its static shape; [(name, shape)] in input order."""
    gd = copy.deepcopy(gd)
    nodes = _nodes(gd)
    for name, shape in shapes:
        n = nodes.get(name)
        if n is None:
            raise UserError(
                f"--input_shape: the graph has no node {name!r}; its placeholders are "
                f"{sorted(k for k, v in nodes.items() if v.op in PLACEHOLDERS)}"
            )
        if n.op not in PLACEHOLDERS:
            raise UserError(f"--input_shape: node {name!r} is a {n.op}, not a placeholder")
        old = tf.TensorShape(n.attr["shape"].shape) if "shape" in n.attr else tf.TensorShape(None)
        if not old.is_compatible_with(shape):
            raise UserError(f"--input_shape: input {name!r} has shape {old}, which {shape} does not fit")
        if n.op == "PlaceholderWithDefault":  # named as an input: fed, never defaulted
            n.op = "Placeholder"
            del n.input[:]
        n.attr["shape"].shape.CopyFrom(tf.TensorShape(shape).as_proto())
    return gd


def _const_value(name, dtype, value, shape):
    if dtype == tf.bool:
        v = value.lower()
        if v not in ("true", "false", "1", "0"):
            raise UserError(f"--input_defaults: {name!r} is bool, expected true or false, found {value!r}")
        arr = np.array(v in ("true", "1"))
    else:
        try:
            arr = np.array(float(value) if dtype.is_floating else int(value))
        except ValueError:
            raise UserError(f"--input_defaults: {name!r} is {dtype.name}, found {value!r}") from None
    shape = tf.TensorShape(shape)
    if shape.rank:  # a non-scalar default fills the placeholder's (static) shape
        if not shape.is_fully_defined():
            raise UserError(
                f"--input_defaults: {name!r} has shape {shape}; only a placeholder "
                "of static shape can be given one value"
            )
        arr = np.full(shape.as_list(), arr)
    return arr.astype(dtype.as_numpy_dtype)


def fold_defaults(gd, defaults, inputs=()):
    """Placeholders named in ``defaults`` -> Const; other placeholder_with_default -> its
    default (an Identity of it). Returns (graph_def, {name: value folded})."""
    gd = copy.deepcopy(gd)
    nodes = _nodes(gd)
    folded = {}
    for name, value in defaults.items():
        n = nodes.get(name)
        if n is None or n.op not in PLACEHOLDERS:
            raise UserError(f"--input_defaults: {name!r} is not a placeholder of the graph")
        if name in inputs:
            raise UserError(f"--input_defaults: {name!r} is also an input (--input_shape)")
        dtype = _dtype(n)
        arr = _const_value(name, dtype, value, n.attr["shape"].shape if "shape" in n.attr else None)
        n.op = "Const"
        del n.input[:]
        for k in list(n.attr):
            del n.attr[k]
        n.attr["dtype"].type = dtype.as_datatype_enum
        n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr, dtype=dtype))
        folded[name] = arr.tolist()
    for n in gd.node:
        if n.op == "PlaceholderWithDefault" and n.name not in inputs:
            dtype = n.attr["dtype"].type
            n.op = "Identity"
            for k in list(n.attr):
                del n.attr[k]
            n.attr["T"].type = dtype
            folded.setdefault(n.name, "its default")
    return gd, folded


def _constants(gd, tensor_names):
    """{tensor name: value} for those of ``tensor_names`` that evaluate with nothing fed."""
    if not tensor_names:
        return {}
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    out = {}
    with tf.Session(graph=g) as s:
        for t in sorted(set(tensor_names)):
            try:
                out[t] = s.run(g.get_tensor_by_name(t))
            except (
                tf.errors.InvalidArgumentError,
                tf.errors.FailedPreconditionError,
                tf.errors.UnimplementedError,
                tf.errors.NotFoundError,
            ):
                pass  # depends on an input: not a constant
    return out


def _tensor(ref):
    ref = ref.lstrip("^")
    return ref if ":" in ref else ref + ":0"


def _port(ref):
    return int(ref.split(":")[1]) if ":" in ref else 0


def fold_switches(gd):
    """Remove tf.cond branches whose predicate is constant. Returns (graph_def, n Switches folded)."""
    switches = [n for n in gd.node if n.op in ("Switch", "RefSwitch")]
    consts = _constants(gd, [_tensor(n.input[1]) for n in switches])
    taken = {n.name: int(bool(consts[_tensor(n.input[1])])) for n in switches if _tensor(n.input[1]) in consts}
    if not taken:
        return gd, 0
    out = _without_dead_branches(gd, _Branches(gd, taken))
    return out, len(taken)


class _Branches:
    """The nodes that constant Switches (``taken``: Switch name -> live output port) leave
    dead, and each Merge's one live data input."""

    def __init__(self, gd, taken):
        self.nodes, self.taken = _nodes(gd), taken
        self.dead = set()  # node names that can no longer run
        self.live_in = {}  # Merge name -> its one live data input
        changed = True
        while changed:  # to a fixpoint: deadness only grows
            changed = False
            for n in gd.node:
                if n.name not in self.dead and n.name not in taken and self._now_dead(n):
                    self.dead.add(n.name)
                    changed = True

    def _now_dead(self, n):
        data = [i for i in n.input if not i.startswith("^")]
        if n.op in ("Merge", "RefMerge"):
            alive = [i for i in data if not self.is_dead(i)]
            if len(alive) == 1:
                self.live_in[n.name] = alive[0]
            return not alive
        return any(self.is_dead(i) for i in data) or any(self.is_dead(i) for i in n.input if i.startswith("^"))

    def is_dead(self, ref):
        name = op_name(ref)
        if name in self.taken:
            return _port(ref) != self.taken[name] or self.is_dead(self.nodes[name].input[0])
        return name in self.dead

    def resolve(self, ref):
        """A live reference, with folded Switches read through to their data input."""
        ctrl = ref.startswith("^")
        name = op_name(ref)
        while name in self.taken:
            ref = self.nodes[name].input[0]
            name = op_name(ref)
        return ("^" + name) if ctrl else ref


def _without_dead_branches(gd, b):
    """``gd`` without the dead nodes and folded Switches; a Merge left with one live input
    becomes an Identity of it."""
    out = tf.GraphDef()
    out.versions.CopyFrom(gd.versions)
    out.library.CopyFrom(gd.library)
    for n in gd.node:
        if n.name in b.dead or n.name in b.taken:
            continue
        m = out.node.add()
        m.CopyFrom(n)
        if n.name in b.live_in:  # a Merge with one live input: an Identity of it
            m.op = "Identity"
            del m.input[:]
            m.input.append(b.resolve(b.live_in[n.name]))
            t = n.attr["T"].type
            for k in list(m.attr):
                del m.attr[k]
            m.attr["T"].type = t
            continue
        del m.input[:]
        for i in n.input:
            if i.startswith("^") and b.is_dead(i):
                continue
            m.input.append(b.resolve(i))
    for m in out.node:  # a Merge's value_index output (port 1) is now a constant
        for i in m.input:
            if op_name(i) in b.live_in and _port(i) == 1 and not i.startswith("^"):
                raise UserError(
                    f"node {m.name!r} reads which branch of {op_name(i)!r} ran; freeze cannot fold that tf.cond"
                )
    return out


def fold_dropout(gd):
    """``uniform >= rate`` with a constant rate <= 0 (dropout switched off) -> a fill of
    True: the random op goes. Returns (graph_def, names of the masks folded)."""
    nodes = _nodes(gd)
    cands = [
        n
        for n in gd.node
        if n.op == "GreaterEqual"
        and nodes.get(op_name(n.input[0]), None) is not None
        and nodes[op_name(n.input[0])].op == "RandomUniform"
    ]
    consts = _constants(gd, [_tensor(n.input[1]) for n in cands])
    folded = []
    gd = copy.deepcopy(gd)
    nodes = _nodes(gd)
    for n in [nodes[c.name] for c in cands]:
        rate = consts.get(_tensor(n.input[1]))
        if rate is None or np.size(rate) != 1 or float(np.asarray(rate).reshape(-1)[0]) > 0:
            continue
        rnd = nodes[op_name(n.input[0])]
        value = gd.node.add()
        value.name = n.name + "/always_kept"
        value.op = "Const"
        value.attr["dtype"].type = tf.bool.as_datatype_enum
        value.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(True, dtype=tf.bool))
        shape_ref, index_type = rnd.input[0], rnd.attr["T"].type
        n.op = "Fill"
        del n.input[:]
        n.input.extend([shape_ref, value.name])
        for k in list(n.attr):
            del n.attr[k]
        n.attr["T"].type = tf.bool.as_datatype_enum
        n.attr["index_type"].type = index_type
        folded.append(n.name)
    return gd, folded


def prune(gd, outputs):
    """Only the nodes the output ops need."""
    try:
        return tf.graph_util.extract_sub_graph(gd, list(outputs))
    except (AssertionError, KeyError, TypeError) as e:
        raise UserError(f"--output_node_names: {e}") from None
