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
"""

import argparse
import datetime
import glob
import hashlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys

from common import fsio
from common.cli import add_force, add_output, tool_parser
from common.errors import UserError, cli, run
from verify import report_doc
from verify.compare_runs import compare, curves_png
from verify.runlog import SPLITS, Run, parse_run_arg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOT_RUN = ("not run", "na")
NOT_LOGGED = ("not logged", "na")
EXAMPLE = """examples:
  python verify/report.py --road runs/demo/realnvp --train runs/demo/_train/realnvp:CPU \\
      --paper "test bpd=3.49" -o report/
  python verify/report.py --road runs/demo/rebar --train runs/demo/_train/rebar:CPU \\
      --train runs/rebar_npu:NPU --paper "REBAR paper: train elbo=-98.8" -o report/ --force
"""
SKIP_DIRS = {"inputs", "img"}  # input bins (and the manifest) hold no stage report
MODE_ORDER = ("force_fp32", "must_keep_origin_dtype", "allow_fp32_to_fp16", "allow_mix_precision", "force_fp16")


# --- formatting -------------------------------------------------------------------------


def num(v, spec=".8g"):
    if v is None:
        return "not recorded"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v != v:
        return "NaN"
    return format(v, spec)


def with_keep(mode, sig):
    """The precision mode, and the keep_dtype list the artifact was built with."""
    kd = ((sig or {}).get("artifact") or {}).get("keep_dtype")
    if not isinstance(kd, dict):
        return mode
    n = len(kd.get("nodes_kept_fp32") or []) or "some"
    return f"{mode} + keep_dtype ({n} nodes fp32)"


def freeze_checks(checks):
    """The .pb's row: what freeze verified, from the signature's checks."""
    if checks.get("frozen_vs_checkpoint_max_rel") is None:
        return "freeze checks not recorded", "na"
    said = [f"freeze: frozen vs checkpoint max rel {num(checks['frozen_vs_checkpoint_max_rel'], '.3g')}"]
    bad = False
    for key, yes, no in (
        ("batch_independent", "batch independent", "BATCH COUPLED"),
        ("loads_in_fresh_process", "loads in a fresh process", "does NOT load in a fresh process"),
        ("no_variables", "no variables", "HAS variables"),
        ("no_random_ops", "no random ops", "HAS random ops"),
    ):
        if key in checks:
            said.append(yes if checks[key] else no)
            bad |= not checks[key]
    return "; ".join(said), "bad" if bad else "ok"


def short_list(names, n=3):
    return ", ".join(names[:n]) + (f" ... ({len(names) - n} more)" if len(names) > n else "")


def signed(v, spec="+.3g"):
    return num(v, spec)


def verdict(ok):
    return ("PASS", "ok") if ok else ("FAIL", "bad")


def cmd(*argv):
    return " ".join(shlex.quote(str(a)) for a in argv if a is not None)


def rel(p):
    """A path as a user in the checkout would type it."""
    if not p:
        return p
    p = os.path.abspath(p)
    r = os.path.relpath(p, os.getcwd())
    return p if r.startswith("../..") else r


def sha256(path, n=16):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def read_png(path, near=None):
    """PNG bytes from a recorded path (or the same name beside ``near``), or None."""
    for p in (path, near and path and os.path.join(os.path.dirname(near), os.path.basename(path))):
        if p and os.path.isfile(p):
            with open(p, "rb") as f:
                return f.read()
    return None


# --- what a road folder holds -------------------------------------------------------------


def kind_of(d):
    if not isinstance(d, dict):
        return None
    if d.get("format") == "ascend-road-signature/1":
        return "signature"
    if {"outputs", "model_metrics", "passed"} <= set(d):
        return "loss_check"
    if {"layers", "keep_dtype"} <= set(d):
        return "doctor"
    if str(d.get("format", "")).startswith("ascend-road-run/") or {"latency_ms", "backend"} <= set(d):
        return "summary"
    return None


class Road:
    """The JSON files of one model's road, classified by what wrote them."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            raise UserError(
                f"{path}: road folder not found (expected a model's road output, e.g. "
                f"runs/demo/realnvp with model/ and loss_check_*.json)"
            )
        self.found = {"signature": [], "loss_check": [], "doctor": [], "summary": []}
        for d, subs, files in os.walk(self.path):
            subs[:] = sorted(s for s in subs if s not in SKIP_DIRS)
            for f in sorted(files):
                if not f.endswith(".json") or f == "manifest.json":
                    continue
                p = os.path.join(d, f)
                try:
                    data = fsio.read_json(p, "")
                except UserError:
                    continue  # not JSON: not a stage's report
                k = kind_of(data)
                if k:
                    data["_path"] = p
                    self.found[k].append(data)
        for s in self.found["summary"]:
            if not s.get("run_dir"):  # run.json inside the run folder
                s["run_dir"] = os.path.dirname(s["_path"])
        if not any(self.found.values()):
            raise UserError(
                f"{path}: no stage output found (no signature, loss_check report, doctor "
                f"report or runner summary in its JSON files)"
            )
        sigs = self.found["signature"]
        pb = [s for s in sigs if (s.get("artifact") or {}).get("kind") == "pb"]
        self.main_sig = (pb or sigs or [None])[0]
        self.model = (self.main_sig or {}).get("model") or next(
            (r.get("model") for r in self.found["loss_check"] if r.get("model")), os.path.basename(self.path)
        )

    def summary_for(self, run_dir):
        if not run_dir:
            return None
        target = os.path.abspath(run_dir)
        for s in self.found["summary"]:
            if os.path.abspath(s["run_dir"]) == target:
                return s
        for p in (os.path.normpath(target) + "_summary.json", os.path.join(target, "run.json")):
            if os.path.isfile(p):
                try:
                    return fsio.read_json(p, "")
                except UserError:
                    return None
        return None

    def artifacts(self):
        """[(file path, signature dict, kind, precision mode)] for every .pb/.onnx/.om."""
        out, seen = [], set()
        for s in self.found["signature"]:
            base = os.path.dirname(s["_path"])
            art = s.get("artifact") or {}
            entries = [(art.get("file"), art.get("kind"), art.get("precision_mode") or s.get("precision_mode"))]
            for sub in ("onnx", "om"):
                if isinstance(art.get(sub), dict):
                    a = art[sub]
                    entries.append((a.get("file"), sub, a.get("precision_mode") or s.get("precision_mode")))
            for f, kind, mode in entries:
                if not f:
                    continue
                p = os.path.join(base, f)
                if p in seen:
                    continue
                seen.add(p)
                out.append((p, s, kind or os.path.splitext(f)[1][1:], mode))
        return sorted(out, key=lambda a: artifact_order(a[0], a[2], a[3]))


