"""The report's sections on the offline road, one function each: every artifact against the
checkpoint (loss_check's verdicts, metrics and pictures), the precision doctor's rounds and
keep list, and the runner's inference performance. Each takes the road
(verify/report_road.py) and returns its blocks (verify/report_doc.py).
"""

import os

from verify import report_commands as commands
from verify.report_doc import Blocks
from verify.report_road import Road, lc_metrics, read_png, recorded_digests, run_path, sha256
from verify.report_text import NOT_RUN, freeze_checks, num, rel, short_list, signed, verdict, with_keep

# --- each artifact against the checkpoint ------------------------------------------------------


def lc_row(road: Road, name: str, lc: dict, metric_names: list) -> list:
    """An artifact's row of the offline table: verdict, each metric offline / checkpoint / shift."""
    mm = {m["name"]: m for m in lc_metrics(lc)}
    row = [
        name,
        with_keep(lc.get("precision_mode") or "", road.signature_at(lc.get("signature"))),
        verdict(lc["passed"]),
    ]
    for n in metric_names:
        m = mm.get(n)
        row += [num(m["offline_mean"]), num(m["reference_mean"]), signed(m["diff"])] if m else ["", "", ""]
    if lc.get("model_metrics"):
        nonfin = max(m["nonfinite"] for m in lc["model_metrics"])
        nf = f"{nonfin} of {lc.get('n_images')} images"
    else:
        nonfin = sum(o.get("nan", 0) + o.get("inf", 0) for o in lc["outputs"])
        nf = f"{nonfin} elements"
    return row + [(nf, "bad" if nonfin else ""), num(lc.get("n_images"))]


def offline_rows(road: Road, lcs: list, metric_names: list) -> list:
    """One row per artifact and loss_check report; an artifact without one says so."""
    by_art = {}
    for lc in lcs:
        by_art.setdefault(road.artifact_name(lc), []).append(lc)
    rows = []
    for path, sig, kind, mode in road.artifacts():
        name = os.path.basename(path)
        runs_ = by_art.pop(name, [])
        if not runs_:
            # a .pb is checked by freeze itself (unless the runner ran it too)
            verdict_cell = freeze_checks(sig.get("checks") or {}) if kind == "pb" else NOT_RUN
            rows.append([name, with_keep(mode or "", sig), verdict_cell] + [""] * (3 * len(metric_names)) + ["", ""])
            continue
        for lc in runs_:
            rows.append(lc_row(road, name, lc, metric_names))
    for name, rest in by_art.items():  # loss_checks of artifacts without a signature here
        for lc in rest:
            rows.append(lc_row(road, name, lc, metric_names))
    return rows


def offline_section(road: Road) -> Blocks:
    b = Blocks()
    b.h("Offline road: each artifact against the checkpoint")
    lcs = road.loss_checks()
    metric_names = []
    for lc in lcs:
        metric_names += [m["name"] for m in lc_metrics(lc) if m["name"] not in metric_names]
    header = ["artifact", "precision mode", "loss_check"]
    for n in metric_names:
        header += [f"{n} offline", f"{n} checkpoint", f"{n} shift"]
    b.table(
        header + ["non-finite", "images"],
        offline_rows(road, lcs, metric_names),
        "Shift = offline - checkpoint mean over the same images. Non-finite: images "
        "whose metric is NaN/Inf (per-output NaN/Inf elements where the model declares "
        "no metric). 'not run': no loss_check report for this artifact under the road.",
    )
    bad = road.found["unreadable"]
    if bad:  # a truncated report proves nothing: never "not run", never "passed"
        b.p(
            "Unreadable under this road, so not judged here: "
            + "; ".join(f"{rel(u['_path'])} ({u['error']})" for u in bad)
            + ". No verdict is given for what they hold."
        )
    elif not lcs:
        b.p("loss_check not run: no loss_check report under this road.")
    for lc in lcs:
        b += lc_detail(road, lc)
    return b


# --- one loss_check report ------------------------------------------------------------------


def output_row(o: dict) -> list:
    return [
        o["name"],
        num(o.get("cosine")),
        num(o.get("red"), ".3g"),
        num(o.get("max_abs"), ".3g"),
        num(o.get("max_rel"), ".3g"),
        num(o.get("rmse"), ".3g"),
        (num(o.get("nan", 0) + o.get("inf", 0), "d"), "bad" if o.get("nan") or o.get("inf") else ""),
        num(o.get("elementwise_fail"), "d"),
        ("PASS", "ok") if o["passed"] else (f"FAIL: {o.get('why')}", "bad"),
    ]


