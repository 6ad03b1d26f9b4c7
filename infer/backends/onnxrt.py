"""ONNX Runtime: the portable stand-in for ATC + msame."""

import numpy as np

from common.errors import UserError
from common.loaders import ort_session
from infer.runner import Runner


def match_names(model, want, have, what):
    """Signature tensors -> ONNX names (tf2onnx keeps 'x:0'; other converters may drop ':0')."""
    out = []
    for t in want:
        hit = next((n for n in (t.tensor, t.name, t.op) if n in have), None)
        if hit is None:
            raise UserError(
                f"{model}: no ONNX {what} for signature {what} {t.name!r} "
                f"(tried {t.tensor!r}, {t.name!r}, {t.op!r}); the model has {sorted(have)}"
            )
        out.append(hit)
    return out


ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(uint32)": "uint32",
    "tensor(bool)": "bool",
    "tensor(double)": "float64",
}


def check_meta(model, sig, ins, outs):
    """The signature agrees with the model: dtypes and every static dimension (a
    dynamic one takes any size), for each input and output; one line naming the tensor."""
    for what, ts, metas in (("input", sig.inputs, ins), ("output", sig.outputs, outs)):
        for t, m in zip(ts, metas):
            dtype = ORT_TYPES.get(m.type, m.type)
            if dtype != t.dtype:
                raise UserError(
                    f"{model}: {what} {m.name!r} is {dtype} in the model, the signature {sig.path or ''} says {t.dtype}"
                )
            shape = list(m.shape) if m.shape is not None else None
            if shape is None:
                continue
            static = [d if isinstance(d, int) and d > 0 else None for d in shape]
            if (
                what == "output"
                and len(static) != len(t.shape)
                and None not in static
                and int(np.prod(static)) == t.size
            ):
                continue  # same values, another rank (a scalar recorded as [1]): the runner reshapes
            if len(static) != len(t.shape) or any(d is not None and d != w for d, w in zip(static, t.shape)):
                if what == "output" and len(static) != len(t.shape) and all(d is None for d in static):
                    continue
                raise UserError(
                    f"{model}: {what} {m.name!r} has shape "
                    f"{[d if d is not None else '?' for d in static]} in the model, the "
                    f"signature {sig.path or ''} says {t.shape}"
                )


class OnnxRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model, signature, providers=None):
        super().__init__(model, signature)
        self.providers = providers or ["CPUExecutionProvider"]

    def activate_impl(self):
        self.sess = ort_session(self.model, providers=self.providers)
        ins = {i.name: i for i in self.sess.get_inputs()}
        outs = {o.name: o for o in self.sess.get_outputs()}
        self.in_names = match_names(self.model, self.signature.inputs, set(ins), "input")
        self.out_names = match_names(self.model, self.signature.outputs, set(outs), "output")
        check_meta(self.model, self.signature, [ins[n] for n in self.in_names], [outs[n] for n in self.out_names])

    def deactivate_impl(self):
        self.sess = None

    def infer_impl(self, feed):
        try:
            return self.sess.run(
                self.out_names, {n: feed[t.name] for n, t in zip(self.in_names, self.signature.inputs)}
            )
        except Exception as e:  # onnxruntime's own InvalidArgument / Fail / RuntimeException types
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"{self.model}: ONNX Runtime failed on inputs {[t.name for t in self.signature.inputs]} ({msg})"
            ) from None


def make(model, signature, device="cpu"):
    if device == "npu":  # ONNX Runtime has no Ascend provider here: never run on the CPU in its place
        raise UserError(
            f"{model}: --run-device npu: ONNX Runtime runs on cpu or gpu; on an Ascend NPU run the .om "
            "(convert/atc.sh, then msame --model MODEL.om)"
        )
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "gpu" else None
    return OnnxRunner(model, signature, providers)
