"""Build a model's inference graph from a checkpoint, run it, freeze it.

One code path serves freeze (graph -> .pb + signature) and the checkpoint runner
backend (verify's golden outputs): ``Restored`` is the checkpoint, live in a session,
with the signature of the graph it would freeze to.
"""

import dataclasses
import os
import subprocess
import sys

import numpy as np

from common.errors import UserError, first_line
from common.tfcompat import session_config, tf
from freeze.signature import Signature, Tensor, path_beside
from models import spec as model_spec
from train import runinfo

RANDOM_OPS = {
    "RandomUniform",
    "RandomUniformInt",
    "RandomStandardNormal",
    "TruncatedNormal",
    "RandomShuffle",
    "Multinomial",
    "RandomGamma",
    "RandomPoisson",
    "RandomPoissonV2",
    "StatelessRandomUniform",
    "StatelessRandomNormal",
    "StatelessRandomUniformV2",
    "StatelessRandomNormalV2",
    "StatelessTruncatedNormal",
    "RandomCrop",
}
VARIABLE_OPS = {
    "Variable",
    "VariableV2",
    "VarHandleOp",
    "ReadVariableOp",
    "Assign",
    "AssignVariableOp",
    "AssignAdd",
    "AssignSub",
}
TRAINING_OPS = {"ApplyAdam", "ResourceApplyAdam", "SaveV2", "RestoreV2", "CheckNumerics"}


def _tensor_meta(io):
    t = io.tensor
    shape = t.shape.as_list()
    if any(d is None for d in shape):
        raise UserError(f"graph tensor {t.name} has a dynamic shape {shape}; the offline model needs static shapes")
    return Tensor(t.op.name, t.name, shape, t.dtype.base_dtype.name, io.layout, io.meaning)


def check_fits(tensors, where):
    """Refuse static shapes whose inputs and outputs alone exceed this machine's memory
    (``tensors``: [(name, shape, numpy dtype)]), before anything is allocated: a batch of
    10^9 would otherwise end in numpy's or TensorFlow's out-of-memory traceback."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    sizes = [(n, s, int(np.prod(s, dtype=np.float64)) * np.dtype(d).itemsize) for n, s, d in tensors]
    total = sum(b for _, _, b in sizes)
    if total > memory:
        n, s, b = max(sizes, key=lambda x: x[2])
        raise UserError(
            f"{where}: the inputs and outputs alone take {_size(total)} ({n} {s}: {_size(b)}), more than this "
            f"machine's {_size(memory)} of memory; choose a smaller batch or shape"
        )


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024


class LiveModel:
    """A model live in a session, what freeze and the checkpoint backend use: ``signature``,
    ``run(feed)``, ``example_feed(rng)``, ``frozen_graph_def()``; ``sess`` closed on exit."""

    def close(self):
        self.sess.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Restored(LiveModel):
    """A checkpoint restored into its inference graph, ready to run.

    ``Restored.from_signature(sig)`` rebuilds the graph a signature describes (the
    checkpoint runner backend: golden outputs from the checkpoint itself)."""

    @classmethod
    def from_signature(cls, sig, device="cpu"):
        if not sig.checkpoint.get("path"):
            raise UserError(f"{sig.path}: signature records no checkpoint path")
        return cls(sig.checkpoint["path"], sig.batch, sig.graph, device=device, **sig.options)

    def __init__(self, ckpt_or_dir, batch, graph="forward", device="cpu", **opts):
        self.ckpt, self.info = runinfo.resolve(ckpt_or_dir)
        self.kind = self.info["model"]
        self.spec = model_spec.get(self.kind)
        self.module = self.spec.graph_module()
        if graph not in self.spec.graphs:
            raise UserError(f"model {self.kind!r} has no graph {graph!r}; graphs are {list(self.spec.graphs)}")
        self.batch, self.graph_name, self.opts = int(batch), graph, opts
        self.graph = tf.Graph()
        with self.graph.as_default():
            inputs, outputs = self.module.inference_graph(self.info["config"], self.batch, graph, **opts)
            self.input_tensors = [io.tensor for io in inputs]
            self.output_tensors = [io.tensor for io in outputs]
            self.signature = Signature(
                self.kind,
                graph,
                self.batch,
                [_tensor_meta(io) for io in inputs],
                [_tensor_meta(io) for io in outputs],
                config=self.info["config"],
                options=opts,
                checkpoint={"path": os.path.abspath(self.ckpt), "step": self.info["checkpoint_step"]},
                precision_mode="force_fp32",
                source={"kind": "builtin"},
            )
            check_fits(
                [(t.name, t.shape, t.np_dtype) for t in self.signature.inputs + self.signature.outputs],
                f"--batch {self.batch}" + "".join(f" --{k} {v}" for k, v in opts.items()),
            )
            saver = tf.train.Saver(tf.global_variables())
            self.sess = tf.Session(graph=self.graph, config=session_config(device))
            try:
                saver.restore(self.sess, self.ckpt)
            except tf.errors.OpError as e:  # missing variables, wrong shapes, corrupt files
                self.sess.close()
                first = first_line(e)
                lost = [
                    ln.strip() for ln in str(e).splitlines() if "checksum" in ln.lower() or "data loss" in ln.lower()
                ]
                if lost or isinstance(e, (tf.errors.DataLossError, tf.errors.OutOfRangeError)):  # not a model mismatch
                    raise UserError(
                        f"{self.ckpt}: checkpoint is corrupt or truncated ({(lost or [first])[0]})"
                    ) from None
                raise UserError(
                    f"{self.ckpt}: checkpoint does not match the model rebuilt from {self.info['_path']} ({first})"
                ) from None

    def run(self, feed):
        """{input name: array} -> list of output arrays in signature order."""
        fd = {t: feed[m.name] for t, m in zip(self.input_tensors, self.signature.inputs)}
        return self.sess.run(self.output_tensors, fd)

    def example_feed(self, rng):
        return self.module.example_feed(self.info["config"], self.batch, self.graph_name, rng, **self.opts)

    def frozen_graph_def(self):
        gd = tf.graph_util.convert_variables_to_constants(
            self.sess, self.graph.as_graph_def(), [m.op for m in self.signature.outputs]
        )
        return tf.graph_util.extract_sub_graph(gd, [m.op for m in self.signature.outputs])


# --- checks on a frozen graph --------------------------------------------------


def graph_op_types(graph_def):
    """The graph's op types, those in its functions included (TF2 If/While bodies)."""
    return {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}


