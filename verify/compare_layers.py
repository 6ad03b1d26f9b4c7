"""The precision doctor's command line: every layer of the frozen graph (fp32) against the
portable model (e.g. fp16) on one batch or several (--batch-file a,b / all, or the failing
files of a loss_check report), the first failing layer, a --keep_dtype file. With --iterate
the keep list grows until every given batch passes, and is written only after all of them
are re-checked with it.

What it does and why is in verify/doctor/ (capture, match, diagnose, search); this file
reads the flags and the batch, prints the table and writes the keep list and the report.
"""

import argparse
import os

import numpy as np

from common import fsio
from common.cli import ArgumentParser, add_force, add_input, add_verbosity
from common.errors import UserError, cli, run
from common.loaders import load_graph_def
from data_tools import binfiles
from freeze.signature import card_beside, find_beside
from verify import metrics
from verify.doctor.search import diagnose_set, iterate


def load_batch(sig, inputs, stem=None):
    """One batch from msame-style input folders (signature order): file ``stem`` or the first."""
    if len(inputs) != len(sig.inputs):
        raise UserError(
            f"--input: {len(inputs)} folder(s) given, the model has {len(sig.inputs)} inputs "
            f"{[t.name for t in sig.inputs]}"
        )
    if stem is None:
        stem = _stems(inputs[0])[0]
    path = os.path.join(inputs[0], stem + ".bin")
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such input file (batch {stem!r})")
    return {t.name: binfiles.read_bin(os.path.join(d, stem + ".bin"), t) for d, t in zip(inputs, sig.inputs)}


def _stems(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".bin")) if os.path.isdir(folder) else []
    if not files:
        raise UserError(f"{folder}: no .bin input files")
    return [f[:-4] for f in files]


def _report_stems(path):
    """The input stems of the files a loss_check report failed, in its order."""
    from infer import layout

    rep = fsio.read_json(path, "no such file (expected loss_check's --report JSON)")
    try:
        failed = [f["file"] for f in rep["failed_files"]]
    except (KeyError, TypeError):
        raise UserError(f"{path}: not a loss_check report (expected 'failed_files')") from None
    stems = []
    for f in failed:  # OUT/<T>/<stem>_output_<i>.bin
        m = layout.OUTPUT_RE.match(os.path.basename(f))
        stem = m.group("stem") if m else layout.stem_of(f)
        if stem not in stems:
            stems.append(stem)
    if not stems:
        raise UserError(f"{path}: the loss_check report lists no failing file: nothing to fix")
    return stems


def load_batches(sig, inputs, batch_file=None, report=None):
    """{stem: feed}: the batches the doctor must make pass, failing ones first. ``batch_file``:
    None (the first file), "all", or stems comma separated; ``report``: a loss_check report,
    whose failing files come first, then every other file of the inputs (the whole set is
    re-checked before a keep list is written)."""
    load_batch(sig, inputs)  # the folders fit the model (one line if not) before any listing
    if report:
        failing = _report_stems(report)
        stems = failing + [s for s in _stems(inputs[0]) if s not in failing]
    elif batch_file == "all":
        stems = _stems(inputs[0])
    elif batch_file:
        stems = list(dict.fromkeys(s.strip().removesuffix(".bin") for s in batch_file.split(",") if s.strip()))
    else:
        stems = _stems(inputs[0])[:1]
    return {stem: load_batch(sig, inputs, stem) for stem in stems}


def build_parser():
    p = ArgumentParser(
        description="Precision doctor: compare every layer of the frozen graph with the portable "
        "(fp16) model on one batch; name the first failing layer; write a keep_dtype cfg.",
        epilog="example: python verify/compare_layers.py --pb m/realnvp.pb --onnx m/realnvp.force_fp16.onnx "
        "--input bins/x,bins/u --keep-dtype-out keep.cfg --report doctor.json\n"
        "then: python convert/to_onnx.py --model m/realnvp.pb --output m/realnvp.force_fp16.onnx "
        "--precision_mode force_fp16 --keep_dtype keep.cfg --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pb", required=True, help="frozen graph .pb (signature beside it)")
    p.add_argument("--onnx", required=True, help="portable model to examine")
    add_input(p, required=True, help="input folders, comma separated, signature order")
    p.add_argument(
        "--fp32-onnx",
        help="the fp32 ONNX model the examined one was converted from "
        "(default: converted from --pb in memory); TF<->ONNX name matches are validated on it",
    )
    p.add_argument(
        "--match-red",
        type=float,
        default=1e-4,
        help="a name match counts if the fp32 ONNX tensor is within this RED of TF's (1e-4)",
    )
    p.add_argument(
        "--batch-file",
        help="input file stem(s) to examine, comma separated, or 'all' (default: the first file); "
        "with --iterate the keep list must make every one of them pass",
    )
    p.add_argument(
        "--from-report",
        metavar="LOSS_CHECK_JSON",
        help="the loss_check report of the examined model: its failing files are examined first, "
        "then every input file is re-checked",
    )
    p.add_argument("--keep-dtype-out", required=True, help="keep_dtype cfg to write")
    p.add_argument("--report", help="JSON report to write")
    p.add_argument("--cosine-min", type=float, default=metrics.COSINE_MIN)
    p.add_argument("--red-max", type=float, default=metrics.RED_MAX)
    p.add_argument(
        "--iterate",
        type=int,
        default=0,
        metavar="N",
        help="up to N rounds of: keep the failing roots (or, when a root is already kept "
        "fp32, the producers of its float inputs), rebuild the model in memory with "
        "its precision mode (from its signature), diagnose the same batch again; "
        "stops when nothing fails (default 0: one diagnosis)",
    )
    add_force(p)
    add_verbosity(p)
    return p


