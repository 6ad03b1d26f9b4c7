"""``python -m ais_bench ...`` with compat/ on PYTHONPATH: this project's ais_bench."""

from common.errors import run
from infer.ais_bench import main

run(main)
