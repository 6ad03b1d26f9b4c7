"""ATC wrapper: a team's own ``atc`` command line, on any frozen .pb.

``bash convert/atc.sh --model=model.pb --framework=3 --output=model --soc_version=Ascend310
--input_shape="images:1,224,224,3" --out_nodes="logits:0" --output_type=FP32`` takes the line
as ATC takes it (convert/atc_flags.py: spellings, values, mutual exclusions). Where ``atc`` is
on PATH the line is passed to it as typed, plus only what the road adds where the line leaves
it out and the .pb's signature knows (--framework, --output, --soc_version, --input_shape,
--out_nodes, --input_format); success is exit 0 AND "ATC run success" in its output AND
exactly ``<output>.om`` written by this run. Where it is absent the portable ONNX model is
built instead (convert/to_onnx.py), honouring the same flags, and its card records each
flag's fate (artifact["atc"]); the console says one line per flag not applied.

The signature: the card beside the .pb where the line leaves inputs and outputs to it; else
derived from the graph and the flags (infer/modelsig.from_pb: --input_shape, --out_nodes,
else the placeholders and the net's last ops, as ATC). --precision_mode defaults to ATC's
documented force_fp16 (said in one line); the presets and the demo pass theirs. The portable
model is named by its precision mode: ``X.onnx`` (force_fp32), ``X.force_fp16.onnx``,
``X.allow_fp32_to_fp16.onnx``, ...

Each artifact gets its own signature (freeze/signature.card_path): ``m/mine.om`` beside
``m/mine.pb`` gets ``m/mine.om.json``; the .pb's card is never rewritten.
"""

import argparse
import dataclasses
import math
import os
import re
import shlex
import shutil
import subprocess
import sys

from common import fsio
from common.cli import ArgumentParser, add_force, add_verbosity
from common.errors import UserError, cli, run
from common.log import log
from convert import aipp, atc_flags
from freeze.signature import BF16_MODES, Signature, own_card, path_beside

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECODE = re.compile(r"^(E[0-9A-Z]{5})\b.*$", re.M)
SUCCESS = "ATC run success"
INPUT_FORMATS = atc_flags.INPUT_FORMATS


def input_format(sig):
    """ATC's --input_format from the signature's input layouts: the one image layout the
    inputs declare (ND inputs take any), ND when none does; two different ones are an
    error (ATC takes one value for all inputs)."""
    layouts = sorted({t.layout for t in sig.inputs if t.layout in INPUT_FORMATS and t.layout != "ND"})
    if len(layouts) > 1:
        raise UserError(
            f"{sig.path}: inputs declare layouts {layouts}; ATC takes one --input_format "
            "for all inputs: pass --input_format"
        )
    unknown = sorted({t.layout for t in sig.inputs if t.layout not in INPUT_FORMATS})
    if unknown:
        raise UserError(
            f"{sig.path}: input layout(s) {unknown} not one of {', '.join(INPUT_FORMATS)}; pass --input_format"
        )
    return layouts[0] if layouts else "ND"


def up_to_date(model, onnx_path, precision_mode, keep_dtype=None, parent_card=None, argv=None):
    """Make's rule for the portable fallback: the .onnx exists, is newer than the .pb, and its
    own signature (card_path, never the .pb's) records it, made from this .pb with this
    precision mode and command line (a keep_dtype file always rebuilds)."""
    if keep_dtype or not os.path.isfile(onnx_path) or os.path.getmtime(onnx_path) < os.path.getmtime(model):
        return False
    card = own_card(onnx_path, parent_card)
    if not os.path.isfile(card):
        return False
    try:
        s = Signature.load(card)
    except UserError:
        return False
    art = s.artifact
    return (
        art.get("file") == os.path.basename(onnx_path)
        and art.get("kind") == "onnx"
        and art.get("source") in (None, os.path.basename(model))
        and s.precision_mode == precision_mode
        and (argv is None or (art.get("atc") or {}).get("argv") == argv)
    )


def _stamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def run_atc(argv, output, timeout=None, model=None):
    """Run atc; returns (console text, ``<output>.om``). UserError (with the E-code line) on
    failure, or when the .om is missing or is the one that was there before the run."""
    om = output + ".om"
    before = _stamp(om)
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as e:
        raise UserError(f"{argv[0]}: cannot run atc ({e})") from None
    text = r.stdout or ""
    after = _stamp(om)
    if r.returncode == 0 and SUCCESS in text and after is not None and after != before:
        return text, om
    codes = [m.group(0).strip() for m in ECODE.finditer(text)]
    if r.returncode == 0 and SUCCESS in text:
        why = f"atc reported success but wrote no {om}" + (" (the old one is unchanged)" if after else "")
    else:
        why = f"atc failed (exit {r.returncode})"
    raise UserError(
        f"{model or output}: {why}: {codes[0] if codes else (text.strip().splitlines() or ['no output'])[-1]}"
    )


