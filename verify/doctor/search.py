"""The keep-list search: diagnose, keep, rebuild, diagnose again; then prune.

One diagnosis names the error sources, but a source kept fp32 can still fail when its
inputs were already rounded (log(1 - p) with p rounded to 1.0 in fp16). Each round keeps
the new names and, for a failing op already kept, the nearest producers of its inputs.
With several batches, every diagnosis runs them in turn (the last failing one first) and
stops at the first that fails: a round fixes that batch, the next re-checks them all, so
the search ends only when every batch passes (a list that fixed one batch can leave
another failing), and pruning keeps only what every batch allows.
"""

from __future__ import annotations

import numpy as np

from common.loaders import ort_session
from verify import metrics
from verify.doctor.capture import SKIP_OPS, data_inputs, float_tensors, fp32_model, load_model, opset_of
from verify.doctor.diagnose import diagnose, keep_resolves


def upstream(nodes: dict, floats: set, op: str, kept: set, resolves) -> list[str]:
    """The nearest producers of ``op``'s float inputs that are not kept yet: walks up
    through kept ops, Identity and ops the converter finds no node for; stops at
    Const / Placeholder. Graph order of discovery, no duplicates."""
    out, seen, stack = [], {op}, [op]
    while stack:
        n = nodes.get(stack.pop(0))
        if n is None:
            continue
        for t in data_inputs(n):
            if t not in floats:
                continue
            name = t.split(":")[0]
            src = nodes.get(name)
            if name in seen or src is None or src.op in ("Const", "Placeholder", "NoOp"):
                continue
            seen.add(name)
            if name in kept or src.op in SKIP_OPS or not resolves(name):
                stack.append(name)  # already fp32 (or no node of its own): its inputs are next
            elif name not in out:
                out.append(name)
    return out


def batch_metric(model, sig, feed: dict) -> dict | None:
    """{name, mean over the finite images, non-finite count} of the model's headline metric
    (its spec's first, e.g. RealNVP's bits/dim) on one batch; None for a model without one.
    ``model``: ModelProto or the outputs of a TF run."""
    from models import spec as model_spec

    spec = model_spec.for_signature(sig)
    if spec is None or not spec.metrics:
        return None
    if isinstance(model, list):
        vals = model
    else:
        from convert.parity import run_onnx

        vals = run_onnx(ort_session(model), sig, feed)
    name = spec.metrics[0].name
    per = spec.image_metrics({t.name: v for t, v in zip(sig.outputs, vals)})
    if name not in per:
        return None
    v = np.asarray(per[name], np.float64).reshape(-1)
    fin = np.isfinite(v)
    return {"name": name, "mean": float(v[fin].mean()) if fin.any() else float("nan"), "nonfinite": int((~fin).sum())}


def _metric_text(metric: dict, tf_metric: dict) -> str:
    return (
        f"batch mean {metric['name']} {metric['mean']:.4f} ({metric['nonfinite']} non-finite) "
        f"vs TF {tf_metric['mean']:.4f}"
    )


SINGLE_PRUNE = 40  # keep lists up to this long are also pruned name by name (one diagnosis each)


