"""Pieces every stage shares: the user-error type and CLI wrapper, atomic writes,
and the TensorFlow session set-up for cpu, gpu and npu."""
