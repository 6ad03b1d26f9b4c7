"""Static AIPP (ATC's --insert_op_conf) for the portable model: parse the ``aipp_op { ... }``
prototxt, prepend the pipeline to the ONNX model, and the same maths in numpy for the
golden-output backends.

The specification is Huawei's ATC AIPP pages (configuration file template, CSC, crop/padding,
normalisation) and what GE's AIPP insertion does with the parsed values:

* Every template field is known, with the template's default. ``aipp_mode`` and
  ``input_format`` are required; ``dynamic`` mode and the dynamic-only fields
  (``max_src_image_size``, ``support_rotation``) are refused, as are the template's reserved
  fields (resize, rotation, single-line mode, C padding, raw_rgbir_to_f16_n) set to anything
  but their default, and a field given twice (ATC: "can not be configed repeatedly").
* Order (hardware): channel swap -> crop -> CSC -> (x - mean_chn_i - min_chn_i) *
  var_reci_chn_i -> padding. crop false resets the crop fields, padding false the padding
  sizes (GE). src_image_size 0 means the model input's W/H (only without crop and padding);
  crop_size 0 with crop and no padding means the model input's W/H.
* CSC: from a YUV input_format, out = (M (yuv - input_bias)) >> 8; from RGB/XRGB, out =
  (M rgb) >> 8 + output_bias; rows of M give output channels in order (the template's
  default matrix outputs B,G,R). Without matrix fields GE fills YUV420SP's defaults with the
  template's values and the other formats' with BT.601 RGB->YUV (66,129,25 / -38,-74,112 /
  112,-94,-18). >> 8 is an arithmetic shift (floor); the result is clipped to 0..255 (the
  CSC's output is uint8 pixels; the clip is our reading, not a documented formula).
* AIPP's output on the chip is float16 (uint8 -> fp16): min_chn/var_reci_chn are float16
  values and the normalised pixels are rounded to float16, then fed to the model (cast to
  its input dtype).
* Input data (the .om's input buffer, and so the card's Tensor and the .bin files), uint8:
  YUV420SP_U8 [N, H*3//2, W] (NV12: Y plane, then interleaved U,V at half resolution; NV21
  when rbuv_swap_switch is true), RGB888_U8 [N, H, W, 3], XRGB8888_U8 [N, H, W, 4] (bytes
  R,G,B,X; X,R,G,B with ax_swap_switch; B and R swapped with rbuv_swap_switch), YUV400_U8
  [N, H, W]; H, W = src_image_size_h/w. After AIPP an XRGB pixel is R,G,B,X: a 3-channel
  model takes R,G,B.
"""

import dataclasses
import os
import re

import numpy as np

from common.errors import UserError

FORMATS = {"YUV420SP_U8": 3, "XRGB8888_U8": 4, "RGB888_U8": 3, "YUV400_U8": 1}  # channels after decoding
YUV_FORMATS = ("YUV420SP_U8", "YUV400_U8")
INT16 = (-32768, 32767)
FP16_MAX = 65504.0

