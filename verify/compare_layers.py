"""The precision doctor: layer-by-layer frozen graph (fp32) vs portable model (e.g. fp16).

For one batch, every float op output of the TF graph and every node output of the
ONNX models are fetched. TF and ONNX tensors are matched by name (tf2onnx keeps TF names
for most nodes), and every match is validated on the fp32 ONNX model first: its tensor
must equal TF's (RED <= 1e-4), else the name is a false match (tf2onnx names the Sqrt of
its Sqrt + Reciprocal decomposition of Rsqrt "Rsqrt"; an NCHW Conv output can have the
NHWC shape) and is dropped, and counted. The examined (fp16) model is a converted copy of
the same graph, so its nodes carry the fp32 model's node names: it is compared on the
validated (node, output) pairs only. Each layer gets the loss_check metrics, in graph
order; NaN/Inf where TF is finite fails a layer first, then msit's thresholds (cosine
0.99, RED 0.05); the first failing layer is named. The --keep_dtype file it
writes (TF op names, ATC's format, accepted by convert/to_onnx.py) holds
  - error sources: failing layers whose matched inputs all pass, and
  - range casualties: ops reading or writing values beyond fp16's 65504 in fp32, which
    no fp16 node can carry (keeping only the source would re-overflow at the next cast).
"""

import argparse
import os
import re

import numpy as np

from common import fsio
from common.cli import ArgumentParser, add_force, add_input, add_verbosity
from common.errors import UserError, cli, run
from common.loaders import load_graph_def, ort_session
from data_tools import binfiles
from freeze.signature import find_beside
from verify import metrics

FP16_MAX = 65504.0
SKIP_OPS = {"Const", "Placeholder", "NoOp", "Identity"}


def _tensor_name(inp):
    return inp if ":" in inp else inp + ":0"


def tf_layers(graph_def, sig, feed):
    """{tensor name: array} for every float output of every computing op, and the node map."""
    from common.tfcompat import tf

    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    # an op's first output, and any other output a node reads (FusedBatchNorm's saved
    # statistics are not computed in inference: Grappler rewrites it to Mul + Add)
    read = {i.name for op in g.get_operations() for i in op.inputs}
    fetch = [
        t
        for op in g.get_operations()
        if op.type not in SKIP_OPS
        for t in op.outputs
        if t.dtype.base_dtype in (tf.float32, tf.float16, tf.float64) and (t.value_index == 0 or t.name in read)
    ]
    fetch += [g.get_tensor_by_name(t.tensor) for t in sig.outputs]
    with tf.Session(graph=g) as s:
        vals = s.run(fetch, {t.tensor: feed[t.name] for t in sig.inputs})
    nodes = {n.name: n for n in graph_def.node}
    return {t.name: v for t, v in zip(fetch, vals)}, nodes


def onnx_layers(model, sig, feed):
    """[(node name, output index, op type, array)] for every float node output, in node order.

    ``model``: a path or ModelProto. Keyed by node, not tensor, name: the fp16 converter
    renames the outputs of the nodes it keeps fp32 but never renames a node."""
    import onnx

    m = onnx.load(model) if isinstance(model, str) else onnx.ModelProto.FromString(model.SerializeToString())
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    have = {o.name for o in m.graph.output}
    order = []
    for n in m.graph.node:
        for k, o in enumerate(n.output):
            if o and o in types:
                order.append((n.name, k, n.op_type, o))
                if o not in have:
                    m.graph.output.append(types[o])
                    have.add(o)
    sess = ort_session(m, optimize=False)  # keep every node observable
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(names, {i.name: feed[t.name] for i, t in zip(sess.get_inputs(), sig.inputs)})
    got = dict(zip(names, vals))
    return [(node, k, op, got[o]) for node, k, op, o in order if o in got and np.asarray(got[o]).dtype.kind == "f"]


def _tf_name(onnx_tensor):
    """TF tensor name an ONNX tensor stands for: ours (z:0__inner), the fp16 converter's
    (op_output_cast_0)."""
    return re.sub(r"_output_cast_(\d+)$", r":\1", onnx_tensor.replace("__inner", ""))


LAYOUTS = {4: [None, (0, 2, 3, 1)], 5: [None, (0, 2, 3, 4, 1)]}  # as is; NCHW -> NHWC


