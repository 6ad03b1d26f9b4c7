"""A signature read from the model itself, for any .onnx or frozen .pb with no card
beside it (the runner carries any model, not only the two built-in ones).

ONNX: names, shapes and dtypes come from the graph's inputs and outputs. A symbolic
(dynamic) batch dimension is resolved by msame's ``--dymBatch N``, or else from the
size of the first input file when the batch is the only dynamic dimension (file bytes /
bytes per row). Other dynamic dimensions need ``--input_shape "name:d0,d1,...;..."``.
Output shapes come from the graph where static, else from one run on zeros.

Frozen .pb: ``--input_shape "name:16,28,28,1;name2:..."`` (placeholders whose static
shape is complete may be left out) and ``--output_node_names a,b`` (ATC's --out_nodes,
``name`` or ``name:i``); dtypes from the graph; output shapes from one run on zeros.
Input order (msame's --input order): the placeholders named in --input_shape in that
order, then the others in graph order.

The signature: model = file stem, graph "forward", source {"kind": "onnx" | "pb"},
batch = the first input's first dimension (1 for a scalar input).
"""

import os

import numpy as np

from common.errors import UserError, first_line
from common.loaders import load_graph_def, ort_session, with_shapes
from freeze.signature import DTYPES, Signature, Tensor

ONNX_DTYPES = {1: "float32", 10: "float16", 6: "int32", 7: "int64", 2: "uint8", 3: "int8", 12: "uint32", 9: "bool"}


def parse_input_shape(text, where="--input_shape"):
    """ATC's ``"name:d0,d1;name2:..."`` -> {name: [dims]} (names may keep ':0')."""
    out = {}
    if not text:
        return out
    for part in str(text).split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, dims = part.rpartition(":")
        if not sep or not name:
            raise UserError(f"{where} {text!r}: expected name:d0,d1,...;name2:..., found {part!r}")
        try:
            shape = [int(d) for d in dims.split(",") if d.strip()]
        except ValueError:
            raise UserError(f"{where} {text!r}: dims of {name!r} must be integers, found {dims!r}") from None
        if any(d <= 0 for d in shape):
            raise UserError(f"{where} {text!r}: dims of {name!r} must be positive, found {dims!r}")
        out[name] = shape
    return out


def _lookup(shapes, name):
    for k in (name, name.split(":")[0], name + ":0"):
        if k in shapes:
            return shapes[k]
    return None


def _positive_int(v, what):
    try:
        n = int(str(v))
    except ValueError:
        raise UserError(f"{what} must be a positive integer, got {v!r}") from None
    if not 1 <= n <= 2048:  # msame's limit for --dymBatch
        raise UserError(f"{what} must be in 1 to 2048, got {v!r}")
    return n


