"""All-reduce of the paper RealNVP's gradients between training processes on loopback.

What the data-parallel trainer does each step (train/distributed.py): one collective
all-reduce (TF's gRPC collective ops, ring) of every gradient flattened into one float32
vector, plus the loss and a stop flag. Measured here with 2 worker processes (and 1, the
trivial group, for the fixed cost of the op), on a vector of exactly that size, against
the measured time of one paper-config training step.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import stats  # noqa: E402


def paper_param_count():
    from common.tfcompat import tf
    from models import realnvp

    with tf.Graph().as_default():
        cfg = realnvp.get_config("paper")
        x = tf.placeholder(tf.float32, [1] + cfg["image_shape"])
        realnvp.encode(x, x, cfg)
        return int(sum(v.shape.num_elements() for v in tf.trainable_variables()))


def _worker(index, hosts, n, reps):
    """One process of the measurement: prints a JSON line of per-call seconds."""
    from tensorflow.python.ops import collective_ops

    from common.tfcompat import tf
    from train import distributed

    cluster = distributed.Cluster(hosts, index, timeout=120.0)
    config, device = tf.ConfigProto(), "/cpu:0"
    if len(hosts) > 1:
        cluster.start(cluster.session_config(config))
        device = cluster.device + "/device:CPU:0"
    with tf.Graph().as_default():
        with tf.device(device):
            v = tf.Variable(tf.fill([n], float(index + 1)))
            red = collective_ops.all_reduce(v, len(hosts), 1, 1, "Add", "Div", timeout=120.0)
            op = tf.reduce_sum(red[:4])  # fetch 4 numbers, not 23 MB, so the timing is the all-reduce
        with tf.Session(cluster.target, config=config) as s:
            s.run(v.initializer)
            for _ in range(3):
                s.run(op)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                got = s.run(op)
                times.append(time.perf_counter() - t)
    expect = 4 * (len(hosts) + 1) / 2.0
    print(json.dumps({"index": index, "times": times, "ok": bool(abs(got - expect) < 1e-3)}), flush=True)


def measure(n, workers, reps=10):
    from train import launch

    ports = launch.free_ports(workers)
    hosts = ",".join(f"localhost:{p}" for p in ports)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                os.path.abspath(__file__),
                "--worker",
                str(i),
                "--hosts",
                hosts,
                "--n",
                str(n),
                "--reps",
                str(reps),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for i in range(workers)
    ]
    outs = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1]) for p in procs]
    assert all(o["ok"] for o in outs), outs
    per_call = [max(ts) for ts in zip(*(o["times"] for o in outs))]  # a step waits for the slowest
    return {"median_s": round(statistics.median(per_call), 4), "min_s": round(min(per_call), 4), "reps": reps}


def run(data_dir, smoke=False, rounds=3):
    """The 2-worker all-reduce and the paper training step interleaved over ``rounds``
    rounds (each round: one all-reduce measurement of ``reps`` calls, then 3 steps)."""
    from bench.bench_train_realnvp import training_steps

    rounds, reps = (2, 3) if smoke else (rounds, 10)
    n = paper_param_count()
    payload = 4 * (n + 2)
    one = measure(n + 2, 1, reps)
    batch = 12
    with training_steps(data_dir, "paper", batch) as (timed, _):
        s, loads = stats.interleave(
            {"allreduce": lambda: measure(n + 2, 2, reps)["median_s"], "step": lambda: timed(1 if smoke else 3)}, rounds
        )
    share = [ar / (st + ar) for ar, st in zip(s["allreduce"], s["step"])]
    t_step, t_ar = stats.spread(s["step"])["median"], stats.spread(s["allreduce"])["median"]
    # ring all-reduce: each of W workers sends (and receives) 2 (W-1)/W of the payload
    sent = {w: int(2 * (w - 1) / w * payload) for w in (2, 4, 8, 16)}
    bw = sent[2] / t_ar  # effective loopback bytes/s of one worker (send side)
    both = stats.Load.merged(loads["allreduce"], loads["step"])
    figures = {
        "allreduce_2_workers_s": stats.figure(
            s["allreduce"],
            "s",
            loads["allreduce"],
            "all_cores",
            "allreduce",
            "all-reduce of the paper RealNVP's gradients, 2 workers on loopback (median of each round's calls)",
        ),
        "paper_step_s": stats.figure(
            s["step"],
            "s",
            loads["step"],
            "all_cores",
            "allreduce step",
            f"paper training step, batch {batch}, 1 worker",
        ),
        "allreduce_share_of_step_2_workers": stats.figure(
            share,
            "fraction",
            both,
            "all_cores",
            "allreduce share",
            "all-reduce share of a step, 2 workers (per-round t_ar / (t_step + t_ar))",
            target="<= 5%",
            met=lambda m: m <= 0.05,
        ),
    }
    return {
        "figures": figures,
        "rounds": rounds,
        "reps_per_allreduce": reps,
        "paper_parameters": n,
        "allreduce_payload_bytes": payload,
        "bytes_sent_per_worker_per_step": sent,
        "allreduce_1_worker": one,
        "paper_step_batch_per_worker": batch,
        "loopback_effective_gbit_per_s": round(8 * bw / 1e9, 2),
        "expected_efficiency": {
            f"{w}_workers_{g}gbit": round(t_step / (t_step + sent[w] * 8 / (g * 1e9) + 0.001 * 2 * (w - 1)), 3)
            for w in (2, 8, 16)
            for g in (10, 25)
        },
        "note": "2 cores shared by both processes: loopback shows the all-reduce's cost, not a speed-up "
        "(two workers on 2 cores each get half the CPU). expected_efficiency = t_step / (t_step + "
        "ring transfer at the link rate + 1 ms latency per ring hop), with this machine's paper step "
        "(the medians); a faster step (an NPU's) raises the all-reduce's share in proportion.",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", type=int)
    ap.add_argument("--hosts")
    ap.add_argument("--n", type=int)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    a = ap.parse_args()
    if a.worker is not None:
        _worker(a.worker, a.hosts.split(","), a.n, a.reps)
    else:
        print(json.dumps(run(a.data_dir), indent=1))


if __name__ == "__main__":
    main()
