"""Frozen .pb -> portable ONNX, with ATC's --precision_mode emulated.

The ONNX model stands in for the .om where there is no NPU. Precision modes map to
onnxconverter_common's fp16 conversion (fp32 graph I/O kept, as an om built with
--output_type=FP32 and no --input_fp16_nodes):

    force_fp32, must_keep_origin_dtype   no conversion (fp32 everywhere)
    force_fp16                           every float op in fp16 (converter's default block list)
    allow_fp32_to_fp16                   only Cube (matrix) ops in fp16: CUBE_OPS; all else fp32
    allow_mix_precision                  fp16 except MIX_BLACK_LIST, the numerically fragile
                                         ops ATC's built-in black list keeps in fp32
    --keep_dtype FILE                    ATC's cfg: a TF op name per line keeps that node fp32;
                                         ``OpType::X`` keeps every node of ONNX type X fp32

On ONNX Runtime's CPU provider the fp16 nodes compute in fp32 between fp16 roundings
(it inserts casts), close to but not bit-exact with the NPU: judge with cosine / RED.
"""

import argparse
import dataclasses
import logging
import os

import numpy as np

from common import fsio
from common.errors import UserError, cli, run
from common.loaders import load_graph_def, ort_session
from freeze.signature import FP16_MODES, PRECISION_MODES, find_beside, own_card

OPSETS = range(11, 16)  # what ATC's ONNX parser takes across CANN versions
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
FP16_MIN_POSITIVE = 5.96e-8  # smallest fp16 subnormal: ATC casts weights plainly (IEEE)
FP16_MAX = 65504.0


def read_keep_dtype(path):
    """ATC's --keep_dtype cfg -> (TF op names, ONNX op types). UTF-8 text, one entry a
    line; anything else is a one-line error naming the file and line."""
    if not path:
        return [], []
    if not os.path.isfile(path):
        raise UserError(f"{path}: keep_dtype file not found")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read the keep_dtype file ({e.strerror or e})") from None
    names, types = [], []
    for lineno, b in enumerate(raw.splitlines(), 1):
        try:
            line = b.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            raise UserError(
                f"{path}:{lineno}: expected UTF-8 text (an op name or OpType::TYPE per line), "
                f"found byte 0x{b[e.start]:02x}"
            ) from None
        if not line or line.startswith("#"):
            continue
        if any(c.isspace() or not c.isprintable() for c in line):
            raise UserError(f"{path}:{lineno}: expected one op name or OpType::TYPE per line, found {line!r}")
        if line.startswith("OpType::"):
            if not line[len("OpType::") :]:
                raise UserError(f"{path}:{lineno}: expected OpType::TYPE, found {line!r}")
            types.append(line[len("OpType::") :])
        else:
            names.append(line)
    return names, types


def unsupported_ops(model):
    """Op types tf2onnx left unconverted (it only logs them): not ONNX ops in any known domain."""
    import onnx

    bad = set()
    for n in model.graph.node:
        domain = n.domain or ""
        if domain in ("", "ai.onnx"):
            if not onnx.defs.has(n.op_type):
                bad.add(n.op_type)
        elif domain != "com.microsoft":
            bad.add(f"{domain}::{n.op_type}")
    return sorted(bad)