# name: (kind, default, (lo, hi)) -- the configuration file template's fields and defaults
FIELDS = {
    "aipp_mode": ("enum", None, ("static", "dynamic")),
    "related_input_rank": ("int", 0, (0, 2**31 - 1)),
    "related_input_name": ("str", "", None),
    "max_src_image_size": ("int", 0, (0, 2**31 - 1)),
    "support_rotation": ("bool", False, None),
    "input_format": ("enum", None, tuple(FORMATS)),
    "src_image_size_w": ("int", 0, (0, 4096)),
    "src_image_size_h": ("int", 0, (0, 4096)),
    "cpadding_value": ("float", 0.0, (-FP16_MAX, FP16_MAX)),
    "crop": ("bool", False, None),
    "load_start_pos_w": ("int", 0, (0, 4095)),
    "load_start_pos_h": ("int", 0, (0, 4095)),
    "crop_size_w": ("int", 0, (0, 4096)),
    "crop_size_h": ("int", 0, (0, 4096)),
    "resize": ("bool", False, None),
    "resize_output_w": ("int", 0, (0, 4096)),
    "resize_output_h": ("int", 0, (0, 4096)),
    "padding": ("bool", False, None),
    "left_padding_size": ("int", 0, (0, 32)),
    "right_padding_size": ("int", 0, (0, 32)),
    "top_padding_size": ("int", 0, (0, 32)),
    "bottom_padding_size": ("int", 0, (0, 32)),
    "padding_value": ("float", 0.0, (-FP16_MAX, FP16_MAX)),
    "rotation_angle": ("int", 0, (0, 3)),
    "csc_switch": ("bool", False, None),
    "rbuv_swap_switch": ("bool", False, None),
    "ax_swap_switch": ("bool", False, None),
    "single_line_mode": ("bool", False, None),
    **{f"matrix_r{r}c{c}": ("int", None, INT16) for r in range(3) for c in range(3)},
    **{f"output_bias_{i}": ("int", None, (0, 255)) for i in range(3)},
    **{f"input_bias_{i}": ("int", None, (0, 255)) for i in range(3)},
    **{f"mean_chn_{i}": ("int", 0, (0, 255)) for i in range(4)},
    **{f"min_chn_{i}": ("float", 0.0, (0.0, 255.0)) for i in range(4)},
    **{f"var_reci_chn_{i}": ("float", 1.0, (-FP16_MAX, FP16_MAX)) for i in range(4)},
    "raw_rgbir_to_f16_n": ("int", 8, (0, 31)),
}
DYNAMIC_ONLY = ("max_src_image_size", "support_rotation")
RESERVED = (  # the template: "reserved field, not supported yet"
    "cpadding_value",
    "resize",
    "resize_output_w",
    "resize_output_h",
    "rotation_angle",
    "single_line_mode",
    "raw_rgbir_to_f16_n",
)
# GE's CSC defaults when csc_switch is on and a matrix/bias field is absent
YUV2BGR = ((298, 516, 0), (298, -100, -208), (298, 0, 409))  # the template's values (B, G, R rows)
RGB2YUV = ((66, 129, 25), (-38, -74, 112), (112, -94, -18))
BIAS = (16, 128, 128)
TOKEN = re.compile(r'\s*(?:(#.*)|([{}:])|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|([^\s{}:#"\']+))')


@dataclasses.dataclass(frozen=True)
class AippOp:
    """One ``aipp_op`` block: every field's effective value (``values``), where it came from."""

    path: str
    line: int
    values: dict
    given: frozenset

    def __getattr__(self, name):
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def where(self):
        return f"{self.path}:{self.line}"

    @property
    def matrix(self):
        return np.array([[self.values[f"matrix_r{r}c{c}"] for c in range(3)] for r in range(3)], np.int64)

    def vec(self, prefix, n):
        return [self.values[f"{prefix}{i}"] for i in range(n)]

    @property
    def yuv(self):
        return self.input_format in YUV_FORMATS


# --- parsing -----------------------------------------------------------------------------------


def _tokens(path, text):
    for lineno, line in enumerate(text.splitlines(), 1):
        pos = 0
        while pos < len(line):
            m = TOKEN.match(line, pos)
            if not m or m.end() == pos:
                if line[pos:].strip():
                    raise UserError(f"{path}:{lineno}: expected prototxt (name: value), found {line[pos:].strip()!r}")
                break
            pos = m.end()
            if m.group(1) is not None:  # a comment runs to the end of the line
                break
            if m.group(2):
                yield lineno, m.group(2), "punct"
            elif m.group(3) is not None or m.group(4) is not None:
                yield lineno, m.group(3) if m.group(3) is not None else m.group(4), "string"
            elif m.group(5):
                yield lineno, m.group(5), "word"


def _value(path, lineno, name, tok):
    """One field's value as the template types it; a one-line error naming file:line and field."""
    text, tkind = tok
    ftype, _, rng = FIELDS[name]

    def bad(expected):
        raise UserError(f"{path}:{lineno}: {name}: expected {expected}, found {text!r}")

    if ftype == "str":
        if tkind != "string":
            bad('a quoted string ("...")')
        return text
    if tkind == "string" and ftype != "enum":
        bad(f"a {ftype} value without quotes")
    if ftype == "enum":
        if text not in rng:
            bad(f"one of {', '.join(rng)}")
        return text
    if ftype == "bool":
        low = text.lower()
        if low in ("true", "t", "1"):
            return True
        if low in ("false", "f", "0"):
            return False
        bad("true or false")
    try:
        v = int(text) if ftype == "int" else float(text)
    except ValueError:
        bad("an integer" if ftype == "int" else "a number")
    if ftype == "float" and not np.isfinite(v):
        bad("a finite number")
    lo, hi = rng
    if not lo <= v <= hi:
        bad(f"a value in [{lo}, {hi}]")
    return v


