"""`make bench`: speed and memory targets, measured as ratios within one run.

Writes one JSON per area to bench/results/ (`python bench/table.py` prints the README's
table from them). Each area's measurements live in bench/bench_<area>.py; this file
prepares the shared artifacts (a paper-size RealNVP frozen graph, its ONNX models and
input bins), calls them, and stamps every JSON with the machine (cores, BLAS), the load
around the whole area and the figures marked loaded (bench/stats.py). ``--smoke`` runs
every area in a reduced form that only shows the machinery works, into <area>_smoke.json.
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
AREAS = [
    "train_realnvp",
    "learning_realnvp",
    "learning_realnvp_speed",
    "train_rebar",
    "allreduce",
    "img2bin",
    "convert_verify",
    "runner",
]


def sh(cmd):
    t = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.time() - t


def save(results_dir, name, d, load=None, smoke=False):
    """Write one area's JSON, stamped with the machine, the area's load and its loaded figures."""
    from bench import stats
    from common import fsio

    figures = d.get("figures", {})
    d = dict(
        d,
        measured_at=time.strftime("%Y-%m-%d %H:%M:%S"),
        python=sys.version.split()[0],
        cpus=stats.cores(),
        blas=stats.blas_info(),
        loaded_figures=sorted(k for k, f in figures.items() if f.get("load", {}).get("loaded")),
        tolerances={
            k: {"limit": f"{frac} x cores of other processes' CPU", "why": why}
            for k, (frac, why) in stats.TOLERANCE.items()
        },
        smoke=smoke,
    )
    if load is not None:
        d["area_load"] = load.record(None)  # the whole area, for context: the flags are the figures'
        del d["area_load"]["loaded"]
    name = f"{name}_smoke" if smoke and not name.endswith("_smoke") else name
    fsio.write_json(os.path.join(results_dir, f"{name}.json"), d)
    print(f"\n## {name}\n" + json.dumps(d, indent=1))
    if d["loaded_figures"]:
        print(f"warning: {name}: loaded, not clean: {', '.join(d['loaded_figures'])}", file=sys.stderr)


def main(argv=None):
    """The flags, then one block an area in a fixed order."""
    from bench import stats

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--work", default=os.path.join(ROOT, "runs", "bench"))
    ap.add_argument("--only", nargs="*", choices=AREAS, metavar="AREA", help=f"areas to run (default all): {AREAS}")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="every area in a reduced, minutes-long form that shows the machinery works (<area>_smoke.json)",
    )
    a = ap.parse_args(argv)
    a.data_dir = os.path.abspath(a.data_dir)
    want = lambda name: not a.only or name in a.only  # noqa: E731
    os.makedirs(a.results, exist_ok=True)
    t0, load0 = time.time(), stats.load_1min()
    if load0 is not None and load0 > stats.TOLERANCE["all_cores"][0] * stats.cores():
        print(
            f"warning: the 1-minute load average is {load0} on {stats.cores()} cores: the machine is not idle, "
            "expect figures marked loaded",
            file=sys.stderr,
        )

    def area(name, fn):
        load = stats.Load()
        with load.watch():
            d = fn()
        save(a.results, name, dict(d, area_seconds=round(load.seconds, 1)), load, a.smoke)

    if want("train_realnvp"):
        from bench import bench_train_realnvp

        area("train_realnvp", lambda: bench_train_realnvp.run(a.data_dir, smoke=a.smoke))
    if want("learning_realnvp"):  # long: trains small/1000 and paper/400 steps over 3 seeds
        from bench import bench_learning_realnvp

        work = os.path.join(a.work, "learning_realnvp")
        area("learning_realnvp", lambda: bench_learning_realnvp.run(a.data_dir, smoke=a.smoke, work=work))
    if a.only and "learning_realnvp_speed" in a.only:  # only the speed part, into learning_realnvp.json
        learning_speed_only(a)
    if want("train_rebar"):
        from bench import bench_train_rebar

        area("train_rebar", lambda: bench_train_rebar.run(a.data_dir, smoke=a.smoke))
    if want("allreduce"):
        from bench import bench_allreduce

        area("allreduce", lambda: bench_allreduce.run(a.data_dir, smoke=a.smoke))
    if want("img2bin"):
        from bench import bench_img2bin

        area("img2bin", lambda: bench_img2bin.run(a.data_dir, repeats=2 if a.smoke else 9))
    if want("runner") or want("convert_verify"):
        paper = prepare_paper_realnvp(a.work, a.data_dir, a.smoke)
        if want("convert_verify"):
            from bench import bench_convert_verify

            area("convert_verify", lambda: bench_convert_verify.run(paper["pb"], paper["sig"], paper, a.smoke))
        if want("runner"):
            from bench import bench_runner

            args = (paper["pb"], paper["onnx"], paper["sig"], paper["inputs"], paper["flops_per_image"])
            smoke = dict(rounds=2, tiny_ns=(100, 400)) if a.smoke else {}
            area("runner", lambda: bench_runner.run(*args, **smoke))
    print(f"\nbench: {time.time() - t0:.0f} s in all", file=sys.stderr)


def learning_speed_only(a):
    """Re-time the RealNVP training loop (bench_learning_realnvp.speed) into the existing
    learning_realnvp.json, keeping its seeded runs and their time."""
    from bench import bench_learning_realnvp

    path = os.path.join(a.results, "learning_realnvp.json")
    with open(path) as f:
        old = json.load(f)
    old.pop("speed", None)  # the figures' format before issue #24
    sp = bench_learning_realnvp.speed(a.data_dir, os.path.join(a.work, "learning_realnvp"), a.smoke)
    seeds_at = old.get("seed_runs_measured_at", old.get("measured_at"))  # save() stamps the time of this run
    new = dict(old, seed_runs_measured_at=seeds_at, figures={**old.get("figures", {}), **sp})
    save(a.results, "learning_realnvp", new, smoke=a.smoke)


def prepare_paper_realnvp(work, data_dir, smoke=False):
    """Paper-size RealNVP (untrained weights: speed does not depend on them), frozen at batch 16;
    256 input images (32 with ``smoke``). Freeze and conversion are timed here, with their load."""
    from bench import bench_train_realnvp, stats

    train = os.path.join(work, "realnvp_paper", "train")
    model = os.path.join(work, "realnvp_paper", "model")
    inputs = os.path.join(work, "realnvp_paper", "inputs")
    if not os.path.exists(os.path.join(train, "checkpoint")):
        sh(paper_checkpoint_cmd(data_dir, train))
    pb = os.path.join(model, "realnvp.pb")
    freeze_load = stats.Load()
    with freeze_load.watch():
        freeze_s = sh([PY, "freeze/freeze_realnvp.py", "--ckpt", train, "--batch", "16", "--out", model, "--force"])
    onnx = os.path.join(model, "realnvp.onnx")
    sh([PY, "convert/to_onnx.py", "--model", pb, "--output", onnx, "--force"])
    inputs += "_smoke" if smoke else ""
    sh(paper_inputs_cmd(data_dir, os.path.join(model, "realnvp.json"), inputs, 32 if smoke else 256))
    return {
        "pb": pb,
        "onnx": onnx,
        "sig": os.path.join(model, "realnvp.json"),
        "inputs": inputs,
        "freeze_s": freeze_s,
        "freeze_load": freeze_load,
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


def paper_inputs_cmd(data_dir, sig, inputs, limit=256):
    """The first ``limit`` CIFAR-10 test images as the frozen model's input bins."""
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
        str(limit),
        "--seed",
        "0",
        "--force",
    ]


if __name__ == "__main__":
    main()
