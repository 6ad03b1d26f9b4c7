"""The self-verification report (自验报告) of a model port, from what the road wrote.

For each --road folder (a model's road: model/ with the .pb, .onnx/.om and signatures,
loss_check_*.json + .png, the runner's summaries, the doctor's report) and its --train
folders (metrics.jsonl + config.json), one section per part of the report:
  model and environment   signature, artifacts with their digests, library versions, host, commit
  training                curves against steps and wall time, final values, throughput
  accuracy                the ports' table: paper (given), each training run by its label,
                          train and test; the offline road's metric on its test images
  offline road            one row per artifact: loss_check verdict, metric offline vs
                          checkpoint and its shift, cosine / RED / max error per output,
                          non-finite images, the per-image scatter and error histogram
  precision doctor        its rounds and keep list, where it ran
  inference performance   the runner's summaries: images/s, latency median and p99
Each with the command that reproduces it. Every number is read from the JSON / JSONL the
stages wrote (never recomputed); a part that is missing is said to be missing.

Writes OUT/index.html (self-contained: inline CSS, pictures embedded, no script, nothing
fetched) and OUT/REPORT.md (the same content, pictures in OUT/img/).

Options after a --road belong to it, so one report can hold several models:
  --road A --train TA:CPU --paper "test bpd=3.49" --road B --train TB:CPU
--paper "[LABEL:] [train|valid|test] METRIC=VALUE, ..." (split default: test; label
default: paper) adds a row of given values to the accuracy table.

This file is the command line; verify/report_road.py reads a road folder,
verify/report_sections.py and verify/report_offline.py write one section per function,
verify/report_env.py the environment, verify/report_commands.py the reproducing commands,
and verify/report_doc.py renders the blocks as HTML and Markdown.
"""

import argparse
import os
import sys

from common import fsio
from common.cli import add_force, add_output, tool_parser
from common.errors import UserError, cli, run
from verify import report_doc
from verify.report_env import environment_section
from verify.report_offline import doctor_section, offline_section, performance_section
from verify.report_road import Road
from verify.report_sections import accuracy_section, model_section, training_section
from verify.report_text import cmd, rel
from verify.runlog import SPLITS, Run, parse_run_arg

EXAMPLE = """examples:
  python verify/report.py --road runs/demo/realnvp --train runs/demo/_train/realnvp:CPU \\
      --paper "test bpd=3.49" -o report/
  python verify/report.py --road runs/demo/rebar --train runs/demo/_train/rebar:CPU \\
      --train runs/rebar_npu:NPU --paper "REBAR paper: train elbo=-98.8" -o report/ --force
"""


# --- given values ---------------------------------------------------------------------------


def parse_given(text):
    """'[LABEL:] [split] METRIC=VALUE, ...' -> (label, {(metric, split): value})."""
    label, body = "paper", text
    head, sep, rest = text.partition(":")
    if sep and "=" not in head:
        label, body = head.strip() or "paper", rest
    values = {}
    for item in filter(None, (x.strip() for x in body.replace(";", ",").split(","))):
        key, eq, val = item.partition("=")
        words = key.split()
        if not eq or not words or len(words) > 2 or (len(words) == 2 and words[0] not in SPLITS):
            raise UserError(
                f"--paper {text!r}: expected '[LABEL:] [train|valid|test] METRIC=VALUE, ...', found {item!r}"
            )
        split, metric = words if len(words) == 2 else ("test", words[0])
        try:
            values[(metric, split)] = float(val)
        except ValueError:
            raise UserError(f"--paper {text!r}: {item!r}: expected a number after '=', found {val.strip()!r}") from None
    if not values:
        raise UserError(f"--paper {text!r}: no METRIC=VALUE given")
    return label, values


# --- one model's part of the report -----------------------------------------------------------


