"""A training run folder as the trainers wrote it: config.json + metrics.jsonl, read into
series by metric and split. Shared by verify/compare_runs.py and verify/report.py.

The rule for metric names and splits (the trainers' conventions, no model names):
  - a record with a "split" field (REBAR's kind "eval") holds that split's values of
    every metric in it (``elbo``, ``iwae`` on ``test``);
  - otherwise a key ``train_X`` / ``test_X`` / ``valid_X`` is metric X on that split
    (RealNVP's ``train_bpd``, ``test_bpd``);
  - otherwise a numeric key of a ``train`` or ``epoch`` record is a train value
    (REBAR's ``elbo``), unless it is bookkeeping (step, epoch, lr, seconds, ...).
The headline metrics are those measured on a held-out split (test or valid); a run that
never evaluated has its train metrics as headline. Train values come in two kinds: the
logging window (kind ``train``) and the epoch mean (kind ``epoch``); the final train value
is the last epoch mean when the run has one, else the last logged value (said which).

Wall time: the trainer's own ``seconds`` (RealNVP; restarts at 0 when a run resumes, so
the runs are chained), else accumulated from ``steps_per_sec`` over each logging window
(REBAR; training steps only, evaluation excluded). Step time is 1 / steps per second.
"""

import os

from common import fsio
from common.errors import UserError

METRICS = "metrics.jsonl"
CONFIG = "config.json"
SPLITS = ("train", "valid", "test")
HELD_OUT = ("test", "valid")
PREFIXES = {"train_": "train", "test_": "test", "valid_": "valid", "val_": "valid"}
BOOKKEEPING = {
    "step",
    "epoch",
    "kind",
    "split",
    "seconds",
    "lr",
    "steps_per_sec",
    "n_steps",
    "n_images",
    "samples",
    "temperature",
    "log_grad_variance",
    "etas",
    "gv",
}
TRAIN_KINDS = ("train", "epoch")


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Point:
    __slots__ = ("step", "value", "kind", "line")

    def __init__(self, step, value, kind, line):
        self.step, self.value, self.kind, self.line = step, value, kind, line


