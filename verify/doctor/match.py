"""TF <-> ONNX layer matching: which ONNX node output stands for which TF tensor.

tf2onnx keeps TF names for most nodes, but a name alone can lie: it gives a TF name to the
first node of a decomposition (Rsqrt -> Sqrt + Reciprocal, the Sqrt named Rsqrt) or to a
tensor in another layout (an NCHW Conv output). So a name match counts only if the fp32
ONNX tensor equals the TF tensor.
"""

from __future__ import annotations

import re

import numpy as np

from verify.doctor.capture import onnx_layers

LAYOUTS = {4: [None, (0, 2, 3, 1)], 5: [None, (0, 2, 3, 4, 1)]}  # as is; NCHW -> NHWC


def by_op(tensors) -> dict[str, list[str]]:
    """{op name: its tensor names} of TF tensor names ``op:i``, in the order given."""
    out = {}
    for t in tensors:
        out.setdefault(t.split(":")[0], []).append(t)
    return out


def tf_name(onnx_tensor: str) -> str:
    """TF tensor name an ONNX tensor stands for: ours (z:0__inner), the fp16 converter's
    (op_output_cast_0)."""
    return re.sub(r"_output_cast_(\d+)$", r":\1", onnx_tensor.replace("__inner", ""))


def same(a, b, red: float) -> bool:
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


def layout(val, want, red: float):
    """The permutation taking ``val`` to TF's layout when it then equals ``want`` (None:
    as is), or False when no layout makes them equal."""
    for p in LAYOUTS.get(np.ndim(val), [None]):
        if same(val if p is None else np.transpose(val, p), want, red):
            return p
    return False


def match_layers(tf_vals: dict, sig, fp32, feed: dict, match_red: float = 1e-4) -> tuple[dict, list]:
    """Validate TF <-> ONNX matches on the fp32 model: {TF tensor: (ONNX node, output index,
    ONNX op, permutation to TF's layout or None)} in fp32 graph order, and the TF tensors
    whose named ONNX tensor had a different value (some then matched through a helper).

    A TF op whose named node fails may be matched by one of the helper nodes tf2onnx names
    after it (``<op>__<n>``), if that one's value equals it."""
    ops = by_op(tf_vals)
    outs = {(n.name, j): o for n in fp32.graph.node for j, o in enumerate(n.output)}
    ok, false = {}, set()
    for node, k, op, val in onnx_layers(fp32, sig, feed):
        cands = []
        direct = tf_name(outs[(node, k)])
        if direct in tf_vals:
            cands.append(direct)
        cands += [t for t in ops.get(node.split("__")[0], ()) if t not in cands]
        for t in cands:
            if t in ok:
                continue
            perm = layout(val, tf_vals[t], match_red)
            if perm is not False:
                ok[t] = (node, k, op, perm)
                break
            if t == direct:
                false.add(t)  # the node carrying this TF name computes something else
    return ok, sorted(false)