def _blocks(path, text):
    """[(line, [(line, name, (text, kind)), ...])] for each ``aipp_op { }`` block."""
    toks = list(_tokens(path, text))
    blocks, i = [], 0

    def at(k):
        return toks[k] if k < len(toks) else (toks[-1][0] if toks else 1, "<end of file>", "eof")

    while i < len(toks):
        lineno, word, kind = toks[i]
        if kind != "word" or word != "aipp_op":
            raise UserError(f"{path}:{lineno}: expected an aipp_op {{ ... }} block, found {word!r}")
        i += 1
        if at(i)[1] == ":":
            i += 1
        if at(i)[1] != "{":
            raise UserError(f"{path}:{at(i)[0]}: expected '{{' after aipp_op, found {at(i)[1]!r}")
        i += 1
        fields = []
        while at(i)[1] != "}":
            fl, name, fk = at(i)
            if fk == "eof":
                raise UserError(f"{path}:{fl}: aipp_op block opened at line {lineno} is not closed with '}}'")
            if fk != "word":
                raise UserError(f"{path}:{fl}: expected a field name, found {name!r}")
            if name not in FIELDS:
                raise UserError(
                    f"{path}:{fl}: unknown aipp_op field {name!r} (not in ATC's AIPP configuration template)"
                )
            if at(i + 1)[1] != ":":
                raise UserError(f"{path}:{fl}: {name}: expected ':' and a value, found {at(i + 1)[1]!r}")
            vl, vt, vk = at(i + 2)
            if vk not in ("word", "string"):
                raise UserError(f"{path}:{vl}: {name}: expected a value, found {vt!r}")
            fields.append((fl, name, (vt, vk)))
            i += 3
        blocks.append((lineno, fields))
        i += 1
    return blocks


def _op(path, lineno, fields):
    values = {k: d for k, (_, d, _) in FIELDS.items()}
    seen = {}
    for fl, name, tok in fields:
        if name in seen:
            raise UserError(
                f"{path}:{fl}: {name} given twice in one aipp_op (lines {seen[name]} and {fl}); ATC refuses that"
            )
        seen[name] = fl
        values[name] = _value(path, fl, name, tok)
    where = f"{path}:{lineno}"
    if "aipp_mode" not in seen:
        raise UserError(f"{where}: aipp_op lacks aipp_mode (required: static)")
    if values["aipp_mode"] == "dynamic":
        raise UserError(
            f"{path}:{seen['aipp_mode']}: aipp_mode: dynamic AIPP is not supported here (the portable model "
            "emulates static AIPP only); use aipp_mode: static"
        )
    for name in DYNAMIC_ONLY:
        if name in seen:
            raise UserError(f"{path}:{seen[name]}: {name} is a dynamic-AIPP field; a static aipp_op takes no {name}")
    for name in RESERVED:
        if name in seen and values[name] != FIELDS[name][1]:
            raise UserError(
                f"{path}:{seen[name]}: {name} is reserved in ATC's template (not supported); "
                f"expected {FIELDS[name][1]!r} or nothing, found {values[name]!r}"
            )
    if "input_format" not in seen:
        raise UserError(f"{where}: aipp_op lacks input_format (required for static AIPP: {', '.join(FORMATS)})")
    fmt = values["input_format"]
    if values["src_image_size_w"] == 1:
        raise UserError(f"{path}:{seen['src_image_size_w']}: src_image_size_w: expected 0 or 2..4096, found 1")
    if values["csc_switch"] and fmt == "YUV400_U8":
        raise UserError(f"{path}:{seen['csc_switch']}: csc_switch: YUV400_U8 takes no colour-space conversion")
    if values["csc_switch"]:  # GE fills what the file leaves out
        mat = YUV2BGR if fmt == "YUV420SP_U8" else RGB2YUV
        for r in range(3):
            for c in range(3):
                if values[f"matrix_r{r}c{c}"] is None:
                    values[f"matrix_r{r}c{c}"] = mat[r][c]
    for r in range(3):
        for c in range(3):
            if values[f"matrix_r{r}c{c}"] is None:
                values[f"matrix_r{r}c{c}"] = YUV2BGR[r][c]  # the template's default (unused without CSC)
    for i in range(3):
        for pre in ("input_bias_", "output_bias_"):
            if values[f"{pre}{i}"] is None:
                values[f"{pre}{i}"] = BIAS[i]
    if not values["crop"]:
        for k in ("load_start_pos_w", "load_start_pos_h", "crop_size_w", "crop_size_h"):
            values[k] = 0
    if not values["padding"]:
        for k in ("left", "right", "top", "bottom"):
            values[f"{k}_padding_size"] = 0
    if fmt == "YUV420SP_U8":
        for k in ("src_image_size_w", "src_image_size_h", "load_start_pos_w", "load_start_pos_h"):
            if values[k] % 2:
                raise UserError(f"{path}:{seen[k]}: {k}: YUV420SP_U8 needs an even value, found {values[k]}")
    if (values["crop"] or values["padding"]) and not (values["src_image_size_w"] and values["src_image_size_h"]):
        k = next(k for k in ("src_image_size_w", "src_image_size_h") if not values[k])
        raise UserError(f"{path}:{seen.get(k, lineno)}: {k}: crop or padding needs the source size, found 0")
    return AippOp(path, lineno, values, frozenset(seen))