def _same(a, b, red):
    """The fp32 ONNX tensor ``a`` is the TF tensor ``b``: same shape, same non-finite
    positions, relative Euclidean distance <= red (an all-zero ``b`` needs ``a`` ~ 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    fa, fb = np.isfinite(a), np.isfinite(b)
    if not np.array_equal(fa, fb) or not np.array_equal(a[~fa], b[~fb]):
        return False
    d = a[fa] - b[fb]
    return bool(np.sqrt(np.sum(d * d)) <= red * max(np.sqrt(np.sum(b[fb] ** 2)), 1e-6))


def fp32_model(graph_def, sig, opset=13):
    """The fp32 ONNX model of the frozen graph, as convert/to_onnx.py builds it."""
    from convert.to_onnx import tf_to_onnx

    return tf_to_onnx(graph_def, sig, opset)


def match_layers(tf_vals, sig, fp32, feed, match_red=1e-4):
    """Validate TF <-> ONNX matches on the fp32 model: {TF tensor: (ONNX node, output index,
    ONNX op, permutation to TF's layout or None)} in fp32 graph order, and the TF tensors
    whose named ONNX tensor had a different value (some then matched through a helper).

    A name match counts only if the fp32 tensor equals the TF tensor (``_same``): tf2onnx
    gives a TF name to the first node of a decomposition (Rsqrt -> Sqrt + Reciprocal, the
    Sqrt named Rsqrt) or to a tensor in another layout (NCHW Conv output). A TF op whose
    named node fails may be matched by one of the helper nodes tf2onnx names after it
    (``<op>__<n>``), if that one's value equals it."""
    by_op = {}
    for t in tf_vals:
        by_op.setdefault(t.split(":")[0], []).append(t)
    outs = {(n.name, j): o for n in fp32.graph.node for j, o in enumerate(n.output)}
    ok, named, false = {}, set(), set()
    for node, k, op, val in onnx_layers(fp32, sig, feed):
        cands = []
        direct = _tf_name(outs[(node, k)])
        if direct in tf_vals:
            cands.append(direct)
            named.add(direct)
        base = node.split("__")[0]
        cands += [t for t in by_op.get(base, ()) if t not in cands]
        for t in cands:
            if t in ok:
                continue
            perm = next(
                (
                    p
                    for p in LAYOUTS.get(np.ndim(val), [None])
                    if _same(val if p is None else np.transpose(val, p), tf_vals[t], match_red)
                ),
                False,
            )
            if perm is not False:
                ok[t] = (node, k, op, perm)
                break
            if t == direct:
                false.add(t)  # the node carrying this TF name computes something else
    return ok, sorted(false)


def _digest16(v):
    """A float weight as the fp16 converter stores it (clamped, IEEE fp16), hashed."""
    import hashlib

    v = np.asarray(v, np.float64)
    tiny = (np.abs(v) < 5.96e-8) & (v != 0)
    v = np.where(tiny, np.sign(v) * 5.96e-8, np.clip(v, -65504, 65504)).astype(np.float16)
    return v.shape, hashlib.sha1(np.ascontiguousarray(v).tobytes()).hexdigest()


def fp32_twin(model, fp32):
    """``model`` (an fp16 conversion) computed in fp32: its own nodes and names, every fp16
    Cast made fp32, every fp16 weight replaced by the exact fp32 weight of ``fp32`` that it
    was rounded from (found by value: tf2onnx's names and even its graph rewrites differ
    from one conversion to the next, so the separately built fp32 model cannot be matched
    node by node)."""
    import onnx
    from onnx import TensorProto, numpy_helper

    exact = {}
    for t in fp32.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            v = numpy_helper.to_array(t)
            exact.setdefault(_digest16(v), v)
    m = onnx.ModelProto.FromString(model.SerializeToString())
    g = m.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT16:
            v = numpy_helper.to_array(t)
            t.CopyFrom(numpy_helper.from_array(exact.get(_digest16(v), v.astype(np.float32)), t.name))
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Cast" and a.name == "to" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT16:
                v = numpy_helper.to_array(a.t)
                a.t.CopyFrom(numpy_helper.from_array(exact.get(_digest16(v), v.astype(np.float32)), a.t.name))
    for v in list(g.value_info) + list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT16:
            v.type.tensor_type.elem_type = TensorProto.FLOAT
    return m


def _keep_resolves(fp32, names):
    """The keep names convert/to_onnx.py will find nodes for (and those it will not)."""
    from convert.to_onnx import fp16_block_lists

    good, bad = [], []
    for n in names:
        (good if fp16_block_lists(fp32, "force_fp16", [n])[1] else bad).append(n)
    return good, bad


def diagnose(
    graph_def,
    sig,
    onnx_path,
    feed,
    cosine_min=metrics.COSINE_MIN,
    red_max=metrics.RED_MAX,
    fp32_onnx=None,
    match_red=1e-4,
):
    """Per-layer report, first failing layer, and the TF op names to keep at fp32.

    ``onnx_path``: the examined model, a path or ModelProto. ``fp32_onnx``: the fp32 ONNX
    model (path or ModelProto) the examined one was converted from; built from ``graph_def``
    when None. Names are validated on it first."""
    import onnx

    m16 = onnx.load(onnx_path) if isinstance(onnx_path, str) else onnx_path
    if fp32_onnx is None:
        opset = next((o.version for o in m16.opset_import if o.domain in ("", "ai.onnx")), 13)
        fp32 = fp32_model(graph_def, sig, opset)
    else:
        fp32 = onnx.load(fp32_onnx) if isinstance(fp32_onnx, str) else fp32_onnx
    tf_vals, nodes = tf_layers(graph_def, sig, feed)
    twin = fp32_twin(m16, fp32)
    valid, dropped = match_layers(tf_vals, sig, twin, feed, match_red)
    got16 = {(node, k): (op, val) for node, k, op, val in onnx_layers(m16, sig, feed)}
    layers, absent = [], 0
    for tname, (node, k, _, perm) in valid.items():
        if (node, k) not in got16:
            absent += 1
            continue
        op_type, val = got16[(node, k)]
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
        layers.append(
            dict(
                tensor=tname,
                op=tname.split(":")[0],
                onnx_node=node,
                onnx_op=op_type,
                passed=ok,
                why=why,
                **{k: r[k] for k in ("cosine", "red", "max_abs", "max_rel", "rmse", "nan", "inf")},
            )
        )
    status = {l["tensor"]: l["passed"] for l in layers}
    tainted = {}

    def bad(t):
        """A failing tensor, or an unmatched one downstream of a failing one."""
        if t in status:
            return not status[t]
        if t not in tainted:
            tainted[t] = False  # cycle guard
            n = nodes.get(t.split(":")[0])
            tainted[t] = bool(n) and any(bad(_tensor_name(i)) for i in n.input if not i.startswith("^"))
        return tainted[t]

    keep = []
    for l in layers:  # error sources: failing layers fed by healthy ones
        if l["passed"]:
            continue
        ins = [_tensor_name(i) for i in nodes[l["op"]].input if not i.startswith("^")]
        if not any(bad(i) for i in ins) and l["op"] not in keep:
            keep.append(l["op"])
    by_op = {}
    for t in tf_vals:
        by_op.setdefault(t.split(":")[0], []).append(t)
    peak = {
        t: float(np.nanmax(np.abs(v.astype(np.float64)))) if np.size(v) and np.isfinite(v).any() else 0.0
        for t, v in tf_vals.items()
    }
    for name, n in nodes.items():  # graph_def order
        if n.op in SKIP_OPS or name in keep or name not in by_op:
            continue
        ts = by_op[name] + [_tensor_name(i) for i in n.input if not i.startswith("^")]
        if any(peak.get(t, 0.0) > FP16_MAX for t in ts):
            keep.append(name)
    keep, unresolved = _keep_resolves(fp32, keep)
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
        "keep_dtype": keep,
        "keep_dtype_unresolved": unresolved,
        "thresholds": {"cosine_min": cosine_min, "red_max": red_max},
    }


def _float_tensors(graph_def):
    """Names of the float tensors of the graph (without running it)."""
    from common.tfcompat import tf

    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    return {
        t.name
        for op in g.get_operations()
        for t in op.outputs
        if t.dtype.base_dtype in (tf.float32, tf.float16, tf.float64)
    }


def upstream(nodes, floats, op, kept, resolves):
    """The nearest producers of ``op``'s float inputs that are not kept yet: walks up
    through kept ops, Identity and ops the converter finds no node for; stops at
    Const / Placeholder. Graph order of discovery, no duplicates."""
    out, seen, stack = [], {op}, [op]
    while stack:
        n = nodes.get(stack.pop(0))
        if n is None:
            continue
        for i in n.input:
            if i.startswith("^") or _tensor_name(i) not in floats:
                continue
            name = _tensor_name(i).split(":")[0]
            src = nodes.get(name)
            if name in seen or src is None or src.op in ("Const", "Placeholder", "NoOp"):
                continue
            seen.add(name)
            if name in kept or src.op in SKIP_OPS or not resolves(name):
                stack.append(name)  # already fp32 (or no node of its own): its inputs are next
            elif name not in out:
                out.append(name)
    return out


def _batch_metric(model, sig, feed):
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
        from convert.to_onnx import run_onnx

        vals = run_onnx(ort_session(model), sig, feed)
    name = spec.metrics[0].name
    per = spec.image_metrics({t.name: v for t, v in zip(sig.outputs, vals)})
    if name not in per:
        return None
    v = np.asarray(per[name], np.float64).reshape(-1)
    fin = np.isfinite(v)
    return {"name": name, "mean": float(v[fin].mean()) if fin.any() else float("nan"), "nonfinite": int((~fin).sum())}


def iterate(
    graph_def,
    sig,
    onnx_path,
    feed,
    rounds,
    precision_mode,
    keep=(),
    cosine_min=metrics.COSINE_MIN,
    red_max=metrics.RED_MAX,
    fp32_onnx=None,
    match_red=1e-4,
    opset=None,
    prune=True,
    log=print,
):
    """Diagnose, keep, rebuild, diagnose the same batch again, up to ``rounds`` rebuilds.

    Each round keeps the doctor's new names (error sources, range casualties) and, for each
    failing root (or first failing layer) that is already kept fp32, the nearest producers
    of its float inputs. The model is rebuilt from the fp32 conversion of ``graph_def``
    with ``to_precision`` (what convert/to_onnx.py --keep_dtype does). ``keep``: names the
    examined model already kept. Returns the final diagnosis with ``rounds`` (one entry
    per diagnosis), ``converged`` and ``keep_dtype`` = the accumulated list. ``prune``: once
    converged, drop each earlier round's additions that are no longer needed (one rebuild
    and diagnosis per round; listed in ``pruned``)."""
    import onnx

    from convert.to_onnx import fp16_block_lists, to_precision
    from freeze.core import run_graph_def

    m = onnx.load(onnx_path) if isinstance(onnx_path, str) else onnx_path
    if opset is None:
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 13)
    fp32 = fp32_model(graph_def, sig, opset)  # what the converter starts from
    check = fp32_onnx if fp32_onnx is not None else fp32
    if isinstance(check, str):
        check = onnx.load(check)
    nodes = {n.name: n for n in graph_def.node}
    floats = _float_tensors(graph_def)
    resolvable = {}

    def resolves(name):
        if name not in resolvable:
            resolvable[name] = bool(fp16_block_lists(fp32, precision_mode, [name])[1])
        return resolvable[name]

    tf_metric = _batch_metric(run_graph_def(graph_def, sig, feed), sig, feed)
    keep, history, model = list(keep), [], m
    for k in range(rounds + 1):
        r = diagnose(graph_def, sig, model, feed, cosine_min, red_max, check, match_red)
        metric = _batch_metric(model, sig, feed)
        first = r["first_failing"]
        new = [n for n in r["keep_dtype"] if n not in keep]
        roots = [n for n in r["keep_dtype"] if n in keep]
        if first and (first in keep or not resolves(first)) and first not in roots:
            roots.insert(0, first)  # kept, or no node of its own to keep (tf2onnx merged it)
        for op in roots:  # kept fp32 and failing all the same: its inputs are the problem
            new += [p for p in upstream(nodes, floats, op, set(keep) | set(new), resolves) if p not in new]
        row = {
            "round": k,
            "keep": len(keep),
            "first_failing": first,
            "first_failing_why": r["first_failing_why"],
            "failing_layers": sum(not l["passed"] for l in r["layers"]),
            "metric": metric,
            "metric_tf": tf_metric,
            "added": [] if first is None or k == rounds else new,
        }
        history.append(row)
        msg = (
            f"round {k}: keep {len(keep)} ops; first failing layer: {first or 'none'}"
            + (f" ({r['first_failing_why']})" if first else "")
            + f"; {row['failing_layers']} failing layers"
        )
        if metric:
            msg += (
                f"; batch mean {metric['name']} {metric['mean']:.4f} ({metric['nonfinite']} non-finite) "
                f"vs TF {tf_metric['mean']:.4f}"
            )
        if first and k < rounds:
            msg += f"; adding {', '.join(new) if new else 'nothing'}"
        log(msg)
        if first is None or k == rounds or not new:
            break
        keep += new
        model, _ = to_precision(fp32, precision_mode, keep)
    pruned = []
    if r["first_failing"] is None and prune:
        # minimal-ish: a round's additions that the later ones made unnecessary go (the
        # walk up keeps the in-between ops of every failing chain; often only the top one
        # matters). Newest groups first, never the one that made it converge.
        groups = [h["added"] for h in history[:-1] if h["added"]][:-1]
        for g in reversed(groups):
            trial = [n for n in keep if n not in g]
            rt = diagnose(
                graph_def,
                sig,
                to_precision(fp32, precision_mode, trial)[0],
                feed,
                cosine_min,
                red_max,
                check,
                match_red,
            )
            ok = rt["first_failing"] is None
            log(
                f"prune: without {len(g)} op(s) of {len(keep)} ({', '.join(g[:3])}{', ...' if len(g) > 3 else ''}): "
                f"{'nothing fails, dropped' if ok else 'fails (' + str(rt['first_failing']) + '), kept'}"
            )
            if ok:
                keep, r = trial, rt
                pruned += g
        if pruned:
            model = to_precision(fp32, precision_mode, keep)[0]
            metric = _batch_metric(model, sig, feed)
            if metric:
                log(
                    f"after pruning: keep {len(keep)} ops; batch mean {metric['name']} {metric['mean']:.4f} "
                    f"({metric['nonfinite']} non-finite) vs TF {tf_metric['mean']:.4f}"
                )
    r.update(
        rounds=history,
        converged=r["first_failing"] is None,
        keep_dtype=keep,
        precision_mode=precision_mode,
        iterate=rounds,
        pruned=pruned,
    )
    return r


