"""ONNX Runtime: the portable stand-in for ATC + msame."""
import os

from common.errors import UserError
from infer.runner import Runner


def session_options():
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def match_names(model, want, have, what):
    """Signature tensors -> ONNX names (tf2onnx keeps 'x:0'; other converters may drop ':0')."""
    out = []
    for t in want:
        hit = next((n for n in (t.tensor, t.name, t.op) if n in have), None)
        if hit is None:
            raise UserError(f"{model}: no ONNX {what} for signature {what} {t.name!r} "
                            f"(tried {t.tensor!r}, {t.name!r}, {t.op!r}); the model has {sorted(have)}")
        out.append(hit)
    return out


class OnnxRunner(Runner):
    backend = "onnxruntime"

    def __init__(self, model, signature, providers=None):
        super().__init__(model, signature)
        self.providers = providers or ["CPUExecutionProvider"]

    def activate_impl(self):
        import onnxruntime as ort

        try:
            self.sess = ort.InferenceSession(self.model, session_options(), providers=self.providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise UserError(f"{self.model}: ONNX Runtime cannot load it ({str(e).splitlines()[0]})") from None
        self.in_names = match_names(self.model, self.signature.inputs,
                                    {i.name for i in self.sess.get_inputs()}, "input")
        self.out_names = match_names(self.model, self.signature.outputs,
                                     {o.name for o in self.sess.get_outputs()}, "output")

    def deactivate_impl(self):
        self.sess = None

    def infer_impl(self, feed):
        return self.sess.run(self.out_names, {n: feed[t.name] for n, t in
                                              zip(self.in_names, self.signature.inputs)})


def make(model, signature, device="cpu"):
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "gpu" else None
    return OnnxRunner(model, signature, providers)
