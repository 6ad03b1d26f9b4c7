"""The report's sections on how a model was built and how it learned, one function each:
model and artifacts, training (and the runs compared), accuracy. Each takes the road
(verify/report_road.py), its training runs (verify/runlog.py) and given values, and returns
its blocks (verify/report_doc.py). The offline road's sections are in verify/report_offline.py.
"""

import os

from verify import report_commands as commands
from verify.compare_runs import compare, curves_png
from verify.report_doc import Blocks
from verify.report_road import Road, lc_metrics, sha256
from verify.report_text import NOT_LOGGED, num, rel, with_keep
from verify.runlog import SPLITS


def metric_names(runs: list) -> list:
    """Every metric the runs logged, in first-seen order."""
    names = []
    for run_ in runs:
        names += [n for n in run_.metrics() if n not in names]
    return names


# --- model and artifacts --------------------------------------------------------------------


def signature_facts(s: dict) -> list:
    """[(key, value)] of the main signature: model, graph, batch, inputs, outputs, checkpoint."""
    ck = s.get("checkpoint") or {}
    inputs = "; ".join(
        f"{t['name']} {t.get('shape')} {t.get('dtype')} {t.get('layout', '')}" for t in s.get("inputs", [])
    )
    return [
        ("model", s.get("model")),
        ("graph", s.get("graph")),
        ("static batch", s.get("batch")),
        ("inputs", inputs),
        ("outputs", "; ".join(f"{t['name']} {t.get('shape')} {t.get('dtype')}" for t in s.get("outputs", []))),
        ("checkpoint", f"{ck.get('path', 'not recorded')} (step {ck.get('step', 'not recorded')})"),
        ("signature", rel(s["_path"])),
    ]


def artifact_row(path: str, sig: dict, kind: str, mode: str | None) -> list:
    exists = os.path.isfile(path)
    return [
        os.path.basename(path),
        kind,
        with_keep(mode or "not recorded", sig),
        num(os.path.getsize(path), "d") if exists else ("missing", "bad"),
        sha256(path) if exists else ("missing", "bad"),
        os.path.basename(sig["_path"]),
        sha256(sig["_path"]),
    ]


def model_section(road: Road) -> Blocks:
    b = Blocks()
    b.h(f"Model and artifacts: {road.model}")
    s = road.main_sig
    if s is None:
        b.p(
            f"No signature found under {rel(road.path)}: freeze not run here (the signature is "
            "MODEL.json beside MODEL.pb)."
        )
    else:
        b.kv(signature_facts(s))
        freeze = commands.freeze(s)
        if freeze:
            b.cmd(freeze)
    rows = [artifact_row(*a) for a in road.artifacts()]
    if rows:
        b.table(
            ["artifact", "kind", "precision mode", "bytes", "sha256 (first 16)", "signature", "signature sha256"],
            rows,
            "Digests computed from the files now on disk, so a delivered .pb/.onnx/.om can be matched to this report.",
        )
    else:
        b.p("No model artifact recorded in a signature: not converted here.")
    return b


# --- training -------------------------------------------------------------------------------


def throughput_row(run_) -> list:
    s = run_.summary()
    return [
        run_.label,
        rel(run_.path),
        num(s["last_step"], "d"),
        num(s["batch_size"]),
        num(s["steps_per_sec"], ".4g"),
        num(s["step_time_s"], ".4g"),
        num(s["images_per_sec"], ".4g"),
        f"{num(s['wall_s'], '.1f')} (to step {run_.wall_time()[-1][0]})" if s["wall_s"] else ("not recorded", "na"),
    ]


def final_values_table(runs: list, names: list) -> Blocks:
    """Each run's final value of every metric on every split some run logged."""
    header = ["run"] + [f"{sp} {n}" for n in names for sp in SPLITS if any(r.final(n, sp) for r in runs)]
    rows = []
    for run_ in runs:
        row = [run_.label]
        for col in header[1:]:
            sp, n = col.split(" ", 1)
            f = run_.final(n, sp)
            row.append(f"{num(f[0])} (step {f[1]}, {f[2]})" if f else NOT_LOGGED)
        rows.append(row)
    b = Blocks()
    b.table(
        header,
        rows,
        "Final values from metrics.jsonl. Train: the last epoch mean when the run "
        "completed an epoch, else the last logged value.",
    )
    return b