def parse(path):
    """The ``aipp_op`` blocks of an --insert_op_conf file, in file order."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: --insert_op_conf file not found")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise UserError(f"{path}: cannot read the AIPP config as UTF-8 text ({why})") from None
    blocks = _blocks(path, text)
    if not blocks:
        raise UserError(f"{path}: no aipp_op {{ ... }} block in the AIPP config")
    ops = [_op(path, ln, fields) for ln, fields in blocks]
    ranks = {}
    for op in ops:
        if op.related_input_rank in ranks:
            raise UserError(
                f"{op.where}: related_input_rank {op.related_input_rank} already has an aipp_op "
                f"(line {ranks[op.related_input_rank]})"
            )
        ranks[op.related_input_rank] = op.line
    return ops


# --- geometry: what the model input needs and what the .om takes -------------------------------


@dataclasses.dataclass(frozen=True)
class Plan:
    """One aipp_op resolved against its model input."""

    op: AippOp
    index: int  # the input's position
    nchw: bool
    n: int
    h: int  # model input H, W, C
    w: int
    c: int
    src_h: int
    src_w: int
    crop: tuple  # (top, left, height, width) in source pixels
    pad: tuple  # (top, bottom, left, right)

    @property
    def om_shape(self):
        f, n, h, w = self.op.input_format, self.n, self.src_h, self.src_w
        return {
            "YUV420SP_U8": [n, h * 3 // 2, w],
            "RGB888_U8": [n, h, w, 3],
            "XRGB8888_U8": [n, h, w, 4],
            "YUV400_U8": [n, h, w],
        }[f]


def plan(op, index, tensor, layout):
    """Check an aipp_op against the model input it feeds (shape [N,H,W,C] or [N,C,H,W])."""
    where = op.where
    if len(tensor.shape) != 4:
        raise UserError(f"{where}: AIPP needs a 4-D image input; input {tensor.name!r} has shape {tensor.shape}")
    if tensor.dtype not in ("float32", "float16"):
        raise UserError(f"{where}: AIPP feeds float inputs; input {tensor.name!r} is {tensor.dtype}")
    nchw = layout == "NCHW"
    n, h, w, c = (tensor.shape[0], *tensor.shape[2:], tensor.shape[1]) if nchw else tensor.shape
    have = FORMATS[op.input_format]
    if c > have or (op.input_format == "YUV400_U8" and c != 1):
        raise UserError(
            f"{where}: input_format {op.input_format} gives {have} channel(s); input {tensor.name!r} "
            f"({layout}, shape {tensor.shape}) has {c}"
        )
    pt, pb, pl, pr = (op.top_padding_size, op.bottom_padding_size, op.left_padding_size, op.right_padding_size)
    if op.crop:
        ch = op.crop_size_h or (0 if op.padding else h)
        cw = op.crop_size_w or (0 if op.padding else w)
        if not (ch and cw):
            raise UserError(f"{where}: crop with padding needs crop_size_w and crop_size_h")
        top, left = op.load_start_pos_h, op.load_start_pos_w
    else:
        top = left = 0
        ch, cw = op.src_image_size_h or h, op.src_image_size_w or w
    src_h, src_w = op.src_image_size_h or h, op.src_image_size_w or w
    if top + ch > src_h or left + cw > src_w:
        raise UserError(
            f"{where}: the crop (start {left},{top}, size {cw}x{ch}) leaves the {src_w}x{src_h} source image"
        )
    if (ch + pt + pb, cw + pl + pr) != (h, w):
        raise UserError(
            f"{where}: AIPP's output would be {cw + pl + pr}x{ch + pt + pb} (WxH: crop/source {cw}x{ch} plus "
            f"padding); input {tensor.name!r} needs {w}x{h}"
        )
    if op.input_format == "YUV420SP_U8" and (src_h % 2 or src_w % 2):
        raise UserError(f"{where}: YUV420SP_U8 needs an even source size, the model gives {src_w}x{src_h}")
    return Plan(op, index, nchw, n, h, w, c, src_h, src_w, (top, left, ch, cw), (pt, pb, pl, pr))


# --- the maths, in numpy (golden-output backends) ----------------------------------------------


def _permutation(op):
    """Channel order after the swaps, as indices into the decoded channels."""
    f = op.input_format
    if f == "YUV420SP_U8":
        return [0, 2, 1] if op.rbuv_swap_switch else [0, 1, 2]
    if f == "RGB888_U8":
        return [2, 1, 0] if op.rbuv_swap_switch else [0, 1, 2]
    if f == "XRGB8888_U8":
        p = [1, 2, 3, 0] if op.ax_swap_switch else [0, 1, 2, 3]  # X first in memory -> last
        return [p[2], p[1], p[0], p[3]] if op.rbuv_swap_switch else p
    return [0]


def run_numpy(p, data):
    """uint8 data in the .om's layout -> the model input (float32, or the input's dtype)."""
    op = p.op
    x = np.asarray(data).reshape([-1, *p.om_shape[1:]]).astype(np.float64)
    n, sh, sw = x.shape[0], p.src_h, p.src_w  # any batch: a dynamic-batch gear too
    if op.input_format == "YUV420SP_U8":
        y = x[:, :sh, :]
        uv = x[:, sh:, :].reshape(n, sh // 2, sw // 2, 2)
        uv = uv.repeat(2, axis=1).repeat(2, axis=2)
        x = np.concatenate([y[..., None], uv], -1)
    elif op.input_format == "YUV400_U8":
        x = x[..., None]
    x = x[..., _permutation(op)]
    top, left, ch, cw = p.crop
    x = x[:, top : top + ch, left : left + cw, :]
    if op.csc_switch:
        m = op.matrix.astype(np.float64)
        c3 = x[..., :3]
        if op.yuv:
            c3 = np.floor((c3 - np.asarray(op.vec("input_bias_", 3), np.float64)) @ m.T / 256)
        else:
            c3 = np.floor(c3 @ m.T / 256) + np.asarray(op.vec("output_bias_", 3), np.float64)
        x = np.concatenate([np.clip(c3, 0, 255), x[..., 3:]], -1)
    k = x.shape[-1]
    sub, mul = _norm_consts(op, k)
    x = ((x.astype(np.float32) - sub) * mul).astype(np.float16).astype(np.float32)[..., : p.c]
    if op.padding:
        pt, pb, pl, pr = p.pad
        x = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=_fp16(op.padding_value))
    if p.nchw:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def _fp16(v):
    return np.float32(np.float16(v))


def _norm_consts(op, k):
    """(mean_chn_i + min_chn_i, var_reci_chn_i) for k channels, min and var as float16 values."""
    sub = np.array([op.values[f"mean_chn_{i}"] + _fp16(op.values[f"min_chn_{i}"]) for i in range(k)], np.float32)
    mul = np.array([_fp16(op.values[f"var_reci_chn_{i}"]) for i in range(k)], np.float32)
    return sub, mul


# --- the ONNX pipeline ---------------------------------------------------------------------------


class _Nodes:
    def __init__(self, prefix):
        self.prefix, self.nodes, self.inits, self.k = prefix, [], [], 0

    def name(self, what):
        self.k += 1
        return f"{self.prefix}/{what}_{self.k}"

    def const(self, value, dtype):
        from onnx import numpy_helper

        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op_type, inputs, out=None, **attrs):
        from onnx import helper

        out = out or self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def i64(self, v):
        return self.const(v, np.int64)

    def slice(self, x, axis, start, end):
        return self.op("Slice", [x, self.i64([start]), self.i64([end]), self.i64([axis])])


def _onnx_pipeline(b, p, x, out, elem_type):
    """Nodes from the uint8 input ``x`` to ``out`` (the model's former input), as run_numpy."""
    from onnx import TensorProto

    op, sh, sw = p.op, p.src_h, p.src_w  # the batch is left to the data (0 in Reshape, 1 in Expand)
    f = b.op("Cast", [x], to=TensorProto.FLOAT)
    if op.input_format == "YUV420SP_U8":
        y = b.op("Unsqueeze", [b.slice(f, 1, 0, sh), b.i64([3])])
        uv = b.op("Reshape", [b.slice(f, 1, sh, sh * 3 // 2), b.i64([0, sh // 2, 1, sw // 2, 1, 2])])
        uv = b.op("Expand", [uv, b.i64([1, sh // 2, 2, sw // 2, 2, 2])])
        uv = b.op("Reshape", [uv, b.i64([0, sh, sw, 2])])
        f = b.op("Concat", [y, uv], axis=3)
    elif op.input_format == "YUV400_U8":
        f = b.op("Unsqueeze", [f, b.i64([3])])
    perm = _permutation(op)
    if perm != list(range(len(perm))):
        f = b.op("Gather", [f, b.i64(perm)], axis=3)
    top, left, ch, cw = p.crop
    if (ch, cw) != (sh, sw):
        f = b.op("Slice", [f, b.i64([top, left]), b.i64([top + ch, left + cw]), b.i64([1, 2])])
    k = len(perm)
    if op.csc_switch:
        c3 = b.op("Cast", [b.slice(f, 3, 0, 3)], to=TensorProto.DOUBLE)
        mt = b.const(op.matrix.T, np.float64)
        if op.yuv:
            c3 = b.op("Sub", [c3, b.const(op.vec("input_bias_", 3), np.float64)])
        c3 = b.op("Floor", [b.op("Div", [b.op("MatMul", [c3, mt]), b.const(256.0, np.float64)])])
        if not op.yuv:
            c3 = b.op("Add", [c3, b.const(op.vec("output_bias_", 3), np.float64)])
        c3 = b.op("Min", [b.op("Max", [c3, b.const(0.0, np.float64)]), b.const(255.0, np.float64)])
        c3 = b.op("Cast", [c3], to=TensorProto.FLOAT)
        f = b.op("Concat", [c3, b.slice(f, 3, 3, 4)], axis=3) if k == 4 else c3
    sub, mul = _norm_consts(op, k)
    f = b.op("Mul", [b.op("Sub", [f, b.const(sub, np.float32)]), b.const(mul, np.float32)])
    f = b.op("Cast", [b.op("Cast", [f], to=TensorProto.FLOAT16)], to=TensorProto.FLOAT)  # AIPP outputs fp16
    if p.c < k:
        f = b.slice(f, 3, 0, p.c)
    if op.padding:
        pt, pb, pl, pr = p.pad
        f = b.op("Pad", [f, b.i64([0, pt, pl, 0, 0, pb, pr, 0]), b.const(_fp16(op.padding_value), np.float32)])
    if p.nchw:
        f = b.op("Transpose", [f], perm=[0, 3, 1, 2])
    return b.op("Cast", [f], out=out, to=elem_type)


# --- the portable model and its card -------------------------------------------------------------


def _meaning(p):
    op = p.op
    if op.input_format == "YUV420SP_U8":
        what = "NV21: Y plane, then interleaved V,U" if op.rbuv_swap_switch else "NV12: Y plane, then interleaved U,V"
    elif op.input_format == "YUV400_U8":
        what = "Y (grey) plane"
    else:  # memory byte perm[i] holds channel i of R,G,B,X
        bytes_ = [""] * len(_permutation(op))
        for i, m in enumerate(_permutation(op)):
            bytes_[m] = "RGBX"[i]
        what = "packed " + ",".join(bytes_)
    return f"uint8 {op.input_format} {p.src_w}x{p.src_h} ({what}) for static AIPP ({op.where})"


def _plans(ops, sig):
    plans = []
    for op in ops:
        if op.related_input_name:
            raise UserError(
                f"{op.where}: related_input_name applies to Caffe models only (ATC's template); "
                "use related_input_rank for a TensorFlow model"
            )
        if op.related_input_rank >= len(sig.inputs):
            raise UserError(
                f"{op.where}: related_input_rank {op.related_input_rank}: the model has "
                f"{len(sig.inputs)} input(s) {[t.name for t in sig.inputs]}"
            )
        t = sig.inputs[op.related_input_rank]
        plans.append(plan(op, op.related_input_rank, t, t.layout))
    return plans


def record(p, tensor):
    """What the card keeps of one aipp_op: enough to rebuild the plan (unwrap)."""
    return {
        "input": tensor.name,
        "related_input_rank": p.index,
        "config": os.path.abspath(p.op.path),
        "line": p.op.line,
        "input_format": p.op.input_format,
        "src_image_size": [p.src_w, p.src_h],
        "om_input": {"shape": p.om_shape, "dtype": "uint8", "bytes": int(np.prod(p.om_shape))},
        "model_input": tensor.to_dict(),
        "order": "channel swap, crop, CSC, (x - mean_chn - min_chn) * var_reci_chn (float16 out), padding",
        "fields_given": sorted(p.op.given),
        "values": dict(p.op.values),
    }


def card(ops, sig):
    """The signature of the model with AIPP in front: each AIPP input as the .om takes it (uint8,
    ``Plan.om_shape``, NHWC) and ``artifact["aipp"]``, one record per op; (card, records, plans)."""
    plans = _plans(ops, sig)
    inputs, records = list(sig.inputs), []
    for p in plans:
        t = sig.inputs[p.index]
        inputs[p.index] = dataclasses.replace(t, shape=p.om_shape, dtype="uint8", layout="NHWC", meaning=_meaning(p))
        records.append(record(p, t))
    art = dict(sig.artifact, aipp=records)
    return dataclasses.replace(sig, inputs=tuple(inputs), artifact=art), records, plans


def apply(model, ops, sig):
    """Prepend each aipp_op's pipeline to the ONNX model's input it names (related_input_rank);
    returns (model, card with those inputs as the .om takes them, one record per op)."""
    import onnx

    out, records, plans = card(ops, sig)
    graph = model.graph
    for p in plans:
        t = sig.inputs[p.index]
        gi = next((i for i in graph.input if i.name == t.tensor), None)
        if gi is None:
            raise UserError(f"{p.op.where}: the ONNX model has no input {t.tensor!r} (input {t.name!r})")
        if any(o.name == t.tensor for o in graph.output):
            raise UserError(f"{p.op.where}: input {t.name!r} is also a model output; AIPP cannot feed it")
        inner = f"{t.tensor}/aipp"
        for node in graph.node:
            node.input[:] = [inner if i == t.tensor else i for i in node.input]
        b = _Nodes(f"aipp{p.index}")
        _onnx_pipeline(b, p, t.tensor, inner, gi.type.tensor_type.elem_type)
        dims = gi.type.tensor_type.shape.dim
        batch = (dims[0].dim_param or dims[0].dim_value or p.n) if dims else p.n  # a dynamic batch stays so
        gi.CopyFrom(onnx.helper.make_tensor_value_info(t.tensor, onnx.TensorProto.UINT8, [batch, *p.om_shape[1:]]))
        nodes = b.nodes + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(b.inits)
    return model, out, records


def om_card(path, sig):
    """The .om's card after a real ``atc --insert_op_conf``: the AIPP inputs as the .om takes
    them, so img2bin and the runner prepare uint8 files. A config ATC took but this module cannot
    emulate (dynamic AIPP) leaves the .pb's inputs, with one warning line."""
    from common.log import log

    try:
        return card(parse(path), sig)[0]
    except UserError as e:
        log.warning(f"the .om's card keeps the .pb's inputs: {e}")
        return sig


def unwrap(sig):
    """(the signature of the graph before AIPP, feed -> feed) for a card with AIPP inputs; the
    TF backends run the frozen graph / checkpoint on what the numpy AIPP makes of the uint8 feed."""
    from freeze.signature import Tensor

    recs = (sig.artifact or {}).get("aipp") or []
    if not recs:
        return sig, None
    inputs, plans = list(sig.inputs), []
    for r in recs:
        t = Tensor.from_dict(r["model_input"], sig.path or "signature")
        values = dict(r["values"])
        op = AippOp(r.get("config", "aipp"), r.get("line", 0), values, frozenset(r.get("fields_given", ())))
        inputs[r["related_input_rank"]] = t
        plans.append((t.name, plan(op, r["related_input_rank"], t, t.layout)))
    inner = dataclasses.replace(sig, inputs=tuple(inputs))

    def pre(feed):
        feed = dict(feed)
        for name, p in plans:
            feed[name] = run_numpy(p, feed[name]).astype(inner.input(name).np_dtype)
        return feed

    return inner, pre