def save_om_signature(sig, om, model, argv, precision_mode, record, dynamic=None):
    """The .om's own signature (card_path: never the .pb's card); returns its path."""
    out = own_card(om, sig.path or path_beside(model))
    art = {
        "file": os.path.basename(om),
        "kind": "om",
        "source": os.path.basename(model),
        "precision_mode": precision_mode,
        "bytes": os.path.getsize(om),
        "atc_argv": argv,
        "atc": {"argv": record["argv"]},
    }
    if dynamic:
        art["dynamic"] = dynamic
    try:
        dataclasses.replace(sig, precision_mode=precision_mode, artifact=art).save(out)
    except OSError as e:
        raise UserError(f"{out}: cannot write the .om's signature ({e.strerror or e})") from None
    return out


# the wrapper's own flags: {spelling: takes a value}; every other flag is ATC's
WRAPPER = {
    "--default-model": True,
    "--dry-run": False,
    "--dry_run": False,
    "--force": False,
    "-v": False,
    "--verbose": False,
    "-q": False,
    "--quiet": False,
    "-h": False,
    "--help": False,
}


def build_parser():
    p = ArgumentParser(
        prog="atc.sh",
        allow_abbrev=False,
        description="Convert a frozen .pb as ATC does: with CANN's atc on PATH, the command line is "
        "passed to it unchanged (.om); without it, the portable ONNX model honours the same flags "
        "(--input_shape, --out_nodes, --output_type, --precision_mode, --input_fp16_nodes, the "
        "dynamic gears, ...) and its card records what it did with each. Spellings as atc: "
        "--flag=value, --flag value, -flag, --flag-name. Without a signature beside the .pb, "
        "--input_shape/--out_nodes (else the graph's placeholders and last ops) give it. "
        "--precision_mode defaults to ATC's force_fp16; the portable model is named by its "
        "mode: X.onnx (force_fp32), X.force_fp16.onnx, X.allow_fp32_to_fp16.onnx, ...",
        epilog="example: bash convert/atc.sh --model=model.pb --framework=3 --output=model "
        '--soc_version=Ascend310 --input_shape="images:1,32,32,3" --out_nodes="logits:0" '
        "--output_type=FP32 --log=info\n"
        "         bash convert/atc.sh --model m/mine.pb --output m/mine --precision_mode force_fp32 --dry-run\n"
        "         bash convert/atc_realnvp.sh   (preset: the demo's model, force_fp32)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.epilog += "\n\nATC flags (atc --help has them all; without CANN the portable model does):\n" + "\n".join(
        f"  --{name:26} {fate}: {note}" for name, (fate, note) in atc_flags.NOTES.items()
    )
    p.epilog += f"\n  {'any other ATC flag':28} recorded only: passed to atc on an Ascend host"
    p.add_argument("--default-model", dest="default_model", help=argparse.SUPPRESS)
    p.add_argument(
        "--dry-run", "--dry_run", action="store_true", dest="dry_run", help="print the exact atc command and do nothing"
    )
    add_force(p, help="replace an existing output")
    add_verbosity(p)
    return p


def _model_of(a, flags):
    """The .pb to convert: --model, else the preset's --default-model (a user error if absent)."""
    model = flags.get("model")
    if not model:
        if not a.default_model:
            raise UserError("--model is required: the frozen .pb to convert (see --help)")
        model = os.path.relpath(os.path.join(ROOT, a.default_model))
    if not os.path.isfile(model):
        raise UserError(
            f"{model}: frozen graph not found"
            + (" (run `make demo` first, or pass --model)" if not flags.get("model") else "")
        )
    return model


