"""One diagnosis: every matched layer judged, the first failing one and why, what to keep fp32.

The report dict ``diagnose`` returns is the doctor's JSON report (verify/report.py reads it).
"""

from __future__ import annotations

import numpy as np

from convert.fp16.converter import FP16_MAX
from verify import metrics
from verify.doctor.capture import (
    SKIP_OPS,
    data_inputs,
    fp32_model,
    fp32_twin,
    load_model,
    onnx_layers,
    opset_of,
    tf_layers,
)
from verify.doctor.match import by_op, match_layers

METRICS = ("cosine", "red", "max_abs", "max_rel", "rmse", "nan", "inf")  # a layer's row, from metrics.compare


def judge_layers(valid: dict, got: list, tf_vals: dict, cosine_min: float, red_max: float) -> tuple[list, int]:
    """One row per validated match that the examined model computes (``got``: its
    ``onnx_layers``), in fp32 graph order, and how many matches it lacks (no such node
    output, or another shape)."""
    got = {(node, k): (op, val) for node, k, op, val in got}
    layers, absent = [], 0
    for tname, (node, k, _, perm) in valid.items():
        if (node, k) not in got:
            absent += 1
            continue
        op_type, val = got[(node, k)]
        if perm:
            val = np.transpose(val, perm)
        g = tf_vals[tname]
        if np.shape(val) != np.shape(g):
            absent += 1
            continue
        fin = np.isfinite(g)
        if not fin.all():  # judged where TF is finite: non-finite there is the model's own
            val, g = np.asarray(val)[fin], np.asarray(g)[fin]
        r = metrics.compare(val, g)
        ok, why = metrics.judge(r, cosine_min=cosine_min, red_max=red_max)
        row = dict(tensor=tname, op=tname.split(":")[0], onnx_node=node, onnx_op=op_type, passed=ok, why=why)
        layers.append(dict(row, **{k: r[k] for k in METRICS}))
    return layers, absent


def error_sources(layers: list, nodes: dict) -> list[str]:
    """The failing layers fed by healthy ones (in layer order): where the error starts."""
    status = {l["tensor"]: l["passed"] for l in layers}
    tainted = {}

    def bad(t):
        """A failing tensor, or an unmatched one downstream of a failing one."""
        if t in status:
            return not status[t]
        if t not in tainted:
            tainted[t] = False  # cycle guard
            n = nodes.get(t.split(":")[0])
            tainted[t] = bool(n) and any(bad(i) for i in data_inputs(n))
        return tainted[t]

    keep = []
    for l in layers:
        if not l["passed"] and not any(bad(i) for i in data_inputs(nodes[l["op"]])) and l["op"] not in keep:
            keep.append(l["op"])
    return keep


def range_casualties(tf_vals: dict, nodes: dict, kept: list) -> list[str]:
    """The computing ops not in ``kept`` that read or write values beyond fp16's range in
    fp32 (graph order): no fp16 node can carry them, whatever the error source."""
    ops = by_op(tf_vals)
    peak = {
        t: float(np.nanmax(np.abs(v.astype(np.float64)))) if np.size(v) and np.isfinite(v).any() else 0.0
        for t, v in tf_vals.items()
    }
    out = []
    for name, n in nodes.items():
        if n.op in SKIP_OPS or name in kept or name not in ops:
            continue
        if any(peak.get(t, 0.0) > FP16_MAX for t in ops[name] + data_inputs(n)):
            out.append(name)
    return out


def keep_resolves(fp32, name: str, precision_mode: str = "force_fp16") -> bool:
    """convert/to_onnx.py finds a node of ``fp32`` to keep for the TF op ``name``."""
    from convert.fp16.blocklists import fp16_block_lists

    return bool(fp16_block_lists(fp32, precision_mode, [name])[1])


def diagnose(
    graph_def,
    sig,
    onnx_path,
    feed: dict,
    cosine_min: float = metrics.COSINE_MIN,
    red_max: float = metrics.RED_MAX,
    fp32_onnx=None,
    match_red: float = 1e-4,
) -> dict:
    """Per-layer report, first failing layer, and the TF op names to keep at fp32.

    ``onnx_path``: the examined model, a path or ModelProto. ``fp32_onnx``: the fp32 ONNX
    model (path or ModelProto) the examined one was converted from; built from ``graph_def``
    when None. Names are validated on it first."""
    m16 = load_model(onnx_path)
    fp32 = fp32_model(graph_def, sig, opset_of(m16)) if fp32_onnx is None else load_model(fp32_onnx)
    tf_vals, nodes = tf_layers(graph_def, sig, feed)
    valid, dropped = match_layers(tf_vals, sig, fp32_twin(m16, fp32), feed, match_red)
    layers, absent = judge_layers(valid, onnx_layers(m16, sig, feed), tf_vals, cosine_min, red_max)
    # in the frozen graph's node order, which the .pb fixes: tf2onnx's node order varies from
    # one conversion to the next, and with it which of two parallel failing layers came "first"
    order = {n.name: i for i, n in enumerate(graph_def.node)}
    layers.sort(key=lambda l: order.get(l["op"], len(order)))
    keep = error_sources(layers, nodes)
    keep += range_casualties(tf_vals, nodes, keep)
    found = [n for n in keep if keep_resolves(fp32, n)]
    first = next((l for l in layers if not l["passed"]), None)
    nonfin = next((l for l in layers if l["nan"] or l["inf"]), None)
    return {
        "tf_tensors": len(tf_vals),
        "matched": len(layers),
        "name_matches_dropped": len(dropped),
        "dropped": dropped,
        "dropped_then_matched_by_helper": sum(t in valid for t in dropped),
        "validated_by_helper": sum(
            1 for t, (n, _, _, _) in valid.items() if n.split("__")[0] != n or t.split(":")[0] != n
        ),
        "absent_in_model": absent,
        "match_red": match_red,
        "layers": layers,
        "first_failing": first and first["op"],
        "first_failing_why": first and first["why"],
        "first_nonfinite": nonfin and nonfin["op"],
        "keep_dtype": found,
        "keep_dtype_unresolved": [n for n in keep if n not in found],
        "thresholds": {"cosine_min": cosine_min, "red_max": red_max},
    }