def _resolve(model, name, dims, dtype, given, dym_batch, first_file):
    """A static shape for one input: --input_shape, else dims with a dynamic batch
    resolved by --dymBatch or the first input file's size."""
    if given is not None:
        if len(given) != len(dims):
            raise UserError(
                f"--input_shape: {model} input {name!r} has rank {len(dims)} {dims}, --input_shape gives {given}"
            )
        for g, d in zip(given, dims):
            if isinstance(d, int) and d != g:
                raise UserError(
                    f"--input_shape: {model} input {name!r} has static shape {dims}, --input_shape gives {given}"
                )
        return list(given)
    dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
    if not dynamic:
        return list(dims)
    if dynamic != [0]:
        raise UserError(
            f"{model}: input {name!r} has dynamic dims {dims} beyond the batch; give "
            f'--input_shape "{name.split(":")[0]}:{",".join(str(d or "?") for d in dims)}" '
            "with numbers for the symbols (msame: --dymDims)"
        )
    if dym_batch is not None:
        return [dym_batch] + list(dims[1:])
    if first_file is None:
        raise UserError(
            f"{model}: input {name!r} has a dynamic batch {dims}; give --dymBatch N "
            "(or input files, whose size gives the batch)"
        )
    row = int(np.prod(dims[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
    try:
        n = os.path.getsize(first_file)
    except OSError:
        raise UserError(f"{first_file}: input file not found (input {name!r})") from None
    if row == 0 or n == 0 or n % row:
        raise UserError(
            f"{first_file}: input {name!r} has a dynamic batch, {dims[1:]} {dtype} "
            f"= {row} bytes per row; the file's {n} bytes is not a whole number of rows "
            "(give --dymBatch N)"
        )
    return [n // row] + list(dims[1:])


def _batch(inputs):
    return inputs[0].shape[0] if inputs and inputs[0].shape else 1


def from_onnx(model, dym_batch=None, input_shape=None, first_files=None):
    """The Signature of a bare .onnx (see the module docstring)."""
    import onnx

    try:
        m = onnx.load(model, load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise UserError(f"{model}: not an ONNX model ({type(e).__name__}: {first_line(e)})") from None
    given = parse_input_shape(input_shape)
    dym = None if dym_batch is None else _positive_int(dym_batch, "--dymBatch")
    inits = {i.name for i in m.graph.initializer}
    graph_inputs = [i for i in m.graph.input if i.name not in inits]
    ins, syms = [], {}
    for k, vi in enumerate(graph_inputs):
        dtype, dims = _onnx_type(model, vi, "input")
        first = first_files[k] if first_files and k < len(first_files) else None
        shape = _resolve(model, vi.name, dims, dtype, _lookup(given, vi.name), dym, first)
        for d, s in zip(dims, shape):
            if not isinstance(d, int) and d:
                syms[d] = s
        ins.append(Tensor(vi.name.split(":")[0], vi.name, shape, dtype, where=model))
    if not ins:
        raise UserError(f"{model}: the model has no inputs")
    outs, unknown = [], False
    for vi in m.graph.output:
        dtype, dims = _onnx_type(model, vi, "output")
        shape = [d if isinstance(d, int) else syms.get(d) for d in dims]
        unknown |= any(not isinstance(d, int) or d <= 0 for d in shape)
        outs.append((vi.name, dtype, shape))
    if unknown:
        outs = _shapes_by_running_onnx(model, ins, outs)
    stem = os.path.splitext(os.path.basename(model))[0]
    return Signature(
        stem,
        "forward",
        _batch(ins),
        ins,
        [Tensor(n.split(":")[0], n, s, d, where=model) for n, d, s in outs],
        source={"kind": "onnx", "path": os.path.abspath(model)},
        artifact={"file": os.path.basename(model), "kind": "onnx"},
    )


def _onnx_type(model, vi, what):
    t = vi.type.tensor_type
    dtype = ONNX_DTYPES.get(t.elem_type)
    if dtype is None:
        raise UserError(f"{model}: {what} {vi.name!r} has ONNX element type {t.elem_type}, not one of {DTYPES}")
    if not t.HasField("shape"):
        raise UserError(f"{model}: {what} {vi.name!r} has no shape in the model; give --input_shape")
    dims = []
    for d in t.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return dtype, dims


def _shapes_by_running_onnx(model, ins, outs):
    sess = ort_session(model)
    try:
        res = sess.run([n for n, _, _ in outs], {t.tensor: np.zeros(t.shape, t.np_dtype) for t in ins})
    except Exception as e:
        raise UserError(
            f"{model}: cannot run it on zeros to learn its output shapes "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    return [(n, d, list(np.shape(a)) or [1]) for (n, d, _), a in zip(outs, res)]


def from_pb(model, input_shape=None, output_nodes=None, dym_batch=None, first_files=None, atc=False):
    """The Signature of a bare frozen .pb (see the module docstring). ``atc``: ATC's rules
    (convert/atc.py): no output nodes means the graph's last ops' outputs, --input_shape
    replaces the placeholders' own shapes, and a free dim needs --input_shape."""
    if not output_nodes and not atc:
        raise UserError(
            f"{model}: no signature beside it; give --signature MODEL.json, or "
            "--output_node_names a,b (and --input_shape for placeholders without a static shape)"
        )
    gd = load_graph_def(model, "frozen GraphDef")
    given = parse_input_shape(input_shape)
    dym = None if dym_batch is None else _positive_int(dym_batch, "--dymBatch")
    if atc:  # ATC's --input_shape replaces a placeholder's own shape
        gd = with_shapes(gd, {n.split(":")[0]: [-1] * len(d) for n, d in given.items()})
    g = _import_pb(model, gd)
    placeholders = _pb_placeholders(model, g, given)
    outs = _pb_outputs(model, g, output_nodes or _leaf_tensors(model, g), atc)
    ins = [
        _pb_input(model, op, given, dym, first_files[k] if first_files and k < len(first_files) else None, atc)
        for k, op in enumerate(placeholders)
    ]
    res = _run_pb_on_zeros(model, g, ins, [o for o, _ in outs])
    stem = os.path.splitext(os.path.basename(model))[0]
    return Signature(
        stem,
        "forward",
        _batch(ins),
        ins,
        [
            Tensor(
                n.split(":")[0] if n.endswith(":0") else n.replace(":", "_"),
                n,
                list(np.shape(a)) or [1],
                d,
                where=model,
            )
            for (n, d), a in zip(outs, res)
        ],
        source={"kind": "pb", "path": os.path.abspath(model)},
        artifact={"file": os.path.basename(model), "kind": "pb"},
    )


def _import_pb(model, gd):
    from common.tfcompat import tf

    g = tf.Graph()
    try:
        with g.as_default():
            tf.import_graph_def(gd, name="")
    except Exception as e:
        raise UserError(f"{model}: TensorFlow cannot import the graph ({str(e).splitlines()[0]})") from None
    return g


def _pb_placeholders(model, g, given):
    """The graph's Placeholder ops: --input_shape's order first, then the graph's."""
    placeholders = [op for op in g.get_operations() if op.type == "Placeholder"]
    if not placeholders:
        raise UserError(f"{model}: the graph has no Placeholder inputs")
    unknown = sorted(set(given) - {op.name for op in placeholders} - {op.name + ":0" for op in placeholders})
    if unknown:
        raise UserError(
            f"--input_shape: {model} has no placeholder {unknown[0]!r}; "
            f"its placeholders are {[op.name for op in placeholders]}"
        )
    order = {n.split(":")[0]: k for k, n in enumerate(given)}
    placeholders.sort(key=lambda op: order.get(op.name, len(order)))
    return placeholders


def _pb_outputs(model, g, output_nodes, atc=False):
    """[(tensor name, dtype)] of --output_node_names ('a,b', 'a:0;b:1')."""
    names = [n.strip() for n in str(output_nodes).replace(";", ",").split(",") if n.strip()]
    outs = []
    for n in names:
        tn = n if ":" in n else n + ":0"
        try:
            t = g.get_tensor_by_name(tn)
        except (KeyError, ValueError):
            flag = "--out_nodes" if atc else "--output_node_names"
            raise UserError(f"{flag}: {model} has no tensor {tn!r}") from None
        dtype = t.dtype.base_dtype.name
        if dtype not in DTYPES:
            raise UserError(f"{model}: output {tn!r} has dtype {dtype}, not one of {DTYPES}")
        outs.append((tn, dtype))
    return outs


def _leaf_tensors(model, g):
    """'a:0;b:0': the outputs of the ops nothing consumes (the net's last layers)."""
    consumed = {t.name for op in g.get_operations() for t in op.inputs}
    skip = {"Placeholder", "Const", "NoOp", "Assert", "PlaceholderWithDefault"}
    leaves = [t.name for op in g.get_operations() if op.type not in skip for t in op.outputs if t.name not in consumed]
    if not leaves:
        raise UserError(f"{model}: the graph has no output (every op's output is consumed); give --out_nodes")
    return ";".join(leaves)


def _pb_input(model, op, given, dym, first, atc=False):
    """A placeholder's Tensor: its static shape, else --input_shape's; a free batch from
    --dymBatch or the size of its first input file ``first``."""
    t = op.outputs[0]
    dtype = t.dtype.base_dtype.name
    if dtype not in DTYPES:
        raise UserError(f"{model}: placeholder {op.name!r} has dtype {dtype}, not one of {DTYPES}")
    if t.shape.dims is None:
        dims = _lookup(given, op.name)
        if dims is None:
            raise UserError(
                f'{model}: placeholder {op.name!r} has no static shape; give --input_shape "{op.name}:d0,d1,..."'
            )
    else:
        dims = [d if d is not None and d > 0 else None for d in t.shape.as_list()]
    if atc and any(d is None for d in dims) and _lookup(given, op.name) is None:  # ATC takes no file sizes
        shown = ",".join(str(d) if d else "N" for d in dims)
        raise UserError(
            f'{model}: placeholder {op.name!r} has dynamic dims {dims}; give --input_shape "{op.name}:{shown}"'
        )
    shape = _resolve(model, op.name, dims, dtype, _lookup(given, op.name), dym, first)
    return Tensor(op.name, t.name, shape, dtype, where=model)


def _run_pb_on_zeros(model, g, ins, fetches):
    """The outputs on all-zero inputs (their shapes are the signature's)."""
    from common.tfcompat import tf

    try:
        with tf.Session(graph=g) as s:
            return s.run(fetches, {t.tensor: np.zeros(t.shape, t.np_dtype) for t in ins})
    except Exception as e:
        raise UserError(
            f"{model}: cannot run it on zeros with the shapes {[t.shape for t in ins]} "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