class Run:
    """One training run: ``series[(metric, split)]`` = [Point], in file order."""

    def __init__(self, path, label=None):
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise UserError(
                f"{self.path}: training run folder not found (expected the trainer's "
                f"--train_url / --working_dir with {METRICS} and {CONFIG})"
            )
        self.label = label or os.path.basename(os.path.normpath(self.path))
        self.metrics_path = os.path.join(self.path, METRICS)
        self.config_path = os.path.join(self.path, CONFIG)
        if not os.path.isfile(self.metrics_path):
            raise UserError(f"{self.metrics_path}: not found (the trainers write {METRICS} in the run folder)")
        self.config = (
            fsio.read_json(self.config_path, "not found (the trainer saves config.json beside its checkpoints)")
            if os.path.isfile(self.config_path)
            else None
        )
        # the trainers own metrics.jsonl, and its reader (one-line errors for a broken record)
        from train.runguard import read_metrics

        self.records = read_metrics(self.metrics_path)
        for i, r in enumerate(self.records, 1):
            r["_line"] = i  # record order
        if not self.records:
            raise UserError(f"{self.metrics_path}: no records")
        self.series = {}
        for r in self.records:
            for (name, split), v in self._values(r):
                self.series.setdefault((name, split), []).append(Point(r["step"], v, r.get("kind", ""), r["_line"]))
        self._time = self._wall_time()

    @staticmethod
    def _values(r):
        split = r.get("split")
        for k, v in r.items():
            if k.startswith("_") or not _number(v) or k in BOOKKEEPING:
                continue
            if split in SPLITS:
                yield (k, split), float(v)
                continue
            pre = next((p for p in PREFIXES if k.startswith(p)), None)
            if pre:
                yield (k[len(pre) :], PREFIXES[pre]), float(v)
            elif r.get("kind") in TRAIN_KINDS:
                yield (k, "train"), float(v)

    # --- what the run holds -------------------------------------------------------
    @property
    def model(self):
        return (self.config or {}).get("model")

    @property
    def batch_size(self):
        c = self.config or {}
        b = (c.get("train") or {}).get("batch_size") or (c.get("config") or {}).get("batch_size")
        return int(b) if _number(b) else None

    @property
    def last_step(self):
        return max(r["step"] for r in self.records)

    def metrics(self):
        """Headline metric names, in first-seen order (see the module's rule)."""
        names = []
        for n, s in self.series:
            if s in HELD_OUT and n not in names:
                names.append(n)
        if not names:
            names = [n for (n, s) in self.series if s == "train"]
        return names

    def final(self, name, split):
        """(value, step, how) of the final value, or None."""
        pts = self.series.get((name, split))
        if not pts:
            return None
        if split == "train":
            ep = [p for p in pts if p.kind == "epoch"]
            if ep:
                return ep[-1].value, ep[-1].step, "epoch mean"
            p = pts[-1]
            return p.value, p.step, "last logged value" if p.kind == "train" else p.kind
        p = pts[-1]
        return p.value, p.step, p.kind or split

    def curve(self, name, split, kind=None):
        """[(step, value)] of a series (train: only ``kind`` records when given)."""
        return [(p.step, p.value) for p in self.series.get((name, split), []) if kind is None or p.kind == kind]

    # --- time ---------------------------------------------------------------------
    def _wall_time(self):
        """[(step, seconds since the start of training)] from the records that say it."""
        out, offset, last_raw, last_t, last_step = [], 0.0, None, 0.0, None
        for r in self.records:
            if _number(r.get("seconds")):
                raw = float(r["seconds"])
                if last_raw is not None and raw < last_raw:  # a resumed process restarts its clock
                    offset = last_t
                last_raw, t = raw, offset + raw
            elif _number(r.get("steps_per_sec")) and r["steps_per_sec"] > 0 and r.get("kind") == "train":
                prev = last_step if last_step is not None else 0
                t = last_t + (r["step"] - prev) / float(r["steps_per_sec"])
            else:
                continue
            out.append((r["step"], t))
            last_t, last_step = t, r["step"]
        return out

    def wall_time(self):
        return list(self._time)

    def time_at(self, step):
        """Seconds at a step, interpolated between the records that give time; past the last
        one (a final evaluation) at the run's mean rate, up to the run's last step. For
        placing points on the wall-time axis only; None where the run records no time."""
        import numpy as np

        t = self._time
        if len(t) < 1 or step < 0 or step > self.last_step:
            return None
        if step > t[-1][0]:
            return t[-1][1] * step / t[-1][0] if t[-1][0] else None
        xs = [0] + [s for s, _ in t]
        ys = [0.0] + [v for _, v in t]
        return float(np.interp(step, xs, ys))

    def steps_per_sec(self):
        """(steps/s, how) over the logged windows, or None."""
        sps = [
            float(r["steps_per_sec"])
            for r in self.records
            if _number(r.get("steps_per_sec")) and r.get("kind") == "train" and r["steps_per_sec"] > 0
        ]
        if sps:
            # total steps over total time of the windows: a time-weighted mean of the windows
            t = self._time
            if t and t[-1][1] > 0:
                return t[-1][0] / t[-1][1], f"steps over training time from steps_per_sec of {len(sps)} windows"
            return sum(sps) / len(sps), f"mean steps_per_sec of {len(sps)} windows"
        t = self._time
        if len(t) >= 2 and t[-1][1] > t[0][1]:
            return (t[-1][0] - t[0][0]) / (t[-1][1] - t[0][1]), f"steps {t[0][0]}-{t[-1][0]} over their seconds"
        return None

    def summary(self):
        """The numbers a report or a comparison shows, with their source."""
        sps = self.steps_per_sec()
        out = {
            "label": self.label,
            "path": self.path,
            "model": self.model,
            "last_step": self.last_step,
            "batch_size": self.batch_size,
            "metrics": self.metrics(),
            "final": {},
            "steps_per_sec": sps and sps[0],
            "steps_per_sec_how": sps and sps[1],
            "wall_s": self._time[-1][1] if self._time else None,
        }
        out["step_time_s"] = 1.0 / sps[0] if sps and sps[0] else None
        out["images_per_sec"] = sps[0] * self.batch_size if sps and self.batch_size else None
        for name in out["metrics"]:
            for split in SPLITS:
                f = self.final(name, split)
                if f:
                    out["final"][f"{split} {name}"] = {"value": f[0], "step": f[1], "how": f[2]}
        return out


def parse_run_arg(text):
    """'PATH:LABEL' -> (path, label); a bare PATH is labelled by its folder name."""
    path, sep, label = text.rpartition(":")
    if not sep or not path or os.sep in label:
        return text, os.path.basename(os.path.normpath(text))
    return path, label
