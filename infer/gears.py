"""Dynamic gears (ATC's --dynamic_batch_size / --dynamic_image_size / --dynamic_dims) on
the runner side: msame's --dymBatch / --dymHW / --dymDims choose one gear of a model whose
card records them, and the output files are sized as msame writes them.

The card (the convert stage writes it) holds::

    artifact["dynamic"] = {"flag": "dynamic_batch_size" | "dynamic_image_size" | "dynamic_dims",
                           "input_shape": "x:-1,32,32,3;u:-1,32,32,3",   # ATC's, -1 where a gear goes
                           "gears": [[1], [8], [16]]}                   # the values for the -1s, in order

and its shapes are those of the largest gear. ``select`` returns the signature of one gear
(inputs with the gear's values; outputs too, scaled for a batch gear, else by one run of
the model on zeros), with ``artifact["dynamic"]["gear"]`` and the largest gear's output
buffer sizes recorded for ``file_sizes``.

msame's checks, with its words (model_process.cpp): a dym flag on a model without that
kind of gear is "the <flag> parameter is not specified for model conversion"; a value
that is not a gear is "the dymBatch/dymHW/dynamic_dims parameter is not correct" with
the gears listed; a dynamic-dims model without --dymDims is "model has dynamic_dims,
please add dymDims parameter". Output files (OutputModelResult): the whole output
buffer, which is the largest gear's output (or --outputSize bytes); with --dymBatch b,
``len / (maxBatch / b)`` in integer arithmetic. The gear's real output fills the front of
the buffer; here the rest is zeros (on the NPU it is whatever the buffer held).
"""

import dataclasses

import numpy as np

from common.errors import UserError

FLAGS = {"dynamic_batch_size": "--dymBatch", "dynamic_image_size": "--dymHW", "dynamic_dims": "--dymDims"}


def dynamic(sig):
    """The card's dynamic-gear record, or None for a static model."""
    d = (sig.artifact or {}).get("dynamic")
    return d if isinstance(d, dict) and d.get("gears") else None


def _template(sig, d):
    """[(input index, [dims with None where a gear value goes])] from the recorded --input_shape."""
    where = sig.path or "signature"
    out = []
    for part in str(d.get("input_shape", "")).split(";"):
        if not part.strip():
            continue
        name, _, dims = part.strip().rpartition(":")
        try:
            k = next(i for i, t in enumerate(sig.inputs) if name in (t.name, t.op, t.tensor))
            shape = [None if int(v) == -1 else int(v) for v in dims.split(",")]
        except (StopIteration, ValueError):
            raise UserError(
                f"{where}: artifact.dynamic.input_shape {d.get('input_shape')!r}: {part!r} is not "
                f"name:d0,d1,... of one of the inputs {[t.name for t in sig.inputs]}"
            ) from None
        out.append((k, shape))
    n = sum(s.count(None) for _, s in out)
    if not n or any(len(g) != n for g in d["gears"]):
        raise UserError(f"{where}: artifact.dynamic: every gear needs {n} value(s) (one per -1), found {d['gears']}")
    return out


def _shapes(sig, template, gear):
    """Input shapes at one gear: the template's -1s filled in order, other inputs as they are."""
    shapes = [list(t.shape) for t in sig.inputs]
    vals = iter(gear)
    for k, dims in template:
        shapes[k] = [next(vals) if v is None else v for v in dims]
    return shapes


def _largest(d):
    return max(d["gears"], key=lambda g: int(np.prod(g, dtype=np.int64)))


def _gear_text(d):
    return "".join("[" + ",".join(map(str, g)) + "]" for g in d["gears"])


