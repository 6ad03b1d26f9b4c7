"""A stand-in for Huawei's ``ais_bench`` package, for hosts without it: put ``compat/`` on
PYTHONPATH and ``from ais_bench.infer.interface import InferSession`` or ``python -m
ais_bench ...`` run this project's ais_bench (infer/ais_bench.py) on the portable
backends. Not installed by ``pip install .``: on an Ascend host the real package wins."""

import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # the repository, for `infer.ais_bench`
    sys.path.append(_ROOT)
