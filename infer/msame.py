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
    the model (--dymBatch or the input file size resolves a dynamic batch, --dymDims or
    --input_shape other free dims); a bare .pb runs with --input_shape and --output_node_names;
  * short options take their value attached or after a space (-m m.om, -mm.om): msame's
    getopt string makes them optional-argument options, so msame itself reads only -mm.om;
  * --profiler true / --dump true make OUTPUT/profiler or OUTPUT/dump as msame does, but
    with no NPU nothing profiles or dumps: the folder stays empty (one [WARN] line says so;
    the run's run.json holds every inference's time); acl.json is not written;
  * the exit status is non-zero (2) on any error; msame exits 0 on most.

As msame: --loop runs file and zero mode N times (the speed test `--loop 100` without
--input) and writes the outputs once; --outputSize sizes the output buffers and whole
buffers are written (a count that is not the number of outputs is an error); --dymBatch /
--dymHW / --dymDims choose a gear of a model converted with dynamic gears (its card says
which; infer/gears.py) and are refused on a static model; the model id printed is the
one ACL gave (the real msame's with the om backend; here the n-th model this process
loaded, 1 for msame's single model).
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import fsio  # noqa: E402
from common.cli import ArgumentParser, add_device, add_input, add_output, add_verbosity  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from common.log import quiet  # noqa: E402

EXAMPLE = """example:
  python infer/msame.py --model out/realnvp.onnx --input bins/x,bins/u --output out/msame --outfmt TXT
  python infer/msame.py --model out/realnvp.pb --input x.bin,u.bin --output out/msame --loop 10
  python infer/msame.py -m out/realnvp.onnx -o out/speed -l 100          # the speed test, zero inputs"""
ACL_DTYPE = {"float32": 0, "float16": 1, "int8": 2, "int32": 3, "uint8": 4, "uint32": 8, "int64": 9, "bool": 12}
ACL_FORMAT = {"NCHW": 0, "NHWC": 1}
DYM = ("dymBatch", "dymDims", "dymHW", "dymShape")


class _Parser(ArgumentParser):
    """msame's reaction to a bad command line: its error lines and its help letter on
    stdout; here also the one `error:` line and exit 2 (msame exits 0)."""

    def error(self, message):
        print("[ERROR] unknown paramenter" if "unrecognized" in message else "[ERROR] Invalid params")
        print("[ERROR] Execute sample failed")
        print(self.format_help())
        super().error(message)


def parser():
    ap = _Parser(
        prog="msame.py", description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-m", "--model", required=True, help="MODEL.om | MODEL.onnx | MODEL.pb | checkpoint")
    add_input(
        ap,
        "-i",
        default="",
        help="comma-separated folders (folder mode) or .bin files, "
        "one per model input in signature order; none: all-zero inputs",
    )
    add_output(ap, required=True, help="folder; outputs go to OUTPUT/<timestamp>/")
    ap.add_argument("-f", "--outfmt", default="BIN", help="TXT (exactly) for text, anything else BIN")
    ap.add_argument("-l", "--loop", default="1", help="runs per input in file and zero mode, 1..100")
    ap.add_argument("-e", "--device", default="0", help="NPU id 0..255 (om backend)")
    ap.add_argument("-g", "--debug", default="false", help="'true' prints the model description")
    ap.add_argument("-p", "--profiler", default="false", help="'true': OUTPUT/profiler (empty here: no NPU)")
    ap.add_argument("-d", "--dump", default="false", help="'true': OUTPUT/dump (empty here: no NPU)")
    ap.add_argument("-y", "--dymBatch", default=None, help="a batch gear of a model converted with dynamic batch")
    ap.add_argument("--dymHW", default=None, help="'h,w': an image-size gear of a model converted with dynamic sizes")
    ap.add_argument(
        "--dymDims",
        default=None,
        help="'in1:1,600;in2:1,600': a dims gear (dynamic_dims model); for a bare .onnx the free dims",
    )
    ap.add_argument("--dymShape", default=None, help=argparse.SUPPRESS)  # same form as --dymDims here
    ap.add_argument("--outputSize", default=None, help="'10000,10000': bytes per output buffer, one per output")
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
    aclFormat and aclDataType numbers; a dynamic model's batch or image-size gears; then
    the end line."""
    from infer import gears

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
    d = gears.dynamic(sig) or {}
    if d.get("flag") == "dynamic_batch_size":  # PrintDesc: the gears, each followed by a space
        lines += ["[DEBUG] DynamicBatch:", "".join(f"{g[0]} " for g in d["gears"])]
    elif d.get("flag") == "dynamic_image_size":  # `cout << hw[i][0] << hw[i][1] << " "`: no separator
        lines += ["[DEBUG] DynamicHW:", "".join(f"{g[0]}{g[1]} " for g in d["gears"])]
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
            output_size=a.outputSize,
        )
        if not inputs or is_file_mode(inputs):
            say("[INFO] destroy model input success")
    say(f"[INFO] unload model success, model Id is {runner.model_id}")
    say(f"[INFO] pid: {os.getpid()} Execute sample success")
    say("[INFO] end to destroy stream")
    say("[INFO] end to destroy context")
    say(f"[INFO] end to reset device is {a.device}")
    say("[INFO] end to finalize acl")


def _print_unless_info(line="", **kw):
    if not str(line).startswith("[INFO]"):
        print(line, **kw)


def _check_args(a):
    """(loop count, --input items) from the parsed flags, refusing contradictory ones
    (msame's order: dump with profiler, then the dym flags)."""
    if a.dump == "true" and a.profiler == "true":
        raise UserError("--dump true --profiler true: dump and profiler can not both be true")
    dym = [n for n in DYM if getattr(a, n) is not None]
    if len(dym) > 1:
        raise UserError(f"--{dym[0]} and --{dym[1]}: dymBatch dymDims dymHW dymShape cannot be set at the same time")
    if a.dymShape is not None and not a.input.strip():  # sample_process.cpp's check
        raise UserError(f"--dymShape {a.dymShape}: the dymShape parameter must be used with the input parameter")
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
    for what in ("profiler", "dump"):  # msame makes OUTPUT/<what> before it loads the model
        if getattr(a, what) == "true":
            fsio.make_dirs(os.path.join(a.output, what))
            print(
                f"[WARN] --{what} true: no NPU here, nothing to {'profile' if what == 'profiler' else 'dump'}; "
                f"{os.path.join(a.output, what)} is made as msame makes it and stays empty "
                "(each inference's time is in the run's run.json)"
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
        input_shape=a.input_shape or a.dymShape,
        output_nodes=a.output_node_names,
        inputs=inputs,
        dym_hw=a.dymHW,
        dym_dims=a.dymDims,
    )


if __name__ == "__main__":
    run(main)