def artifact_order(path, kind, mode):
    """.pb first, then .om, then .onnx; fp32 modes before fp16 ones; by name."""
    return (
        {"pb": 0, "om": 1, "onnx": 2}.get(kind, 3),
        MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER),
        os.path.basename(path or ""),
    )


def run_path(summary, key):
    """A path the runner recorded: ``<T>_summary.json`` holds it as a string, the run record
    ``<T>/run.json`` as {"path": ..., "sha256": ...}."""
    v = (summary or {}).get(key)
    return v.get("path") if isinstance(v, dict) else v


def run_inputs(summary):
    """The input folders of a run: strings (summary) or {"name", "path", ...} (run record)."""
    out = []
    for i in (summary or {}).get("inputs") or []:
        p = i.get("path") if isinstance(i, dict) else i
        if p:
            out.append(p)
    return out


def lc_metrics(lc):
    """The model-level numbers of a loss_check report: its model metrics, and top-1 accuracy
    where it was given labels (--top1 --labels)."""
    out = [dict(m) for m in lc.get("model_metrics") or []]
    c = lc.get("classification")
    if isinstance(c, dict) and "offline_accuracy" in c:
        out.append(
            {
                "name": "top-1 accuracy",
                "n_images": c.get("n_images"),
                "offline_mean": c["offline_accuracy"],
                "reference_mean": c.get("reference_accuracy"),
                "diff": c.get("accuracy_shift"),
                "nonfinite": None,
                "tolerance": None,
                "passed": c.get("passed", True),
            }
        )
    return out


