"""Frozen .pb -> portable ONNX (tf2onnx), with ATC's --precision_mode emulated.

The ONNX model stands in for the .om where there is no NPU. This module converts with
tf2onnx, reads the --keep_dtype cfg, writes the .onnx and its own signature card
(``own_card``: ``<stem>.json`` or ``<file>.json``, never the .pb's), and is the CLI.
The precision modes are graph passes in ``convert/fp16/`` (the mode table is there);
the check against the frozen graph is ``convert/parity.py``.

    --keep_dtype FILE    ATC's cfg: a TF op name per line keeps that node fp32;
                         ``OpType::X`` keeps every node of ONNX type X fp32
"""

import argparse
import dataclasses
import logging
import os

import numpy as np

from common import fsio
from common.cli import ArgumentParser, add_force, add_output, add_verbosity
from common.errors import UserError, cli, run
from common.loaders import load_graph_def, ort_session, with_shapes
from freeze.signature import PRECISION_MODES, find_beside, own_card, path_beside

OPSETS = range(11, 16)  # what ATC's ONNX parser takes across CANN versions


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


def _check_keep_names(graph_def, keep_names, keep_dtype, pb_path):
    known = {n.name for n in graph_def.node}
    missing = [n for n in keep_names if n not in known]
    if missing:
        raise UserError(f"{keep_dtype}: op names not in {pb_path}: {', '.join(missing[:5])}")


def _checked_session(model, output):
    """An ONNX Runtime session of the converted model; UserError if the ONNX checker or
    ONNX Runtime refuses it."""
    import onnx

    try:
        onnx.checker.check_model(model)
        return ort_session(model, name=output)
    except Exception as e:
        raise UserError(f"{output}: converted model fails the ONNX checks ({str(e).splitlines()[0]})") from None


def _artifact(output, pb_path, opset, precision_mode, keep_dtype, kept, keep_types):
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
    return art


def _check_card(gd, sig, pb_path):
    """The card's tensors are the graph's (dtype, every static dimension): a contradicting
    card would be copied into the .onnx's own card, or fail in ONNX Runtime with a traceback."""
    import numpy as np

    from common.loaders import import_graph_def

    g = import_graph_def(gd, pb_path)
    for what, ts in (("input", sig.inputs), ("output", sig.outputs)):
        for t in ts:
            try:
                x = g.get_tensor_by_name(t.tensor)
            except (KeyError, ValueError):
                raise UserError(
                    f"{pb_path}: the graph has no {what} tensor {t.tensor!r}, which {sig.path} names"
                ) from None
            dims = x.shape.as_list() if x.shape.rank is not None else None
            same_size = dims and None not in dims and len(dims) != len(t.shape) and int(np.prod(dims)) == t.size
            if x.dtype.base_dtype.name != t.dtype or (
                dims is not None and not x.shape.is_compatible_with(t.shape) and not (what == "output" and same_size)
            ):
                raise UserError(
                    f"{pb_path}: {what} {t.tensor!r} is {x.dtype.base_dtype.name} {dims} in the graph, "
                    f"the signature {sig.path} says {t.dtype} {t.shape}"
                )


@dataclasses.dataclass
class AtcOptions:
    """ATC's options the portable model applies around the plain conversion (convert/atc.py
    fills it from the command line). ``output_types``: {output tensor: dtype};
    ``fp16_inputs``: input tensors that take float16; ``input_shapes``: {placeholder: dims}
    from --input_shape (-1 where a dynamic gear chooses), which replace the graph's own;
    ``dynamic``: the card's artifact["dynamic"]; ``artifact``: extra card entries
    (artifact["atc"]); ``aipp_ops``: --insert_op_conf parsed by convert/aipp.py."""

    input_shapes: dict = dataclasses.field(default_factory=dict)
    output_types: dict = dataclasses.field(default_factory=dict)
    fp16_inputs: tuple = ()
    dynamic: dict | None = None
    artifact: dict = dataclasses.field(default_factory=dict)
    aipp_ops: list = dataclasses.field(default_factory=list)


def _rename_uses(model, old, new):
    for n in model.graph.node:
        for i, x in enumerate(n.input):
            if x == old:
                n.input[i] = new
        for i, x in enumerate(n.output):
            if x == old:
                n.output[i] = new


def retype_output(model, name, dtype):
    """ATC's --output_type: graph output ``name`` becomes ``dtype`` through a Cast, keeping its name."""
    import onnx

    out = next(o for o in model.graph.output if o.name == name)
    to = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    if out.type.tensor_type.elem_type == to:
        return model
    _rename_uses(model, name, name + "/before_output_type")
    model.graph.node.append(
        onnx.helper.make_node("Cast", [name + "/before_output_type"], [name], to=to, name=name + "/output_type")
    )
    out.type.tensor_type.elem_type = to
    return model


def fp16_input(model, name):
    """ATC's --input_fp16_nodes: graph input ``name`` takes float16, cast to float32 for the graph."""
    import onnx

    inp = next(i for i in model.graph.input if i.name == name)
    _rename_uses(model, name, name + "/fp32")
    model.graph.node.insert(
        0, onnx.helper.make_node("Cast", [name], [name + "/fp32"], to=onnx.TensorProto.FLOAT, name=name + "/fp16_input")
    )
    inp.type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    return model