class Search:
    """What every round shares: the graph and its batches (``feeds``: {stem: feed}), the fp32
    model the converter starts from (``fp32``), the one names are validated on (``check``),
    the thresholds. The batch metric is reported on the first batch."""

    def __init__(self, graph_def, sig, feeds, fp32, check, precision_mode, judge: dict, log=print):
        from freeze.core import run_graph_def

        self.feeds = dict(feeds)
        feed = next(iter(self.feeds.values()))
        self.graph_def, self.sig, self.feed, self.fp32, self.check = graph_def, sig, feed, fp32, check
        self.precision_mode, self.judge, self.log = precision_mode, judge, log
        self.nodes = {n.name: n for n in graph_def.node}
        self.floats = float_tensors(graph_def)
        self._resolves = {}
        self.tf_metric = batch_metric(run_graph_def(graph_def, sig, feed), sig, feed)

    def resolves(self, name: str) -> bool:
        """The converter finds a node to keep for ``name`` in this precision mode (cached)."""
        if name not in self._resolves:
            self._resolves[name] = keep_resolves(self.fp32, name, self.precision_mode)
        return self._resolves[name]

    def diagnose(self, model) -> dict:
        """The diagnosis of the first batch that fails (``batch``: its stem), else of the last
        one; a failing batch is tried first next time."""
        for stem in list(self.feeds):
            r = diagnose(self.graph_def, self.sig, model, self.feeds[stem], fp32_onnx=self.check, **self.judge)
            r["batch"], r["batches_checked"] = stem, len(self.feeds)
            if r["first_failing"] is not None:
                self.feeds = {stem: self.feeds.pop(stem), **self.feeds}
                return r
        return r

    def rebuild(self, keep: list):
        """The model convert/to_onnx.py --keep_dtype builds with ``keep`` kept fp32."""
        from convert.fp16 import to_precision

        return to_precision(self.fp32, self.precision_mode, keep)[0]

    def additions(self, r: dict, keep: list) -> list[str]:
        """The names to keep next: the diagnosis's new ones, and for each failing root (or
        first failing layer) already kept fp32, the nearest producers of its float inputs."""
        first = r["first_failing"]
        new = [n for n in r["keep_dtype"] if n not in keep]
        roots = [n for n in r["keep_dtype"] if n in keep]
        if first and (first in keep or not self.resolves(first)) and first not in roots:
            roots.insert(0, first)  # kept, or no node of its own to keep (tf2onnx merged it)
        for op in roots:  # kept fp32 and failing all the same: its inputs are the problem
            new += [
                p for p in upstream(self.nodes, self.floats, op, set(keep) | set(new), self.resolves) if p not in new
            ]
        return new

    def run(self, model, rounds: int, keep: list) -> tuple[dict, list, list]:
        """Diagnose ``model``, keep, rebuild, up to ``rounds`` rebuilds: the last diagnosis,
        the keep list it was made with, and one history row per diagnosis."""
        history = []
        for k in range(rounds + 1):
            r = self.diagnose(model)
            first = r["first_failing"]
            new = self.additions(r, keep)
            last = first is None or k == rounds
            history.append(
                {
                    "round": k,
                    "batch": r["batch"],
                    "keep": len(keep),
                    "first_failing": first,
                    "first_failing_why": r["first_failing_why"],
                    "failing_layers": sum(not l["passed"] for l in r["layers"]),
                    "metric": batch_metric(model, self.sig, self.feed),
                    "metric_tf": self.tf_metric,
                    "added": [] if last else new,
                }
            )
            self.log(_round_text(history[-1], None if last else new))
            if last or not new:
                break
            keep = keep + new
            model = self.rebuild(keep)
        return r, keep, history

    def prune(self, r: dict, keep: list, history: list) -> tuple[dict, list, list]:
        """Minimal-ish: a round's additions that the later ones made unnecessary go (the walk
        up keeps the in-between ops of every failing chain; often only the top one matters).
        Newest groups first, never the one that made it converge; one rebuild and diagnosis
        per group. Then, for a list of at most SINGLE_PRUNE names, each name alone, newest
        first (the converging group often carries ops only its neighbour needed). Returns the
        diagnosis, the keep list and the names dropped."""
        pruned = []
        groups = [h["added"] for h in history[:-1] if h["added"]][:-1]
        for g in reversed(groups):
            trial = [n for n in keep if n not in g]
            rt = self.diagnose(self.rebuild(trial))
            ok = rt["first_failing"] is None
            self.log(
                f"prune: without {len(g)} op(s) of {len(keep)} ({', '.join(g[:3])}{', ...' if len(g) > 3 else ''}): "
                f"{'nothing fails, dropped' if ok else 'fails (' + str(rt['first_failing']) + '), kept'}"
            )
            if ok:
                keep, r = trial, rt
                pruned += g
        if 1 < len(keep) <= SINGLE_PRUNE:
            dropped = []
            for name in reversed(list(keep)):
                trial = [n for n in keep if n != name]
                rt = self.diagnose(self.rebuild(trial))
                if rt["first_failing"] is None:
                    keep, r = trial, rt
                    dropped.append(name)
            self.log(f"prune one by one: {len(dropped)} of {len(keep) + len(dropped)} dropped ({', '.join(dropped)})")
            pruned += dropped
        if pruned:
            metric = batch_metric(self.rebuild(keep), self.sig, self.feed)
            if metric:
                self.log(f"after pruning: keep {len(keep)} ops; {_metric_text(metric, self.tf_metric)}")
        return r, keep, pruned


