"""The freeze command of a built-in model (freeze_realnvp.py, freeze_rebar.py): one CLI
over freeze.core.freeze, the model's graphs, options and file stems read from its spec."""

import os

from common import fsio
from common.cli import add_device, add_force, add_output, tool_parser
from common.errors import UserError
from freeze import core
from models import spec as model_spec
from train import runinfo


def main(name, argv=None, doc="", example=""):
    spec = model_spec.get(name)
    ap = tool_parser(None, doc, example)
    ap.add_argument("--ckpt", required=True, help="training folder (newest checkpoint) or a checkpoint prefix")
    ap.add_argument("--batch", type=int, default=16, help="static batch size of the offline model (default 16)")
    add_output(ap, "--out", required=True, help="output folder")
    ap.add_argument(
        "--graph", default=spec.graphs[0], choices=spec.graphs, help=f"inference graph (default {spec.graphs[0]})"
    )
    for opt in spec.options:  # graph options beyond config, e.g. the SBN's K samples
        ap.add_argument(f"--{opt}", type=int, default=100, help=f"graph option {opt} (default 100)")
    add_device(ap, choices=("cpu", "gpu"), help="device used to run the checks")
    add_force(ap, help="overwrite existing outputs")
    a = ap.parse_args(argv)
    opts = {opt: getattr(a, opt) for opt in spec.options}
    for k, v in dict(batch=a.batch, **opts).items():
        if v < 1:
            raise UserError(f"--{k} must be >= 1, got {v}")
    stem = spec.stem(a.graph)
    fsio.refuse_overwrite([os.path.join(a.output, stem + ext) for ext in (".pb", ".json")], a.force)
    _, info = runinfo.resolve(a.ckpt)
    runinfo.expect_model(info, spec.name, f"use freeze/freeze_{info['model']}.py")
    with core.Restored(a.ckpt, a.batch, a.graph, device=a.device, **opts) as r:
        sig = core.freeze(r, a.output, stem, batch_independent=spec.batch_independent, force=a.force)
    c = sig.checks
    print(
        f"wrote {os.path.join(a.output, stem)}.pb ({sig.artifact['bytes']} bytes, {c['op_count']} ops) and "
        f"{stem}.json; step {sig.checkpoint['step']}\ninputs:  {sig.atc_input_shape()}\n"
        f"outputs: {sig.atc_out_nodes()}\nfrozen vs checkpoint max rel err "
        f"{c['frozen_vs_checkpoint_max_rel']:.2e}"
    )
    return 0
