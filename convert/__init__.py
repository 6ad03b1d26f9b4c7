"""Convert a frozen .pb: ATC (.om on an Ascend host) or the portable ONNX stand-in."""
