"""ATC wrapper: frozen .pb -> .om with arguments derived from the signature.

Where ``atc`` is on PATH it is called with an argv list (no shell); success is exit 0
AND "ATC run success" in its output AND the .om exists. Where it is absent the
portable ONNX model is built instead (convert/to_onnx.py, same precision mode), so
the road continues on a host without CANN. Unknown ``--flag=value`` options are
passed to atc unchanged.
"""
import argparse
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

from common.errors import UserError, cli, run
from freeze.signature import FP16_MODES, PRECISION_MODES, Signature, find_beside, path_beside

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = {"realnvp": "runs/demo/realnvp/model/realnvp.pb", "rebar": "runs/demo/rebar/model/rebar.pb"}
ECODE = re.compile(r"^(E[0-9A-Z]{5})\b.*$", re.M)
SUCCESS = "ATC run success"


def up_to_date(model, onnx_path, precision_mode, keep_dtype=None):
    """Make's rule for the portable fallback: the .onnx exists, is newer than the .pb, and its
    signature records it with this precision mode (a keep_dtype file always rebuilds)."""
    if keep_dtype or not os.path.isfile(onnx_path) or os.path.getmtime(onnx_path) < os.path.getmtime(model):
        return False
    try:
        card = find_beside(onnx_path)
    except UserError:
        return False
    files = {card.artifact.get("file"), (card.artifact.get("onnx") or {}).get("file")}
    return os.path.basename(onnx_path) in files and card.precision_mode == precision_mode


def build_argv(sig, model, output, soc_version="Ascend910", precision_mode="force_fp32",
               log="error", keep_dtype=None, dynamic_batch_size=None, extra=(), atc="atc"):
    """The exact atc argv for a model and its signature."""
    shape = sig.atc_input_shape()
    if dynamic_batch_size:  # the batch gear is chosen at run time: batch dim -1
        shape = ";".join(f"{t.op}:{','.join(['-1'] + [str(d) for d in t.shape[1:]])}" for t in sig.inputs)
    argv = [atc, f"--model={model}", "--framework=3", f"--output={output}",
            f"--soc_version={soc_version}", f"--input_shape={shape}",
            f"--out_nodes={sig.atc_out_nodes()}", "--input_format=NHWC", "--output_type=FP32",
            f"--precision_mode={precision_mode}", f"--log={log}"]
    if keep_dtype:
        argv.append(f"--keep_dtype={keep_dtype}")
    if dynamic_batch_size:
        argv.append(f"--dynamic_batch_size={dynamic_batch_size}")
    return argv + list(extra)


def run_atc(argv, output, timeout=None):
    """Run atc; returns its console text. UserError (with the E-code line) on failure."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except OSError as e:
        raise UserError(f"{argv[0]}: cannot run atc ({e})") from None
    text = r.stdout or ""
    oms = sorted(glob.glob(glob.escape(output) + "*.om"))
    if r.returncode == 0 and SUCCESS in text and oms:
        return text, oms[0]
    codes = [m.group(0).strip() for m in ECODE.finditer(text)]
    if r.returncode == 0 and SUCCESS in text:
        why = f"atc reported success but wrote no {output}.om"
    else:
        why = f"atc failed (exit {r.returncode})"
    raise UserError(f"{argv[1].split('=', 1)[1]}: {why}: "
                    f"{codes[0] if codes else (text.strip().splitlines() or ['no output'])[-1]}")


def save_om_signature(sig, om, argv, precision_mode):
    """Signature beside the .om (stem of --output); the pb's own card just records the om."""
    out = path_beside(om)
    art = {"file": os.path.basename(om), "kind": "om", "precision_mode": precision_mode,
           "bytes": os.path.getsize(om), "atc_argv": argv}
    if os.path.abspath(out) == os.path.abspath(sig.path or ""):
        new = sig.copy(artifact=dict(sig.artifact, om=art))
    else:
        new = sig.copy(precision_mode=precision_mode, artifact=art)
    new.save(out)
    return out


