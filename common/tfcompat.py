"""TensorFlow in TF1 graph mode, and session configs for --device cpu|gpu|npu.

Every module does ``from common.tfcompat import tf``. On TF 2.x this is
``tensorflow.compat.v1`` with v2 behaviour off; on TF 1.15 (Ascend hosts) the same
module object is returned, so the code runs on both.
"""

import os
import re
import sys
import tempfile

from common.cli import DEVICES
from common.errors import UserError

# Lines TensorFlow's C++ libraries print while they load, before they read
# TF_CPP_MIN_LOG_LEVEL (common/__init__.py sets it): absl's notice that logging is not yet
# initialised, and INFO records such as "oneDNN custom operations are on".
_ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
_ABSL_INFO = re.compile(r"^I\d{4} [\d:. ]+\d+ \S+:\d+\] ")


def _import_quietly():
    """``import tensorflow.compat.v1``, dropping its start-up INFO lines unless the user
    asked for INFO (TF_CPP_MIN_LOG_LEVEL=0); everything else it prints is kept."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0"):
        import tensorflow.compat.v1 as tf

        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)  # C++ writes to fd 2, not to sys.stderr
        try:
            import tensorflow.compat.v1 as tf
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = [ln for ln in lines if not (ln.startswith(_ABSL_NOTICE) or _ABSL_INFO.match(ln))]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
    return tf


tf = _import_quietly()
tf.logging.set_verbosity(tf.logging.ERROR)
tf.disable_v2_behavior()


def import_npu_bridge():
    """Import npu_bridge (Ascend TF adapter) lazily; a clear error where it is absent."""
    try:
        import npu_bridge.npu_init  # noqa: F401
    except ImportError as e:
        raise UserError(
            "--device npu needs the Ascend TensorFlow adapter (npu_bridge, from CANN's "
            f"tfplugin) in this Python: {e}. Source the CANN set_env.sh or use --device cpu"
        ) from None


def npu_rewrite_config(config, precision_mode="allow_fp32_to_fp16", offline=True):
    """Add the NpuOptimizer custom optimizer to a ConfigProto (no npu_bridge needed)."""
    from tensorflow.core.protobuf.rewriter_config_pb2 import RewriterConfig

    rw = config.graph_options.rewrite_options
    opt = rw.custom_optimizers.add()
    opt.name = "NpuOptimizer"
    opt.parameter_map["use_off_line"].b = offline
    opt.parameter_map["precision_mode"].s = tf.compat.as_bytes(precision_mode)
    rw.remapping = RewriterConfig.OFF
    rw.memory_optimization = RewriterConfig.OFF
    return config


def session_config(device="cpu", n_devices=1, precision_mode="allow_fp32_to_fp16", check_bridge=True):
    """ConfigProto for the device; for npu also imports npu_bridge (unless check_bridge=False).

    On cpu, ``n_devices`` > 1 splits the host into that many devices (/cpu:0 ...),
    so multi-tower code is exercised without accelerators."""
    if device not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    config = tf.ConfigProto(allow_soft_placement=True)
    if device == "cpu":
        config.device_count["GPU"] = 0
        config.device_count["CPU"] = max(1, n_devices)
    elif device == "gpu":
        config.gpu_options.allow_growth = True
    else:
        if check_bridge:
            import_npu_bridge()
        npu_rewrite_config(config, precision_mode)
    return config


def device_names(device, n):
    """TF device strings for n towers on the device kind (npu runs one tower)."""
    if device == "gpu":
        return [f"/gpu:{i}" for i in range(n)]
    if device == "npu":
        return [None] * n
    return [f"/cpu:{i}" for i in range(n)]
