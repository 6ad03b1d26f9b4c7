"""Freeze a REBAR-trained SBN checkpoint to rebar.pb + rebar.json (the signature).

Inputs x [B,784] (binarized images; task=sp: x_top [B,392], the observed top half, and
x_bottom [B,392], the half it scores) and u [B,K,n_layer*200] (uniform noise: the graph
has no random ops); outputs log_weights [B,K], elbo [B], iwae [B]. The task and sizes come
from the checkpoint's config.json. freeze.core checks the frozen graph against the
checkpoint on the same inputs before anything is written.
"""

import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.errors import cli, run  # noqa: E402
from freeze import builtin  # noqa: E402

EXAMPLE = """example:
  python freeze/freeze_rebar.py --ckpt runs/rebar --batch 5 --samples 100 --out runs/rebar/frozen
"""


@cli
def main(argv=None):
    return builtin.main("rebar", argv, __doc__.split("\n\n")[0], EXAMPLE)


if __name__ == "__main__":
    run(main)
