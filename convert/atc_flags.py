"""ATC's command line as a real ``atc`` takes it, checked as ATC checks it, and what the
portable model does with each flag.

Spellings (ATC's gflags, and its documentation): ``--flag=value`` and ``--flag value``;
``-flag`` (one dash, turned into ``--flag``); ``--input-shape`` (dashes and underscores are
the same in a name). A flag given twice: the last value counts, as in gflags.

``parse(tokens)`` -> ``Flags`` (the tokens as typed, for a real atc, and {name: value});
``check(flags)`` refuses what ATC refuses (values, mutual exclusions) with one line;
``Flags.record(...)`` builds the card's ``artifact["atc"]``: every flag given, with what the
portable model did with it ("applied" | "recorded only" | "not applicable here") and why.
"""

import os
import re
from dataclasses import dataclass, field

from common.errors import UserError
from freeze.signature import PRECISION_MODES

# every flag of ATC's --help for model conversion (CANN 5 to 8); anything else ATC refuses
KNOWN = set(
    """mode model weight om json framework input_format input_shape input_shape_range dynamic_batch_size
    dynamic_image_size dynamic_dims singleop output output_type check_report soc_version core_type aicore_num
    virtual_type out_nodes input_fp16_nodes insert_op_conf external_weight op_name_map is_input_adjust_hw_layout
    is_output_adjust_hw_layout disable_reuse_memory fusion_switch_file enable_scope_fusion_passes
    enable_single_stream enable_small_channel enable_compress_weight compress_weight_conf
    compression_optimize_conf sparsity buffer_optimize mdl_bank_path precision_mode precision_mode_v2
    op_precision_mode allow_hf32 modify_mixlist keep_dtype customize_dtypes op_select_implmode
    optypelist_for_implmode op_bank_path auto_tune_mode op_debug_level op_debug_config save_original_model log
    dump_mode debug_dir op_compiler_cache_mode op_compiler_cache_dir display_model_info
    shape_generalized_build_mode status_check host_env_os host_env_cpu deterministic atomic_clean_policy
    input_hint_shape oo_level quant_dumpable distributed_cluster_build cluster_config enable_graph_parallel
    graph_parallel_option_path""".split()
)
# flags real lines give with no value (``--enable_small_channel``): gflags reads them as 1/true
BARE = {"enable_small_channel": "1", "save_original_model": "true", "deterministic": "1"}

FRAMEWORKS = {"0": "Caffe", "1": "MindSpore", "3": "TensorFlow", "5": "ONNX"}
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
INPUT_FORMATS = ("NCHW", "NHWC", "ND", "NCDHW", "NDHWC")
IMPLMODES = ("high_precision", "high_performance", "high_precision_for_all", "high_performance_for_all")
PRECISION_V2 = {
    "fp16": "force_fp16",
    "origin": "must_keep_origin_dtype",
    "cube_fp16in_fp32out": "cube_fp16in_fp32out",
    "mixed_float16": "allow_mix_precision_fp16",
    "mixed_bfloat16": "allow_mix_precision_bf16",
}
# ATC's --output_type values -> the dtype msame then writes (those the road's .bin files carry)
OUTPUT_TYPES = {"FP32": "float32", "FP16": "float16", "UINT8": "uint8", "INT8": "int8", "INT32": "int32"}
OUTPUT_TYPES_NOT_HERE = ("INT16", "INT64", "UINT16", "UINT32", "UINT64", "DOUBLE", "BOOL")
# the chips' names as ATC's platform configs spell them (Ascend + npu-smi's chip name)
SOC_VERSIONS = (
    "Ascend310 Ascend310P1 Ascend310P2 Ascend310P3 Ascend310P4 Ascend310P5 Ascend310P7 Ascend310B1 Ascend310B2 "
    "Ascend310B3 Ascend310B4 Ascend610 Ascend610Lite Ascend615 Ascend710 Ascend910 Ascend910A Ascend910B "
    "Ascend910ProA Ascend910ProB Ascend910PremiumA Ascend910B1 Ascend910B2 Ascend910B2C Ascend910B3 Ascend910B4 "
    "Ascend910B4-1 Ascend910_9391 Ascend910_9392 Ascend910_9381 Ascend910_9382 Ascend910_9372 Ascend910_9362 "
    "Hi3796CV300ES Hi3796CV300CS SD3403 BS9SX1AA"
).split()
DYNAMIC = ("dynamic_batch_size", "dynamic_image_size", "dynamic_dims")