def build_parser():
    p = argparse.ArgumentParser(
        description="Convert a frozen .pb with ATC (.om), or, where atc is absent, to the portable "
                    "ONNX model. atc flags not listed here are passed through unchanged.",
        epilog="example: bash convert/atc_realnvp.sh --model runs/demo/realnvp/model/realnvp.pb "
               "--output runs/demo/realnvp/model/realnvp --soc_version Ascend910 --dry-run",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(DEMO), default="realnvp", help="model kind (demo paths)")
    p.add_argument("--model", help="frozen .pb (default: the demo's, e.g. %s)" % DEMO["realnvp"])
    p.add_argument("--output", help="output path without suffix (default: beside the .pb, same stem)")
    p.add_argument("--soc_version", default="Ascend910", help="Ascend chip, as in npu-smi info")
    p.add_argument("--precision_mode", default="force_fp32", choices=PRECISION_MODES,
                   help="default force_fp32 (not ATC's force_fp16): the likelihood sums thousands "
                        "of log terms (logdet, bits/dim) that fp16 cannot hold to 1e-4 bpd")
    p.add_argument("--keep_dtype", help="cfg of op names kept at original precision")
    p.add_argument("--dynamic_batch_size", help='batch gears, e.g. "1,8,16"')
    p.add_argument("--log", default="error", choices=("debug", "info", "warning", "error", "null"))
    p.add_argument("--dry-run", "--dry_run", action="store_true", dest="dry_run",
                   help="print the exact atc command and do nothing")
    p.add_argument("--force", action="store_true", help="replace an existing output")
    return p


@cli
def main(argv=None):
    a, extra = build_parser().parse_known_args(argv)
    bad = [e for e in extra if not e.startswith("-")]
    if bad:
        raise UserError(f"unexpected argument {bad[0]!r}; pass atc flags as --flag=value")
    model = a.model or os.path.relpath(os.path.join(ROOT, DEMO[a.kind]))
    if not os.path.isfile(model):
        raise UserError(f"{model}: frozen graph not found"
                        + (" (run `make demo` first, or pass --model)" if not a.model else ""))
    output = a.output or os.path.splitext(model)[0]
    if output.endswith(".om"):
        output = output[:-3]
    sig = find_beside(model)
    atc = shutil.which("atc")
    argv = build_argv(sig, model, output, a.soc_version, a.precision_mode, a.log, a.keep_dtype,
                      a.dynamic_batch_size, extra, atc or "atc")
    if a.dry_run:
        print(shlex.join(argv))
        return 0
    if atc is None:
        from convert import to_onnx

        suffix = ".fp16.onnx" if a.precision_mode in FP16_MODES else ".onnx"
        onnx_path = output + suffix
        if not a.force and up_to_date(model, onnx_path, a.precision_mode, a.keep_dtype):
            print(f"atc not found on PATH (no CANN here); the portable model {onnx_path} is up to date "
                  f"(newer than {model}, built with {a.precision_mode}); --force rebuilds it", file=sys.stderr)
            return 0
        print(f"atc not found on PATH (no CANN here): building the portable model {onnx_path} instead",
              file=sys.stderr)
        s = to_onnx.convert(model, onnx_path, a.precision_mode, a.keep_dtype, force=a.force)
        c = s.checks.get("onnx", s.checks)
        print(f"wrote {onnx_path} ({a.precision_mode}); max rel error vs frozen graph "
              f"{c['onnx_vs_frozen_max_rel']:.3g}")
        return 0
    if not a.force and glob.glob(glob.escape(output) + "*.om"):
        raise UserError(f"{output}.om: already exists (pass --force to replace it)")
    print(shlex.join(argv), file=sys.stderr)
    text, om = run_atc(argv, output)
    card = save_om_signature(sig, om, argv, a.precision_mode)
    print(f"wrote {om} and {card}")
    return 0


if __name__ == "__main__":
    run(main)