def recorded_digests(d, path=""):
    """[(key path, hex digest)] of every sha256 / digest string recorded in a JSON object."""
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += recorded_digests(v, f"{path}.{k}" if path else str(k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += recorded_digests(v, f"{path}[{i}]")
    elif isinstance(d, str) and ("sha256" in path.lower() or "digest" in path.lower()):
        h = d.split(":", 1)[1] if d.lower().startswith("sha256:") else d
        if len(h) >= 16 and all(c in "0123456789abcdefABCDEF" for c in h):
            out.append((path, h.lower()))
    return out


# --- environment ----------------------------------------------------------------------------


def versions():
    out = []
    for label, dists in (
        ("TensorFlow", ("tensorflow-cpu", "tensorflow", "tensorflow-gpu")),
        ("tf2onnx", ("tf2onnx",)),
        ("ONNX", ("onnx",)),
        ("ONNX Runtime", ("onnxruntime",)),
        ("onnxconverter-common", ("onnxconverter-common",)),
        ("NumPy", ("numpy",)),
    ):
        v = None
        for d in dists:
            try:
                v = f"{importlib.metadata.version(d)} ({d})"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out.append((label, v or "not installed"))
    out.append(("CANN", cann_version()))
    out.append(("Python", platform.python_version()))
    return out


def cann_version():
    homes = [os.environ.get(k) for k in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH")]
    homes += ["/usr/local/Ascend/ascend-toolkit/latest", "/usr/local/Ascend/latest"]
    for h in filter(None, homes):
        for f in [os.path.join(h, "version.cfg")] + sorted(glob.glob(os.path.join(h, "*", "version.info"))):
            if os.path.isfile(f):
                with open(f, errors="replace") as fh:
                    line = next((x.strip() for x in fh if "version" in x.lower()), "")
                return f"{line or 'installed'} ({f})"
    import shutil

    atc = shutil.which("atc")
    return (
        f"atc at {atc} (version file not found)"
        if atc
        else "not installed (no ASCEND_TOOLKIT_HOME, no /usr/local/Ascend, no atc on PATH): portable ONNX road"
    )


def host():
    return [
        ("host", platform.node()),
        ("system", platform.platform()),
        ("processor", platform.processor() or platform.machine()),
        ("CPU cores", os.cpu_count()),
    ]


def git_commit():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        if head.returncode:
            return "not a git checkout"
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
        n = len(dirty.splitlines())
        return head.stdout.strip() + (f" (+{n} modified file{'s' * (n != 1)})" if n else " (clean)")
    except (OSError, subprocess.SubprocessError):
        return "git not available"


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


# --- sections -------------------------------------------------------------------------------


class Section:
    def __init__(self, road, runs, given):
        self.road, self.runs, self.given = road, runs, given
        self.blocks = []

    def h(self, text, level=3):
        self.blocks.append(("h", level, text))

    def p(self, text):
        self.blocks.append(("p", text))

    def note(self, text):
        self.blocks.append(("note", text))

    def cmd(self, text):
        self.blocks.append(("cmd", text))

    def table(self, header, rows, note=None):
        self.blocks.append(("table", header, rows, note))

    def img(self, name, data, caption):
        self.blocks.append(("img", name, data, caption))

    def loss_checks(self):
        """The loss_check reports in artifact order (.pb, .om, .onnx; fp32 modes first)."""

        def key(lc):
            name = self.artifact_name(lc)
            return artifact_order(name, os.path.splitext(name)[1][1:], lc.get("precision_mode"))

        return sorted(self.road.found["loss_check"], key=key)

    # --- model ---------------------------------------------------------------
    def model(self):
        r, s = self.road, self.road.main_sig
        self.h(f"Model and artifacts: {r.model}")
        if s is None:
            self.p(
                f"No signature found under {rel(r.path)}: freeze not run here (the signature is "
                "MODEL.json beside MODEL.pb)."
            )
        else:
            ck = s.get("checkpoint") or {}
            self.blocks.append(
                (
                    "kv",
                    [
                        ("model", s.get("model")),
                        ("graph", s.get("graph")),
                        ("static batch", s.get("batch")),
                        (
                            "inputs",
                            "; ".join(
                                f"{t['name']} {t.get('shape')} {t.get('dtype')} {t.get('layout', '')}"
                                for t in s.get("inputs", [])
                            ),
                        ),
                        (
                            "outputs",
                            "; ".join(f"{t['name']} {t.get('shape')} {t.get('dtype')}" for t in s.get("outputs", [])),
                        ),
                        ("checkpoint", f"{ck.get('path', 'not recorded')} (step {ck.get('step', 'not recorded')})"),
                        ("signature", rel(s["_path"])),
                    ],
                )
            )
            freeze = os.path.join(ROOT, "freeze", f"freeze_{s.get('model')}.py")
            if ck.get("path") and os.path.isfile(freeze):
                ckdir = ck["path"] if os.path.isdir(ck["path"]) else os.path.dirname(ck["path"])
                self.cmd(
                    cmd(
                        "python",
                        f"freeze/freeze_{s['model']}.py",
                        "--ckpt",
                        rel(ckdir),
                        "--batch",
                        s.get("batch"),
                        "--out",
                        rel(os.path.dirname(s["_path"])),
                    )
                )
        rows = []
        for path, sig, kind, mode in r.artifacts():
            exists = os.path.isfile(path)
            rows.append(
                [
                    os.path.basename(path),
                    kind,
                    with_keep(mode or "not recorded", sig),
                    num(os.path.getsize(path), "d") if exists else ("missing", "bad"),
                    sha256(path) if exists else ("missing", "bad"),
                    os.path.basename(sig["_path"]),
                    sha256(sig["_path"]),
                ]
            )
        if rows:
            self.table(
                ["artifact", "kind", "precision mode", "bytes", "sha256 (first 16)", "signature", "signature sha256"],
                rows,
                "Digests computed from the files now on disk, so a delivered .pb/.onnx/.om can be "
                "matched to this report.",
            )
        else:
            self.p("No model artifact recorded in a signature: not converted here.")

    # --- training ------------------------------------------------------------
    def training(self):
        self.h("Training")
        if not self.runs:
            self.p(
                "No training folder given (--train RUN[:LABEL]): training not shown. The trainers "
                "write metrics.jsonl and config.json in their output folder."
            )
            return
        names = []
        for run_ in self.runs:
            names += [n for n in run_.metrics() if n not in names]
        for run_ in self.runs:
            c = run_.config or {}
            script = os.path.join(ROOT, "train", f"train_{run_.model}.py")
            flags = c.get("train") or {}
            if flags and os.path.isfile(script):
                argv = ["python", f"train/train_{run_.model}.py"]
                for k, v in flags.items():
                    if isinstance(v, bool):
                        argv += [f"--{k}"] if v else []
                    elif v is not None:
                        argv += [f"--{k}", v]
                self.cmd(cmd(*argv))
            else:
                self.note(f"{run_.label}: the trainer's command is not recorded in {rel(run_.config_path)}")
        rows = []
        for run_ in self.runs:
            s = run_.summary()
            rows.append(
                [
                    run_.label,
                    rel(run_.path),
                    num(s["last_step"], "d"),
                    num(s["batch_size"]),
                    num(s["steps_per_sec"], ".4g"),
                    num(s["step_time_s"], ".4g"),
                    num(s["images_per_sec"], ".4g"),
                    f"{num(s['wall_s'], '.1f')} (to step {run_.wall_time()[-1][0]})"
                    if s["wall_s"]
                    else ("not recorded", "na"),
                ]
            )
        self.table(
            ["run", "folder", "steps", "batch", "steps/s", "step time (s)", "images/s", "training wall time (s)"],
            rows,
            "Throughput from the trainer's records: RealNVP-style 'seconds' or REBAR-style "
            "'steps_per_sec' (training steps only; evaluation excluded).",
        )
        header = ["run"] + [f"{sp} {n}" for n in names for sp in SPLITS if any(r.final(n, sp) for r in self.runs)]
        rows = []
        for run_ in self.runs:
            row = [run_.label]
            for col in header[1:]:
                sp, n = col.split(" ", 1)
                f = run_.final(n, sp)
                row.append(f"{num(f[0])} (step {f[1]}, {f[2]})" if f else NOT_LOGGED)
            rows.append(row)
        self.table(
            header,
            rows,
            "Final values from metrics.jsonl. Train: the last epoch mean when the run "
            "completed an epoch, else the last logged value.",
        )
        if len(self.runs) > 1:
            self.compared(names)
        png = curves_png(self.runs, names)
        self.img(
            f"{os.path.basename(self.road.path)}_training.png",
            png,
            f"{self.road.model}: {', '.join(names) or 'no metric'} against steps and wall time "
            f"({', '.join(r.label for r in self.runs)})",
        )

    def compared(self, names):
        res = compare(self.runs)
        self.h("Training runs compared", 4)
        self.cmd(
            cmd(
                "python", "verify/compare_runs.py", *[f"{rel(r.path)}:{r.label}" for r in self.runs], "--png", "cmp.png"
            )
        )
        base = self.runs[0].label
        rows = []
        for row in res["final"]:
            cells = [f"{row['split']} {row['metric']}"]
            for i, v in enumerate(row["values"]):
                if v["value"] is None:
                    cells.append(NOT_LOGGED)
                else:
                    cells.append(num(v["value"]) + ("" if i == 0 else f" ({v['rel_diff']:+.3%})"))
            rows.append(cells)
        self.table(["final"] + [r.label for r in self.runs], rows, f"Relative difference to {base}.")
        m = res["matched"]
        if m:
            pick = m if len(m) <= 10 else [m[round(i * (len(m) - 1) / 9)] for i in range(10)]
            self.table(
                ["metric", "step"] + [r.label for r in self.runs],
                [[f"{x['split']} {x['metric']}", x["step"]] + [num(v) for v in x["values"]] for x in pick],
                f"At steps every run logged ({len(m)} in all{', 10 shown' if len(m) > 10 else ''}).",
            )
        else:
            self.p("No step was logged by every run: no comparison at matched steps.")

    # --- accuracy ------------------------------------------------------------
    def accuracy(self):
        self.h("Accuracy")
        names = []
        for run_ in self.runs:
            names += [n for n in run_.metrics() if n not in names]
        for _, vals in self.given:
            names += [m for (m, _) in vals if m not in names]
        for lc in self.road.found["loss_check"]:
            names += [m["name"] for m in lc_metrics(lc) if m["name"] not in names]
        if not names:
            self.p(
                "No metric declared: the model's training logs and loss_check reports name none. "
                "Per-output results are in the offline road below."
            )
            return
        cols = [(n, sp) for n in names for sp in ("train", "test")]
        header = ["source"] + [f"{sp} {n}" for n, sp in cols] + ["steps / images"]
        rows = []
        for label, vals in self.given:
            rows.append([f"{label} (given)"] + [num(vals[c]) if c in vals else "" for c in cols] + [""])
        for run_ in self.runs:
            row = [f"{run_.label} (training run)"]
            for n, sp in cols:
                f = run_.final(n, sp)
                row.append(num(f[0]) if f else NOT_LOGGED)
            rows.append(row + [f"{run_.last_step} steps"])
        for lc in self.loss_checks():
            mm = {m["name"]: m for m in lc_metrics(lc)}
            if not mm:
                continue
            row = [f"offline {self.artifact_name(lc)} ({lc.get('precision_mode')})"]
            for n, sp in cols:
                row.append(num(mm[n]["offline_mean"]) if sp == "test" and n in mm else "")
            rows.append(row + [f"{lc.get('n_images')} test images"])
        if not self.runs:
            self.note("No training run given: the training rows are missing.")
        self.table(
            header,
            rows,
            "Given rows are typed in (--paper). Training rows: final values from each "
            "run's metrics.jsonl. Offline rows: the mean over the road's test images "
            "from loss_check (the checkpoint's value on the same images is in the next section).",
        )

    def artifact_name(self, lc):
        s = self.road.summary_for(lc.get("offline"))
        if run_path(s, "model"):
            return os.path.basename(run_path(s, "model"))
        sig = next(
            (
                x
                for x in self.road.found["signature"]
                if os.path.abspath(x["_path"]) == os.path.abspath(lc.get("signature") or "")
            ),
            None,
        )
        art = (sig or {}).get("artifact") or {}
        for sub in ("om", "onnx"):
            if isinstance(art.get(sub), dict) and art[sub].get("file"):
                return art[sub]["file"]
        return art.get("file") or os.path.basename(lc["_path"])

    # --- offline road -----------------------------------------------------------
    def offline(self):
        self.h("Offline road: each artifact against the checkpoint")
        lcs = self.loss_checks()
        by_art = {}
        for lc in lcs:
            by_art.setdefault(self.artifact_name(lc), []).append(lc)
        metric_names = []
        for lc in lcs:
            metric_names += [m["name"] for m in lc_metrics(lc) if m["name"] not in metric_names]
        header = ["artifact", "precision mode", "loss_check"]
        for n in metric_names:
            header += [f"{n} offline", f"{n} checkpoint", f"{n} shift"]
        header += ["non-finite", "images"]
        rows = []
        for path, sig, kind, mode in self.road.artifacts():
            name = os.path.basename(path)
            checks = sig.get("checks") or {}
            runs_ = by_art.pop(name, [])
            if not runs_:
                # a .pb is checked by freeze itself (unless the runner ran it too)
                verdict_cell = freeze_checks(checks) if kind == "pb" else NOT_RUN
                rows.append(
                    [name, with_keep(mode or "", sig), verdict_cell] + [""] * (3 * len(metric_names)) + ["", ""]
                )
                continue
            for lc in runs_:
                rows.append(self.lc_row(name, lc, metric_names))
        for name, rest in by_art.items():  # loss_checks of artifacts without a signature here
            for lc in rest:
                rows.append(self.lc_row(name, lc, metric_names))
        self.table(
            header,
            rows,
            "Shift = offline - checkpoint mean over the same images. Non-finite: images "
            "whose metric is NaN/Inf (per-output NaN/Inf elements where the model declares "
            "no metric). 'not run': no loss_check report for this artifact under the road.",
        )
        if not lcs:
            self.p("loss_check not run: no loss_check report under this road.")
        for lc in lcs:
            self.lc_detail(lc)

    def lc_row(self, name, lc, metric_names):
        mm = {m["name"]: m for m in lc_metrics(lc)}
        sig = next(
            (
                x
                for x in self.road.found["signature"]
                if os.path.abspath(x["_path"]) == os.path.abspath(lc.get("signature") or "")
            ),
            None,
        )
        row = [name, with_keep(lc.get("precision_mode") or "", sig), verdict(lc["passed"])]
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

    def lc_detail(self, lc):
        name = self.artifact_name(lc)
        self.h(f"{name} ({lc.get('precision_mode')}): {'PASS' if lc['passed'] else 'FAIL'}", 4)
        self.cmd(
            cmd(
                "python",
                "verify/loss_check.py",
                "--signature",
                rel(lc.get("signature")),
                "--offline",
                rel(lc.get("offline")),
                "--reference",
                rel(lc.get("reference")),
                *(["--manifest", rel(lc["manifest"])] if lc.get("manifest") else []),
                "--report",
                rel(lc["_path"]),
                "--force",
            )
        )
        rows = []
        for o in lc["outputs"]:
            rows.append(
                [
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
            )
        self.table(
            ["output", "cosine", "RED", "max abs", "max rel", "RMSE", "NaN/Inf", "elements failing", "verdict"],
            rows,
            f"{lc.get('files_compared')} files, {lc.get('n_images')} images; report {rel(lc['_path'])}",
        )
        for m in lc["model_metrics"]:
            lim = (
                "reported, not judged (fp16 mode)"
                if m.get("tolerance") is None
                else f"tolerance {num(m['tolerance'], '.3g')}"
            )
            self.p(
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
            self.p(f"{line}; {judged}: {'PASS' if c.get('passed', True) else 'FAIL'}.")
        probs = {k: v for k, v in (lc.get("problems") or {}).items() if v}
        for k, v in probs.items():
            self.p(
                f"{k.replace('_', ' ')} files ({len(v)}): {', '.join(map(rel, v[:5]))}" + (" ..." if len(v) > 5 else "")
            )
        if lc.get("n_failed_files"):
            self.p(
                f"{lc['n_failed_files']} failing file(s), first: "
                + "; ".join(
                    f"{os.path.basename(f['file'])} ({f['output']}: {f['why']})" for f in lc["failed_files"][:3]
                )
            )
        png = read_png(lc.get("plot"), lc["_path"]) or read_png(os.path.splitext(lc["_path"])[0] + ".png")
        if png:
            stem = os.path.basename(os.path.splitext(lc["_path"])[0])
            self.img(
                f"{os.path.basename(self.road.path)}_{stem}.png",
                png,
                f"{name}: per-image metric offline vs checkpoint, and the histogram of their differences",
            )
        elif lc["model_metrics"]:
            self.note("Per-image scatter not available: loss_check ran with --no-plot.")

    # --- doctor --------------------------------------------------------------------
    def doctor(self):
        self.h("Precision doctor")
        docs = self.road.found["doctor"]
        if not docs:
            failed = [self.artifact_name(lc) for lc in self.loss_checks() if not lc["passed"]]
            self.p(
                "Precision doctor not run on this model (no compare_layers report under the road). "
                + (
                    f"loss_check failed for {', '.join(failed)}: run verify/compare_layers.py on a batch it "
                    "names to find the layers to keep in fp32."
                    if failed
                    else "Every loss_check under the road passed."
                )
            )
            return
        for d in docs:
            mode = d.get("precision_mode") or "one diagnosis"
            self.h(f"{os.path.basename(d['_path'])} ({mode})", 4)
            self.cmd(self.doctor_cmd(d))
            self.p(
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
            rounds = d.get("rounds") or []
            if rounds:
                rows = []
                for r in rounds:
                    b, bt = r.get("bpd") or {}, r.get("bpd_tf") or {}
                    rows.append(
                        [
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
                    )
                self.table(
                    [
                        "round",
                        "ops kept fp32",
                        "first failing layer",
                        "why",
                        "failing layers",
                        "batch bpd (fp16)",
                        "non-finite images",
                        "batch bpd (TF)",
                        "added to keep list",
                    ],
                    rows,
                    "Batch bpd: the doctor's mean of the model's per-image bpd output on its batch, "
                    "where the model has one.",
                )
            else:
                layers = [l for l in d.get("layers", []) if not l.get("passed")][:10]
                if layers:
                    self.table(
                        ["failing layer", "ONNX op", "cosine", "RED", "NaN", "Inf", "why"],
                        [
                            [
                                l["op"],
                                l.get("onnx_op"),
                                num(l.get("cosine")),
                                num(l.get("red"), ".3g"),
                                l.get("nan"),
                                l.get("inf"),
                                l.get("why"),
                            ]
                            for l in layers
                        ],
                    )
            keep = d.get("keep_dtype") or []
            self.p(
                f"Keep list ({len(keep)} ops kept in fp32, the --keep_dtype file for ATC): "
                + (", ".join(keep) if keep else "empty")
            )
            if d.get("pruned"):
                self.p(
                    f"Pruned after converging ({len(d['pruned'])} ops no longer needed): {short_list(d['pruned'], 6)}"
                )

    def doctor_cmd(self, d):
        s = self.road.main_sig
        mode = d.get("precision_mode")
        pb = (
            os.path.join(os.path.dirname(s["_path"]), s["artifact"]["file"])
            if s and (s.get("artifact") or {}).get("file")
            else "MODEL.pb"
        )
        onnx = next(
            (
                p
                for p, sig, kind, m in self.road.artifacts()
                if kind == "onnx" and m == mode and not ((sig.get("artifact") or {}).get("keep_dtype"))
            ),
            "MODEL.fp16.onnx",
        )
        # the doctor examines a batch loss_check named (make demo: the first failing file)
        lc = next(
            (x for x in self.road.found["loss_check"] if x.get("precision_mode") == mode and x.get("failed_files")),
            None,
        )
        batch = os.path.basename(lc["failed_files"][0]["file"]).rsplit("_output_", 1)[0] if lc else None
        summ = self.road.summary_for(lc.get("offline")) if lc else None
        inputs = ",".join(rel(i) for i in run_inputs(summ)) or "INPUT_DIRS"
        keep = os.path.join(os.path.dirname(pb), "keep_dtype.cfg")
        fp32 = next((p for p, sig, kind, m in self.road.artifacts() if kind == "onnx" and m == "force_fp32"), None)
        return cmd(
            "python",
            "verify/compare_layers.py",
            "--pb",
            rel(pb),
            "--onnx",
            rel(onnx),
            *(["--fp32-onnx", rel(fp32)] if fp32 else []),
            "--input",
            inputs,
            "--keep-dtype-out",
            rel(keep),
            "--report",
            rel(d["_path"]),
            *(["--iterate", d["iterate"]] if d.get("iterate") else []),
            *(["--batch-file", batch] if batch else []),
            "--force",
        )

    # --- performance -----------------------------------------------------------------
    def performance(self):
        self.h("Inference performance")
        sums = sorted(
            self.road.found["summary"],
            key=lambda s: (
                s.get("backend") == "checkpoint",
                artifact_order(
                    run_path(s, "model"), os.path.splitext(run_path(s, "model") or "")[1][1:], self.mode_of(s)
                ),
            ),
        )
        if not sums:
            self.p("Runner not run here: no runner summary (OUT/<T>_summary.json or OUT/<T>/run.json) under the road.")
            return
        rows, cmds = [], []
        for s in sums:
            lat = s.get("latency_ms") or {}
            rows.append(
                [
                    os.path.basename(run_path(s, "model") or "?"),
                    s.get("backend"),
                    self.mode_of(s) or "",
                    s.get("batch"),
                    s.get("images"),
                    num(s.get("throughput_images_per_s"), ".5g"),
                    num(s.get("wall_throughput_images_per_s"), ".5g"),
                    num(lat.get("median"), ".4g"),
                    num(lat.get("p99"), ".4g"),
                    self.digest_check(s),
                    os.path.relpath(os.path.dirname(s["_path"]), self.road.path),
                ]
            )
            if s.get("backend") != "checkpoint":
                cmds.append(
                    cmd(
                        "python",
                        "infer/msame.py",
                        "--model",
                        rel(run_path(s, "model")),
                        "--input",
                        ",".join(rel(i) for i in run_inputs(s)) or "INPUT_DIRS",
                        "--output",
                        rel(os.path.dirname(os.path.normpath(s["run_dir"]))),
                        *(["--outfmt", "TXT"] if s.get("outfmt") == "TXT" else []),
                    )
                )
        self.table(
            [
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
            ],
            rows,
            "From the runner's summaries: latency per batch file (model execution only); wall images/s "
            "includes reading inputs and writing outputs. The checkpoint backend's run is the golden "
            "reference (verify/reference.py). Model digest: what the runner recorded, checked against the "
            "artifact on disk.",
        )
        if cmds:
            self.cmd("\n".join(cmds))

    def mode_of(self, summary):
        sig = next(
            (
                x
                for x in self.road.found["signature"]
                if os.path.abspath(x["_path"]) == os.path.abspath(run_path(summary, "signature") or "")
            ),
            None,
        )
        if sig is None:
            return None
        art = sig.get("artifact") or {}
        base = os.path.basename(run_path(summary, "model") or "")
        for sub in ("onnx", "om"):
            if isinstance(art.get(sub), dict) and art[sub].get("file") == base:
                return art[sub].get("precision_mode") or sig.get("precision_mode")
        return art.get("precision_mode") or sig.get("precision_mode")

    def digest_check(self, s):
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

    def build(self):
        for part in (self.model, self.training, self.accuracy, self.offline, self.doctor, self.performance):
            part()
        return self.blocks


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


def environment_blocks(argv_text):
    blocks = [
        ("h", 2, "Environment"),
        (
            "p",
            "Versions and host of the machine that wrote this report (the road's stages ran on it when "
            "the report is written at the end of the road, as make demo does).",
        ),
        (
            "kv",
            versions()
            + host()
            + [
                ("git commit", git_commit()),
                ("written", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
            ],
        ),
        ("cmd", argv_text),
    ]
    return blocks


@cli
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    a = build_parser().parse_args(argv)
    attached = getattr(a, "attached", None) or []
    per = [{"train": [], "paper": []} for _ in a.road]
    for i, dest, value in attached:
        if i < 0:
            if len(a.road) > 1:
                raise UserError(
                    f"--{dest} {value}: given before any --road; with several --road options, "
                    f"put each model's --train / --paper after its --road"
                )
            i = 0
        per[i][dest].append(value)
    index, md = os.path.join(a.output, "index.html"), os.path.join(a.output, "REPORT.md")
    fsio.refuse_overwrite([index, md], a.force, other="-o")
    blocks = []
    models = []
    for road_dir, extra in zip(a.road, per):
        road = Road(road_dir)
        runs = [Run(*parse_run_arg(t)) for t in extra["train"]]
        labels = [r.label for r in runs]
        if len(set(labels)) != len(labels):
            raise UserError(
                f"--train: two runs of {road_dir} share a label ({', '.join(labels)}); give each as PATH:LABEL"
            )
        for r in runs:
            if r.model and road.model and r.model != road.model:
                raise UserError(f"{r.config_path}: a run of model {r.model!r}, but {road_dir} is model {road.model!r}")
        given = [parse_given(t) for t in extra["paper"]]
        models.append(road.model)
        blocks.append(("h", 2, f"{road.model} ({rel(road.path)})"))
        blocks += Section(road, runs, given).build()
    title = f"{a.title}: {', '.join(models)}"
    blocks = (
        [
            (
                "p",
                "Contents: environment; then for " + ", ".join(models) + ": model and artifacts, training, "
                "accuracy, offline road, precision doctor, inference performance.",
            )
        ]
        + environment_blocks(cmd("python", "verify/report.py", *argv))
        + blocks
    )
    os.makedirs(a.output, exist_ok=True)
    text, images = report_doc.to_markdown(title, blocks)
    for relp, data in images.items():
        fsio.write_bytes(os.path.join(a.output, relp), data)
    fsio.write_bytes(md, (text + "\n").encode("utf-8"))
    fsio.write_bytes(index, report_doc.to_html(title, blocks).encode("utf-8"))
    print(f"report: {index}\nmarkdown: {md} ({len(images)} pictures in {os.path.join(a.output, 'img')})")
    return 0


if __name__ == "__main__":
    run(main)
