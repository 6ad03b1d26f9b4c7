"""ATC wrapper: frozen .pb -> .om with arguments derived from the signature.

Generic: ``bash convert/atc.sh --model m/mine.pb --output m/mine`` for any frozen model
with a signature beside it (freeze writes it); the built-in models' scripts
(atc_realnvp.sh, atc_rebar.sh) are presets that only add the demo's model path as the
default --model.

Where ``atc`` is on PATH it is called with an argv list (no shell); success is exit 0
AND "ATC run success" in its output AND exactly ``<output>.om`` (ATC appends the suffix)
written by this run. Where it is absent the portable ONNX model is built instead
(convert/to_onnx.py, same precision mode), so the road continues on a host without CANN.
Unknown ``--flag=value`` options are passed to atc unchanged. --input_format comes from
the signature's input layouts (one value for all inputs, as ATC takes it).

Each artifact gets its own signature (freeze/signature.card_path): ``m/mine.om`` beside
``m/mine.pb`` gets ``m/mine.om.json``; the .pb's card is never rewritten.
"""

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import subprocess

from common import fsio
from common.cli import ArgumentParser, add_force, add_output, add_verbosity
from common.errors import UserError, cli, run
from common.log import log
from freeze.signature import FP16_MODES, PRECISION_MODES, Signature, find_beside, own_card

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ECODE = re.compile(r"^(E[0-9A-Z]{5})\b.*$", re.M)
SUCCESS = "ATC run success"
INPUT_FORMATS = ("NCHW", "NHWC", "ND", "NCDHW", "NDHWC")


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


def up_to_date(model, onnx_path, precision_mode, keep_dtype=None, parent_card=None):
    """Make's rule for the portable fallback: the .onnx exists, is newer than the .pb, and its
    own signature (card_path, never the .pb's) records it, made from this .pb with this
    precision mode (a keep_dtype file always rebuilds)."""
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
    )


def build_argv(
    sig,
    model,
    output,
    soc_version="Ascend910",
    precision_mode="force_fp32",
    log="error",
    keep_dtype=None,
    dynamic_batch_size=None,
    extra=(),
    atc="atc",
    fmt=None,
):
    """The exact atc argv for a model and its signature."""
    shape = sig.atc_input_shape()
    if dynamic_batch_size:  # the batch gear is chosen at run time: batch dim -1
        shape = ";".join(f"{t.op}:{','.join(['-1'] + [str(d) for d in t.shape[1:]])}" for t in sig.inputs)
    argv = [
        atc,
        f"--model={model}",
        "--framework=3",
        f"--output={output}",
        f"--soc_version={soc_version}",
        f"--input_shape={shape}",
        f"--out_nodes={sig.atc_out_nodes()}",
        f"--input_format={fmt or input_format(sig)}",
        "--output_type=FP32",
        f"--precision_mode={precision_mode}",
        f"--log={log}",
    ]
    if keep_dtype:
        argv.append(f"--keep_dtype={keep_dtype}")
    if dynamic_batch_size:
        argv.append(f"--dynamic_batch_size={dynamic_batch_size}")
    return argv + list(extra)


def _stamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def run_atc(argv, output, timeout=None):
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
        f"{argv[1].split('=', 1)[1]}: {why}: {codes[0] if codes else (text.strip().splitlines() or ['no output'])[-1]}"
    )


def save_om_signature(sig, om, model, argv, precision_mode):
    """The .om's own signature (card_path: never the .pb's card); returns its path."""
    out = own_card(om, sig.path)
    art = {
        "file": os.path.basename(om),
        "kind": "om",
        "source": os.path.basename(model),
        "precision_mode": precision_mode,
        "bytes": os.path.getsize(om),
        "atc_argv": argv,
    }
    try:
        dataclasses.replace(sig, precision_mode=precision_mode, artifact=art).save(out)
    except OSError as e:
        raise UserError(f"{out}: cannot write the .om's signature ({e.strerror or e})") from None
    return out


