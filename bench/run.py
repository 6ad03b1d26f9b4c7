"""`make bench`: speed and memory targets, measured as ratios within one run.

Writes one JSON per area to bench/results/ and prints a summary table. Each area's
measurements live in bench/bench_<area>.py; this file prepares the shared artifacts
(a paper-size RealNVP frozen graph, its ONNX models and input bins) and calls them.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
PY = sys.executable


def sh(cmd):
    t = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t


def save(results_dir, name, d):
    from common import fsio

    d = dict(d, measured_at=time.strftime("%Y-%m-%d %H:%M:%S"), python=sys.version.split()[0], cpus=os.cpu_count())
    fsio.write_json(os.path.join(results_dir, f"{name}.json"), d)
    print(f"\n## {name}\n" + json.dumps(d, indent=1))


def main(argv=None):
    """The flags, then one block an area in a fixed order (a little over 60 lines for that)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--work", default=os.path.join(ROOT, "runs", "bench"))
    ap.add_argument("--only", nargs="*", help="areas to run (default all)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="learning_realnvp only: a seconds-long tiny run that shows the machinery works",
    )
    a = ap.parse_args(argv)
    a.data_dir = os.path.abspath(a.data_dir)
    want = lambda name: not a.only or name in a.only  # noqa: E731
    os.makedirs(a.results, exist_ok=True)

    if want("train_realnvp"):
        from bench import bench_train_realnvp

        save(a.results, "train_realnvp", bench_train_realnvp.run(a.data_dir))
    if want("learning_realnvp"):  # long: trains small/1000 and paper/400 steps over 3 seeds
        from bench import bench_learning_realnvp

        save(
            a.results,
            "learning_realnvp_smoke" if a.smoke else "learning_realnvp",
            bench_learning_realnvp.run(a.data_dir, smoke=a.smoke, work=os.path.join(a.work, "learning_realnvp")),
        )
    if a.only and "learning_realnvp_speed" in a.only:  # only the speed part, into learning_realnvp.json
        learning_speed_only(a)
    if want("train_rebar"):
        from bench import bench_train_rebar

        save(a.results, "train_rebar", bench_train_rebar.run(a.data_dir))
    if want("allreduce"):
        from bench import bench_allreduce

        save(a.results, "allreduce", bench_allreduce.run(a.data_dir, a.results))
    if want("img2bin"):
        from bench import bench_img2bin

        save(a.results, "img2bin", bench_img2bin.run(a.data_dir))
    if want("runner") or want("convert_verify"):
        paper = prepare_paper_realnvp(a.work, a.data_dir)
        if want("convert_verify"):
            from bench import bench_convert_verify

            save(
                a.results,
                "convert_verify",
                dict(
                    bench_convert_verify.run(paper["pb"], paper["sig"]), freeze_seconds_paper_realnvp=paper["freeze_s"]
                ),
            )
        if want("runner"):
            from bench import bench_runner

            save(
                a.results,
                "runner",
                bench_runner.run(paper["pb"], paper["onnx"], paper["sig"], paper["inputs"], paper["flops_per_image"]),
            )


def learning_speed_only(a):
    """Re-time the RealNVP training loop (bench_learning_realnvp.speed) into the existing
    learning_realnvp.json, keeping its seeded runs and their time."""
    from bench import bench_learning_realnvp

    path = os.path.join(a.results, "learning_realnvp.json")
    with open(path) as f:
        old = json.load(f)
    sp = bench_learning_realnvp.speed(a.data_dir, os.path.join(a.work, "learning_realnvp"))
    seeds_at = old.get("seed_runs_measured_at", old.get("measured_at"))  # save() stamps the time of this run
    save(a.results, "learning_realnvp", dict(old, seed_runs_measured_at=seeds_at, speed=sp))


def prepare_paper_realnvp(work, data_dir):
    """Paper-size RealNVP (untrained weights: speed does not depend on them), frozen at batch 16."""
    from bench import bench_train_realnvp

    train = os.path.join(work, "realnvp_paper", "train")
    model = os.path.join(work, "realnvp_paper", "model")
    inputs = os.path.join(work, "realnvp_paper", "inputs")
    if not os.path.exists(os.path.join(train, "checkpoint")):
        sh(paper_checkpoint_cmd(data_dir, train))
    pb = os.path.join(model, "realnvp.pb")
    freeze_s = sh([PY, "freeze/freeze_realnvp.py", "--ckpt", train, "--batch", "16", "--out", model, "--force"])
    onnx = os.path.join(model, "realnvp.onnx")
    sh([PY, "convert/to_onnx.py", "--model", pb, "--output", onnx, "--force"])
    sh(paper_inputs_cmd(data_dir, os.path.join(model, "realnvp.json"), inputs))
    return {
        "pb": pb,
        "onnx": onnx,
        "sig": os.path.join(model, "realnvp.json"),
        "inputs": inputs,
        "freeze_s": freeze_s,
        "flops_per_image": bench_train_realnvp.forward_flops_per_image("paper"),
    }


def paper_checkpoint_cmd(data_dir, train):
    """One training step of the paper config: a checkpoint to freeze."""
    return [
        PY,
        "train/train_realnvp.py",
        "--config",
        "paper",
        "--data_url",
        data_dir,
        "--train_url",
        train,
        "--batch_size",
        "16",
        "--max_steps",
        "1",
        "--init_batch_size",
        "16",
        "--test_images",
        "16",
        "--seed",
        "0",
    ]


def paper_inputs_cmd(data_dir, sig, inputs):
    """The first 256 CIFAR-10 test images as the frozen model's input bins."""
    return [
        PY,
        "data_tools/img2bin.py",
        "--dataset",
        "cifar10",
        "--split",
        "test",
        "--signature",
        sig,
        "--data-dir",
        data_dir,
        "-o",
        inputs,
        "--limit",
        "256",
        "--seed",
        "0",
        "--force",
    ]


if __name__ == "__main__":
    main()