def atc_passes(model, sig, opts):
    """The ATC options that change the model's interface, on the checked model: output types,
    float16 inputs, static AIPP. Returns (model, signature, extra card entries)."""
    for t in sig.outputs:
        if t.tensor in opts.output_types:
            model = retype_output(model, t.tensor, opts.output_types[t.tensor])
    for t in sig.inputs:
        if t.tensor in opts.fp16_inputs:
            model = fp16_input(model, t.tensor)
    outs = tuple(dataclasses.replace(t, dtype=opts.output_types.get(t.tensor, t.dtype)) for t in sig.outputs)
    ins = tuple(dataclasses.replace(t, dtype="float16") if t.tensor in opts.fp16_inputs else t for t in sig.inputs)
    sig = dataclasses.replace(sig, inputs=ins, outputs=outs)
    if not opts.aipp_ops:
        return model, sig, {}
    from convert import aipp

    model, sig, records = aipp.apply(model, opts.aipp_ops, sig)  # the model now takes the .om's uint8 inputs
    return model, sig, {"aipp": records}


def convert(
    pb_path, output, precision_mode="force_fp32", keep_dtype=None, opset=13, force=False, sig=None, options=None
):
    """Write ``output`` (.onnx) and its own signature beside it (``own_card``: never the
    .pb's card); returns the Signature written. ``sig``: the .pb's signature (default: the
    card beside it); ``options``: ATC's options (AtcOptions).

    Order: tf2onnx, the precision mode's passes, parity with the frozen graph (same inputs,
    so before the interface changes), then the ATC options that change the interface
    (atc_passes), then the file and its card."""
    import onnx

    from convert import aipp, fp16, parity

    pb_path, output = os.fspath(pb_path), os.fspath(output)
    opts = options or AtcOptions()
    if not output.endswith(".onnx"):
        raise UserError(f"--output must end in .onnx, got {output}")
    sig = sig or find_beside(pb_path)
    if opts.aipp_ops:
        aipp.card(opts.aipp_ops, sig)  # the config fits the model's inputs: checked before converting
    # the onnx's own card, never the pb's (m/realnvp.onnx beside m/realnvp.pb: m/realnvp.onnx.json)
    sig_out = own_card(output, sig.path or path_beside(pb_path))  # a bare .pb's card-to-be is not ours
    fsio.refuse_overwrite([output, sig_out], force)
    keep_names, keep_types = read_keep_dtype(keep_dtype)
    gd = load_graph_def(pb_path)
    _check_keep_names(gd, keep_names, keep_dtype, pb_path)
    if opts.input_shapes:  # ATC's --input_shape: -1 dims become symbolic in the ONNX model
        gd = with_shapes(gd, opts.input_shapes)
    _check_card(gd, sig, pb_path)  # after --input_shape, which replaces the graph's own shapes
    model = tf_to_onnx(gd, sig, opset, where=pb_path)
    model, kept = fp16.to_precision(model, precision_mode, keep_names, keep_types)
    err = parity.onnx_vs_frozen(_checked_session(model, output), gd, sig)
    model, sig, more = atc_passes(model, sig, opts)
    _checked_session(model, output)
    try:
        with fsio.atomic_path(output) as tmp:
            onnx.save(model, tmp)
    except OSError as e:
        raise UserError(f"{output}: cannot write the model ({e.strerror or e})") from None
    art = _artifact(output, pb_path, opset, precision_mode, keep_dtype, kept, keep_types)
    art.update(opts.artifact, **more)
    if opts.dynamic:
        art["dynamic"] = opts.dynamic
    check = {"onnx_vs_frozen_max_rel": err, "onnx_checker": True, "onnxruntime_loads": True}
    checks = {k: v for k, v in sig.checks.items() if k != "onnx"}
    out = dataclasses.replace(sig, precision_mode=precision_mode, artifact=art, checks=dict(checks, **check))
    try:
        out = out.save(sig_out)
    except OSError as e:
        raise UserError(f"{sig_out}: cannot write the signature ({e.strerror or e})") from None
    return out


def build_parser():
    p = ArgumentParser(
        description="Convert a frozen TF .pb to a portable ONNX model (ATC stand-in), "
        "emulating ATC's --precision_mode.",
        epilog="example: python convert/to_onnx.py --model runs/demo/realnvp/model/realnvp.pb "
        "--output runs/demo/realnvp/model/realnvp.force_fp16.onnx --precision_mode force_fp16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="frozen graph .pb (its signature .json beside it)")
    add_output(p, required=True, help="ONNX file to write (signature written beside it)")
    p.add_argument(
        "--precision_mode",
        default="force_fp32",
        choices=PRECISION_MODES,
        help="ATC precision mode to emulate (default force_fp32: likelihoods sum "
        "thousands of terms, which fp16 cannot hold to 1e-4 bpd)",
    )
    p.add_argument("--keep_dtype", help="ATC keep_dtype cfg: TF op names (or OpType::X) kept fp32")
    p.add_argument("--insert_op_conf", help="ATC's static AIPP config (aipp_op { ... }): the model takes uint8 images")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset, 11..15 (default 13)")
    add_force(p, help="replace an existing output")
    add_verbosity(p)
    return p


@cli
def main(argv=None):
    a = build_parser().parse_args(argv)
    from convert import aipp

    opts = AtcOptions(aipp_ops=aipp.parse(a.insert_op_conf)) if a.insert_op_conf else None  # a bad config fails first
    sig = convert(a.model, a.output, a.precision_mode, a.keep_dtype, a.opset, a.force, options=opts)
    c = sig.checks.get("onnx", sig.checks)
    print(
        f"wrote {a.output} ({a.precision_mode}, opset {a.opset}); "
        f"max error vs frozen graph {c['onnx_vs_frozen_max_rel']:.3g} "
        "(relative to each output's scale)"
    )


if __name__ == "__main__":
    run(main)