def metric_lines(lc: dict) -> list:
    """A sentence per model metric, and one for top-1 where loss_check compared it."""
    lines = []
    for m in lc["model_metrics"]:
        lim = (
            "reported, not judged (fp16 mode)"
            if m.get("tolerance") is None
            else f"tolerance {num(m['tolerance'], '.3g')}"
        )
        lines.append(
            f"Mean {m['name']} over {m['n_images']} images: offline {num(m['offline_mean'])}, checkpoint "
            f"{num(m['reference_mean'])}, shift {signed(m['diff'])}, largest per-image difference "
            f"{num(m.get('max_abs_diff_per_image'), '.3g')}, {m['nonfinite']} non-finite; {lim}: "
            f"{'PASS' if m['passed'] else 'FAIL'}."
        )
    c = lc.get("classification")
    if isinstance(c, dict):
        line = (
            f"Top-1 of {c.get('output')} over {c.get('n_images')} images: offline and checkpoint agree on "
            f"{num(c.get('top1_agreement'), '.4%')} ({c.get('n_disagree')} differ)"
        )
        if "offline_accuracy" in c:
            line += (
                f"; accuracy offline {num(c['offline_accuracy'], '.4%')}, checkpoint "
                f"{num(c.get('reference_accuracy'), '.4%')}, shift {num(c.get('accuracy_shift'), '+.4%')}"
            )
        judged = "judged" if c.get("judged", True) else "reported, not judged (fp16 mode)"
        lines.append(f"{line}; {judged}: {'PASS' if c.get('passed', True) else 'FAIL'}.")
    return lines


def problem_lines(lc: dict) -> list:
    """Missing / extra / wrong-size files, and the first failing files."""
    lines = []
    for k, v in (lc.get("problems") or {}).items():
        if v:
            lines.append(
                f"{k.replace('_', ' ')} files ({len(v)}): {', '.join(map(rel, v[:5]))}" + (" ..." if len(v) > 5 else "")
            )
    if lc.get("n_failed_files"):
        lines.append(
            f"{lc['n_failed_files']} failing file(s), first: "
            + "; ".join(f"{os.path.basename(f['file'])} ({f['output']}: {f['why']})" for f in lc["failed_files"][:3])
        )
    return lines


def lc_detail(road: Road, lc: dict) -> Blocks:
    """One loss_check report: its command, per-output table, metric lines, problems, picture."""
    name = road.artifact_name(lc)
    b = Blocks()
    b.h(f"{name} ({lc.get('precision_mode')}): {'PASS' if lc['passed'] else 'FAIL'}", 4)
    b.cmd(commands.loss_check(lc))
    b.table(
        ["output", "cosine", "RED", "max abs", "max rel", "RMSE", "NaN/Inf", "elements failing", "verdict"],
        [output_row(o) for o in lc["outputs"]],
        f"{lc.get('files_compared')} files, {lc.get('n_images')} images; report {rel(lc['_path'])}",
    )
    for line in metric_lines(lc) + problem_lines(lc):
        b.p(line)
    png = read_png(lc.get("plot"), lc["_path"]) or read_png(os.path.splitext(lc["_path"])[0] + ".png")
    if png:
        stem = os.path.basename(os.path.splitext(lc["_path"])[0])
        b.img(
            f"{os.path.basename(road.path)}_{stem}.png",
            png,
            f"{name}: per-image metric offline vs checkpoint, and the histogram of their differences",
        )
    elif lc["model_metrics"]:
        b.note("Per-image scatter not available: loss_check ran with --no-plot.")
    return b


# --- the precision doctor -------------------------------------------------------------------

ROUND_HEADER = [
    "round",
    "ops kept fp32",
    "first failing layer",
    "why",
    "failing layers",
    "batch bpd (fp16)",
    "non-finite images",
    "batch bpd (TF)",
    "added to keep list",
]


def round_row(r: dict) -> list:
    b, bt = r.get("bpd") or {}, r.get("bpd_tf") or {}
    return [
        r["round"],
        r["keep"],
        r.get("first_failing") or ("none", "ok"),
        r.get("first_failing_why") or "",
        r.get("failing_layers"),
        num(b.get("mean")) if b else "not recorded",
        num(b.get("nonfinite"), "d") if b else "",
        num(bt.get("mean")) if bt else "",
        short_list(r.get("added") or []),
    ]


def layer_row(layer: dict) -> list:
    return [
        layer["op"],
        layer.get("onnx_op"),
        num(layer.get("cosine")),
        num(layer.get("red"), ".3g"),
        layer.get("nan"),
        layer.get("inf"),
        layer.get("why"),
    ]


def diagnosis_line(d: dict) -> str:
    """What the doctor matched, and where it converged or the first layer that fails."""
    return (
        f"Matched {d.get('matched')} layers of {d.get('tf_tensors')} TF float tensors "
        f"({d.get('name_matches_dropped', 0)} name matches dropped after validation on the fp32 model). "
        + (
            f"Converged: nothing fails on the batch with {len(d['keep_dtype'])} ops kept in fp32."
            if d.get("converged")
            else f"First failing layer: {d.get('first_failing') or 'none'}"
            + (f" ({d['first_failing_why']})" if d.get("first_failing_why") else "")
            + "."
        )
    )


