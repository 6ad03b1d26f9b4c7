"""Offline inference: the msame-compatible runner, its backends, and the output
layout (this stage owns it: infer/layout.py writes and reads msame's files)."""