def tf_to_onnx(graph_def, signature, opset=13, where="model"):
    """The fp32 ONNX ModelProto; UserError on a bad opset or any unsupported op."""
    import tf2onnx

    if opset not in OPSETS:
        raise UserError(f"--opset must be in {OPSETS.start}..{OPSETS.stop - 1} (ATC's ONNX range), got {opset}")
    logged = []

    class Catch(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if "is not supported" in msg or "Unsupported ops" in msg:
                logged.append(msg)

    log = logging.getLogger("tf2onnx")
    h = Catch()
    log.addHandler(h)
    try:
        model, _ = tf2onnx.convert.from_graph_def(
            graph_def,
            input_names=[t.tensor for t in signature.inputs],
            output_names=[t.tensor for t in signature.outputs],
            opset=opset,
        )
    except Exception as e:
        raise UserError(f"{where}: tf2onnx failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    finally:
        log.removeHandler(h)
    bad = unsupported_ops(model)
    if bad or logged:
        raise UserError(
            f"{where}: ops not supported by tf2onnx (opset {opset}): "
            f"{', '.join(bad) or '; '.join(logged)}; rewrite them before freezing"
        )
    return model


def fp16_block_lists(model, precision_mode, keep_names=(), keep_types=()):
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


def _split_consumed_outputs(model):
    """Give every graph output that other nodes also read its own Identity.

    convert_float_to_float16(keep_io_types=True) casts a graph output back to fp32 under
    its old name, and nodes still reading that name then get fp32 where fp16 is declared
    (ORT: "Type Error ... does not match expected type")."""
    import onnx
    from onnx import helper

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


def _unshare_initializers(model, block_ops, block_nodes):
    """Give fp32-kept and fp16 consumers of one constant their own copies.

    The converter keeps a constant fp32 if any blocked node reads it, and then feeds that
    fp32 constant to the fp16 readers too (ORT: "bound to different types")."""
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


def _fold_fp16_round_trips(model, original_nodes, original_outputs):
    """Drop the fp32 -> fp16 -> fp32 Cast pairs the converter puts between fp32 nodes.

    onnxconverter_common (1.16) turns every float tensor's type to fp16, then wraps each
    blocked (fp32) node in Cast(fp32) ... Cast(fp16): a tensor passed from one fp32 node to
    another is rounded to fp16 on the way (and a graph input is rounded before an fp32 node
    reads it). ATC keeps such tensors fp32: only the inputs and outputs of fp16 nodes are
    fp16. A converter-made Cast-to-fp32 that reads a converter-made Cast-to-fp16 of an
    fp32 tensor is replaced by that fp32 tensor; the fp16 Cast goes when nothing reads it.
    Casts that were in the model before conversion are left alone. Returns pairs folded."""
    from onnx import NodeProto, TensorProto, helper

    def onnx_copy(n):
        c = NodeProto()
        c.CopyFrom(n)
        return c

    g = model.graph
    fp32 = {i.name for i in g.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    fp32 |= {i.name for i in g.initializer if i.data_type == TensorProto.FLOAT}
    fp32 |= {v.name for v in g.value_info if v.type.tensor_type.elem_type == TensorProto.FLOAT}

    def cast_to(n):
        return next((a.i for a in n.attribute if a.name == "to"), None)

    made = lambda n: n.op_type == "Cast" and n.name not in original_nodes  # noqa: E731
    down = {
        n.output[0]: n.input[0] for n in g.node if made(n) and cast_to(n) == TensorProto.FLOAT16 and n.input[0] in fp32
    }
    outs = {o.name for o in g.output}
    nodes = list(g.node)
    alias, drop = {}, set()
    for k, n in enumerate(nodes):
        if made(n) and cast_to(n) == TensorProto.FLOAT and n.input[0] in down and n.output[0] not in outs:
            alias[n.output[0]] = down[n.input[0]]
            drop.add(k)
    for n in nodes:
        for k, v in enumerate(n.input):
            if v in alias:
                n.input[k] = alias[v]
    read = {i for k, n in enumerate(nodes) if k not in drop for i in n.input} | outs
    drop |= {k for k, n in enumerate(nodes) if made(n) and n.output[0] in down and n.output[0] not in read}
    keep = [onnx_copy(n) for k, n in enumerate(nodes) if k not in drop]
    # a blocked node writing a graph output: the converter casts it to fp16 and retypes the
    # output fp16 despite keep_io_types. The om's outputs are fp32 (--output_type FP32).
    for o in g.output:
        if o.type.tensor_type.elem_type != TensorProto.FLOAT16 or o.name not in original_outputs:
            continue
        o.type.tensor_type.elem_type = TensorProto.FLOAT
        n = next(n for n in keep if o.name in n.output)
        if made(n) and cast_to(n) == TensorProto.FLOAT16 and n.input[0] in fp32:
            n.attribute[0].i = TensorProto.FLOAT  # Cast(fp32 -> fp32): a plain copy
        else:
            n.output[list(n.output).index(o.name)] = o.name + "__fp16"
            keep.append(
                helper.make_node(
                    "Cast",
                    [o.name + "__fp16"],
                    [o.name],
                    to=TensorProto.FLOAT,
                    name=o.name.split(":")[0] + "__out_cast",
                )
            )
    del g.node[:]
    g.node.extend(keep)
    return len(alias)


def to_precision(model, precision_mode, keep_names=(), keep_types=()):
    if precision_mode not in PRECISION_MODES:
        raise UserError(f"--precision_mode must be one of {', '.join(PRECISION_MODES)}, got {precision_mode!r}")
    if precision_mode not in FP16_MODES:
        return model, []
    import warnings

    import onnx
    from onnxconverter_common import float16

    model = _split_consumed_outputs(model)  # first: its Identity nodes are blocked like the rest
    ops, nodes = fp16_block_lists(model, precision_mode, keep_names, keep_types)
    _unshare_initializers(model, set(ops), set(nodes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m16 = float16.convert_float_to_float16(
            model,
            min_positive_val=FP16_MIN_POSITIVE,
            max_finite_val=FP16_MAX,
            keep_io_types=True,
            op_block_list=ops,
            node_block_list=nodes,
        )
    f32_out = {o.name for o in model.graph.output if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    _fold_fp16_round_trips(m16, {n.name for n in model.graph.node}, f32_out)
    return m16, nodes


def example_feed(signature, seed=0):
    """Example inputs: the built-in model's own, else values by dtype (models/spec.py)."""
    from models import spec

    return spec.example_feed(signature, np.random.RandomState(seed))


def run_onnx(sess, signature, feed):
    names = [o.name for o in sess.get_outputs()]
    return sess.run(names, {i.name: feed[t.name] for i, t in zip(sess.get_inputs(), signature.inputs)})


def max_rel(got, ref):
    """Largest difference relative to each output's largest magnitude (freeze's measure)."""
    from freeze.core import rel_err

    return max((rel_err(g, r) for g, r in zip(got, ref)), default=0.0)


def convert(pb_path, output, precision_mode="force_fp32", keep_dtype=None, opset=13, force=False):
    """Write ``output`` (.onnx) and its signature beside it; returns the Signature written."""
    import onnx

    from freeze.core import run_graph_def

    pb_path, output = os.fspath(pb_path), os.fspath(output)
    if not output.endswith(".onnx"):
        raise UserError(f"--output must end in .onnx, got {output}")
    sig = find_beside(pb_path)
    # the onnx's own card, never the pb's (m/realnvp.onnx beside m/realnvp.pb: m/realnvp.onnx.json)
    sig_out = own_card(output, sig.path)
    fsio.refuse_overwrite([output, sig_out], force)
    keep_names, keep_types = read_keep_dtype(keep_dtype)
    gd = load_graph_def(pb_path)
    known = {n.name for n in gd.node}
    missing = [n for n in keep_names if n not in known]
    if missing:
        raise UserError(f"{keep_dtype}: op names not in {pb_path}: {', '.join(missing[:5])}")
    model = tf_to_onnx(gd, sig, opset, where=pb_path)
    model, kept = to_precision(model, precision_mode, keep_names, keep_types)
    try:
        onnx.checker.check_model(model)
        sess = ort_session(model, name=output)
    except Exception as e:
        raise UserError(f"{output}: converted model fails the ONNX checks ({str(e).splitlines()[0]})") from None
    feed = example_feed(sig)
    got = run_onnx(sess, sig, feed)
    ref = run_graph_def(gd, sig, feed)
    err = max_rel(got, ref)
    try:
        with fsio.atomic_path(output) as tmp:
            onnx.save(model, tmp)
    except OSError as e:
        raise UserError(f"{output}: cannot write the model ({e.strerror or e})") from None
    art = {
        "file": os.path.basename(output),
        "kind": "onnx",
        "opset": opset,
        "precision_mode": precision_mode,
        "bytes": os.path.getsize(output),
        "source": os.path.basename(pb_path),
    }
    if keep_dtype:
        art["keep_dtype"] = {
            "file": os.path.abspath(keep_dtype),
            "nodes_kept_fp32": kept,
            "op_types_kept_fp32": keep_types,
        }
    check = {"onnx_vs_frozen_max_rel": err, "onnx_checker": True, "onnxruntime_loads": True}
    checks = {k: v for k, v in sig.checks.items() if k != "onnx"}
    out = dataclasses.replace(sig, precision_mode=precision_mode, artifact=art, checks=dict(checks, **check))
    try:
        out = out.save(sig_out)
    except OSError as e:
        raise UserError(f"{sig_out}: cannot write the signature ({e.strerror or e})") from None
    return out


def build_parser():
    p = argparse.ArgumentParser(
        description="Convert a frozen TF .pb to a portable ONNX model (ATC stand-in), "
        "emulating ATC's --precision_mode.",
        epilog="example: python convert/to_onnx.py --model runs/demo/realnvp/model/realnvp.pb "
        "--output runs/demo/realnvp/model/realnvp.fp16.onnx --precision_mode force_fp16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="frozen graph .pb (its signature .json beside it)")
    p.add_argument("--output", required=True, help="ONNX file to write (signature written beside it)")
    p.add_argument(
        "--precision_mode",
        default="force_fp32",
        choices=PRECISION_MODES,
        help="ATC precision mode to emulate (default force_fp32: likelihoods sum "
        "thousands of terms, which fp16 cannot hold to 1e-4 bpd)",
    )
    p.add_argument("--keep_dtype", help="ATC keep_dtype cfg: TF op names (or OpType::X) kept fp32")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset, 11..15 (default 13)")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    return p


@cli
def main(argv=None):
    a = build_parser().parse_args(argv)
    sig = convert(a.model, a.output, a.precision_mode, a.keep_dtype, a.opset, a.force)
    c = sig.checks.get("onnx", sig.checks)
    print(
        f"wrote {a.output} ({a.precision_mode}, opset {a.opset}); "
        f"max error vs frozen graph {c['onnx_vs_frozen_max_rel']:.3g} "
        "(relative to each output's scale)"
    )


if __name__ == "__main__":
    run(main)