def check_static(graph_def, signature):
    """No variables, no random ops, no training-only ops; every signature tensor present.
    A random op left on the inference path is named with the input that would replace it."""
    ops = graph_op_types(graph_def)
    for what, bad in (("variable", VARIABLE_OPS), ("training-only", TRAINING_OPS)):
        found = sorted(ops & bad)
        if found:
            raise UserError(f"frozen graph still has {what} ops {found}")
    random = [n for n in graph_def.node if n.op in RANDOM_OPS]
    inner = [(f.signature.name, n) for f in graph_def.library.function for n in f.node_def if n.op in RANDOM_OPS]
    if not random and inner:  # in a TF2 If/While body on a real input: no tensor to name a shape by
        f, n = inner[0]
        raise UserError(
            f"random op {n.name!r} ({n.op}) in function {f} (a tf.cond or tf.while_loop body) is on the "
            "inference path: an offline model must be deterministic. Fold the placeholder that switches it "
            "off (--input_defaults, e.g. is_training:false or a dropout rate of 0), or feed the noise as an input"
        )
    if random:
        n = random[0]
        g = tf.Graph()
        with g.as_default():
            tf.import_graph_def(graph_def, name="")
        t = g.get_operation_by_name(n.name).outputs[0]
        more = f" (and {len(random) - 1} more)" if len(random) > 1 else ""
        # dropout still drawing after folding (an unfolded switch placeholder is refused earlier,
        # sources._check_inference_only): built in training mode, nothing to feed or fold
        if "dropout" in n.name.lower():
            raise UserError(
                f"random op {n.name!r} ({n.op}) is on the inference path{more} and no placeholder switches "
                "it off: the graph was built in training mode (dropout with is_training=True as a Python "
                "bool, or Keras training=True). Export the inference graph: build the network again in a "
                "new tf.Graph with is_training=False (Keras: tf.keras.backend.set_learning_phase(0) first), "
                "restore the trained checkpoint into it with tf.train.Saver().restore, save it with "
                "tf.train.Saver().save, and freeze that checkpoint (a rate or keep_prob placeholder "
                "folds with --input_defaults, e.g. drop_rate:0)"
            )
        raise UserError(
            f"random op {n.name!r} ({n.op}) is on the inference path{more}: an offline model must be "
            f"deterministic. Replace it with an input, e.g. tf.placeholder({t.dtype.base_dtype.name}, "
            f"{t.shape.as_list() if t.shape.rank is not None else None}, name={n.name.split('/')[0] + '_noise'!r}) "
            "fed from img2bin's seeded noise, or fold the placeholder that switches it off "
            "(--input_defaults, e.g. is_training:false or a dropout rate of 0)"
        )
    names = {n.name for n in graph_def.node}
    for t in signature.inputs + signature.outputs:
        if t.op not in names:
            raise UserError(f"frozen graph has no node {t.op!r} (tensor {t.name!r})")