def _strip_aipp(onnx_path: str, card):
    """The AIPP model without its AIPP front, taking the float tensors the graph takes: the
    AIPP nodes have no TF counterpart, and the keep list names graph ops only (it applies to
    atc.sh --insert_op_conf ... --keep_dtype as well). The uint8 batches go through the same
    numpy AIPP (aipp.unwrap) for both sides. Returns (model, graph signature, feed -> feed)."""
    import onnx

    from convert import aipp

    inner, pre = aipp.unwrap(card)
    m = onnx.load(onnx_path)
    g = m.graph
    fronts = tuple(f"aipp{r['related_input_rank']}/" for r in card.artifact["aipp"])
    drop = [n for n in g.node if n.name.startswith(fronts)]
    gone = {o for n in drop for o in n.output} | {i for n in drop for i in n.input}
    for n in drop:
        g.node.remove(n)
    for t in [t for t in g.initializer if t.name.startswith(fronts)]:
        g.initializer.remove(t)
    for t in inner.inputs:
        if t.tensor + "/aipp" not in gone:
            continue
        for n in g.node:
            n.input[:] = [t.tensor if i == t.tensor + "/aipp" else i for i in n.input]
        gi = next(i for i in g.input if i.name == t.tensor)
        elem = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(t.np_dtype))
        gi.CopyFrom(onnx.helper.make_tensor_value_info(t.tensor, elem, list(t.shape)))
    return m, inner, pre


def _check_thresholds(a: argparse.Namespace) -> None:
    for flag, v, hi in (
        ("--cosine-min", a.cosine_min, 1.0),
        ("--red-max", a.red_max, None),
        ("--match-red", a.match_red, None),
    ):
        if not (np.isfinite(v) and v >= 0 and (hi is None or v <= hi)):
            raise UserError(f"{flag} must be a finite number >= 0{' and <= 1' if hi else ''}, got {v}")


def _iteration_start(a: argparse.Namespace) -> tuple[str, list]:
    """The examined model's precision mode and the names it kept fp32, from its signature:
    what --iterate rebuilds with."""
    from convert.to_onnx import read_keep_dtype
    from freeze.signature import FP16_MODES

    sig16 = find_beside(a.onnx)
    mode = sig16.precision_mode
    if mode not in FP16_MODES:
        raise UserError(
            f"{a.onnx}: its signature {sig16.path} gives precision mode {mode}, not an fp16 mode: nothing to iterate on"
        )
    kd = (sig16.artifact or {}).get("keep_dtype") or {}
    prior, types = read_keep_dtype(kd["file"]) if kd.get("file") and os.path.isfile(kd["file"]) else ([], [])
    if types:
        raise UserError(f"{a.onnx}: built with OpType:: keep_dtype entries; --iterate rebuilds by op name only")
    print(
        f"iterating on {a.onnx} ({mode}{', kept fp32: ' + str(len(prior)) + ' ops' if prior else ''}), "
        f"up to {a.iterate} rebuilds, batch {a.batch_file or 'first'}"
    )
    return mode, prior


