"""Freeze a RealNVP checkpoint to a static-batch .pb plus its signature JSON.

forward: x [B,32,32,3] in [-1,1], u [B,32,32,3] noise -> z [B,16,16,12], logdet [B], bpd [B]
         (DIR/realnvp.pb + DIR/realnvp.json)
sample:  z [B,16,16,12] -> x [B,32,32,3] in [-1,1] (DIR/realnvp_sample.pb + .json)

The frozen graph is checked (freeze.core): no variables or random ops, outputs equal
the checkpoint's, batch-independent, loads in a fresh process.
"""
import argparse
import os

from common.errors import UserError, cli, run
from freeze import core
from models import realnvp
from train import runinfo

EXAMPLE = """example:
  python freeze/freeze_realnvp.py --ckpt runs/realnvp --batch 16 --out runs/realnvp/model
  python freeze/freeze_realnvp.py --ckpt runs/realnvp/model.ckpt-300 --batch 16 --out models/ --graph sample
"""


def stem(graph):
    return "realnvp" if graph == "forward" else f"realnvp_{graph}"


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=EXAMPLE,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="training folder (newest checkpoint) or a checkpoint prefix")
    ap.add_argument("--batch", type=int, required=True, help="static batch size of the offline model")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--graph", default="forward", choices=realnvp.GRAPHS)
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu"), help="device used to run the checks")
    ap.add_argument("--force", action="store_true", help="overwrite existing outputs")
    a = ap.parse_args(argv)
    if a.batch < 1:
        raise UserError(f"--batch must be >= 1, got {a.batch}")
    name = stem(a.graph)
    outs = [os.path.join(a.out, name + ext) for ext in (".pb", ".json")]
    existing = [p for p in outs if os.path.exists(p)]
    if existing and not a.force:
        raise UserError(f"{existing[0]}: already exists (pass --force to overwrite)")
    _, info = runinfo.resolve(a.ckpt)
    if info["model"] != "realnvp":
        raise UserError(f"{info['_path']}: checkpoint is a {info['model']!r} model, expected 'realnvp' "
                        "(use the freeze script of that model)")
    with core.Restored(a.ckpt, a.batch, a.graph, device=a.device) as r:
        sig = core.freeze(r, a.out, name)
    print(f"wrote {outs[0]} ({sig.artifact['bytes']} bytes) and {outs[1]}\n"
          f"inputs:  {sig.atc_input_shape()}\noutputs: {sig.atc_out_nodes()}\n"
          f"frozen vs checkpoint max rel err {sig.checks['frozen_vs_checkpoint_max_rel']:.2e}")


if __name__ == "__main__":
    run(main)
