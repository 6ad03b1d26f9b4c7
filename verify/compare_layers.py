"""The precision doctor: layer-by-layer frozen graph (fp32) vs portable model (e.g. fp16).

For one batch, every float op output of the TF graph and every node output of the
ONNX model are fetched and matched by tensor name (tf2onnx keeps TF tensor names for
most nodes). Each matched layer gets the loss_check metrics, in graph order; the first
below msit's thresholds (cosine 0.99, RED 0.05) is named. The --keep_dtype file it
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
from common.errors import UserError, cli, run
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
    fetch = [t for op in g.get_operations() if op.type not in SKIP_OPS for t in op.outputs
             if t.dtype.base_dtype in (tf.float32, tf.float16, tf.float64)]
    fetch += [g.get_tensor_by_name(t.tensor) for t in sig.outputs]
    with tf.Session(graph=g) as s:
        vals = s.run(fetch, {t.tensor: feed[t.name] for t in sig.inputs})
    nodes = {n.name: n for n in graph_def.node}
    return {t.name: v for t, v in zip(fetch, vals)}, nodes


def onnx_layers(onnx_path, sig, feed):
    """{tensor name: array} for every node output of the ONNX model (in node order)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(onnx_path)
    inferred = onnx.shape_inference.infer_shapes(m)
    types = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    have = {o.name for o in m.graph.output}
    order = []
    for n in m.graph.node:
        for o in n.output:
            if o and o in types:
                order.append((o, n.op_type))
                if o not in have:
                    m.graph.output.append(types[o])
                    have.add(o)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every node
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    vals = sess.run(names, {i.name: feed[t.name] for i, t in zip(sess.get_inputs(), sig.inputs)})
    got = dict(zip(names, vals))
    return [(name, op, got[name]) for name, op in order if name in got]


def diagnose(graph_def, sig, onnx_path, feed, cosine_min=metrics.COSINE_MIN, red_max=metrics.RED_MAX):
    """Per-layer report, first failing layer, and the TF op names to keep at fp32."""
    tf_vals, nodes = tf_layers(graph_def, sig, feed)
    layers, seen = [], set()
    for name, op_type, val in onnx_layers(onnx_path, sig, feed):
        # names the converters give renamed outputs: ours (z:0__inner), float16's (op_output_cast_0)
        tname = re.sub(r"_output_cast_(\d+)$", r":\1", name.replace("__inner", ""))
        if tname not in tf_vals or tname in seen or np.shape(val) != np.shape(tf_vals[tname]):
            continue
        seen.add(tname)
        r = metrics.compare(val, tf_vals[tname])
        ok, why = metrics.judge(r, cosine_min=cosine_min, red_max=red_max)
        layers.append(dict(tensor=tname, op=tname.split(":")[0], onnx_op=op_type, passed=ok, why=why,
                           **{k: r[k] for k in ("cosine", "red", "max_abs", "max_rel", "rmse", "nan", "inf")}))
    status = {l["tensor"]: l["passed"] for l in layers}
    keep = []
    for l in layers:
        if l["passed"]:
            continue
        ins = [_tensor_name(i) for i in nodes[l["op"]].input if not i.startswith("^")]
        if all(status.get(i, True) for i in ins) and l["op"] not in keep:
            keep.append(l["op"])
    by_op = {}
    for t in tf_vals:
        by_op.setdefault(t.split(":")[0], []).append(t)
    peak = {t: float(np.nanmax(np.abs(v.astype(np.float64)))) if np.size(v) else 0.0
            for t, v in tf_vals.items()}
    for name, n in nodes.items():  # graph_def order
        if n.op in SKIP_OPS or name in keep or name not in by_op:
            continue
        ts = by_op[name] + [_tensor_name(i) for i in n.input if not i.startswith("^")]
        if any(peak.get(t, 0.0) > FP16_MAX for t in ts):
            keep.append(name)
    first = next((l for l in layers if not l["passed"]), None)
    return {"tf_tensors": len(tf_vals), "matched": len(layers), "layers": layers,
            "first_failing": first and first["op"], "first_failing_why": first and first["why"],
            "keep_dtype": keep, "thresholds": {"cosine_min": cosine_min, "red_max": red_max}}


