"""The checkpoint itself, rebuilt into its inference graph: golden outputs.

A built-in model is rebuilt from its config.json and restored from its checkpoint; a
user model is loaded from the checkpoint + meta graph, SavedModel or .pb its signature
records (freeze/sources.py), with the recorded defaults fed."""

import os

from common.errors import UserError
from infer.runner import Runner


class CheckpointRunner(Runner):
    backend = "checkpoint"

    def __init__(self, model, signature, device="cpu"):
        from convert import aipp

        super().__init__(model, signature)
        self.device = device
        self.graph_sig, self.pre = aipp.unwrap(signature)  # uint8 AIPP inputs: the graph's own before them

    def activate_impl(self):
        from freeze.core import Restored, open_source
        from models import spec

        sig = self.graph_sig
        builtin = spec.for_signature(sig) is not None
        if builtin and self.model and (os.path.exists(self.model) or os.path.exists(self.model + ".index")):
            self.restored = Restored(self.model, sig.batch, sig.graph, device=self.device, **sig.options)
        else:
            self.restored = open_source(sig, device=self.device)
        self._check_same_model()

    def _check_same_model(self):
        """The checkpoint's model has the signature's inputs and outputs (a signature pointing at
        another model's checkpoint would otherwise fail at the first feed with a traceback). The
        graph's own inputs, before AIPP; dtypes that ATC's --input_fp16_nodes / --output_type
        changed are cast by the runner, so only the graph's own dtypes count."""
        sig, got = self.graph_sig, self.restored.signature
        for what, want, have in (("inputs", sig.inputs, got.inputs), ("outputs", sig.outputs, got.outputs)):
            b = [(t.name, t.shape, t.dtype) for t in have]
            a = [(t.name, t.shape, _as_graph_sees(what, t, g)) for t, g in zip(want, have)] + [
                (t.name, t.shape, t.dtype) for t in want[len(have) :]
            ]
            if a != b:
                self.restored.close()
                ckpt = getattr(self.restored, "ckpt", None) or self.model
                raise UserError(
                    f"{ckpt}: this checkpoint's model has {what} {b}, the signature {self.signature.path} describes "
                    f"{[(t.name, t.shape, t.dtype) for t in want]}; "
                    "is it another model's checkpoint?"
                )

    def deactivate_impl(self):
        self.restored.close()

    def infer_impl(self, feed):
        return self.restored.run(self.pre(feed) if self.pre else feed)


def _as_graph_sees(what, t, g):
    """The card's dtype as the graph has it: ATC's float16 input files (--input_fp16_nodes) and
    output types (--output_type) are casts the runner makes, not another model."""
    if (what == "inputs" and t.dtype == "float16" and g.dtype == "float32") or what == "outputs":
        return g.dtype
    return t.dtype


def make(model, signature, device="cpu"):
    return CheckpointRunner(model, signature, device)