def load_batch(sig, inputs, stem=None):
    """One batch from msame-style input folders (signature order): file ``stem`` or the first."""
    if len(inputs) != len(sig.inputs):
        raise UserError(
            f"--input: {len(inputs)} folder(s) given, the model has {len(sig.inputs)} inputs "
            f"{[t.name for t in sig.inputs]}"
        )
    if stem is None:
        files = sorted(f for f in os.listdir(inputs[0]) if f.endswith(".bin")) if os.path.isdir(inputs[0]) else []
        if not files:
            raise UserError(f"{inputs[0]}: no .bin input files")
        stem = files[0][:-4]
    return {t.name: binfiles.read_bin(os.path.join(d, stem + ".bin"), t) for d, t in zip(inputs, sig.inputs)}


def build_parser():
    p = ArgumentParser(
        description="Precision doctor: compare every layer of the frozen graph with the portable "
        "(fp16) model on one batch; name the first failing layer; write a keep_dtype cfg.",
        epilog="example: python verify/compare_layers.py --pb m/realnvp.pb --onnx m/realnvp.fp16.onnx "
        "--input bins/x,bins/u --keep-dtype-out keep.cfg --report doctor.json\n"
        "then: python convert/to_onnx.py --model m/realnvp.pb --output m/realnvp.fp16.onnx "
        "--precision_mode force_fp16 --keep_dtype keep.cfg --force",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pb", required=True, help="frozen graph .pb (signature beside it)")
    p.add_argument("--onnx", required=True, help="portable model to examine")
    add_input(p, required=True, help="input folders, comma separated, signature order")
    p.add_argument(
        "--fp32-onnx",
        help="the fp32 ONNX model the examined one was converted from "
        "(default: converted from --pb in memory); TF<->ONNX name matches are validated on it",
    )
    p.add_argument(
        "--match-red",
        type=float,
        default=1e-4,
        help="a name match counts if the fp32 ONNX tensor is within this RED of TF's (1e-4)",
    )
    p.add_argument("--batch-file", help="input file stem to use (default: the first file)")
    p.add_argument("--keep-dtype-out", required=True, help="keep_dtype cfg to write")
    p.add_argument("--report", help="JSON report to write")
    p.add_argument("--cosine-min", type=float, default=metrics.COSINE_MIN)
    p.add_argument("--red-max", type=float, default=metrics.RED_MAX)
    p.add_argument(
        "--iterate",
        type=int,
        default=0,
        metavar="N",
        help="up to N rounds of: keep the failing roots (or, when a root is already kept "
        "fp32, the producers of its float inputs), rebuild the model in memory with "
        "its precision mode (from its signature), diagnose the same batch again; "
        "stops when nothing fails (default 0: one diagnosis)",
    )
    add_force(p)
    add_verbosity(p)
    return p


@cli
def main(argv=None):

    a = build_parser().parse_args(argv)
    for flag, v, hi in (
        ("--cosine-min", a.cosine_min, 1.0),
        ("--red-max", a.red_max, None),
        ("--match-red", a.match_red, None),
    ):
        if not (np.isfinite(v) and v >= 0 and (hi is None or v <= hi)):
            raise UserError(f"{flag} must be a finite number >= 0{' and <= 1' if hi else ''}, got {v}")
    fsio.refuse_overwrite([p for p in (a.keep_dtype_out, a.report) if p], a.force)
    if not os.path.isfile(a.onnx):
        raise UserError(f"{a.onnx}: ONNX model not found")
    sig = find_beside(a.pb)
    feed = load_batch(sig, [s.strip() for s in a.input.split(",")], a.batch_file)
    if a.fp32_onnx and not os.path.isfile(a.fp32_onnx):
        raise UserError(f"{a.fp32_onnx}: fp32 ONNX model not found")
    if a.iterate < 0:
        raise UserError(f"--iterate must be >= 0, got {a.iterate}")
    if a.iterate:
        from convert.to_onnx import read_keep_dtype
        from freeze.signature import FP16_MODES

        sig16 = find_beside(a.onnx)
        mode = sig16.precision_mode
        if mode not in FP16_MODES:
            raise UserError(
                f"{a.onnx}: its signature {sig16.path} gives precision mode {mode}, "
                f"not an fp16 mode: nothing to iterate on"
            )
        kd = (sig16.artifact or {}).get("keep_dtype") or {}
        prior, types = read_keep_dtype(kd["file"]) if kd.get("file") and os.path.isfile(kd["file"]) else ([], [])
        if types:
            raise UserError(f"{a.onnx}: built with OpType:: keep_dtype entries; --iterate rebuilds by op name only")
        print(
            f"iterating on {a.onnx} ({mode}{', kept fp32: ' + str(len(prior)) + ' ops' if prior else ''}), "
            f"up to {a.iterate} rebuilds, batch {a.batch_file or 'first'}"
        )
        r = iterate(
            load_graph_def(a.pb),
            sig,
            a.onnx,
            feed,
            a.iterate,
            mode,
            prior,
            a.cosine_min,
            a.red_max,
            a.fp32_onnx,
            a.match_red,
        )
    else:
        r = diagnose(load_graph_def(a.pb), sig, a.onnx, feed, a.cosine_min, a.red_max, a.fp32_onnx, a.match_red)
    print(f"{'layer':<40}{'onnx op':<14}{'cosine':>12}{'RED':>10}{'max_abs':>11}  result")
    for l in r["layers"]:
        print(
            f"{l['op'][-39:]:<40}{l['onnx_op']:<14}{l['cosine']:>12.6f}{l['red']:>10.3g}"
            f"{l['max_abs']:>11.3g}  {'ok' if l['passed'] else 'FAILED ' + l['why']}"
        )
    print(
        f"matched {r['matched']} layers of {r['tf_tensors']} TF float tensors; "
        f"{r['name_matches_dropped']} name matches dropped (the fp32 ONNX tensor of that name is "
        f"not the TF tensor, RED > {r['match_red']:g}; {r['dropped_then_matched_by_helper']} of them "
        f"then matched through the tf2onnx helper node computing the TF value)"
    )
    if r["first_failing"]:
        print(f"first failing layer: {r['first_failing']} ({r['first_failing_why']})")
    else:
        print("every matched layer within thresholds")
    if r["first_nonfinite"] and r["first_nonfinite"] != r["first_failing"]:
        print(f"first layer with NaN/Inf: {r['first_nonfinite']}")
    if a.iterate:
        n = len(r["rounds"]) - 1
        if r["converged"]:
            print(
                f"converged after {n} rebuild(s): nothing fails on this batch with {len(r['keep_dtype'])} ops kept fp32"
            )
        elif n < a.iterate:
            print(f"stuck after {n} rebuild(s): nothing new to keep, {r['first_failing']} still fails")
        else:
            print(
                f"NOT converged: {a.iterate} rounds were not enough ({r['first_failing']} still fails); "
                f"the keep list so far is written, raise --iterate"
            )
    if r["keep_dtype_unresolved"]:
        print(f"not written (no ONNX node carries these names): {', '.join(r['keep_dtype_unresolved'][:5])}")
    fsio.write_text(a.keep_dtype_out, "".join(n + "\n" for n in r["keep_dtype"]))
    print(f"keep_dtype ({len(r['keep_dtype'])} ops): {a.keep_dtype_out}")
    if a.report:
        fsio.write_json(a.report, r)
    return 0


if __name__ == "__main__":
    run(main)