def _derive(flags, model, sig):
    """The flags the road adds where the line leaves them out (ATC needs them; the signature
    knows them): [tokens]. A real ATC line gives them all and gets nothing added."""
    v = flags.values
    add = {}
    if "model" not in v:
        add["model"] = model
    add["framework"] = "3"
    add["output"] = os.path.splitext(model)[0]
    add["soc_version"] = "Ascend910"
    if sig is not None:
        shape = sig.atc_input_shape()
        if "dynamic_batch_size" in v:  # the batch gear is chosen at run time: batch dim -1
            shape = ";".join(f"{t.op}:{','.join(['-1'] + [str(d) for d in t.shape[1:]])}" for t in sig.inputs)
        add["input_shape"] = shape
        add["out_nodes"] = sig.atc_out_nodes()
        if "input_format" not in v:
            add["input_format"] = input_format(sig)
    return [f"--{k}={val}" for k, val in add.items() if k not in v]


def _dynamic(flags):
    """(--input_shape with the largest gear in place of -1, the card's artifact["dynamic"]),
    or (--input_shape, None) for a static model."""
    text = flags.get("input_shape")
    flag = next((d for d in atc_flags.DYNAMIC if d in flags), None)
    if flag is None:
        return text, None
    from infer.modelsig import parse_input_shape

    shapes = atc_flags.input_shape(text)
    free = {n: [i for i, d in enumerate(ds) if d == -1] for n, ds in shapes.items()}
    free = {n: ix for n, ix in free.items() if ix}
    gears = atc_flags.gears(flag, flags.get(flag))
    n_free = sum(len(ix) for ix in free.values())
    if not free:
        raise UserError(f"--{flag}: --input_shape={text} has no -1 dim for the gears to fill (as atc)")
    if flag == "dynamic_batch_size" and any(ix != [0] for ix in free.values()):
        raise UserError(f"--dynamic_batch_size: -1 only in the batch (first) dim of --input_shape, found {text}")
    if flag == "dynamic_image_size" and any(len(ix) != 2 for ix in free.values()):
        raise UserError(f"--dynamic_image_size: each dynamic input has -1 for height and width, found {text}")
    if flag == "dynamic_dims" and len(gears[0]) != n_free:
        raise UserError(
            f"--dynamic_dims: each gear gives {len(gears[0])} values, "
            f"--input_shape={text} has {n_free} -1 dims (as atc)"
        )

    def fill(gear):
        out, k = {}, 0
        for n, ds in shapes.items():
            dims = []
            for d in ds:
                if d == -1:
                    dims.append(gear[k % len(gear)] if flag != "dynamic_dims" else gear[k])
                    k += 1 if flag == "dynamic_dims" or flag == "dynamic_image_size" else 0
                else:
                    dims.append(d)
            if flag == "dynamic_image_size":
                k = 0  # every input takes the same height, width
            out[n] = dims
        return out

    largest = max(gears, key=lambda g: sum(math.prod(d) for d in fill(g).values()))
    static = ";".join(f"{n}:{','.join(map(str, d))}" for n, d in fill(largest).items())
    parse_input_shape(static)  # a bad dim is refused here, in the user's terms
    return static, {"flag": flag, "input_shape": text, "gears": gears}


def pb_card(model):
    """The .pb's own signature (freeze's), None for a bare .pb: a card beside it that belongs
    to another artifact (``model.json`` of ``model.onnx``) is not the .pb's."""
    from freeze.signature import card_beside

    card = card_beside(model)
    sig = Signature.load(card) if card else None
    return sig if sig is not None and sig.artifact.get("file") in (None, os.path.basename(model)) else None


def _signature(model, flags, typed, static_shape, output):
    """The .pb's signature: its card where the line leaves inputs and outputs to it, else
    derived from the graph and the flags (infer/modelsig.py), the card's names kept."""
    from infer import modelsig

    base = pb_card(model)
    if base is not None and not ({"input_shape", "out_nodes"} & typed):
        sig = base
    else:
        nodes = ";".join(atc_flags.out_nodes(flags.get("out_nodes"))) if "out_nodes" in flags else None
        sig = modelsig.from_pb(model, static_shape, nodes, atc=True)
        # the source the reference runs (freeze/sources.UserModel): this frozen graph, these tensors
        src = dict(sig.source, path_rel=os.path.relpath(model, os.path.dirname(os.path.abspath(output)) or "."))
        src.update(input_shape=sig.atc_input_shape())
        if all(t.tensor.endswith(":0") for t in sig.outputs):  # UserModel fetches op:0 (else: reference --model)
            src.update(output_node_names=",".join(t.op for t in sig.outputs))
        # ATC's default --input_format for TensorFlow is NHWC: a 4-D input is an NHWC image
        ins = tuple(dataclasses.replace(t, layout="NHWC") if len(t.shape) == 4 else t for t in sig.inputs)
        sig = dataclasses.replace(sig, source=src, inputs=ins)
        if base is not None:  # keep what freeze knew: names, layouts, meanings, the source
            known = {t.tensor: t for t in base.inputs + base.outputs}

            def keep(t):
                return dataclasses.replace(known[t.tensor], shape=t.shape, dtype=t.dtype) if t.tensor in known else t

            sig = dataclasses.replace(
                base,
                batch=sig.batch,
                inputs=tuple(map(keep, sig.inputs)),
                outputs=tuple(map(keep, sig.outputs)),
                path=base.path,
            )
    if "input_shape" in typed:
        _say_overrides(model, atc_flags.input_shape(flags.get("input_shape")))
    fmt = flags.get("input_format")
    if fmt and "input_format" in typed:  # ATC's one layout for all inputs, where the rank fits
        rank = {"NCHW": 4, "NHWC": 4, "NCDHW": 5, "NDHWC": 5}.get(fmt)
        ins = tuple(dataclasses.replace(t, layout=fmt) if rank in (None, len(t.shape)) else t for t in sig.inputs)
        sig = dataclasses.replace(sig, inputs=ins)
    return sig


