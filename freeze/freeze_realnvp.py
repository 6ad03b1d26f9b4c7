"""Freeze a RealNVP checkpoint to a static-batch .pb plus its signature JSON.

forward: x [B,32,32,3] in [-1,1], u [B,32,32,3] noise -> z [B,16,16,12], logdet [B], bpd [B]
         (DIR/realnvp.pb + DIR/realnvp.json)
sample:  z [B,16,16,12] -> x [B,32,32,3] in [-1,1] (DIR/realnvp_sample.pb + .json)

The frozen graph is checked (freeze.core): no variables or random ops, outputs equal
the checkpoint's, batch-independent, loads in a fresh process.
"""

import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.errors import cli, run  # noqa: E402
from freeze import builtin  # noqa: E402

EXAMPLE = """example:
  python freeze/freeze_realnvp.py --ckpt runs/realnvp --batch 16 --out runs/realnvp/model
  python freeze/freeze_realnvp.py --ckpt runs/realnvp/model.ckpt-300 --batch 16 --out models/ --graph sample
"""


@cli
def main(argv=None):
    return builtin.main("realnvp", argv, __doc__.split("\n\n")[0], EXAMPLE)


if __name__ == "__main__":
    run(main)