APPLIED, RECORDED, NOT_HERE = "applied", "recorded only", "not applicable here"


@dataclass
class Flags:
    """``tokens``: the ATC flags as typed (for a real atc); ``values``: {name: value}, last wins."""

    tokens: list = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def get(self, name, default=None):
        return self.values.get(name, default)

    def __contains__(self, name):
        return name in self.values


def _flag_name(tok):
    """``--input-shape=x`` / ``-input_shape`` -> ("input_shape", "x" or None); None for a non-flag."""
    if not tok.startswith("-") or tok in ("-", "--") or re.match(r"^-\d", tok):
        return None
    body = tok.lstrip("-")
    name, eq, value = body.partition("=")
    return name.replace("-", "_"), (value if eq else None)


def split(argv, wrapper_flags):
    """(the wrapper's own tokens, Flags). ``wrapper_flags``: {spelling: takes a value}."""
    own, flags = [], Flags()
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        parsed = _flag_name(tok)
        base = tok.split("=", 1)[0]
        if base in wrapper_flags:
            own.append(tok)
            if wrapper_flags[base] and "=" not in tok and i < len(argv):
                own.append(argv[i])
                i += 1
            continue
        if parsed is None:
            raise UserError(f"unexpected argument {tok!r}; pass atc flags as --flag=value or --flag value")
        name, value = parsed
        if name == "o":  # the road's -o for --output
            name = "output"
        if name not in KNOWN:
            raise UserError(f"{base}: not an ATC flag (atc would refuse it: unknown command line flag); see --help")
        typed = [tok]
        if value is None:
            if i < len(argv) and _flag_name(argv[i]) is None:
                value = argv[i]
                typed.append(argv[i])
                i += 1
            elif name in BARE:
                value = BARE[name]
            else:
                raise UserError(f"{base}: expects a value (--{name}=VALUE or --{name} VALUE)")
        if tok == "-o" or tok.startswith("-o="):  # atc does not know -o: it gets --output
            typed = [f"--output={value}"]
        flags.tokens += typed
        flags.values.pop(name, None)  # the last one counts, and its place is the last
        flags.values[name] = _unquote(value)
    return own, flags


def _unquote(value):
    """A value quoted once more than the shell removes (``'--input_shape="x:1,2"'`` from a
    script that builds its argv by hand): the quotes are not part of it."""
    v = value.strip()
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'" else v


def _one_of(name, value, allowed):
    if value not in allowed:
        raise UserError(f"--{name}={value}: expected one of {', '.join(allowed)} (as atc), found {value!r}")
    return value


def _int_in(name, value, lo, hi):
    try:
        n = int(value)
    except ValueError:
        n = None
    if n is None or not lo <= n <= hi:
        raise UserError(f"--{name}={value}: expected an integer {lo}..{hi} (as atc), found {value!r}")
    return n


def _bool(name, value):
    v = str(value).lower()
    if v not in ("true", "false", "1", "0"):
        raise UserError(f"--{name}={value}: expected true or false (as atc), found {value!r}")
    return v in ("true", "1")


def _existing_file(name, value):
    if not value or not os.path.isfile(value):
        raise UserError(f"{value or '(empty)'}: --{name} file not found")
    return value


