"""A real .om through the real msame (on an Ascend host): each infer() writes the feed
as .bin files, runs msame in file mode and reads its outputs back."""

import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from common.errors import UserError
from infer import gears, layout
from infer.runner import Runner

TIME_RE = re.compile(r"Inference time: ([0-9.eE+-]+) ?ms")
ID_RE = re.compile(r"unload model success, model Id is (\d+)")


class MsameRunner(Runner):
    backend = "om"

    def __init__(self, model, signature, device_id=0, msame=None):
        super().__init__(model, signature)
        self.device_id, self.msame = device_id, msame

    def activate_impl(self):
        self.msame = self.msame or shutil.which("msame")
        if not self.msame:
            raise UserError(
                f"{self.model}: the om backend needs Ascend's msame on PATH (not found); "
                "run the .onnx or .pb instead, or source the CANN set_env.sh"
            )
        self.tmp = tempfile.mkdtemp(prefix="msame_")

    def deactivate_impl(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def infer_impl(self, feed):
        files = []
        for t in self.signature.inputs:
            p = os.path.join(self.tmp, f"{t.name}.bin")
            np.ascontiguousarray(feed[t.name]).tofile(p)
            files.append(p)
        out = tempfile.mkdtemp(dir=self.tmp)
        cmd = [
            self.msame,
            "--model",
            self.model,
            "--input",
            ",".join(files),
            "--output",
            out,
            "--outfmt",
            "BIN",
            "--device",
            str(self.device_id),
            *gear_flags(self.signature),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        # msame's exit code is unreliable: success is its last line plus the output files
        if "Execute sample success" not in r.stdout:
            err = [ln for ln in r.stdout.splitlines() if ln.startswith("[ERROR]")] or ["no output"]
            raise UserError(f"{self.model}: msame failed (exit {r.returncode}): {err[0]}")
        found = layout.collect_outputs(out).get(layout.stem_of(self.model), {})
        m = TIME_RE.findall(r.stdout)  # the device time msame measured, not this process's wall time
        self.device_time = float(m[-1]) / 1e3 if m else None
        ids = ID_RE.findall(r.stdout)
        self.model_id = int(ids[-1]) if ids else self.model_id
        res = [_front(found[i], t) if i in found else None for i, t in enumerate(self.signature.outputs)]
        if any(a is None for a in res):
            raise UserError(
                f"{self.model}: msame wrote {sorted(found)} outputs, the signature has {len(self.signature.outputs)}"
            )
        shutil.rmtree(out, ignore_errors=True)
        return res


def gear_flags(sig):
    """msame's flag for the gear the signature was chosen at (infer/gears.py), if any."""
    d = gears.dynamic(sig) or {}
    if "gear" not in d:
        return []
    g = d["gear"]
    if d["flag"] == "dynamic_batch_size":
        return ["--dymBatch", str(g[0])]
    if d["flag"] == "dynamic_image_size":
        return ["--dymHW", f"{g[0]},{g[1]}"]
    return ["--dymDims", ";".join(f"{t.op}:{','.join(map(str, t.shape))}" for t in sig.inputs)]


def _front(path, t):
    """An output as msame wrote it: a whole buffer (a gear's, or --outputSize's) holds the
    output's values first."""
    a = np.fromfile(path, t.np_dtype)
    if a.size < t.size:
        raise UserError(f"{path}: msame wrote {a.size} values for output {t.name!r} {t.shape}, expected {t.size}")
    return a[: t.size].reshape(t.shape)


def make(model, signature, device="cpu"):
    return MsameRunner(model, signature, int(device) if str(device).isdigit() else 0)