def _say_overrides(model, given):
    """One line per input whose --input_shape changes a static dim of the graph's placeholder:
    the portable model takes it (as the .om does), the frozen graph itself does not."""
    from common.loaders import load_graph_def

    own = {
        n.name: [d.size for d in n.attr["shape"].shape.dim]
        for n in load_graph_def(model).node
        if n.op == "Placeholder" and not n.attr["shape"].shape.unknown_rank
    }
    for name, dims in given.items():
        graph = own.get(name.split(":")[0])
        if graph and (len(graph) != len(dims) or any(g > 0 and g != d for g, d in zip(graph, dims))):
            log.warning(
                f"--input_shape {name}:{','.join(map(str, dims))} changes the graph's own {graph}: the portable "
                f"model takes it, as the .om would; the frozen graph does not (reference.py, the doctor): "
                f"freeze it with that shape to compare"
            )


def _options(flags, sig, dyn, record, aipp_ops=()):
    """to_onnx.AtcOptions from the flags, checked against the signature."""
    from convert import to_onnx

    outs = [t.tensor for t in sig.outputs]
    types = {}
    if "output_type" in flags:
        glob, per = atc_flags.output_types(flags.get("output_type"), flags.get("out_nodes"))
        types = {t: glob for t in outs} if glob else per
    fp16 = []
    for n in [x.strip() for x in (flags.get("input_fp16_nodes") or "").split(";") if x.strip()]:
        t = next((t for t in sig.inputs if n in (t.op, t.tensor, t.name)), None)
        if t is None:
            raise UserError(
                f"--input_fp16_nodes: {n!r} is not an input of the model; inputs are {[t.op for t in sig.inputs]}"
            )
        if t.dtype != "float32":
            raise UserError(f"--input_fp16_nodes: input {n!r} is {t.dtype}; only a float32 input can take float16")
        fp16.append(t.tensor)
    given = atc_flags.input_shape(flags.get("input_shape")) if "input_shape" in flags else {}
    shapes = {n.split(":")[0]: d for n, d in given.items()}
    aipp_inputs = {
        sig.inputs[op.related_input_rank].tensor for op in aipp_ops if op.related_input_rank < len(sig.inputs)
    }
    both = sorted(aipp_inputs & set(fp16))
    if both:  # atc: E10034
        raise UserError(
            f"--input_fp16_nodes and --insert_op_conf both on input {both[0]!r}: AIPP inputs are uint8 (as atc)"
        )
    return to_onnx.AtcOptions(shapes, types, tuple(fp16), dyn, {"atc": record}, list(aipp_ops))


def portable_name(output, precision_mode):
    """``X.onnx`` for force_fp32, else ``X.<mode>.onnx``: two modes never share a file."""
    return output + ("" if precision_mode == "force_fp32" else "." + precision_mode) + ".onnx"


def _say_fates(record):
    """One line per flag the portable model did not apply (never silent)."""
    for name, f in record["flags"].items():
        if f["portable"] != atc_flags.APPLIED:
            log.info(f"--{name}={f['value']}: {f['portable']} ({f['note']})")


