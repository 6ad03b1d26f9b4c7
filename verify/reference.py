"""Golden outputs from the checkpoint, in msame's layout, on the same input .bin files.

The checkpoint runner backend rebuilds the inference graph the signature describes and
restores the checkpoint it records (a built-in model from its config; a user model from
its meta graph or SavedModel, with the defaults freeze folded fed), so the goldens never
depend on freeze or convert. ``--model m/mine.pb`` runs the frozen graph instead.
"""

import argparse

from common.cli import ArgumentParser, add_device, add_input, add_output, add_verbosity
from common.errors import UserError, cli, run
from common.log import log, quiet
from freeze.signature import Signature


def make_reference(sig, inputs, output, fmt="BIN", progress=True, device="cpu", model=None):
    """Run the checkpoint (or ``model``, e.g. the frozen .pb) on input folders; returns the
    run folder OUT/<T>."""
    from infer.runner import open_runner, run_inputs
    from models import spec

    if isinstance(sig, str):
        sig = Signature.load(sig)
    if sig.batch_coupling_warning:
        log.warning(sig.batch_coupling_warning)
    if model is not None:
        runner = open_runner(model, signature=sig, device=device)
    else:
        if spec.for_signature(sig) is not None and not sig.checkpoint.get("path"):
            raise UserError(f"{sig.path}: signature records no checkpoint path (freeze writes it)")
        if sig.source.get("kind") == "onnx":
            raise UserError(
                f"{sig.path}: the signature was read from an ONNX model: no checkpoint to "
                "compute golden outputs from (pass --model)"
            )
        runner = open_runner(sig.checkpoint.get("path") or sig.path, signature=sig, backend="checkpoint", device=device)
    with runner as r:
        return run_inputs(r, list(inputs), output, fmt=fmt, resume=False, loop=1, progress=progress)


def build_parser():
    p = ArgumentParser(
        description="Write golden outputs (msame layout) computed from the checkpoint the signature records.",
        epilog="example: python verify/reference.py --signature runs/demo/realnvp/model/realnvp.json "
        "--input runs/demo/realnvp/bins/x,runs/demo/realnvp/bins/u --output runs/demo/realnvp/golden",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--signature", required=True, help="model signature (.json)")
    add_input(p, required=True, help="input folders, comma separated, in signature input order")
    add_output(p, required=True, help="output folder; a new <T> folder is made inside")
    p.add_argument("--outfmt", default="BIN", help="BIN (default) or TXT, as msame")
    p.add_argument("--model", help="run this model file (e.g. the frozen .pb) instead of the checkpoint")
    add_device(p)
    add_verbosity(p)
    return p


@cli
def main(argv=None):
    a = build_parser().parse_args(argv)
    d = make_reference(
        a.signature,
        [s.strip() for s in a.input.split(",")],
        a.output,
        "TXT" if a.outfmt == "TXT" else "BIN",
        progress=not quiet(),
        device=a.device,
        model=a.model,
    )
    print(d)


if __name__ == "__main__":
    run(main)