def gears(name, value):
    """A dynamic flag's gears: ``"1,8,16"`` -> [[1],[8],[16]]; ``"h,w;h,w"`` / ``"a,b;c,d"`` -> lists."""
    text = str(value).strip().strip('"')
    if name == "dynamic_batch_size":
        parts = [[p] for p in text.split(",")]
    else:
        parts = [p.split(",") for p in text.split(";") if p.strip()]
    try:
        out = [[int(v) for v in p] for p in parts]
    except ValueError:
        raise UserError(f"--{name}={value}: gears must be positive integers, found {value!r}") from None
    if any(v <= 0 for g in out for v in g):
        raise UserError(f"--{name}={value}: gears must be positive integers, found {value!r}")
    if name == "dynamic_image_size" and any(len(g) != 2 for g in out):
        raise UserError(f'--{name}={value}: each gear is "height,width" (gears separated by ;), found {value!r}')
    if len({len(g) for g in out}) > 1:
        raise UserError(f"--{name}={value}: every gear must give the same number of values, found {value!r}")
    if not 2 <= len(out) <= 100:
        raise UserError(f"--{name}={value}: expected 2 to 100 gears (as atc), found {len(out)}")
    if name == "dynamic_batch_size" and max(g[0] for g in out) > 2048:
        raise UserError(f"--{name}={value}: a batch gear is at most 2048 (as atc)")
    if len({tuple(g) for g in out}) != len(out):
        raise UserError(f"--{name}={value}: a gear is given twice")
    return out


def precision_mode(flags):
    """(the precision mode, given?): --precision_mode, else --precision_mode_v2's, else ATC's
    documented default for inference, force_fp16."""
    if "precision_mode" in flags:
        return flags.get("precision_mode"), True
    if "precision_mode_v2" in flags:
        return PRECISION_V2[flags.get("precision_mode_v2")], True
    return "force_fp16", False


def check(flags):
    """Refuse, in one line, what ATC refuses: bad values, missing or conflicting flags."""
    v = flags.values
    fw = v.get("framework")
    if fw is None:
        raise UserError("--framework is required (as atc): 3 for a TensorFlow .pb")
    if fw != "3":
        known = f"{fw} ({FRAMEWORKS[fw]})" if fw in FRAMEWORKS else repr(fw)
        raise UserError(f"--framework={fw}: this road converts TensorFlow frozen graphs (--framework=3), found {known}")
    if v.get("mode", "0") != "0":
        raise UserError(f"--mode={v['mode']}: this road runs atc's model conversion (--mode=0) only")
    _one_of("log", v.get("log", "null"), LOG_LEVELS)
    if "soc_version" not in v:
        raise UserError("--soc_version is required (as atc), e.g. --soc_version=Ascend310")
    _one_of("soc_version", v["soc_version"], SOC_VERSIONS)
    if "input_format" in v:
        _one_of("input_format", v["input_format"], INPUT_FORMATS)
    if "precision_mode" in v and "precision_mode_v2" in v:
        raise UserError("--precision_mode and --precision_mode_v2 are exclusive (as atc): give one")
    if "precision_mode" in v:
        _one_of("precision_mode", v["precision_mode"], PRECISION_MODES)
    if "precision_mode_v2" in v:
        _one_of("precision_mode_v2", v["precision_mode_v2"], tuple(PRECISION_V2))
    if "op_select_implmode" in v:
        _one_of("op_select_implmode", v["op_select_implmode"], IMPLMODES)
    if "optypelist_for_implmode" in v and "op_select_implmode" not in v:
        raise UserError("--optypelist_for_implmode needs --op_select_implmode (as atc)")
    for name in ("enable_small_channel", "disable_reuse_memory", "enable_single_stream"):
        if name in v:
            _int_in(name, v[name], 0, 1)
    if "op_debug_level" in v:
        _int_in("op_debug_level", v["op_debug_level"], 0, 4)
    if "save_original_model" in v:
        _bool("save_original_model", v["save_original_model"])
    for name in ("insert_op_conf", "fusion_switch_file", "keep_dtype", "customize_dtypes", "modify_mixlist"):
        if name in v:
            _existing_file(name, v[name])
    dyn = [d for d in DYNAMIC if d in v]
    if len(dyn) > 1 or (dyn and "input_shape_range" in v):
        raise UserError(f"--{dyn[0]} and --{(dyn[1:] or ['input_shape_range'])[0]} are exclusive (as atc): give one")
    for d in dyn:
        gears(d, v[d])
        if "input_shape" not in v:
            raise UserError(f"--{d} needs --input_shape with -1 for the dynamic dims (as atc)")
    if "dynamic_dims" in v and v.get("input_format") != "ND":
        raise UserError("--dynamic_dims needs --input_format=ND (as atc)")
    if "dynamic_dims" in v and "insert_op_conf" in v:
        raise UserError(
            "--dynamic_dims with --insert_op_conf: the dynamic dims function does not support AIPP (as atc)"
        )
    if "insert_op_conf" in v and v.get("input_format", "NHWC") not in ("NCHW", "NHWC"):
        raise UserError(f"--input_format={v['input_format']} with --insert_op_conf: AIPP takes NCHW or NHWC (as atc)")
    if "input_shape" in v:
        dims = [d for ds in input_shape(v["input_shape"]).values() for d in ds]
        if dyn and -1 not in dims:
            raise UserError(f"--{dyn[0]}: --input_shape={v['input_shape']} has no -1 dim for the gears (as atc)")
    if "-1" in re.split(r"[,:;]", v.get("input_shape", "")) and not dyn:
        raise UserError(
            f"--input_shape={v['input_shape']}: -1 needs a dynamic flag (--dynamic_batch_size, "
            "--dynamic_image_size or --dynamic_dims), as atc"
        )
    if "out_nodes" in v:
        out_nodes(v["out_nodes"])
    if "output_type" in v:
        output_types(v["output_type"], v.get("out_nodes"))


