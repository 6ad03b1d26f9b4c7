"""Freeze a REBAR-trained SBN checkpoint to rebar.pb + rebar.json (the signature).

Inputs x [B,784] (binarized images) and u [B,K,n_layer*200] (uniform noise: the graph
has no random ops); outputs log_weights [B,K], elbo [B], iwae [B]. freeze.core checks the
frozen graph against the checkpoint on the same inputs before anything is written.

Example:
  python freeze/freeze_rebar.py --ckpt runs/rebar --batch 5 --samples 100 --out runs/rebar/frozen
"""
import argparse
import os

from common.errors import UserError, cli, run
from freeze import core
from train import runinfo


@cli
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="training folder (newest checkpoint) or checkpoint prefix")
    ap.add_argument("--batch", type=int, default=5, help="static batch: images per run (default 5)")
    ap.add_argument("--samples", type=int, default=100, help="K samples per image (default 100)")
    ap.add_argument("--out", required=True, help="output folder for rebar.pb and rebar.json")
    ap.add_argument("--device", default="cpu", choices=("cpu", "gpu", "npu"))
    ap.add_argument("--force", action="store_true", help="overwrite an existing rebar.pb / rebar.json")
    a = ap.parse_args(argv)
    for k in ("batch", "samples"):
        if getattr(a, k) < 1:
            raise UserError(f"--{k} must be >= 1, got {getattr(a, k)}")
    existing = [p for p in (os.path.join(a.out, "rebar.pb"), os.path.join(a.out, "rebar.json")) if os.path.exists(p)]
    if existing and not a.force:
        raise UserError(f"{existing[0]}: already exists; refusing to overwrite (use --force)")
    _, info = runinfo.resolve(a.ckpt)
    if info["model"] != "rebar":
        raise UserError(f"{info['_path']}: checkpoint is a {info['model']!r} model, expected 'rebar' "
                        f"(use freeze/freeze_{info['model']}.py)")
    with core.Restored(a.ckpt, a.batch, "forward", device=a.device, samples=a.samples) as r:
        sig = core.freeze(r, a.out, "rebar")
    c = sig.checks
    print(f"wrote {os.path.join(a.out, 'rebar.pb')} ({sig.artifact['bytes']} bytes, {c['op_count']} ops) "
          f"and rebar.json; step {sig.checkpoint['step']}; frozen vs checkpoint max rel err "
          f"{c['frozen_vs_checkpoint_max_rel']:.2g}")
    return 0


if __name__ == "__main__":
    run(main)