def _parse_ints(text, flag, n=None):
    try:
        vals = [int(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected integers separated by ','") from None
    if n is not None and len(vals) != n:
        raise UserError(f"{flag} {text!r}: expected {n} values, found {len(vals)}")
    return vals


def _dims_values(sig, template, text):
    """--dymDims "in1:1,600;in2:1,600" -> the full shapes it gives, per input index."""
    given = {}
    for part in str(text).split(";"):
        if not part.strip():
            continue
        name, sep, dims = part.strip().rpartition(":")
        k = next((i for i, t in enumerate(sig.inputs) if name in (t.name, t.op, t.tensor)), None)
        if not sep or k is None:
            raise UserError(
                f"--dymDims {text!r}: {part!r} is not name:d0,d1,... of an input of {[t.name for t in sig.inputs]}"
            )
        given[k] = _parse_ints(dims, "--dymDims")
    return given


def select(sig, model=None, dym_batch=None, dym_hw=None, dym_dims=None, require=True):
    """The signature to run: ``sig`` itself for a static model without dym flags, else the
    signature of the gear the flags choose (msame's checks and messages: module docstring).
    Without a flag a batch or image-size model runs at its card's shapes (the largest
    gear); a dims model needs --dymDims, as in msame, unless ``require`` is False (a caller
    that handed over the signature it wants run, e.g. the goldens of verify/reference.py)."""
    given = {
        f: v for f, v in (("--dymBatch", dym_batch), ("--dymHW", dym_hw), ("--dymDims", dym_dims)) if v is not None
    }
    if len(given) > 1:
        raise UserError(f"{' and '.join(given)}: dymBatch dymDims dymHW dymShape cannot be set at the same time")
    d = dynamic(sig)
    flag = d.get("flag") if d else None
    where = sig.path or model or "signature"
    if d and flag not in FLAGS:
        raise UserError(f"{where}: artifact.dynamic.flag {flag!r} is not one of {sorted(FLAGS)}")
    if not given:
        if d and flag == "dynamic_dims" and require:
            raise UserError(f"{where}: model has dynamic_dims, please add dymDims parameter (gears {_gear_text(d)})")
        return sig
    ((opt, text),) = given.items()
    want = {"--dymBatch": "dynamic_batch_size", "--dymHW": "dynamic_image_size", "--dymDims": "dynamic_dims"}[opt]
    if flag != want:
        raise UserError(f"{opt} {text}: the {want} parameter is not specified for model conversion ({where})")
    template = _template(sig, d)
    gears = [list(map(int, g)) for g in d["gears"]]
    if opt == "--dymBatch":
        b = _parse_ints(text, opt, 1)
        if not 1 <= b[0] <= 2048:
            raise UserError(f"--dymBatch {text}: dymBatch must in 1 to 2048")
        gear = b if b in gears else None
        what = "the dymBatch parameter is not correct; model has dynamic batch size:{%s}" % _gear_text(d)
    elif opt == "--dymHW":
        hw = _parse_ints(text, opt, 2)
        gear = hw if hw in gears else None
        what = "the dymHW parameter is not correct; model has dynamic image size:{%s}" % _gear_text(d)
    else:
        full = _dims_values(sig, template, text)
        gear = next(
            (g for g in gears if all(_shapes(sig, template, g)[k] == v for k, v in full.items()) and full),
            None,
        )
        if gear is not None and set(full) != {k for k, _ in template}:
            gear = None  # msame compares every dim of the gear, so each dynamic input must be named
        what = f"the dynamic_dims parameter is not correct; model has {len(gears)} gear of dims {_gear_text(d)}"
    if gear is None:
        raise UserError(f"{opt} {text}: {what} ({where})")
    return _at_gear(sig, model, d, template, gear)


def _at_gear(sig, model, d, template, gear):
    shapes = _shapes(sig, template, gear)
    ins = [dataclasses.replace(t, shape=s) for t, s in zip(sig.inputs, shapes)]
    big = _largest(d)
    if d["flag"] == "dynamic_batch_size":
        outs = [
            dataclasses.replace(t, shape=[gear[0], *t.shape[1:]]) if t.shape and t.shape[0] == big[0] else t
            for t in sig.outputs
        ]
    elif gear == list(big):
        outs = list(sig.outputs)
    else:
        outs = [dataclasses.replace(t, shape=s) for t, s in zip(sig.outputs, _output_shapes(model, sig, ins))]
    rec = dict(d, gear=list(gear), max_gear=list(big), buffer_nbytes=[t.nbytes for t in sig.outputs])
    batch = ins[0].shape[0] if ins[0].shape else sig.batch
    return dataclasses.replace(
        sig, inputs=tuple(ins), outputs=tuple(outs), batch=batch, artifact=dict(sig.artifact, dynamic=rec)
    )


def _output_shapes(model, sig, ins):
    """Output shapes at an image-size / dims gear: one run of the ONNX model on zeros."""
    if not model or not str(model).endswith(".onnx"):
        raise UserError(f"{model}: output shapes at a dynamic image size / dims gear need the .onnx model")
    from infer import modelsig

    outs = [(t.tensor, t.dtype, None) for t in sig.outputs]
    return [s for _, _, s in modelsig._shapes_by_running_onnx(model, ins, outs)]


def parse_output_size(text, sig):
    """msame's --outputSize "10000,10000": bytes per output buffer, one per output."""
    if text is None:
        return None
    sizes = _parse_ints(text, "--outputSize")
    if len(sizes) != len(sig.outputs):
        raise UserError(
            f"--outputSize {text}: om has {len(sig.outputs)} output, but outputSize parametet give {len(sizes)}"
        )
    if any(s <= 0 for s in sizes):
        raise UserError(f"--outputSize {text}: sizes must be positive byte counts")
    return sizes


def file_sizes(sig, output_size=None):
    """Bytes msame writes per output file (None: exactly the output), from the output
    buffer (--outputSize, else the largest gear's output) and, with --dymBatch b, cut to
    len / (maxBatch / b); an output larger than its buffer is the error ACL gives."""
    d = dynamic(sig) or {}
    buffers = parse_output_size(output_size, sig) if isinstance(output_size, str) else output_size
    if buffers is None and "gear" not in d:
        return None
    buffers = buffers or d["buffer_nbytes"]
    if d.get("flag") == "dynamic_batch_size" and "gear" in d:
        buffers = [n // (d["max_gear"][0] // d["gear"][0]) for n in buffers]
    for t, n in zip(sig.outputs, buffers):
        if n < t.nbytes:
            raise UserError(
                f"--outputSize: output {t.name!r} {t.shape} {t.dtype} needs {t.nbytes} bytes, its buffer has {n} "
                "(ACL fails on a too small output buffer)"
            )
    return list(buffers)


def fit(array, nbytes):
    """The output as msame writes it into a file of ``nbytes`` bytes: the values, then
    zeros to the end of the buffer (a flat array; rows of the last dimension when whole)."""
    a = np.ascontiguousarray(array)
    if nbytes is None or nbytes == a.nbytes:
        return a
    flat = np.zeros(nbytes // a.dtype.itemsize, a.dtype)
    flat[: a.size] = a.reshape(-1)
    last = a.shape[-1] if a.ndim > 1 else 0
    return flat.reshape(-1, last) if last and flat.size % last == 0 else flat
