"""A small ONNX model with free dims and cards recording ATC's dynamic gears, made on the
fly for the runner's gear tests (the convert stage writes such cards; these are written
here by hand so the runner side is tested on its own).

x [N, H, W] float32 (all three symbolic) -> y = 2 x + 1 [N, H, W], s = sum over H, W [N].
"""

import os

import numpy as np

FLAGS = {"batch": "dynamic_batch_size", "hw": "dynamic_image_size", "dims": "dynamic_dims"}


def onnx_model(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "H", "W"])
    s = helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N"])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "one"], ["y"]),
        helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0),
    ]
    g = helper.make_graph(nodes, "dyn", [x], [y, s], initializer=[two, one, axes])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def write(folder, kind, input_shape, gears):
    """folder/dyn.onnx + folder/dyn.json: a card whose shapes are the largest gear's."""
    from freeze.signature import Signature, Tensor

    os.makedirs(folder, exist_ok=True)
    model = onnx_model(os.path.join(folder, "dyn.onnx"))
    big = max(gears, key=lambda g: int(np.prod(g)))
    vals = iter(big)
    shape = [next(vals) if d == "-1" else int(d) for d in input_shape.split(":")[1].split(",")]
    Signature(
        "dyn",
        "forward",
        shape[0],
        [Tensor("x", "x", shape)],
        [Tensor("y", "y", shape), Tensor("s", "s", shape[:1])],
        source={"kind": "onnx"},
        artifact={
            "file": "dyn.onnx",
            "kind": "onnx",
            "dynamic": {"flag": FLAGS[kind], "input_shape": input_shape, "gears": [list(g) for g in gears]},
        },
    ).save(os.path.join(folder, "dyn.json"))
    return model