def check_report(path, model):
    """ATC's --check_report: every op of the graph, converted or not (convert/preflight.py)."""
    from common.loaders import load_graph_def
    from convert import preflight

    gd = load_graph_def(model)
    bad = dict(preflight.unsupported_nodes(gd))
    ops = [
        {"op_name": n.name, "op_type": n.op, "result": "failed" if n.name in bad else "success",
         "reason": "no tf2onnx conversion for this op type" if n.name in bad else ""}
        for n in gd.node
    ]  # fmt: skip
    summary = {"op_total": len(ops), "op_success": len(ops) - len(bad), "op_failed": len(bad)}
    try:
        fsio.write_json(path, {"model": os.path.abspath(model), "summary": summary, "op": ops})
    except OSError as e:
        raise UserError(f"{path}: cannot write the check report ({e.strerror or e})") from None
    return summary


def _portable(a, model, output, sig, flags, record, dyn, mode, aipp_ops=()):
    """No atc on PATH (no CANN here): build the portable ONNX model instead, unless up to date."""
    from convert import to_onnx

    onnx_path = portable_name(output, mode)
    keep = flags.get("keep_dtype")
    conf = flags.get("insert_op_conf")  # an AIPP config, like a keep_dtype file, always rebuilds
    fresh = not conf and up_to_date(model, onnx_path, mode, keep, sig.path or path_beside(model), record["argv"])
    if not a.force and fresh:
        log.info(
            f"atc not found on PATH (no CANN here); the portable model {onnx_path} is up to date "
            f"(newer than {model}, built from this command line); --force rebuilds it"
        )
        return
    log.info(f"atc not found on PATH (no CANN here): building the portable model {onnx_path} instead")
    _say_fates(record)
    if "check_report" in flags:
        s = check_report(flags.get("check_report"), model)
        log.info(
            f"wrote the check report {flags.get('check_report')}: {s['op_success']} of {s['op_total']} ops convert"
        )
    opts = _options(flags, sig, dyn, record, aipp_ops)
    s = to_onnx.convert(model, onnx_path, mode, keep, force=a.force, sig=sig, options=opts)
    c = s.checks.get("onnx", s.checks)
    print(f"wrote {onnx_path} and {s.path} ({mode}); max rel error vs frozen graph {c['onnx_vs_frozen_max_rel']:.3g}")


@cli
def main(argv=None):
    own, flags = atc_flags.split(list(sys.argv[1:] if argv is None else argv), WRAPPER)
    a = build_parser().parse_args(own)
    typed = set(flags.values)
    model = _model_of(a, flags)
    derived = _derive(flags, model, None if {"input_shape", "out_nodes"} & typed else pb_card(model))
    _, more = atc_flags.split(derived, {})
    flags.values.update(more.values)
    atc_flags.check(flags)
    atc = shutil.which("atc")
    conf = flags.get("insert_op_conf")  # portable: a bad AIPP config fails before any conversion
    aipp_ops = aipp.parse(conf) if conf and atc is None else []  # with CANN, atc judges it (dynamic AIPP too)
    output = flags.get("output")
    if output.endswith(".om"):
        output = output[:-3]
    mode, given = atc_flags.precision_mode(flags)
    argv = [atc or "atc"] + flags.tokens + derived
    if a.dry_run:
        print(shlex.join(argv))
        return 0
    if not given:
        log.info(
            "--precision_mode not given: ATC's default force_fp16 (every op with an fp16 kernel runs in fp16); "
            "pass --precision_mode=force_fp32 to keep fp32"
        )
    static_shape, dyn = _dynamic(flags)
    sig = _signature(model, flags, typed, static_shape, output)
    bf16 = {"precision_mode": (atc_flags.RECORDED, "bf16 is not emulated: the portable model computes in fp32")}
    record = atc_flags.record(flags_as_typed(flags, derived), bf16 if mode in BF16_MODES else None, set(more.values))
    if atc is None:
        _portable(a, model, output, sig, flags, record, dyn, mode, aipp_ops)
        return 0
    om = output + ".om"
    fsio.refuse_overwrite([om, own_card(om, sig.path or path_beside(model))], a.force)
    log.info(shlex.join(argv))
    text, om = run_atc(argv, output, model=model)
    if flags.get("insert_op_conf"):  # AIPP: the .om takes uint8 images, its card says so
        sig = aipp.om_card(flags.get("insert_op_conf"), sig)
    card = save_om_signature(sig, om, model, argv, mode, record, dyn)
    print(f"wrote {om} and {card}")
    return 0


def flags_as_typed(flags, derived):
    """The flags with the argv: what was typed, then what the road added."""
    return atc_flags.Flags(flags.tokens + derived, flags.values)


if __name__ == "__main__":
    run(main)