def input_shape(value):
    """``"a:1,2;b:3"`` -> {name: [dims]} (-1 kept); a malformed one is ATC's E10002, one line."""
    out = {}
    for part in [p.strip() for p in str(value).split(";") if p.strip()]:
        name, sep, dims = part.rpartition(":")
        ok = sep and name and all(re.fullmatch(r"-1|\d+", d.strip()) for d in dims.split(","))
        if not ok:
            raise UserError(
                f"--input_shape={value}: expected input_name1:n1,c1,h1,w1;input_name2:n2,c2,h2,w2 (as atc), "
                f"found {part!r}"
                + (" (shape ranges n1~n2 are not taken here: use a dynamic flag)" if "~" in part else "")
            )
        out[name] = [int(d) for d in dims.split(",")]
    if not out:
        raise UserError(f"--input_shape={value}: expected input_name1:n1,c1,h1,w1;... (as atc), found nothing")
    return out


def out_nodes(value):
    """``"a:0;b:1;c"`` -> ["a:0", "b:1", "c:0"] in that order (the om's output order)."""
    names = [n.strip() for n in str(value).split(";") if n.strip()]
    if not names:
        raise UserError(f"--out_nodes={value}: expected node:index;node2:index, found nothing")
    out = []
    for n in names:
        op, sep, idx = n.rpartition(":")
        if sep and not idx.isdigit():
            raise UserError(f"--out_nodes={value}: {n!r} is not node or node:index")
        out.append(n if sep else n + ":0")
    if len(set(out)) != len(out):
        raise UserError(f"--out_nodes={value}: a node is given twice")
    return out


def output_types(value, nodes=None):
    """--output_type -> (global dtype or None, {"node:i": dtype}): ``FP16`` or
    ``"node:0:FP16;node2:0:FP32"`` (per node needs --out_nodes, and names nodes of it)."""
    per = {}
    for part in [p.strip() for p in str(value).split(";") if p.strip()]:
        *node, t = part.split(":")
        t = t.upper()
        if t in OUTPUT_TYPES_NOT_HERE:
            raise UserError(
                f"--output_type={value}: {t} is an ATC type the road's .bin files do not carry "
                f"(use one of {', '.join(OUTPUT_TYPES)})"
            )
        if t not in OUTPUT_TYPES:
            raise UserError(f"--output_type={value}: expected one of {', '.join(OUTPUT_TYPES)} (as atc), found {t!r}")
        if not node:
            if len(str(value).split(";")) > 1:
                raise UserError(f"--output_type={value}: give one type, or node:index:TYPE;... for each output")
            return OUTPUT_TYPES[t], {}
        if len(node) != 2 or not node[1].isdigit():
            raise UserError(f"--output_type={value}: expected node:index:TYPE, found {part!r}")
        per[":".join(node)] = OUTPUT_TYPES[t]
    if not nodes:
        raise UserError(f"--output_type={value}: a type per node needs --out_nodes (as atc)")
    missing = [n for n in per if n not in out_nodes(nodes)]
    if missing:
        raise UserError(f"--output_type={value}: {missing[0]} is not one of --out_nodes {out_nodes(nodes)}")
    return None, per


