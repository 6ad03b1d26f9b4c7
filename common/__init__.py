"""Pieces every stage shares: the user-error type and CLI wrapper, the command-line flags
(cli.py) and the logger (log.py), atomic writes, and the TensorFlow session set-up for cpu,
gpu and npu."""

import os

# TensorFlow's C++ INFO and WARNING lines are not the tools' to print. Set here, before
# anything can import TensorFlow (tf2onnx does too), unless the user chose a level;
# common.tfcompat drops the start-up lines TensorFlow prints before it reads this variable.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