def load_batch(sig, inputs, stem=None):
    """One batch from msame-style input folders (signature order): file ``stem`` or the first."""
    if len(inputs) != len(sig.inputs):
        raise UserError(f"--input: {len(inputs)} folder(s) given, the model has {len(sig.inputs)} inputs "
                        f"{[t.name for t in sig.inputs]}")
    if stem is None:
        files = sorted(f for f in os.listdir(inputs[0]) if f.endswith(".bin")) if os.path.isdir(inputs[0]) else []
        if not files:
            raise UserError(f"{inputs[0]}: no .bin input files")
        stem = files[0][:-4]
    return {t.name: binfiles.read_bin(os.path.join(d, stem + ".bin"), t) for d, t in zip(inputs, sig.inputs)}


def build_parser():
    p = argparse.ArgumentParser(
        description="Precision doctor: compare every layer of the frozen graph with the portable "
                    "(fp16) model on one batch; name the first failing layer; write a keep_dtype cfg.",
        epilog="example: python verify/compare_layers.py --pb m/realnvp.pb --onnx m/realnvp.fp16.onnx "
               "--input bins/x,bins/u --keep-dtype-out keep.cfg --report doctor.json\n"
               "then: python convert/to_onnx.py --model m/realnvp.pb --output m/realnvp.fp16.onnx "
               "--precision_mode force_fp16 --keep_dtype keep.cfg --force",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pb", required=True, help="frozen graph .pb (signature beside it)")
    p.add_argument("--onnx", required=True, help="portable model to examine")
    p.add_argument("--input", required=True, help="input folders, comma separated, signature order")
    p.add_argument("--batch-file", help="input file stem to use (default: the first file)")
    p.add_argument("--keep-dtype-out", required=True, help="keep_dtype cfg to write")
    p.add_argument("--report", help="JSON report to write")
    p.add_argument("--cosine-min", type=float, default=metrics.COSINE_MIN)
    p.add_argument("--red-max", type=float, default=metrics.RED_MAX)
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    return p


@cli
def main(argv=None):
    from convert.to_onnx import load_graph_def

    a = build_parser().parse_args(argv)
    for p in (a.keep_dtype_out, a.report):
        if p and os.path.exists(p) and not a.force:
            raise UserError(f"{p}: already exists (pass --force)")
    if not os.path.isfile(a.onnx):
        raise UserError(f"{a.onnx}: ONNX model not found")
    sig = find_beside(a.pb)
    feed = load_batch(sig, [s.strip() for s in a.input.split(",")], a.batch_file)
    r = diagnose(load_graph_def(a.pb), sig, a.onnx, feed, a.cosine_min, a.red_max)
    print(f"{'layer':<40}{'onnx op':<14}{'cosine':>12}{'RED':>10}{'max_abs':>11}  result")
    for l in r["layers"]:
        print(f"{l['op'][:39]:<40}{l['onnx_op']:<14}{l['cosine']:>12.6f}{l['red']:>10.3g}"
              f"{l['max_abs']:>11.3g}  {'ok' if l['passed'] else 'FAILED ' + l['why']}")
    print(f"matched {r['matched']} layers of {r['tf_tensors']} TF float tensors")
    if r["first_failing"]:
        print(f"first failing layer: {r['first_failing']} ({r['first_failing_why']})")
    else:
        print("every matched layer within thresholds")
    fsio.write_text(a.keep_dtype_out, "".join(n + "\n" for n in r["keep_dtype"]))
    print(f"keep_dtype ({len(r['keep_dtype'])} ops): {a.keep_dtype_out}")
    if a.report:
        fsio.write_json(a.report, r)
    return 0


if __name__ == "__main__":
    run(main)