def model_blocks(road_dir: str, extra: dict) -> tuple:
    """(model name, blocks) of one --road with its --train runs and --paper values."""
    road = Road(road_dir)
    runs = [Run(*parse_run_arg(t)) for t in extra["train"]]
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise UserError(f"--train: two runs of {road_dir} share a label ({', '.join(labels)}); give each as PATH:LABEL")
    for r in runs:
        if r.model and road.model and r.model != road.model:
            raise UserError(f"{r.config_path}: a run of model {r.model!r}, but {road_dir} is model {road.model!r}")
    given = [parse_given(t) for t in extra["paper"]]
    blocks = report_doc.Blocks()
    blocks.h(f"{road.model} ({rel(road.path)})", 2)
    blocks += model_section(road)
    blocks += training_section(road, runs)
    blocks += accuracy_section(road, runs, given)
    blocks += offline_section(road)
    blocks += doctor_section(road)
    blocks += performance_section(road)
    return road.model, blocks


# --- the CLI ---------------------------------------------------------------------------------


class _ToRoad(argparse.Action):
    """--train / --paper attach to the latest --road (or to the only one, wherever given)."""

    def __call__(self, parser, ns, value, option=None):
        ns.attached = getattr(ns, "attached", None) or []
        ns.attached.append((len(ns.road or []) - 1, self.dest, value))


def build_parser():
    p = tool_parser(None, __doc__.split("\n\n")[0], EXAMPLE)
    p.add_argument(
        "--road",
        action="append",
        required=True,
        help="a model's road folder (e.g. runs/demo/realnvp); repeat for several models",
    )
    p.add_argument(
        "--train",
        action=_ToRoad,
        metavar="RUN[:LABEL]",
        help="training run folder (metrics.jsonl, config.json) of the preceding --road, with its label "
        "(CPU, GPU, NPU, ...); repeatable",
    )
    p.add_argument(
        "--paper",
        action=_ToRoad,
        metavar="'[LABEL:] [SPLIT] METRIC=VALUE, ...'",
        help='given values for the accuracy table (e.g. "test bpd=3.49"); repeatable',
    )
    add_output(p, required=True, help="report folder: index.html, REPORT.md, img/")
    p.add_argument("--title", default="Self-verification report", help="report title")
    add_force(p, help="replace an existing report")
    return p


def per_road(a: argparse.Namespace) -> list:
    """[{"train": [...], "paper": [...]}] for each --road, from the options given after it."""
    per = [{"train": [], "paper": []} for _ in a.road]
    for i, dest, value in getattr(a, "attached", None) or []:
        if i < 0:
            if len(a.road) > 1:
                raise UserError(
                    f"--{dest} {value}: given before any --road; with several --road options, "
                    f"put each model's --train / --paper after its --road"
                )
            i = 0
        per[i][dest].append(value)
    return per


@cli
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    a = build_parser().parse_args(argv)
    per = per_road(a)
    index, md = os.path.join(a.output, "index.html"), os.path.join(a.output, "REPORT.md")
    fsio.refuse_overwrite([index, md], a.force, other="-o")
    models, blocks = [], []
    for road_dir, extra in zip(a.road, per):
        model, part = model_blocks(road_dir, extra)
        models.append(model)
        blocks += part
    title = f"{a.title}: {', '.join(models)}"
    contents = (
        "Contents: environment; then for " + ", ".join(models) + ": model and artifacts, training, "
        "accuracy, offline road, precision doctor, inference performance."
    )
    blocks = [("p", contents)] + environment_section(cmd("python", "verify/report.py", *argv)) + blocks
    fsio.make_dirs(a.output)
    text, images = report_doc.to_markdown(title, blocks)
    for relp, data in images.items():
        fsio.write_bytes(os.path.join(a.output, relp), data)
    fsio.write_bytes(md, (text + "\n").encode("utf-8"))
    fsio.write_bytes(index, report_doc.to_html(title, blocks).encode("utf-8"))
    print(f"report: {index}\nmarkdown: {md} ({len(images)} pictures in {os.path.join(a.output, 'img')})")
    return 0


if __name__ == "__main__":
    run(main)