def diagnose_set(graph_def, sig, onnx_path, feeds: dict, fp32_onnx=None, **judge) -> dict:
    """One diagnosis over several batches ({stem: feed}): the first that fails, else the last."""
    m = load_model(onnx_path)
    fp32 = fp32_model(graph_def, sig, opset_of(m)) if fp32_onnx is None else load_model(fp32_onnx)
    for stem, feed in feeds.items():
        r = diagnose(graph_def, sig, m, feed, fp32_onnx=fp32, **judge)
        r["batch"], r["batches_checked"] = stem, len(feeds)
        if r["first_failing"] is not None:
            break
    return r


def _round_text(row: dict, adding: list | None) -> str:
    """One round's log line; ``adding``: the names the next round keeps (None: no next round)."""
    first = row["first_failing"]
    msg = (
        f"round {row['round']}: keep {row['keep']} ops; first failing layer: {first or 'none'}"
        + (f" (batch {row['batch']})" if first else "")
        + (f" ({row['first_failing_why']})" if first else "")
        + f"; {row['failing_layers']} failing layers"
    )
    if row["metric"]:
        msg += f"; {_metric_text(row['metric'], row['metric_tf'])}"
    if adding is not None:
        msg += f"; adding {', '.join(adding) if adding else 'nothing'}"
    return msg


def iterate(
    graph_def,
    sig,
    onnx_path,
    feeds: dict,
    rounds: int,
    precision_mode: str,
    keep=(),
    cosine_min: float = metrics.COSINE_MIN,
    red_max: float = metrics.RED_MAX,
    fp32_onnx=None,
    match_red: float = 1e-4,
    opset: int | None = None,
    prune: bool = True,
    log=print,
) -> dict:
    """Diagnose, keep, rebuild, diagnose every batch again, up to ``rounds`` rebuilds.
    ``feeds``: {stem: feed}, the batches that must all pass (the failing ones first).

    Each round keeps the doctor's new names (error sources, range casualties) and, for each
    failing root (or first failing layer) that is already kept fp32, the nearest producers
    of its float inputs. The model is rebuilt from the fp32 conversion of ``graph_def``
    with ``to_precision`` (what convert/to_onnx.py --keep_dtype does). ``keep``: names the
    examined model already kept. Returns the final diagnosis with ``rounds`` (one entry
    per diagnosis), ``converged`` and ``keep_dtype`` = the accumulated list. ``prune``: once
    converged, drop each earlier round's additions that are no longer needed (one rebuild
    and diagnosis per round; listed in ``pruned``)."""
    m = load_model(onnx_path)
    fp32 = fp32_model(graph_def, sig, opset_of(m) if opset is None else opset)  # what the converter starts from
    check = fp32 if fp32_onnx is None else load_model(fp32_onnx)
    judge = dict(cosine_min=cosine_min, red_max=red_max, match_red=match_red)
    search = Search(graph_def, sig, feeds, fp32, check, precision_mode, judge, log)
    r, keep, history = search.run(m, rounds, list(keep))
    pruned = []
    if r["first_failing"] is None and prune:
        r, keep, pruned = search.prune(r, keep, history)
    r.update(
        rounds=history,
        converged=r["first_failing"] is None,
        keep_dtype=keep,
        precision_mode=precision_mode,
        iterate=rounds,
        pruned=pruned,
    )
    return r