def diagnosis(road: Road, d: dict) -> Blocks:
    """One doctor report: its command, its rounds (or its failing layers), its keep list."""
    b = Blocks()
    b.h(f"{os.path.basename(d['_path'])} ({d.get('precision_mode') or 'one diagnosis'})", 4)
    b.cmd(commands.doctor(road, d))
    b.p(diagnosis_line(d))
    rounds = d.get("rounds") or []
    layers = [x for x in d.get("layers", []) if not x.get("passed")][:10]
    if rounds:
        b.table(
            ROUND_HEADER,
            [round_row(r) for r in rounds],
            "Batch bpd: the doctor's mean of the model's per-image bpd output on its batch, where the model has one.",
        )
    elif layers:
        b.table(
            ["failing layer", "ONNX op", "cosine", "RED", "NaN", "Inf", "why"],
            [layer_row(x) for x in layers],
        )
    keep = d.get("keep_dtype") or []
    b.p(
        f"Keep list ({len(keep)} ops kept in fp32, the --keep_dtype file for ATC): "
        + (", ".join(keep) if keep else "empty")
    )
    if d.get("pruned"):
        b.p(f"Pruned after converging ({len(d['pruned'])} ops no longer needed): {short_list(d['pruned'], 6)}")
    return b


def doctor_section(road: Road) -> Blocks:
    b = Blocks()
    b.h("Precision doctor")
    docs = road.found["doctor"]
    if not docs:
        failed = [road.artifact_name(lc) for lc in road.loss_checks() if not lc["passed"]]
        b.p(
            "Precision doctor not run on this model (no compare_layers report under the road). "
            + (
                f"loss_check failed for {', '.join(failed)}: run verify/compare_layers.py on a batch it "
                "names to find the layers to keep in fp32."
                if failed
                else (
                    f"{len(road.found['unreadable'])} file(s) under the road unreadable: no verdict drawn."
                    if road.found["unreadable"]
                    else "Every loss_check under the road passed."
                )
            )
        )
    for d in docs:
        b += diagnosis(road, d)
    return b


# --- inference performance --------------------------------------------------------------------

PERFORMANCE_HEADER = [
    "model",
    "backend",
    "precision mode",
    "batch",
    "images",
    "images/s (inference)",
    "images/s (wall)",
    "latency median (ms)",
    "latency p99 (ms)",
    "model digest",
    "summary in",
]


def digest_check(s: dict) -> object:
    """The model digest a runner recorded, checked against the model file on disk (a cell)."""
    found = recorded_digests({k: v for k, v in s.items() if k != "previous"})
    if not found:
        return ("not recorded", "na")
    model = [h for k, h in found if "model" in k.lower()] or [found[0][1]]
    p = run_path(s, "model")
    if p and not os.path.isfile(p) and os.path.isfile(p + ".index"):
        p += ".index"  # a checkpoint prefix: the runner digests its index file
    if not p or not os.path.isfile(p):
        return f"{model[0][:16]} (model file not on disk)"
    now = sha256(p, n=64)
    ok = now.startswith(model[0]) or model[0].startswith(now)
    return (f"{model[0][:16]} ({'matches' if ok else 'differs from'} the file)", "ok" if ok else "bad")


def performance_row(road: Road, s: dict) -> list:
    lat = s.get("latency_ms") or {}
    return [
        os.path.basename(run_path(s, "model") or "?"),
        s.get("backend"),
        road.mode_of(s) or "",
        s.get("batch"),
        s.get("images"),
        num(s.get("throughput_images_per_s"), ".5g"),
        num(s.get("wall_throughput_images_per_s"), ".5g"),
        num(lat.get("median"), ".4g"),
        num(lat.get("p99"), ".4g"),
        digest_check(s),
        os.path.relpath(os.path.dirname(s["_path"]), road.path),
    ]


def performance_section(road: Road) -> Blocks:
    b = Blocks()
    b.h("Inference performance")
    sums = road.summaries()
    if not sums:
        b.p("Runner not run here: no runner summary (OUT/<T>_summary.json or OUT/<T>/run.json) under the road.")
        return b
    b.table(
        PERFORMANCE_HEADER,
        [performance_row(road, s) for s in sums],
        "From the runner's summaries: latency per batch file (model execution only); wall images/s "
        "includes reading inputs and writing outputs. The checkpoint backend's run is the golden "
        "reference (verify/reference.py). Model digest: what the runner recorded, checked against the "
        "artifact on disk.",
    )
    cmds = [commands.msame(s) for s in sums if s.get("backend") != "checkpoint"]
    if cmds:
        b.cmd("\n".join(cmds))
    return b
