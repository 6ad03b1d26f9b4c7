"""What a model's road folder holds, for the self-verification report: its JSON files
classified by the stage that wrote them (signatures, loss_check reports, the doctor's
reports, the runner's summaries), and the facts the report reads from them. Nothing here
writes or formats: verify/report_sections.py and verify/report_offline.py do.
"""

import hashlib
import os

from common import fsio
from common.errors import UserError
from common.log import log
from data_tools import binfiles
from infer import ais_layout

SKIP_DIRS = {"inputs", "img"}  # input bins (and the manifest) hold no stage report
MODE_ORDER = ("force_fp32", "must_keep_origin_dtype", "allow_fp32_to_fp16", "allow_mix_precision", "force_fp16")
KINDS = ("signature", "loss_check", "doctor", "summary")


def kind_of(d: object) -> str | None:
    """Which stage wrote a JSON object (one of KINDS), or None for anything else."""
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
    if {"NPU_compute_time", "npu_compute_time_list"} <= set(d):  # ais_bench's OUT/<T>_summary.json
        return "summary"
    return None


def collect(path: str) -> dict:
    """{kind: [report dict with its "_path"]} of every stage report under a folder, in path order."""
    found = {k: [] for k in KINDS + ("unreadable",)}
    for d, subs, files in os.walk(path):
        subs[:] = sorted(s for s in subs if s not in SKIP_DIRS)
        for f in sorted(files):
            if not f.endswith(".json") or f == binfiles.MANIFEST:
                continue
            p = os.path.join(d, f)
            try:
                data = fsio.read_json(p, "")
            except UserError as e:  # truncated, or not JSON: named, and no verdict drawn from it
                found["unreadable"].append({"_path": p, "error": str(e)})
                log.warning(f"{p}: unreadable, left out of the report ({e})")
                continue
            k = kind_of(data)
            if k == "summary" and "NPU_compute_time" in data:  # ais_bench's, read by its layout's owner
                data = ais_layout.as_run_summary(data, p)
            if k:
                data["_path"] = p
                found[k].append(data)
    for s in found["summary"]:
        if not s.get("run_dir"):  # run.json inside the run folder
            s["run_dir"] = os.path.dirname(s["_path"])
    return found


def same_path(a: str | None, b: str | None) -> bool:
    return os.path.abspath(a or "") == os.path.abspath(b or "")


class Road:
    """The JSON files of one model's road, classified by what wrote them."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        if not os.path.isdir(self.path):
            raise UserError(
                f"{path}: road folder not found (expected a model's road output, e.g. "
                f"runs/demo/realnvp with model/ and loss_check_*.json)"
            )
        self.found = collect(self.path)
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

    def summary_for(self, run_dir: str | None) -> dict | None:
        """The runner's summary of a run folder: found under the road, else read beside the run."""
        if not run_dir:
            return None
        target = os.path.abspath(run_dir)
        for s in self.found["summary"]:
            if os.path.abspath(s["run_dir"]) == target:
                return s
        for p in (os.path.normpath(target) + "_summary.json", os.path.join(target, "run.json")):
            if os.path.isfile(p):
                try:
                    d = fsio.read_json(p, "")
                except UserError:
                    return None
                return ais_layout.as_run_summary(d, p) if isinstance(d, dict) and "NPU_compute_time" in d else d
        return None

    def signature_at(self, path: str | None) -> dict | None:
        """The signature under the road that was read from ``path``, or None."""
        return next((x for x in self.found["signature"] if same_path(x["_path"], path)), None)

    def artifacts(self) -> list:
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

    def artifact_name(self, lc: dict) -> str:
        """The file name of the model a loss_check report judged."""
        s = self.summary_for(lc.get("offline"))
        if run_path(s, "model"):
            return os.path.basename(run_path(s, "model"))
        art = (self.signature_at(lc.get("signature")) or {}).get("artifact") or {}
        for sub in ("om", "onnx"):
            if isinstance(art.get(sub), dict) and art[sub].get("file"):
                return art[sub]["file"]
        return art.get("file") or os.path.basename(lc["_path"])

    def loss_checks(self) -> list:
        """The loss_check reports in artifact order (.pb, .om, .onnx; fp32 modes first)."""

        def key(lc):
            name = self.artifact_name(lc)
            return artifact_order(name, os.path.splitext(name)[1][1:], lc.get("precision_mode"))

        return sorted(self.found["loss_check"], key=key)

    def mode_of(self, summary: dict) -> str | None:
        """The precision mode of the model a runner summary ran, from its signature."""
        sig = self.signature_at(run_path(summary, "signature"))
        if sig is None:
            return None
        art = sig.get("artifact") or {}
        base = os.path.basename(run_path(summary, "model") or "")
        for sub in ("onnx", "om"):
            if isinstance(art.get(sub), dict) and art[sub].get("file") == base:
                return art[sub].get("precision_mode") or sig.get("precision_mode")
        return art.get("precision_mode") or sig.get("precision_mode")

    def summaries(self) -> list:
        """The runner's summaries: offline models in artifact order, the checkpoint's runs last."""
        return sorted(
            self.found["summary"],
            key=lambda s: (
                s.get("backend") == "checkpoint",
                artifact_order(
                    run_path(s, "model"), os.path.splitext(run_path(s, "model") or "")[1][1:], self.mode_of(s)
                ),
            ),
        )


def artifact_order(path: str | None, kind: str | None, mode: str | None) -> tuple:
    """.pb first, then .om, then .onnx; fp32 modes before fp16 ones; by name."""
    return (
        {"pb": 0, "om": 1, "onnx": 2}.get(kind, 3),
        MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER),
        os.path.basename(path or ""),
    )


def run_path(summary: dict | None, key: str) -> str | None:
    """A path the runner recorded: ``<T>_summary.json`` holds it as a string, the run record
    ``<T>/run.json`` as {"path": ..., "sha256": ...}."""
    v = (summary or {}).get(key)
    return v.get("path") if isinstance(v, dict) else v


def run_inputs(summary: dict | None) -> list:
    """The input folders of a run: strings (summary) or {"name", "path", ...} (run record)."""
    out = []
    for i in (summary or {}).get("inputs") or []:
        p = i.get("path") if isinstance(i, dict) else i
        if p:
            out.append(p)
    return out


def lc_metrics(lc: dict) -> list:
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


def recorded_digests(d: object, path: str = "") -> list:
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


def sha256(path: str, n: int = 16) -> str:
    """The first ``n`` hex digits of a file's SHA-256."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


def read_png(path: str | None, near: str | None = None) -> bytes | None:
    """PNG bytes from a recorded path (or the same name beside ``near``), or None."""
    for p in (path, near and path and os.path.join(os.path.dirname(near), os.path.basename(path))):
        if p and os.path.isfile(p):
            with open(p, "rb") as f:
                return f.read()
    return None
