"""A user's TensorFlow model, live in a session, with the signature it freezes to.

Three sources, as TensorFlow's own freeze_graph takes them:

    checkpoint   model.ckpt-N + its .meta (the graph the user's Saver wrote); a folder
                 resolves through its ``checkpoint`` file (relative paths included)
    saved_model  a SavedModel folder (tags, signature_def)
    pb           an already frozen GraphDef (checks and signature only)

``UserModel`` has the interface of ``freeze.core.Restored`` (signature, run,
example_feed, frozen_graph_def, close), so freeze's checks and the checkpoint runner
backend (verify's golden outputs) serve built-in and user models alike. The golden
outputs come from the original graph with the recorded defaults fed (the same values
freeze folded in), so they never depend on freeze's rewriting.
"""

import os

import numpy as np

from common.errors import UserError, first_line
from common.loaders import load_graph_def
from common.tfcompat import session_config, tf
from freeze import fold, tf2flow
from freeze.core import LiveModel, check_fits
from freeze.signature import Signature, Tensor
from models import spec as model_spec

SOURCES = ("checkpoint", "saved_model", "pb")


def resolve_checkpoint(path):
    """(checkpoint prefix, step or None) for a prefix or a folder with a ``checkpoint`` file.
    A relative path in the ``checkpoint`` file is relative to the folder; an absolute one
    that does not exist is looked for in the folder (a copied or moved training folder)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        state = tf.train.get_checkpoint_state(p)
        if state is None or not state.model_checkpoint_path:
            found = sorted(n for n in os.listdir(p) if n.endswith(".index"))
            if len(found) == 1:
                ckpt = os.path.join(p, found[0][: -len(".index")])
            else:
                raise UserError(
                    f"{p}: no 'checkpoint' file naming the newest checkpoint (found "
                    f"{len(found)} .index files{': ' + ', '.join(found[:4]) if found else ''}); "
                    "pass a checkpoint prefix such as DIR/model.ckpt-100"
                )
        else:
            # the folder's own files, never another folder's: an absolute path in a copied
            # or moved folder's 'checkpoint' file still names the original
            named = state.model_checkpoint_path
            ckpt = os.path.join(p, os.path.basename(named))
            if not os.path.isfile(ckpt + ".index"):
                ckpt = named if os.path.isabs(named) else os.path.join(p, named)
    else:
        ckpt = p
    if not os.path.isfile(ckpt + ".index"):
        raise UserError(f"{ckpt}: no checkpoint at this prefix (expected {ckpt}.index)")
    try:
        step = int(ckpt.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        step = None
    return ckpt, step


def _input_meta(graph, name, layout, key=None):
    t = graph.get_tensor_by_name(name + ":0")
    shape = t.shape.as_list()
    return Tensor((key or name).replace("/", "_"), t.name, shape, t.dtype.base_dtype.name, layout)


class UserModel(LiveModel):
    """A user's model loaded from its source, with inputs of static shape."""

    def __init__(self, source, input_shape, output_names, defaults=None, layouts=None, device="cpu", name="model"):
        """``source``: dict(kind=checkpoint|saved_model|pb, ...) as recorded in the signature;
        ``input_shape``: [(op name, shape)] in input order; ``output_names``: op names."""
        self.source = dict(source)
        self.shapes = list(input_shape)
        self.output_names = [fold.op_name(n) for n in output_names]
        self.defaults = dict(defaults or {})
        if not self.shapes:
            raise UserError('--input_shape: no inputs given (e.g. "images:16,28,28,1")')
        if not self.output_names:
            raise UserError("--output_node_names: no outputs given (e.g. logits,probs)")
        self.graph = tf.Graph()
        self.sess = tf.Session(graph=self.graph, config=session_config(device))
        self._fixed = None  # the folded, static-shape GraphDef, made once
        try:
            with self.graph.as_default():
                self._load()
            self._resolve_signature_keys()
            self._check_names()
            self.signature = self._signature(name, layouts or {})
        except BaseException:
            self.sess.close()
            raise

    def _signature(self, name, layouts):
        """Inputs and outputs as in the folded graph, with the static shapes fixed."""
        gd = self.inference_graph_def()
        g = tf.Graph()
        with g.as_default():
            tf.import_graph_def(gd, name="")
        ins = [_input_meta(g, n, layouts.get(n, _guess_layout(s)), self.keys.get(n)) for n, s in self.shapes]
        check_fits([(t.name, t.shape, t.np_dtype) for t in ins], f"--input_shape {self.record()['input_shape']}")
        outs = [(n, g.get_tensor_by_name(n + ":0")) for n in self.output_names]
        if not all(t.shape.is_fully_defined() for _, t in outs):  # static inference cannot tell: run once
            values = model_spec.generic_feed(ins, np.random.RandomState(0))
            try:
                with tf.Session(graph=g) as s:
                    vals = s.run([t for _, t in outs], {t.tensor: values[t.name] for t in ins})
            except tf.errors.OpError as e:
                raise UserError(
                    f"the frozen graph does not run on inputs of shape {self.record()['input_shape']}: {first_line(e)}"
                ) from None
            shapes = [list(np.shape(v)) for v in vals]
        else:
            shapes = [t.shape.as_list() for _, t in outs]
        return Signature(
            name,
            "forward",
            ins[0].shape[0] if ins[0].shape else 1,
            ins,
            [
                Tensor(self.keys.get(n, n).replace("/", "_"), t.name, s, t.dtype.base_dtype.name, layouts.get(n, "ND"))
                for (n, t), s in zip(outs, shapes)
            ],
            precision_mode="force_fp32",
            source=self.record(),
            checkpoint={"path": self.source.get("checkpoint"), "step": self.source.get("step")}
            if self.source["kind"] == "checkpoint"
            else None,
        )

    # --- loading -----------------------------------------------------------------------
    def _load(self):
        kind = self.source.get("kind")
        try:
            if kind == "checkpoint":
                meta = self.source["meta_graph"]
                if not os.path.isfile(meta):
                    raise UserError(
                        f"{meta}: meta graph not found (the Saver writes CKPT.meta; pass --input_meta_graph)"
                    )
                saver = tf.train.import_meta_graph(meta, clear_devices=True)
                if saver is None:
                    raise UserError(f"{meta}: the meta graph has no variables to restore")
                saver.restore(self.sess, self.source["checkpoint"])
            elif kind == "saved_model":
                mg = tf.saved_model.loader.load(self.sess, self.source["tags"], self.source["dir"])
                self.signature_def = mg.signature_def
            elif kind == "pb":
                tf.import_graph_def(load_graph_def(self.source["path"]), name="")
            else:
                raise UserError(f"unknown model source {kind!r}; expected one of {SOURCES}")
        except UserError:
            raise
        except (OSError, tf.errors.OpError, ValueError, KeyError, IndexError, RuntimeError) as e:
            what = self.source.get("checkpoint") or self.source.get("dir") or self.source.get("path")
            raise UserError(f"{what}: cannot load the {kind} ({type(e).__name__}: {first_line(e)})") from None
        except Exception as e:  # protobuf DecodeError has no stable import path
            what = self.source.get("checkpoint") or self.source.get("dir") or self.source.get("path")
            raise UserError(f"{what}: not a readable {kind} ({type(e).__name__}: {first_line(e)})") from None

    def _resolve_signature_keys(self):
        """A SavedModel's signature keys (``probs``) name their tensors (``probs/Softmax:0``);
        the signature keeps the key as the tensor's name, the graph uses the op."""
        self.keys = {}  # op name -> the name the user gave
        defs = getattr(self, "signature_def", None) or {}
        by_key = {}
        for sd in defs.values():
            for k, info in list(sd.inputs.items()) + list(sd.outputs.items()):
                by_key.setdefault(k, fold.op_name(info.name))
        ops = {op.name for op in self.graph.get_operations()}

        def resolve(n):
            op = by_key[n] if n not in ops and n in by_key else n
            self.keys[op] = n
            return op

        self.output_names = [resolve(n) for n in self.output_names]
        self.shapes = [(resolve(n), s) for n, s in self.shapes]
        self.signature_keys = ", ".join(f"{k} -> {v}" for k, v in sorted(by_key.items()))

    def _check_names(self):
        ops = {op.name: op for op in self.graph.get_operations()}
        for n in self.output_names:
            if n not in ops:
                close = sorted(k for k in ops if n.split("/")[-1] in k)[:5]
                raise UserError(
                    f"--output_node_names: the graph has no node {n!r}"
                    + (f" (similar: {', '.join(close)})" if close else "")
                    + (f"; the SavedModel's signature keys: {self.signature_keys}" if self.signature_keys else "")
                )
        for n, _ in self.shapes:
            if n not in ops:
                raise UserError(
                    f"--input_shape: the graph has no node {n!r}; its placeholders are "
                    f"{sorted(k for k, v in ops.items() if v.type in fold.PLACEHOLDERS)}"
                )

    def record(self):
        """What the signature records of the source (enough to rebuild this object)."""
        r = dict(self.source)
        r.update(
            input_shape=";".join(f"{self.keys.get(n, n)}:{','.join(map(str, s))}" for n, s in self.shapes),
            output_node_names=",".join(self.keys.get(n, n) for n in self.output_names),
            input_defaults=dict(self.defaults),
        )
        return r

    @classmethod
    def from_signature(cls, sig, device="cpu"):
        src = dict(sig.source)
        base = os.path.dirname(os.path.abspath(sig.path)) if sig.path else "."
        for key in ("checkpoint", "meta_graph", "dir", "path"):  # relocatable: try beside the card
            rel = src.get(key + "_rel")
            if rel is not None and (
                os.path.exists(os.path.join(base, rel)) or os.path.exists(os.path.join(base, rel) + ".index")
            ):
                src[key] = os.path.normpath(os.path.join(base, rel))
        layouts = {t.op: t.layout for t in sig.inputs + sig.outputs}
        return cls(
            src,
            fold.parse_input_shape(src.get("input_shape")),
            src.get("output_node_names", "").split(","),
            src.get("input_defaults"),
            layouts,
            device,
            sig.model,
        )

    # --- the frozen graph -----------------------------------------------------------------
    def inference_graph_def(self):
        """Static input shapes, defaults folded, variables constant, dead branches and
        switched-off dropout removed, pruned to the outputs."""
        if self._fixed is not None:
            return self._fixed
        gd = self.graph.as_graph_def()
        gd = fold.set_inputs(gd, self.shapes)
        self._on_path = {n.name for n in fold.prune(gd, self.output_names).node}  # before folding cuts it
        gd, self.folded = fold.fold_defaults(
            gd, {k: str(v).lower() for k, v in self.defaults.items()}, [n for n, _ in self.shapes]
        )
        gd = fold.prune(gd, self.output_names)  # fewer calls to inline
        gd, self.inlined = tf2flow.inline_constant_flow(gd, self.output_names)
        gd, self.n_switches = fold.fold_switches(gd)
        gd, self.dropout_folded = fold.fold_dropout(gd)
        gd = fold.prune(gd, self.output_names)
        # before the variables become constants: a train op, an unfed is_training or a variable
        # update would otherwise fail there with TensorFlow's float_ref error
        _check_inference_only(gd, [n for n, _ in self.shapes], self.output_names)
        tf2flow.refuse_updates(gd)
        try:
            gd = tf.graph_util.convert_variables_to_constants(self.sess, gd, self.output_names)
        except (tf.errors.OpError, ValueError) as e:
            raise UserError(f"freezing the variables failed: {first_line(e)}") from None
        gd = tf2flow.drop_unused_outputs(fold.prune(gd, self.output_names), self.output_names)
        self._fixed = tf2flow.strip_library(fold.prune(gd, self.output_names))
        return self._fixed

    def frozen_graph_def(self):
        return self.inference_graph_def()

    def folding(self):
        """What the folding did, for the signature's checks."""
        self.inference_graph_def()
        # a default counts where it reached the outputs (Keras' learning phase, folded away)
        folded = {k: v for k, v in self.folded.items() if k in self._on_path or k in self.defaults}
        return {
            "defaults_folded": folded,
            "tf_cond_folded": self.n_switches,
            "tf2_calls_inlined": [f"{n} ({op}: {f})" for n, op, f in self.inlined],
            "dropout_masks_folded": self.dropout_folded,
        }

    # --- running the original graph (the golden outputs) ------------------------------------
    def run(self, feed):
        """{input name: array} -> outputs in signature order, from the original graph with
        the recorded defaults fed."""
        g = self.graph
        fd = {g.get_tensor_by_name(t.tensor): feed[t.name] for t in self.signature.inputs}
        for name, value in self.defaults.items():
            t = g.get_tensor_by_name(name + ":0")
            fd[t] = fold._const_value(name, t.dtype.base_dtype, str(value).lower(), t.shape)
        try:
            return self.sess.run([g.get_tensor_by_name(t.tensor) for t in self.signature.outputs], fd)
        except tf.errors.OpError as e:
            raise UserError(f"running the {self.source['kind']} failed: {first_line(e)}") from None

    def example_feed(self, rng):
        return model_spec.example_feed(self.signature, rng)


