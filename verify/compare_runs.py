"""compare_runs: training runs of one model side by side (CPU vs NPU, fp32 vs mixed precision).

For each headline metric (verify/runlog.py's rule: what the runs measured on test or
valid): its values at the steps every run logged, the final train and test values of
each run with their relative difference to the first run, step time and images/s, and
one PNG with every run's curves overlaid. All numbers are read from each run's
metrics.jsonl and config.json.

Relative difference = (run - first run) / |first run|. With --max-diff X the exit status
is 1 when any final metric compared differs from the first run's by more than X
(relative; --abs-diff for an absolute bound): a porting team's accuracy gate. Exit 0
within, 1 beyond, 2 bad input.
"""

from common import fsio
from common.cli import add_force, tool_parser
from common.errors import UserError, cli, run
from verify.runlog import SPLITS, Run, parse_run_arg

EXAMPLE = """examples:
  python verify/compare_runs.py runs/rebar_cpu:CPU runs/rebar_npu:NPU --max-diff 0.01
  python verify/compare_runs.py runs/rn_fp32:fp32 runs/rn_mixed:mixed --png cmp.png --json cmp.json
"""
MAX_MATCHED_ROWS = 12  # printed; the JSON holds every matched step


def rel_diff(value, base):
    if base == 0:
        return 0.0 if value == 0 else float("inf")
    return (value - base) / abs(base)


def compare(runs, metrics=None):
    """The comparison as a dict (what the table, the JSON and the report show)."""
    if len(runs) < 2:
        raise UserError(f"compare_runs needs at least two runs, got {len(runs)}")
    models = {r.model for r in runs if r.model}
    if len(models) > 1:
        raise UserError(
            "runs of different models: "
            + ", ".join(f"{r.config_path}: {r.model!r}" for r in runs)
            + " (compare runs of one model)"
        )
    names = []
    for r in runs:
        names += [n for n in r.metrics() if n not in names]
    if metrics:
        unknown = [m for m in metrics if m not in names]
        if unknown:
            raise UserError(
                f"--metric {', '.join(unknown)}: not in the runs' metrics.jsonl "
                f"(their metrics: {', '.join(names) or 'none'})"
            )
        names = list(metrics)
    base = runs[0]
    out = {"runs": [r.summary() for r in runs], "metrics": names, "final": [], "matched": []}
    for name in names:
        for split in SPLITS:
            finals = [r.final(name, split) for r in runs]
            if not any(finals):
                continue
            row = {"metric": name, "split": split, "values": [], "base": base.label}
            b = finals[0]
            for r, f in zip(runs, finals):
                row["values"].append(
                    {
                        "label": r.label,
                        "value": f and f[0],
                        "step": f and f[1],
                        "how": f and f[2],
                        "rel_diff": rel_diff(f[0], b[0]) if f and b else None,
                        "abs_diff": f[0] - b[0] if f and b else None,
                    }
                )
            out["final"].append(row)
            # values at the steps every run logged (train: the logged windows; held-out: evaluations)
            curves = [dict(r.curve(name, split, "train" if split == "train" else None)) for r in runs]
            common = sorted(set.intersection(*(set(c) for c in curves))) if all(curves) else []
            for step in common:
                vals = [c[step] for c in curves]
                out["matched"].append(
                    {
                        "metric": name,
                        "split": split,
                        "step": step,
                        "values": vals,
                        "rel_diff": [rel_diff(v, vals[0]) for v in vals],
                    }
                )
    return out


def gate(result, max_diff=None, abs_diff=None):
    """[(metric, split, label, diff, limit)] of the final values beyond the bound."""
    bad = []
    for row in result["final"]:
        for v in row["values"][1:]:
            if v["value"] is None or row["values"][0]["value"] is None:
                continue
            if max_diff is not None and not abs(v["rel_diff"]) <= max_diff:
                bad.append((row["metric"], row["split"], v["label"], v["rel_diff"], f"relative {max_diff:g}"))
            if abs_diff is not None and not abs(v["abs_diff"]) <= abs_diff:
                bad.append((row["metric"], row["split"], v["label"], v["abs_diff"], f"absolute {abs_diff:g}"))
    return bad


def fmt(v, spec=".6g"):
    return "-" if v is None else format(v, spec)


