"""RealNVP learning-speed guard (issue #14): test bits/dim at fixed steps, over seeds.

Trains the ``small`` config for 1000 steps and the ``paper`` config for 400 steps (batch 12,
lr 1e-3, dropout 0, Adam 0.95/0.9995 -- the settings the reference implementation was
compared at), over seeds 1, 2, 3, each run a fresh ``train/train_realnvp.py`` process.
Records, per run, the test bits/dim on the first 1008 test images (what the reference's
batch-12 loop evaluates) at fixed steps, the train bits/dim (mean over the 50 steps before
each record), images/s of the training loop, wall time and the machine's load average
before and after; per config, the mean test bpd over the seeds and the reference's mean
(the target: ours at or below it). Train-bpd keys are the 50-step means (``train_bpd_mean``
of train/train_realnvp.py) at each record.

The full run is long (about 1-2 h on 2 shared cores); ``--smoke`` runs a seconds-long
version (tiny32 config, a few steps, one seed) that only shows the machinery works.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
if ROOT not in sys.path:  # run as a script too
    sys.path.insert(0, ROOT)

from bench import stats  # noqa: E402

# the reference's test bpd (issue #14: taesungp/real-nvp under TF 2.21 compat.v1, same data, seeds 1 and 2)
REFERENCE = {
    "small": {"steps": 1000, "test_bpd": {"1": 5.108, "2": 5.210}, "target_mean": 5.16},
    "paper": {"steps": 400, "test_bpd": {"1": 5.618, "2": 5.998}, "target_mean": 5.81},
}
PLAN = {
    "small": {"steps": 1000, "eval_every": 200, "log_every": 50},
    "paper": {"steps": 400, "eval_every": 100, "log_every": 50},
}
SMOKE = {"tiny32": {"steps": 20, "eval_every": 10, "log_every": 5}}
SPEED = {"small": 200, "paper": 60}  # speed(): steps of the short timed runs
SMOKE_SPEED = {"tiny32": 30}  # records at 10, 20, 30: the 10-20 rate has no evaluation in it
SEEDS = (1, 2, 3)
BATCH = 12
TEST_IMAGES = 1008


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def train_command(data_dir, out, config, steps, eval_every, seed, extra=(), log_every=50, test_images=TEST_IMAGES):
    """One fresh train/train_realnvp.py run with the compared settings (batch, lr, dropout 0)."""
    return [
        PY,
        "train/train_realnvp.py",
        "--data_url",
        data_dir,
        "--train_url",
        out,
        "--config",
        config,
        "--max_steps",
        str(steps),
        "--batch_size",
        str(BATCH),
        "--learning_rate",
        "1e-3",
        "--dropout_p",
        "0",
        "--seed",
        str(seed),
        "--test_images",
        str(test_images),
        "--eval_every",
        str(eval_every),
        "--log_every",
        str(log_every),
        "--save_interval",
        "1000",
        *extra,
    ]


def read_records(out):
    """(train records, {step: test bpd}, images/s samples) from a run's metrics.jsonl."""
    with open(os.path.join(out, "metrics.jsonl")) as f:
        ms = [json.loads(line) for line in f if line.strip()]
    train = [r for r in ms if r["kind"] == "train"]
    test = {str(r["step"]): round(r["test_bpd"], 4) for r in ms if "test_bpd" in r and r["kind"] != "epoch"}
    test.update({str(r["step"]): round(r["test_bpd"], 4) for r in ms if r["kind"] == "epoch"})
    # images/s of the training loop: the last train record's clock covers steps and the evaluations
    # in between, so use the step-to-step differences between records with no evaluation between them
    evals = sorted(int(s) for s in test)
    rates = [
        (b["step"] - a["step"]) * BATCH / (b["seconds"] - a["seconds"])
        for a, b in zip(train, train[1:])
        if not any(a["step"] < e <= b["step"] for e in evals) and b["seconds"] > a["seconds"]
    ]
    return train, test, rates


