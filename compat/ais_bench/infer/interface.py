"""``ais_bench.infer.interface``: InferSession on this project's runners (infer/ais_bench.py)."""

from infer.ais_bench import InferSession, TensorDesc, dtype  # noqa: F401
