"""What the run record's input digests cost (issue 23): every input file is hashed (sha256)
once before a run, so that --resume and loss_check can prove a run read the same bytes.

1000 CIFAR-10 test images as float32 bins, in both layouts a user makes: one image per file
(Ascend's img2bin) and static batches of 16 (img2bin --signature). For each: the time to hash
every file, and a whole msame run (infer/runner.run_inputs, hashing included) of a one-op ONNX
model (x * 1) on them: the model does almost nothing, so the share is an upper bound of what
hashing adds to any real model's run. Best of 3 each; the machine's load moves both.
Run: python bench/bench_input_digest.py
"""

import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _model(folder, batch):
    import onnx
    from onnx import TensorProto, helper

    from freeze.signature import Signature, Tensor

    shape = [batch, 32, 32, 3]
    g = helper.make_graph(
        [helper.make_node("Mul", ["x:0", "one"], ["y:0"])],
        "mul",
        [helper.make_tensor_value_info("x:0", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y:0", TensorProto.FLOAT, shape)],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    path = os.path.join(folder, f"mul{batch}.onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    Signature("mul", "forward", batch, [Tensor("x", "x:0", shape)], [Tensor("y", "y:0", shape)]).save(
        path[:-5] + ".json"
    )
    return path


def _best(f, n=3):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def _run(model, folder, out):
    from infer import runner

    with runner.open_runner(model) as r:
        runner.run_inputs(r, [folder], out, progress=False)


def measure(data_dir, n_images=1000):
    from data_tools import binfiles, datasets

    x = datasets.load_cifar10(data_dir, "test")[0][:n_images]
    x = (x.astype(np.float32) / 127.5 - 1).reshape(-1, 32, 32, 3)
    out = {"images": int(x.shape[0])}
    with tempfile.TemporaryDirectory() as d:
        for batch in (1, 16):
            folder = os.path.join(d, f"b{batch}", "x")
            os.makedirs(folder)
            for i in range(0, len(x) - batch + 1, batch):
                x[i : i + batch].tofile(os.path.join(folder, f"img_{i:05d}.bin"))
            files = sorted(os.path.join(folder, n) for n in os.listdir(folder))
            hash_s = _best(lambda files=files: [binfiles.content_digest(f) for f in files])
            model = _model(d, batch)
            runs = []
            for k in range(3):
                t = time.perf_counter()
                _run(model, folder, os.path.join(d, f"out{batch}_{k}"))
                runs.append(time.perf_counter() - t)
            run_s = min(runs)
            mb = sum(os.path.getsize(f) for f in files) / 1e6
            out[f"batch{batch}"] = {
                "files": len(files),
                "megabytes": round(mb, 1),
                "hash_all_files_s": round(hash_s, 4),
                "hash_MB_per_s": round(mb / hash_s),
                "whole_run_s": round(run_s, 3),
                "hash_share_of_run": round(hash_s / run_s, 3),
            }
    return out


if __name__ == "__main__":
    from bench.run import save

    save(os.path.join(ROOT, "bench", "results"), "input_digest", measure(os.environ.get("DATA_DIR", "data")))