def compared_section(runs: list) -> Blocks:
    """Several training runs side by side: final values, and values at steps every run logged."""
    res = compare(runs)
    b = Blocks()
    b.h("Training runs compared", 4)
    b.cmd(commands.compare_runs(runs))
    rows = []
    for row in res["final"]:
        cells = [f"{row['split']} {row['metric']}"]
        for i, v in enumerate(row["values"]):
            if v["value"] is None:
                cells.append(NOT_LOGGED)
            else:
                cells.append(num(v["value"]) + ("" if i == 0 else f" ({v['rel_diff']:+.3%})"))
        rows.append(cells)
    b.table(["final"] + [r.label for r in runs], rows, f"Relative difference to {runs[0].label}.")
    m = res["matched"]
    if m:
        pick = m if len(m) <= 10 else [m[round(i * (len(m) - 1) / 9)] for i in range(10)]
        b.table(
            ["metric", "step"] + [r.label for r in runs],
            [[f"{x['split']} {x['metric']}", x["step"]] + [num(v) for v in x["values"]] for x in pick],
            f"At steps every run logged ({len(m)} in all{', 10 shown' if len(m) > 10 else ''}).",
        )
    else:
        b.p("No step was logged by every run: no comparison at matched steps.")
    return b


def training_section(road: Road, runs: list) -> Blocks:
    b = Blocks()
    b.h("Training")
    if not runs:
        b.p(
            "No training folder given (--train RUN[:LABEL]): training not shown. The trainers "
            "write metrics.jsonl and config.json in their output folder."
        )
        return b
    names = metric_names(runs)
    for run_ in runs:
        train = commands.train(run_)
        if train:
            b.cmd(train)
        else:
            b.note(f"{run_.label}: the trainer's command is not recorded in {rel(run_.config_path)}")
    b.table(
        ["run", "folder", "steps", "batch", "steps/s", "step time (s)", "images/s", "training wall time (s)"],
        [throughput_row(r) for r in runs],
        "Throughput from the trainer's records: RealNVP-style 'seconds' or REBAR-style "
        "'steps_per_sec' (training steps only; evaluation excluded).",
    )
    b += final_values_table(runs, names)
    if len(runs) > 1:
        b += compared_section(runs)
    b.img(
        f"{os.path.basename(road.path)}_training.png",
        curves_png(runs, names),
        f"{road.model}: {', '.join(names) or 'no metric'} against steps and wall time "
        f"({', '.join(r.label for r in runs)})",
    )
    return b


# --- accuracy -------------------------------------------------------------------------------


def accuracy_rows(road: Road, runs: list, given: list, cols: list) -> list:
    """One row per given source, training run and loss_check report, over (metric, split) columns."""
    rows = []
    for label, vals in given:
        rows.append([f"{label} (given)"] + [num(vals[c]) if c in vals else "" for c in cols] + [""])
    for run_ in runs:
        row = [f"{run_.label} (training run)"]
        for n, sp in cols:
            f = run_.final(n, sp)
            row.append(num(f[0]) if f else NOT_LOGGED)
        rows.append(row + [f"{run_.last_step} steps"])
    for lc in road.loss_checks():
        mm = {m["name"]: m for m in lc_metrics(lc)}
        if not mm:
            continue
        row = [f"offline {road.artifact_name(lc)} ({lc.get('precision_mode')})"]
        for n, sp in cols:
            row.append(num(mm[n]["offline_mean"]) if sp == "test" and n in mm else "")
        rows.append(row + [f"{lc.get('n_images')} test images"])
    return rows


def accuracy_section(road: Road, runs: list, given: list) -> Blocks:
    """The ports' table: given values (--paper), each training run, the offline road's metric."""
    b = Blocks()
    b.h("Accuracy")
    names = metric_names(runs)
    for _, vals in given:
        names += [m for (m, _) in vals if m not in names]
    for lc in road.found["loss_check"]:
        names += [m["name"] for m in lc_metrics(lc) if m["name"] not in names]
    if not names:
        b.p(
            "No metric declared: the model's training logs and loss_check reports name none. "
            "Per-output results are in the offline road below."
        )
        return b
    cols = [(n, sp) for n in names for sp in ("train", "test")]
    rows = accuracy_rows(road, runs, given, cols)
    if not runs:
        b.note("No training run given: the training rows are missing.")
    b.table(
        ["source"] + [f"{sp} {n}" for n, sp in cols] + ["steps / images"],
        rows,
        "Given rows are typed in (--paper). Training rows: final values from each "
        "run's metrics.jsonl. Offline rows: the mean over the road's test images "
        "from loss_check (the checkpoint's value on the same images is in the next section).",
    )
    return b
