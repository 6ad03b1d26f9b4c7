"""Print the README's performance table (Markdown) from bench/results/*.json.

    python bench/table.py                       # bench/results/*.json
    python bench/table.py --results DIR --smoke # DIR/*_smoke.json

One row a figure: its median, its spread (min-max over n samples), the load it was
measured under (the other processes' CPU against the figure's limit, and the 1-minute load
average before -> after), its target and whether it is met. A figure measured under more
load than it tolerates says "loaded" and is not a clean figure. A results file written
before issue #24 (no "figures") is named on stderr and left out.
"""

import argparse
import glob
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AREAS = ["runner", "train_realnvp", "learning_realnvp", "train_rebar", "allreduce", "convert_verify", "img2bin"]


def fmt(v, unit, named=True):
    """A number with its unit: 98.1%, 1.15x, 28.4 images/s (or 28.4 where not ``named``)."""
    if unit == "fraction":
        return f"{100 * v:.1f}%"
    n = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return n + "x" if unit == "x" else f"{n} {unit}" if named else n


def load_cell(ld):
    if ld.get("tolerance") is None:
        cell = "n/a (not load-sensitive)"
    else:
        other, limit = ld.get("other_cpu_cores"), ld.get("limit_other_cpu_cores")
        state = "**loaded**" if ld.get("loaded") else "clean"
        cell = f"{state}: others {other} of {ld['cores']} cores (limit {limit:g})"
    if ld.get("load_1min_before") is not None:
        cell += f"; load {ld['load_1min_before']} -> {ld['load_1min_after']}"
    return cell


def row(name, f):
    unit = f["unit"]
    spread = (
        f"{fmt(f['min'], unit, False)} to {fmt(f['max'], unit, False)} (n={f['n']})" if f["n"] > 1 else "one sample"
    )
    met = {True: "yes", False: "no"}.get(f.get("met"), "")
    if met and f["load"].get("loaded"):
        met += " (loaded)"
    cells = [f.get("label", name), fmt(f["median"], unit), spread, load_cell(f["load"]), f.get("target", ""), met]
    return "| " + " | ".join(cells) + " |"


def table(results_dir, smoke=False):
    """(Markdown lines, names of the files left out)."""
    suffix = "_smoke.json" if smoke else ".json"
    paths = [p for p in glob.glob(os.path.join(results_dir, f"*{suffix}")) if smoke or not p.endswith("_smoke.json")]
    order = {a: i for i, a in enumerate(AREAS)}
    paths.sort(key=lambda p: (order.get(os.path.basename(p)[: -len(suffix)], len(AREAS)), p))
    lines, skipped, stamps = [], [], []
    for path in paths:
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            print(f"error: {path}: not a readable results JSON ({e})", file=sys.stderr)
            raise SystemExit(2) from None
        if not isinstance(d, dict) or "figures" not in d:
            skipped.append(os.path.basename(path))
            continue
        stamps.append((d.get("measured_at", "?"), d.get("cpus"), (d.get("blas") or {}).get("core")))
        lines += [row(k, v) for k, v in d["figures"].items()]
    if not lines:
        return [], skipped
    times = sorted(s[0] for s in stamps)
    head = [
        f"Measured {times[0]} to {times[-1]} by `make bench{'-smoke' if smoke else ''}`, {stamps[0][1]} cores, "
        f"numpy's OpenBLAS on the {stamps[0][2]} kernel. Spread: min-max over the samples (rounds).",
        "",
        "| what | median | spread | load (other processes' CPU; 1-min load average before -> after) | target | met |",
        "|---|---|---|---|---|---|",
    ]
    return head + lines, skipped


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--smoke", action="store_true", help="read the *_smoke.json files")
    a = ap.parse_args(argv)
    lines, skipped = table(a.results, a.smoke)
    for name in skipped:
        print(f"warning: {name} predates issue #24 (no spread or load): rerun make bench", file=sys.stderr)
    if not lines:
        print(f"error: {a.results}: no results with figures", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
