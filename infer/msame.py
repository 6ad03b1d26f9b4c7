"""msame, on any host: same flags, same output layout, same console lines.

Replace ``msame`` with ``python infer/msame.py`` and nothing else changes. The model may
be an .om (run by the real msame when it is on PATH), or, with no NPU, the portable
.onnx (ONNX Runtime), the frozen .pb (TensorFlow) or the checkpoint itself.

Differences from msame, on purpose:
  * every input file is checked against the model's signature (count of inputs, size =
    shape x dtype) before anything runs; an error names the file, expected and found size;
  * output files are written atomically, never partially; each run folder holds run.json,
    the record of what made it (model and signature digests, inputs, outfmt) and its
    latency summary; --resume continues only the run whose record matches and re-checks
    every output it keeps;
  * input folders are matched to the model's inputs by the manifest when there is one;
    float inputs must be finite (and in range where the signature says so);
  * a bare .onnx (no signature beside it) runs with its names, shapes and dtypes read from
    the model (--dymBatch or the input file size resolves a dynamic batch); a bare .pb
    runs with --input_shape and --output_node_names;
  * the exit status is non-zero (2) on any error; msame exits 0 on most errors.
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.cli import ArgumentParser, add_device, add_input, add_output, add_verbosity  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from common.log import quiet  # noqa: E402

EXAMPLE = """example:
  python infer/msame.py --model out/realnvp.onnx --input bins/x,bins/u --output out/msame --outfmt TXT
  python infer/msame.py --model out/realnvp.pb --input x.bin,u.bin --output out/msame --loop 10"""
MEANINGLESS = ("profiler", "dump", "dymHW", "outputSize")
ACL_DTYPE = {"float32": 0, "float16": 1, "int8": 2, "int32": 3, "uint8": 4, "uint32": 8, "int64": 9, "bool": 12}
ACL_FORMAT = {"NCHW": 0, "NHWC": 1}


def parser():
    ap = ArgumentParser(
        prog="msame.py", description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", required=True, help="MODEL.om | MODEL.onnx | MODEL.pb | checkpoint")
    add_input(
        ap,
        default="",
        help="comma-separated folders (folder mode) or .bin files, "
        "one per model input in signature order; none: all-zero inputs",
    )
    add_output(ap, required=True, help="folder; outputs go to OUTPUT/<timestamp>/")
    ap.add_argument("--outfmt", default="BIN", help="TXT (exactly) for text, anything else BIN")
    ap.add_argument("--loop", default="1", help="runs per input in file mode, 1..100")
    ap.add_argument("--device", default="0", help="NPU id 0..255 (om backend)")
    ap.add_argument("--debug", default="false", help="'true' prints the model description")
    ap.add_argument("--dymBatch", default=None, help="batch size for a model whose batch is dynamic")
    ap.add_argument(
        "--dymDims",
        default=None,
        help="'in1:1,600;in2:1,600': shapes for dynamic dims (a model read without a signature)",
    )
    ap.add_argument("--dymShape", default=None, help=argparse.SUPPRESS)  # same form as --dymDims here
    for name in MEANINGLESS:
        ap.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
    g = ap.add_argument_group("extensions (not in msame)")
    g.add_argument(
        "--backend", choices=["onnxruntime", "tf", "checkpoint", "om"], help="default from the model's extension"
    )
    g.add_argument(
        "--signature", help="MODEL.json (default: beside the model; a bare .onnx is read from the model itself)"
    )
    g.add_argument(
        "--input_shape",
        help="ATC's form 'name:16,28,28,1;name2:...': input shapes of a model "
        "run without a signature (a .pb, or an .onnx with dynamic dims)",
    )
    g.add_argument("--output_node_names", help="outputs of a .pb run without a signature: 'a,b' or 'a:0,b:1'")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output made by this "
        "model on these inputs (its run.json says so); done outputs are re-checked and kept",
    )
    add_device(g, flag="--run-device", help="where tf/checkpoint/onnxruntime backends run (default cpu)")
    add_verbosity(ap)
    return ap


def _loop(v):
    digits = ""
    for c in str(v):  # msame's str2num: leading digits only
        if not c.isdigit():
            break
        digits += c
    n = int(digits or 0)
    if not 1 <= n <= 100:
        raise UserError(f"--loop must be in 1 to 100, got {v!r}")
    return n


def describe(sig):
    """msame's --debug true model description (ModelProcess::PrintDesc): per input then
    per output its size, dims (each followed by a space, on their own line), name,
    aclFormat and aclDataType numbers; then the end line."""
    lines = [
        "[DEBUG] start print model description",
        f"[DEBUG] NumInputs: {len(sig.inputs)}",
        f"[DEBUG] NumOutputs: {len(sig.outputs)}",
    ]
    for kind, ts in (("input", sig.inputs), ("output", sig.outputs)):
        for i, t in enumerate(ts):
            lines += [
                f"[DEBUG] the size of {i} {kind}: {t.nbytes}",
                f"[DEBUG] the dims of {i} {kind}:",
                "".join(f"{d} " for d in t.shape),
                f"[DEBUG] the name of {i} {kind}: {t.tensor}",
                f"[DEBUG] the Format of {i} {kind}: {ACL_FORMAT.get(t.layout, 2)}",
                f"[DEBUG] the DataType of {i} {kind}: {ACL_DTYPE.get(t.dtype, -1)}",
            ]
    lines.append("[DEBUG] end print model description")
    print("\n".join(lines))


@cli
def main(argv=None):
    a = parser().parse_args(argv)
    try:
        return _main(a)
    except UserError as e:
        print(f"[ERROR] {e}")  # msame logs on stdout; `error:` also goes to stderr, exit 2
        print("[ERROR] Execute sample failed")
        raise


def _main(a):
    from infer.runner import is_file_mode, run_inputs

    loop, inputs = _check_args(a)
    runner = _open_runner(a, inputs)
    # msame's [INFO] chatter and the progress bar, unless -q (its [WARN]/[ERROR] and results stay)
    say = print if not quiet() else _print_unless_info
    say("[INFO] acl init success")
    say(f"[INFO] open device {a.device} success")
    say("[INFO] create context success")
    say("[INFO] create stream success")
    say("[INFO] get run mode success")
    with runner:
        say(f"[INFO] load model {a.model} success")
        say("[INFO] create model description success")
        say("[INFO] get input dynamic gear count success")
        if a.debug == "true":
            describe(runner.signature)
        run_inputs(
            runner,
            inputs,
            a.output,
            fmt=a.outfmt,
            resume=a.resume,
            loop=loop,
            progress=not quiet(),
            log=lambda s: say(s, flush=False),
        )
        if not inputs or is_file_mode(inputs):
            say("[INFO] destroy model input success")
    say("[INFO] unload model success, model Id is 1")
    say(f"[INFO] pid: {os.getpid()} Execute sample success")
    say("[INFO] end to destroy stream")
    say("[INFO] end to destroy context")
    say(f"[INFO] end to reset device is {a.device}")
    say("[INFO] end to finalize acl")


def _print_unless_info(line="", **kw):
    if not str(line).startswith("[INFO]"):
        print(line, **kw)


def _check_args(a):
    """(loop count, --input items) from the parsed flags, refusing contradictory ones;
    flags msame takes but that mean nothing here are warned about."""
    for name in MEANINGLESS:
        if getattr(a, name) is not None:
            print(f"[WARN] --{name} is accepted but has no effect here (static-shape models, no NPU)")
    dym = [n for n in ("dymBatch", "dymDims", "dymShape") if getattr(a, n) is not None]
    if len(dym) > 1:
        raise UserError(f"--{dym[0]} and --{dym[1]}: give at most one of --dymBatch, --dymDims, --dymShape")
    if a.input_shape and (a.dymDims or a.dymShape):
        raise UserError("--input_shape and --dymDims/--dymShape say the same thing: give one")
    loop = _loop(a.loop)
    if not (a.device.isdigit() and 0 <= int(a.device) <= 255):
        raise UserError(f"--device must be an integer 0..255, got {a.device!r}")
    inputs = [s.strip() for s in a.input.split(",")]
    if a.input.strip() == "":
        inputs = []
    elif not all(inputs):
        raise UserError(
            f"--input {a.input!r}: an empty item; expected DIR1,DIR2 or a.bin,b.bin "
            "(one per model input), or no --input for all-zero inputs"
        )
    return loop, inputs


def _open_runner(a, inputs):
    """The runner the flags name: --device is the NPU for an .om, --run-device elsewhere."""
    from infer.runner import open_runner

    device = a.device if a.backend == "om" or a.model.endswith(".om") else a.run_device
    return open_runner(
        a.model,
        a.signature,
        a.backend,
        device,
        dym_batch=a.dymBatch,
        input_shape=a.input_shape or a.dymDims or a.dymShape,
        output_nodes=a.output_node_names,
        inputs=inputs,
    )


if __name__ == "__main__":
    run(main)
