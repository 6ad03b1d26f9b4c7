"""``ascend-road TOOL [ARGS]``: every tool of the road as one installed command.

``pip install .`` puts ``ascend-road`` on PATH; ``ascend-road msame --model m.onnx ...``
is ``python infer/msame.py --model m.onnx ...`` with the same flags, output and exit code.
"""

import importlib
import sys

TOOLS = {  # name -> (module, what it does)
    "train-realnvp": ("train.train_realnvp", "train RealNVP on CIFAR-10"),
    "train-rebar": ("train.train_rebar", "train the SBN with REBAR and its estimators on binarized MNIST"),
    "freeze-graph": ("freeze.freeze_graph", "freeze any TF1 model (checkpoint, SavedModel, .pb)"),
    "freeze-realnvp": ("freeze.freeze_realnvp", "freeze a RealNVP checkpoint"),
    "freeze-rebar": ("freeze.freeze_rebar", "freeze an SBN checkpoint"),
    "atc": ("convert.atc", "ATC with your atc command line (portable ONNX where atc is absent)"),
    "to-onnx": ("convert.to_onnx", "frozen .pb -> ONNX with ATC's precision modes emulated"),
    "img2bin": ("data_tools.img2bin", "images or a dataset -> .bin model inputs"),
    "export-images": ("data_tools.export_images", "a dataset split as PNG files + labels.txt"),
    "fetch-data": ("data_tools.fetch_data", "download or import CIFAR-10 and binarized MNIST"),
    "msame": ("infer.msame", "msame: run a model on .bin inputs, msame's output layout"),
    "ais_bench": ("infer.ais_bench", "ais_bench (msame's successor): its flags, output files and summary"),
    "reference": ("verify.reference", "golden outputs from the checkpoint"),
    "loss-check": ("verify.loss_check", "offline outputs vs golden outputs, PASS/FAIL"),
    "compare-layers": ("verify.compare_layers", "the precision doctor: layer by layer, keep_dtype list"),
    "report": ("verify.report", "the self-verification report"),
    "compare-runs": ("verify.compare_runs", "compare training runs, with an accuracy gate"),
    "launch": ("train.launch", "start a data-parallel training on this host"),
}


def usage():
    width = max(map(len, TOOLS))
    lines = [f"  {n:<{width}}  {what}" for n, (mod, what) in TOOLS.items()]
    return "usage: ascend-road TOOL [ARGS]   (ascend-road TOOL --help)\n\ntools:\n" + "\n".join(lines)


from common.errors import cli, unwind_on_sigterm  # noqa: E402


@cli
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in TOOLS:
        print(f"error: unknown tool {name!r}\n{usage()}", file=sys.stderr)
        return 2
    try:
        mod = importlib.import_module(TOOLS[name][0])
    except ImportError as e:
        print(f"error: {name}: not available in this installation ({e})", file=sys.stderr)
        return 2
    sys.argv = [f"ascend-road {name}"] + rest
    unwind_on_sigterm()  # as run() does for `python stage/tool.py`
    rc = mod.main(rest)
    return 0 if rc is None else rc


if __name__ == "__main__":
    sys.exit(main())