UPDATE_OPS = ("Assign", "AssignAdd", "AssignSub", "AssignVariableOp", "ScatterUpdate")


def _check_inference_only(gd, inputs, outputs):
    """The folded graph must need no placeholder but the inputs and update no variable: an
    ``is_training`` left without a value, or switched on, or a train op among the outputs
    would otherwise fail deep in TensorFlow (float vs float_ref)."""
    nodes = {n.name: n for n in gd.node}
    train = [o for o in outputs if o in nodes and (nodes[o].op == "NoOp" or _updates(nodes[o]))]
    if train:
        raise UserError(
            f"--output_node_names: {train[0]!r} (op {nodes[train[0]].op}) is a training step, not a tensor: "
            "name the inference outputs only (e.g. logits,probs)"
        )
    unused = [n for n in inputs if n not in nodes]
    if unused:
        raise UserError(
            f"--input_shape: input {unused[0]!r} is not on the way to the outputs {','.join(outputs)} "
            "(nothing they compute reads it): name the model's outputs, or drop that input"
        )
    free = [n for n in gd.node if n.op == "Placeholder" and n.name not in inputs]
    if free:
        n = free[0]
        dtype = tf.as_dtype(n.attr["dtype"].type).name
        value = "false" if dtype == "bool" else "0"
        raise UserError(
            f"placeholder {n.name!r} ({dtype}) is still needed by the outputs {','.join(outputs)} but is neither "
            f'an --input_shape input nor has a default: give its inference value, --input_defaults "{n.name}:{value}"'
        )
    upd = [n for n in gd.node if _updates(n)]
    if upd:
        n = upd[0]
        raise UserError(
            f"node {n.name!r} ({n.op}) updates a variable on the way to the outputs {','.join(outputs)}: name "
            "inference outputs only (not a train op such as Adam), with is_training false "
            '(--input_defaults "is_training:false")'
        )


def _updates(node):
    return node.op in UPDATE_OPS or node.op.startswith(("Apply", "ResourceApply"))


def _guess_layout(shape):
    return "NHWC" if len(shape) == 4 and shape[-1] in (1, 3, 4) else ("NCHW" if len(shape) == 4 else "ND")