def build_parser():
    p = ArgumentParser(
        prog="atc.sh",
        allow_abbrev=False,  # an atc flag passed through is never taken for a prefix of ours
        description="Convert a frozen .pb with ATC (.om), or, where atc is absent, to the portable "
        "ONNX model. atc flags not listed here are passed through unchanged.",
        epilog="example: bash convert/atc.sh --model m/mine.pb --output m/mine --soc_version Ascend910 "
        "--dry-run\n         bash convert/atc_realnvp.sh   (preset: the demo's model)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="frozen .pb, its signature beside it (a preset script gives a default)")
    p.add_argument("--default-model", dest="default_model", help=argparse.SUPPRESS)
    add_output(p, help="output path without suffix (default: beside the .pb, same stem)")
    p.add_argument("--soc_version", default="Ascend910", help="Ascend chip, as in npu-smi info")
    p.add_argument(
        "--precision_mode",
        default="force_fp32",
        choices=PRECISION_MODES,
        help="default force_fp32 (not ATC's force_fp16): an offline model must first "
        "reproduce the checkpoint; choose an fp16 mode once it does",
    )
    p.add_argument("--input_format", choices=INPUT_FORMATS, help="default: from the signature's input layouts")
    p.add_argument("--keep_dtype", help="cfg of op names kept at original precision")
    p.add_argument("--dynamic_batch_size", help='batch gears, e.g. "1,8,16"')
    p.add_argument("--insert_op_conf", help="static AIPP config (aipp_op { ... }); portable: convert/aipp.py")
    p.add_argument("--log", default="error", choices=("debug", "info", "warning", "error", "null"))
    p.add_argument(
        "--dry-run", "--dry_run", action="store_true", dest="dry_run", help="print the exact atc command and do nothing"
    )
    add_force(p, help="replace an existing output")
    add_verbosity(p)
    return p


def _model_of(a):
    """The .pb to convert: --model, else the preset's --default-model (a user error if absent)."""
    if a.model:
        model = a.model
    elif a.default_model:
        model = os.path.relpath(os.path.join(ROOT, a.default_model))
    else:
        raise UserError("--model is required: the frozen .pb to convert (see --help)")
    if not os.path.isfile(model):
        raise UserError(
            f"{model}: frozen graph not found" + (" (run `make demo` first, or pass --model)" if not a.model else "")
        )
    return model


def _portable(a, model, output, sig):
    """No atc on PATH (no CANN here): build the portable ONNX model instead, unless up to date."""
    from convert import to_onnx

    suffix = ".fp16.onnx" if a.precision_mode in FP16_MODES else ".onnx"
    onnx_path = output + suffix
    fresh = not a.insert_op_conf and up_to_date(model, onnx_path, a.precision_mode, a.keep_dtype, sig.path)
    if not a.force and fresh:  # an AIPP config (like a keep_dtype file) always rebuilds
        log.info(
            f"atc not found on PATH (no CANN here); the portable model {onnx_path} is up to date "
            f"(newer than {model}, built with {a.precision_mode}); --force rebuilds it"
        )
        return
    log.info(f"atc not found on PATH (no CANN here): building the portable model {onnx_path} instead")
    s = to_onnx.convert(
        model, onnx_path, a.precision_mode, a.keep_dtype, force=a.force, insert_op_conf=a.insert_op_conf
    )
    c = s.checks.get("onnx", s.checks)
    print(
        f"wrote {onnx_path} and {s.path} ({a.precision_mode}); max rel error vs frozen graph "
        f"{c['onnx_vs_frozen_max_rel']:.3g}"
    )


@cli
def main(argv=None):
    a, extra = build_parser().parse_known_args(argv)
    bad = [e for e in extra if not e.startswith("-")]
    if bad:
        raise UserError(f"unexpected argument {bad[0]!r}; pass atc flags as --flag=value")
    model = _model_of(a)
    output = a.output or os.path.splitext(model)[0]
    if output.endswith(".om"):
        output = output[:-3]
    sig = find_beside(model)
    atc = shutil.which("atc")
    aipp_flag = [f"--insert_op_conf={a.insert_op_conf}"] if a.insert_op_conf else []  # AIPP (aipp branch)
    argv = build_argv(
        sig, model, output, a.soc_version, a.precision_mode, a.log, a.keep_dtype, a.dynamic_batch_size,
        [*extra, *aipp_flag], atc or "atc", a.input_format,
    )  # fmt: skip
    if a.dry_run:
        print(shlex.join(argv))
        return 0
    if atc is None:
        _portable(a, model, output, sig)
        return 0
    om = output + ".om"
    fsio.refuse_overwrite([om, own_card(om, sig.path)], a.force)
    log.info(shlex.join(argv))
    text, om = run_atc(argv, output)
    if a.insert_op_conf:  # AIPP (aipp branch): the .om takes uint8 images, its card says so
        from convert import aipp

        sig = aipp.om_card(a.insert_op_conf, sig)
    card = save_om_signature(sig, om, model, argv, a.precision_mode)
    print(f"wrote {om} and {card}")
    return 0


if __name__ == "__main__":
    run(main)
