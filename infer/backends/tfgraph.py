"""A frozen TensorFlow graph (.pb) in a TF1 session: the exact reference for the .om."""

import numpy as np

from common.errors import UserError
from common.loaders import import_graph_def, load_graph_def
from infer.runner import Runner

ATC_OUTPUT_TYPES = ("float32", "float16", "uint8", "int8", "int32")  # what --output_type makes of an output


class FrozenGraphRunner(Runner):
    backend = "tf"

    def __init__(self, model, signature, device="cpu"):
        from convert import aipp

        super().__init__(model, signature)
        self.device = device
        self.graph_sig, self.pre = aipp.unwrap(signature)  # uint8 AIPP inputs: the graph's own before them

    def activate_impl(self):
        from common.tfcompat import session_config, tf

        self.graph = import_graph_def(load_graph_def(self.model), self.model)
        get = self.graph.get_tensor_by_name
        self.ins, self.outs = [], []
        for what, ts, into in (
            ("input", self.graph_sig.inputs, self.ins),
            ("output", self.signature.outputs, self.outs),
        ):
            for t in ts:
                try:
                    g = get(t.tensor)
                except (KeyError, ValueError):
                    raise UserError(
                        f"{self.model}: graph lacks the signature's {what} tensor {t.tensor!r} ({what} {t.name!r})"
                    ) from None
                self._check(what, t, g)
                into.append(g)
        config = session_config(self.device)
        self.sess = tf.Session(graph=self.graph, config=config)
        # one callable: no per-call feed/fetch resolution, so per-file overhead stays low
        try:
            self.fn = self.sess.make_callable(self.outs, self.ins)
        except Exception as e:
            self.sess.close()
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(f"{self.model}: TensorFlow cannot run the signature's tensors ({msg})") from None

    def deactivate_impl(self):
        self.sess.close()

    def _check(self, what, t, g):
        """The signature agrees with the graph: dtype and every static dimension."""
        dtype = g.dtype.base_dtype.name
        if what == "input" and dtype == "float32" and t.dtype == "float16":
            pass  # ATC's --input_fp16_nodes: float16 files, cast back for the graph (infer_impl)
        elif what == "output" and dtype != t.dtype and t.dtype in ATC_OUTPUT_TYPES:
            pass  # ATC's --output_type: the runner casts the graph's output to the card's dtype
        elif dtype != t.dtype:
            raise UserError(
                f"{self.model}: {what} {t.tensor!r} is {dtype} in the graph, the signature "
                f"{self.signature.path or ''} says {t.dtype}"
            )
        if g.shape.dims is None:
            return
        dims = g.shape.as_list()
        if what == "output" and len(dims) != len(t.shape) and None not in dims and int(np.prod(dims)) == t.size:
            return  # same values, another rank (a scalar recorded as [1]): the runner reshapes
        if len(dims) != len(t.shape) or any(d is not None and d != w for d, w in zip(dims, t.shape)):
            raise UserError(
                f"{self.model}: {what} {t.tensor!r} has shape "
                f"{[d if d is not None else '?' for d in dims]} in the graph, the signature "
                f"{self.signature.path or ''} says {t.shape}"
            )

    def infer_impl(self, feed):
        feed = self.pre(feed) if self.pre else feed
        try:
            return self.fn(
                *[
                    feed[t.name].astype(g.dtype.as_numpy_dtype, copy=False)
                    for t, g in zip(self.graph_sig.inputs, self.ins)
                ]
            )
        except Exception as e:  # tf.errors.* (InvalidArgument, ...): one line, not a traceback
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"{self.model}: TensorFlow failed on inputs {[t.name for t in self.signature.inputs]} ({msg})"
            ) from None


def make(model, signature, device="cpu"):
    return FrozenGraphRunner(model, signature, device)