def train_once(data_dir, work, config, steps, eval_every, seed, extra=(), log_every=50, test_images=TEST_IMAGES):
    out = os.path.join(work, f"{config}_s{seed}" + ("" if test_images == TEST_IMAGES else "_speed"))
    if os.path.exists(out):
        import shutil

        shutil.rmtree(out)
    cmd = train_command(data_dir, out, config, steps, eval_every, seed, extra, log_every, test_images)
    load0, t, load = load_average(), time.time(), stats.Load()
    with load.watch():
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - t
    train, test, rates = read_records(out)
    return {
        "_rates": rates,
        "_load": load,
        "seed": seed,
        "command": " ".join(cmd[1:]),
        "test_bpd": test,
        "train_bpd_mean50": {str(r["step"]): round(r["train_bpd_mean"], 4) for r in train},
        "images_per_s": round(float(np.median(rates)), 2) if rates else None,
        "wall_seconds": round(wall, 1),
        "load_before": load0,
        "load_after": load_average(),
    }


def speed(data_dir, work, smoke=False):
    """images/s of the training loop per config, from a short run with no evaluation in the
    timed steps (seed 1, 10-step records): {name: figure} of the record-to-record rates, with
    the load around the run."""
    figures = {}
    for config, steps in (SMOKE_SPEED if smoke else SPEED).items():
        r = train_once(data_dir, work, config, steps, 0, 1, log_every=10, test_images=BATCH)
        figures[f"loop_{config}_images_per_s"] = stats.figure(
            r["_rates"],
            "images/s",
            r["_load"],
            "all_cores",
            f"training loop {config}",
            f"RealNVP training loop (train/train_realnvp.py, feeding included), {config} config, batch {BATCH}",
            steps=steps,
        )
    return figures


def run(data_dir, smoke=False, work=None, seeds=SEEDS, extra=()):
    plan = SMOKE if smoke else PLAN
    seeds = seeds[:1] if smoke else seeds
    work = work or tempfile.mkdtemp(prefix="bench_learning_realnvp_")
    res = {
        "batch": BATCH,
        "learning_rate": 1e-3,
        "dropout_p": 0,
        "test_images": TEST_IMAGES,
        "smoke": smoke,
        "extra_flags": list(extra),
        "configs": {},
    }
    res["figures"] = speed(data_dir, work, smoke)  # first: before the long runs, the likeliest idle moment
    for config, p in plan.items():
        runs = [
            train_once(data_dir, work, config, p["steps"], p["eval_every"], s, extra, p["log_every"]) for s in seeds
        ]
        load = stats.Load.merged(*(r.pop("_load") for r in runs))
        for r in runs:
            r.pop("_rates")
        final = [r["test_bpd"][str(p["steps"])] for r in runs]
        ref = REFERENCE.get(config, {}).get("target_mean")
        res["figures"][f"test_bpd_{config}"] = stats.figure(
            final,
            "bits/dim",
            load,
            None,  # bits/dim do not depend on the load
            label=f"RealNVP learning, test bits/dim (first {TEST_IMAGES} test images), {config}/{p['steps']} steps, "
            f"seeds {', '.join(map(str, seeds))}",
            target=None if ref is None else f"<= {ref} (reference mean)",
            met=None if ref is None else (lambda m, ref=ref: m <= ref),
            mean=round(float(np.mean(final)), 4),
        )
        speeds = [r["images_per_s"] for r in runs if r["images_per_s"]]
        entry = {
            "steps": p["steps"],
            "runs": runs,
            "test_bpd_final_mean": round(float(np.mean(final)), 4),
            "images_per_s_median": round(float(np.median(speeds)), 2) if speeds else None,
        }
        if config in REFERENCE:
            ref = REFERENCE[config]
            entry["reference_target_mean"] = ref["target_mean"]
            entry["at_or_below_reference"] = bool(entry["test_bpd_final_mean"] <= ref["target_mean"])
        res["configs"][config] = entry
    res["note"] = (
        "CPU, shared machine: the load averages say how idle it was; images/s includes the "
        "per-step Python/feeding overhead of the real training loop"
    )
    return res


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out", help="write the JSON here (default: print)")
    a = ap.parse_args()
    r = run(os.path.abspath(a.data_dir), smoke=a.smoke)
    s = json.dumps(r, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(s + "\n")
    print(s)