# what the portable model does with each flag, and what the flag changes on the chip
NOTES = {
    "model": (APPLIED, "the frozen graph converted"),
    "framework": (APPLIED, "TensorFlow"),
    "output": (APPLIED, "the portable model's stem"),
    "mode": (APPLIED, "model conversion"),
    "input_shape": (APPLIED, "the inputs and their shapes"),
    "out_nodes": (APPLIED, "the outputs, in this order (_output_0, _output_1, ...)"),
    "output_type": (APPLIED, "the outputs' dtypes (a Cast at each graph output)"),
    "input_format": (APPLIED, "the inputs' layout in the card"),
    "precision_mode": (APPLIED, "emulated by convert/fp16"),
    "precision_mode_v2": (APPLIED, "emulated by convert/fp16 as its --precision_mode"),
    "keep_dtype": (APPLIED, "those ops stay fp32"),
    "input_fp16_nodes": (APPLIED, "those inputs take float16 (a Cast to float32 after them)"),
    "check_report": (APPLIED, "the network analysis: every op, converted or not"),
    "dynamic_batch_size": (APPLIED, "gears in the card, symbolic dims in the ONNX model"),
    "dynamic_image_size": (APPLIED, "gears in the card, symbolic dims in the ONNX model"),
    "dynamic_dims": (APPLIED, "gears in the card, symbolic dims in the ONNX model"),
    "soc_version": (RECORDED, "the chip the .om is built for; the portable model runs anywhere"),
    "log": (RECORDED, "CANN's log level; here -v/-q choose what this tool prints"),
    "insert_op_conf": (APPLIED, "static AIPP prepended (convert/aipp.py): the inputs take the .om's uint8 images"),
    "enable_small_channel": (RECORDED, "on the chip, a faster first conv for C<=4 inputs (with AIPP); same values"),
    "op_select_implmode": (
        RECORDED,
        "on the chip, picks high-precision or high-performance kernels of some ops (e.g. Exp, Sigmoid, Tanh); "
        "the portable model computes them in its precision mode",
    ),
    "optypelist_for_implmode": (RECORDED, "the op types --op_select_implmode applies to, on the chip"),
    "save_original_model": (NOT_HERE, "an .om of the original graph, for CANN's dump tools"),
    "debug_dir": (NOT_HERE, "CANN's intermediate files from op compilation"),
    "op_debug_level": (NOT_HERE, "CANN's op compile debug (kernel_meta); no ops are compiled here"),
    "fusion_switch_file": (NOT_HERE, "switches CANN's fusion passes; the portable model has none"),
    "enable_scope_fusion_passes": (NOT_HERE, "CANN's TensorFlow scope fusion passes; tf2onnx converts here"),
    "weight": (NOT_HERE, "a Caffe weight file; ATC ignores it for TensorFlow"),
}


def record(flags, applied_notes=None, added=()):
    """The card's ``artifact["atc"]``: the argv (as typed, then what the road ``added``) and
    every flag's fate."""
    out = {}
    for name, value in flags.values.items():
        fate, note = NOTES.get(name, (RECORDED, "passed to atc on an Ascend host; no effect on the portable model"))
        if applied_notes and name in applied_notes:
            fate, note = applied_notes[name]
        if name in added:
            note = f"not in the line: added by the road (ATC needs it; the signature knows it); {note}"
        out[name] = {"value": value, "portable": fate, "note": note}
    return {"argv": list(flags.tokens), "flags": out}