def table(result):
    labels = [r["label"] for r in result["runs"]]
    lines = ["final values (relative difference to " + labels[0] + ")"]
    lines.append(f"{'metric':<16}" + "".join(f"{lab[:22]:>24}" for lab in labels))
    for row in result["final"]:
        cells = []
        for i, v in enumerate(row["values"]):
            c = fmt(v["value"]) + ("" if i == 0 or v["rel_diff"] is None else f" ({v['rel_diff']:+.2%})")
            cells.append(f"{c:>24}")
        lines.append(f"{row['split'] + ' ' + row['metric']:<16}" + "".join(cells))
    lines.append(f"{'last step':<16}" + "".join(f"{r['last_step']:>24}" for r in result["runs"]))
    lines.append(f"{'step time (s)':<16}" + "".join(f"{fmt(r['step_time_s'], '.4g'):>24}" for r in result["runs"]))
    lines.append(f"{'images/s':<16}" + "".join(f"{fmt(r['images_per_sec'], '.4g'):>24}" for r in result["runs"]))
    m = result["matched"]
    if m:
        lines.append(
            f"\nat matched steps ({len(m)} rows"
            + (f", {MAX_MATCHED_ROWS} shown" if len(m) > MAX_MATCHED_ROWS else "")
            + ")"
        )
        lines.append(f"{'metric':<16}{'step':>8}" + "".join(f"{lab[:22]:>24}" for lab in labels))
        pick = (
            m
            if len(m) <= MAX_MATCHED_ROWS
            else [m[round(i * (len(m) - 1) / (MAX_MATCHED_ROWS - 1))] for i in range(MAX_MATCHED_ROWS)]
        )
        for row in pick:
            lines.append(
                f"{row['split'] + ' ' + row['metric']:<16}{row['step']:>8}"
                + "".join(f"{fmt(v):>24}" for v in row["values"])
            )
    else:
        lines.append("\nno step logged by every run: nothing to compare at matched steps")
    return "\n".join(lines)


def plot(runs, names, path):
    """Write ``curves_png`` to ``path``."""
    fsio.write_bytes(path, curves_png(runs, names))
    return path


def curves_png(runs, names):
    """PNG bytes. One row per metric: every run's train curve and held-out points against
    steps, and the same against wall time."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or ["?"]
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 3.6 * len(names)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        for j, (ax, xlabel) in enumerate(zip(axes[i], ("step", "wall time (s)"))):
            for k, r in enumerate(runs):
                c = colors[k % len(colors)]
                for split, style in (("train", "-"), ("valid", "s--"), ("test", "o--")):
                    pts = r.curve(name, split, None)
                    if split == "train":
                        pts = r.curve(name, split, "train") or pts
                    if not pts:
                        continue
                    xs = [s for s, _ in pts]
                    if j == 1:
                        xs = [r.time_at(s) for s in xs]
                        keep = [q for q, x in enumerate(xs) if x is not None]
                        xs, pts = [xs[q] for q in keep], [pts[q] for q in keep]
                        if not pts:
                            continue
                    ax.plot(xs, [v for _, v in pts], style, color=c, lw=1, ms=4, label=f"{r.label} {split}")
            ax.set(xlabel=xlabel, ylabel=name, title=f"{name} against {xlabel.split(' (')[0]}")
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=8)
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no wall time recorded" if j else "no values",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def build_parser():
    p = tool_parser(None, __doc__.split("\n\n")[0], EXAMPLE)
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN[:LABEL]",
        help="training run folders (metrics.jsonl + config.json); the first is the baseline",
    )
    p.add_argument("--metric", action="append", help="compare only this metric (repeatable; default: all)")
    p.add_argument(
        "--max-diff",
        type=float,
        help="exit 1 when a final metric differs from the first run's by more than this relative amount (0.01 = 1%%)",
    )
    p.add_argument("--abs-diff", type=float, help="exit 1 when a final metric differs by more than this amount")
    p.add_argument("--png", help="overlaid curves PNG to write")
    p.add_argument("--json", help="the comparison as JSON")
    add_force(p, help="replace existing --png / --json")
    return p


@cli
def main(argv=None):
    a = build_parser().parse_args(argv)
    for lim, flag in ((a.max_diff, "--max-diff"), (a.abs_diff, "--abs-diff")):
        if lim is not None and not 0 <= lim < float("inf"):
            raise UserError(f"{flag} must be >= 0 and finite, got {lim}")
    fsio.refuse_overwrite([p for p in (a.png, a.json) if p], a.force, other="--png/--json")
    runs = [Run(*parse_run_arg(t)) for t in a.runs]
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise UserError(f"two runs share a label ({', '.join(labels)}); give each one as PATH:LABEL")
    result = compare(runs, a.metric)
    print(table(result))
    if a.png:
        plot(runs, result["metrics"], a.png)
        print(f"curves: {a.png}")
    bad = gate(result, a.max_diff, a.abs_diff)
    result["gate"] = {
        "max_diff": a.max_diff,
        "abs_diff": a.abs_diff,
        "passed": not bad,
        "beyond": [dict(zip(("metric", "split", "label", "diff", "limit"), b)) for b in bad],
    }
    if a.json:
        fsio.write_json(a.json, result)
        print(f"json: {a.json}")
    if a.max_diff is None and a.abs_diff is None:
        return 0
    for m, s, lab, d, lim in bad:
        print(f"FAILED | final {s} {m} of {lab} differs from {labels[0]} by {d:+.4g} (limit {lim})")
    if not bad:
        print(
            f"PASSED | every final metric of {', '.join(labels[1:])} within "
            + " and ".join(
                x
                for x in (
                    a.max_diff is not None and f"relative {a.max_diff:g}",
                    a.abs_diff is not None and f"absolute {a.abs_diff:g}",
                )
                if x
            )
            + f" of {labels[0]}"
        )
    return 1 if bad else 0


if __name__ == "__main__":
    run(main)