def run_graph_def(graph_def, signature, feed):
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.Session(graph=g, config=session_config("cpu")) as s:
        return s.run([t.tensor for t in signature.outputs], {t.tensor: feed[t.name] for t in signature.inputs})


def rel_err(a, b):
    """Largest difference relative to b's largest magnitude (elementwise ratios blow up on
    entries near zero: float32 noise of 1e-6 on a z of 4e-5 is not a freezing error)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-6)) if a.size else 0.0


def max_difference(got, ref, signature):
    """Largest float difference relative to each output's scale (rel_err); integer and bool
    outputs must be equal: their count of differing elements is reported instead."""
    worst, int_diff = 0.0, 0
    for g, r, t in zip(got, ref, signature.outputs):
        if t.np_dtype.kind in "biu":
            int_diff += int(np.sum(np.asarray(g) != np.asarray(r)))
        else:
            worst = max(worst, rel_err(g, r))
    return worst, int_diff


BATCH_NORM_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
MEAN_OPS = ("Mean", "Sum")


def batch_statistics_ops(graph_def):
    """The nodes that compute statistics over the batch axis: batch norm in training mode
    (FusedBatchNorm* with is_training=True) and Mean/Sum reductions over axis 0 (tf.nn.moments,
    an unfused batch norm). ["name (op)", ...]."""
    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    found = []
    for n in graph_def.node:
        if n.op in BATCH_NORM_OPS and n.attr["is_training"].b:
            found.append(f"{n.name} ({n.op}, is_training=True)")
        elif n.op in MEAN_OPS and len(n.input) > 1 and n.input[1].split(":")[0] in consts:
            axes = tf.make_ndarray(consts[n.input[1].split(":")[0]].attr["value"].tensor).reshape(-1)
            if 0 in axes.tolist():
                found.append(f"{n.name} ({n.op} over axes {axes.tolist()})")
    return found


def describe_ops(ops):
    """["a (X, ...)", "b (X, ...)"] -> "2 node(s), first a (X, ...)" (or "none found ...")."""
    if not ops:
        return "none found (look for reductions over the batch axis)"
    return f"{len(ops)} node(s), first {ops[0]}"


def batch_coupling_error(graph_def, worst):
    """One line: how far row 0 moved, the batch-statistics ops that explain it, and the fix."""
    named = f"; batch statistics in the graph: {describe_ops(batch_statistics_ops(graph_def))}"
    return (
        f"frozen graph is batch-coupled: row 0's outputs moved by {worst:.3g} (relative) when its batch-mates "
        f"changed{named}. Batch norm still normalises by the batch's own statistics (built with "
        "is_training=True): rebuild the inference graph with is_training=False and save again, or make "
        "is_training a tf.placeholder_with_default(False, []) and pass --input_defaults is_training:false "
        "(--allow_batch_coupling freezes it anyway, recorded in the signature)"
    )


def check_batch_independent(graph_def, signature, feed, other_feed, tol=1e-5, required=True):
    """Row 0's outputs do not change when every other row of the batch changes. Needs the
    batch as the first dimension of every input and output; ``required``: raise when it fails,
    else only report (``--allow_batch_coupling``)."""
    if signature.batch < 2:
        return {"batch_independent": "not checked (batch 1)"}
    if any(not t.shape or t.shape[0] != signature.batch for t in signature.inputs + signature.outputs):
        return {"batch_independent": "not checked (not every input and output has the batch first)"}
    mixed = {}
    for t in signature.inputs:
        m = np.array(other_feed[t.name], copy=True)
        m[:1] = feed[t.name][:1]
        mixed[t.name] = m
    a = run_graph_def(graph_def, signature, feed)
    b = run_graph_def(graph_def, signature, mixed)
    worst, ints = max_difference([y[:1] for y in b], [x[:1] for x in a], signature)
    ok = worst <= tol and not ints
    if not ok and required:
        raise UserError(batch_coupling_error(graph_def, worst))
    out = {"batch_independent": bool(ok), "batch_coupling_max_rel": worst}
    if not ok:
        out["batch_coupling_allowed"] = True
        out["batch_statistics_ops"] = batch_statistics_ops(graph_def)
    return out


def check_fresh_process(pb_path, signature):
    """The .pb loads and imports in a new Python process."""
    code = (
        "import sys; from common.tfcompat import tf;"
        "gd = tf.GraphDef(); gd.ParseFromString(open(sys.argv[1], 'rb').read());"
        "g = tf.Graph();\nwith g.as_default(): tf.import_graph_def(gd, name='')\n"
        "[g.get_tensor_by_name(n) for n in sys.argv[2:]]"
    )
    names = [t.tensor for t in signature.inputs + signature.outputs]
    r = subprocess.run(
        [sys.executable, "-c", code, os.path.abspath(pb_path), *names],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise UserError(f"{pb_path}: frozen graph does not load in a fresh process ({tail})")
    return {"loads_in_fresh_process": True}


def freeze(restored, out_dir, stem, seed=0, tol=1e-5, batch_independent=True, opset=13, force=False):
    """Freeze, check, and write ``out_dir/stem.pb`` + ``out_dir/stem.json``. Returns the Signature.

    ``restored``: a built-in model (``Restored``) or a user's (``freeze.sources.UserModel``).
    ``batch_independent``: require it (built-in models), else measure and record it."""
    from common import fsio
    from convert import preflight

    pb = os.path.join(out_dir, stem + ".pb")
    card = path_beside(pb)  # the .pb's own card: <stem>.json
    fsio.refuse_overwrite([pb, card], force)
    gd = restored.frozen_graph_def()
    sig = restored.signature  # frozen: freeze builds a new one with its checks
    check_static(gd, sig)
    preflight.check(gd, f"{stem}.pb", opset)
    rng = np.random.RandomState(seed)
    feed = restored.example_feed(rng)
    ref = restored.run(feed)
    got = run_graph_def(gd, sig, feed)
    worst, ints = max_difference(got, ref, sig)
    if not worst <= tol or ints:
        raise UserError(
            f"frozen graph differs from the checkpoint by {worst:.3g} (relative) > {tol}"
            + (f" and in {ints} integer output element(s)" if ints else "")
        )
    checks = {
        "no_variables": True,
        "no_random_ops": True,
        "frozen_vs_checkpoint_max_rel": worst,
        "check_seed": seed,
        "op_count": len(gd.node),
        "converter_preflight": f"tf2onnx opset {opset}: ok",
    }
    if hasattr(restored, "folding"):
        checks["folding"] = restored.folding()
    checks.update(check_batch_independent(gd, sig, feed, restored.example_feed(rng), tol, batch_independent))
    try:
        fsio.make_dirs(out_dir)
        with fsio.atomic_path(pb) as tmp:
            with open(tmp, "wb") as f:
                f.write(gd.SerializeToString())
            checks.update(check_fresh_process(tmp, sig))
        artifact = {"file": os.path.basename(pb), "kind": "pb", "bytes": os.path.getsize(pb)}
        sig = dataclasses.replace(sig, checks=checks, artifact=artifact).save(card)
    except OSError as e:
        raise UserError(f"{e.filename or out_dir}: cannot write ({e.strerror})") from None
    return sig


def open_source(sig, device="cpu"):
    """The model a signature was frozen from, live: a built-in model's checkpoint rebuilt
    from its config, or a user's checkpoint / SavedModel / .pb (the checkpoint backend)."""
    if model_spec.for_signature(sig) is not None:
        return Restored.from_signature(sig, device=device)
    from freeze.sources import UserModel

    return UserModel.from_signature(sig, device=device)
