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


def run(data_dir, results_dir=None):
    n = paper_param_count()
    payload = 4 * (n + 2)
    two = measure(n + 2, 2)
    one = measure(n + 2, 1)
    # the step is measured in this run, beside the all-reduce (a ratio of one run, one load)
    from bench.bench_train_realnvp import train_speed

    step = train_speed(data_dir, "paper", 12, steps=3)
    t_step = step["seconds_per_step"]
    t_ar = two["median_s"]
    # ring all-reduce: each of W workers sends (and receives) 2 (W-1)/W of the payload
    sent = {w: int(2 * (w - 1) / w * payload) for w in (2, 4, 8, 16)}
    bw = sent[2] / t_ar  # effective loopback bytes/s of one worker (send side)
    return {
        "paper_parameters": n,
        "allreduce_payload_bytes": payload,
        "bytes_sent_per_worker_per_step": sent,
        "allreduce_2_workers": two,
        "allreduce_1_worker": one,
        "paper_step_seconds_1_worker": t_step,
        "paper_step_batch_per_worker": step["batch"],
        "allreduce_share_of_step_2_workers": round(t_ar / (t_step + t_ar), 4),
        "target_share": 0.05,
        "meets_target": t_ar / (t_step + t_ar) <= 0.05,
        "loopback_effective_gbit_per_s": round(8 * bw / 1e9, 2),
        "expected_efficiency": {
            f"{w}_workers_{g}gbit": round(t_step / (t_step + sent[w] * 8 / (g * 1e9) + 0.001 * 2 * (w - 1)), 3)
            for w in (2, 8, 16)
            for g in (10, 25)
        },
        "load_average_1min": round(os.getloadavg()[0], 2),
        "note": "2 cores shared by both processes: loopback shows the all-reduce's cost, not a speed-up "
        "(two workers on 2 cores each get half the CPU). expected_efficiency = t_step / (t_step + "
        "ring transfer at the link rate + 1 ms latency per ring hop), with this machine's paper step; "
        "a faster step (an NPU's) raises the all-reduce's share in proportion.",
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
        print(json.dumps(run(a.data_dir, os.path.join(ROOT, "bench", "results")), indent=1))


if __name__ == "__main__":
    main()