def _print_layers(r: dict) -> None:
    w = max([len("layer")] + [len(l["op"]) for l in r["layers"]]) + 2  # whole names: tails read alike
    if r.get("batches_checked", 1) > 1:
        print(f"batch {r['batch']} ({'the first failing' if r['first_failing'] else 'all'} of {r['batches_checked']}):")
    print(f"{'layer':<{w}}{'onnx op':<14}{'cosine':>12}{'RED':>10}{'max_abs':>11}  result")
    for l in r["layers"]:
        print(
            f"{l['op']:<{w}}{l['onnx_op']:<14}{l['cosine']:>12.6f}{l['red']:>10.3g}"
            f"{l['max_abs']:>11.3g}  {'ok' if l['passed'] else 'FAILED ' + l['why']}"
        )
    print(
        f"matched {r['matched']} layers of {r['tf_tensors']} TF float tensors; "
        f"{r['name_matches_dropped']} name matches dropped (the fp32 ONNX tensor of that name is "
        f"not the TF tensor, RED > {r['match_red']:g}; {r['dropped_then_matched_by_helper']} of them "
        f"then matched through the tf2onnx helper node computing the TF value)"
    )
    if r["first_failing"]:
        print(f"first failing layer: {r['first_failing']} ({r['first_failing_why']})")
    else:
        print("every matched layer within thresholds")
    if r["first_nonfinite"] and r["first_nonfinite"] != r["first_failing"]:
        print(f"first layer with NaN/Inf: {r['first_nonfinite']}")


def _print_search(r: dict, rounds: int) -> None:
    n = len(r["rounds"]) - 1
    if r["converged"]:
        print(
            f"converged after {n} rebuild(s): nothing fails on {r.get('batches_checked', 1)} batch(es) "
            f"with {len(r['keep_dtype'])} ops kept fp32"
        )
    elif n < rounds:
        print(f"stuck after {n} rebuild(s): nothing new to keep, {r['first_failing']} still fails")
    else:
        print(
            f"NOT converged: {rounds} rounds were not enough ({r['first_failing']} still fails); "
            f"the keep list so far is written, raise --iterate"
        )


def _check_model(path, sig):
    """The runner's checks of an .onnx against the signature (loads; inputs and outputs by
    name, dtype and shape): a truncated file or another model's is one line naming it."""
    from infer.backends import onnxrt

    with onnxrt.make(path, sig):
        pass


@cli
def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    _check_thresholds(a)
    fsio.refuse_overwrite([p for p in (a.keep_dtype_out, a.report) if p], a.force)
    if not os.path.isfile(a.onnx):
        raise UserError(f"{a.onnx}: ONNX model not found")
    card16 = find_beside(a.onnx) if card_beside(a.onnx) else None
    # a bare .pb (a team's own, converted by atc.sh): the ONNX model's card names its tensors
    sig = find_beside(a.pb) if card_beside(a.pb) else find_beside(a.onnx)
    aipped = card16 is not None and (card16.artifact or {}).get("aipp")
    if aipped:
        sig = card16  # the .om's uint8 inputs: the files img2bin wrote for it
    if a.from_report and a.batch_file:
        raise UserError("--from-report and --batch-file: give one (the report names the failing batches)")
    feeds = load_batches(sig, [s.strip() for s in a.input.split(",")], a.batch_file, a.from_report)
    if a.fp32_onnx and not os.path.isfile(a.fp32_onnx):
        raise UserError(f"{a.fp32_onnx}: fp32 ONNX model not found")
    _check_model(a.onnx, sig)
    model = a.onnx
    if aipped:
        model, sig, pre = _strip_aipp(a.onnx, card16)
        feeds = {stem: pre(f) for stem, f in feeds.items()}
        print(f"{a.onnx}: static AIPP applied to the uint8 inputs in numpy; the layers after it are compared")
    if a.fp32_onnx:
        _check_model(a.fp32_onnx, sig)
    if a.iterate < 0:
        raise UserError(f"--iterate must be >= 0, got {a.iterate}")
    judge = dict(cosine_min=a.cosine_min, red_max=a.red_max, fp32_onnx=a.fp32_onnx, match_red=a.match_red)
    if a.iterate:
        mode, prior = _iteration_start(a)
        r = iterate(load_graph_def(a.pb), sig, model, feeds, a.iterate, mode, prior, **judge)
    else:
        r = diagnose_set(load_graph_def(a.pb), sig, model, feeds, **judge)
    _print_layers(r)
    if a.iterate:
        _print_search(r, a.iterate)
    if r["keep_dtype_unresolved"]:
        print(f"not written (no ONNX node carries these names): {', '.join(r['keep_dtype_unresolved'][:5])}")
    fsio.write_text(a.keep_dtype_out, "".join(n + "\n" for n in r["keep_dtype"]))
    print(f"keep_dtype ({len(r['keep_dtype'])} ops): {a.keep_dtype_out}")
    if a.report:
        fsio.write_json(a.report, r)
    return 0


if __name__ == "__main__":
    run(main)
