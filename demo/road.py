"""The whole road, end to end, on real data: what `make demo` runs.

For each model: train briefly -> freeze -> convert (ATC where installed, else the
portable ONNX model; fp32 and fp16) -> img2bin on the real test images -> the
msame-compatible runner on each model -> golden outputs from the checkpoint ->
loss_check. RealNVP also gets a force_fp16 model (every op in fp16, ATC's default mode),
the precision doctor on it, and the same model rebuilt with the layers the doctor names
kept in fp32.

Every step is the command a user would type, run as a subprocess; the final table lists
each stage, its artifact and its time. A previous demo output folder is removed first
(said on stdout); training resumes from its own checkpoints, kept under OUT/_train.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


class Road:
    def __init__(self):
        self.rows = []

    def step(self, model, stage, cmd, artifact="", ok=(0,)):
        print(f"\n=== {model}: {stage}\n$ {' '.join(shlex.quote(str(c)) for c in cmd)}", flush=True)
        t = time.time()
        rc = subprocess.call([str(c) for c in cmd], cwd=ROOT)
        self.rows.append((model, stage, os.path.relpath(artifact, ROOT) if artifact else "",
                          time.time() - t, rc))
        if rc not in ok:
            self.table()
            sys.exit(f"error: {model}: {stage} failed with exit code {rc}")
        return rc

    def table(self):
        line = "-" * 112
        print(f"\n{line}\n{'model':8} {'stage':38} {'artifact':52} {'time':>7}  rc\n{line}")
        for model, stage, art, dt, rc in self.rows:
            art = art if len(art) <= 52 else "..." + art[-49:]
            print(f"{model:8} {stage:38} {art:52} {dt:6.1f}s  {rc}")
        print(f"{line}\n{'total':99} {sum(r[3] for r in self.rows):6.1f}s")


def report_line(path):
    with open(path) as f:
        r = json.load(f)
    return r


def offline_and_check(road, name, d, sig, inputs, label, extra_model=None):
    """runner on one model + loss_check against the golden outputs; returns the report."""
    model = extra_model or os.path.join(d["model"], f"{name}.onnx")
    out = os.path.join(d["root"], "out", label)
    road.step(name, f"msame runner ({label})", [
        PY, "infer/msame.py", "--model", model, "--input", inputs, "--output", out], out)
    report = os.path.join(d["root"], f"loss_check_{label}.json")
    fp16 = label != "fp32"
    road.step(name, f"loss_check ({label})", [
        PY, "verify/loss_check.py", "--signature", sig, "--offline", out, "--reference", d["ref"],
        "--inputs", inputs, "--report", report], report, ok=(0, 1) if fp16 else (0,))
    return report_line(report)


def dirs(out, name):
    root = os.path.join(out, name)
    return {"root": root, "train": os.path.join(out, "_train", name), "model": os.path.join(root, "model"),
            "inputs": os.path.join(root, "inputs"), "ref": os.path.join(root, "ref")}


def realnvp(road, a):
    n, d = "realnvp", dirs(a.out, "realnvp")
    pb, sig = os.path.join(d["model"], "realnvp.pb"), os.path.join(d["model"], "realnvp.json")
    road.step(n, "train (small config)", [
        PY, "train/train_realnvp.py", "--config", "small", "--data_url", a.data_dir, "--train_url",
        d["train"], "--batch_size", "16", "--max_steps", a.realnvp_steps, "--log_every", "50",
        "--load_params", int(os.path.isfile(os.path.join(d["train"], "checkpoint"))), "--seed", "0"],
        d["train"])
    road.step(n, "freeze", [PY, "freeze/freeze_realnvp.py", "--ckpt", d["train"], "--batch", "16",
                            "--out", d["model"]], pb)
    road.step(n, "convert fp32 (atc_realnvp.sh)", [
        "bash", "convert/atc_realnvp.sh", "--model", pb, "--output", os.path.join(d["model"], n),
        "--precision_mode", "force_fp32"], os.path.join(d["model"], "realnvp.onnx"))
    road.step(n, "convert fp16 (allow_fp32_to_fp16)", [
        "bash", "convert/atc_realnvp.sh", "--model", pb, "--output", os.path.join(d["model"], n),
        "--precision_mode", "allow_fp32_to_fp16"], os.path.join(d["model"], "realnvp.fp16.onnx"))
    road.step(n, "img2bin (CIFAR-10 test)", [
        PY, "data_tools/img2bin.py", "--dataset", "cifar10", "--split", "test", "--signature", sig,
        "--data-dir", a.data_dir, "-o", d["inputs"], "--seed", "0"], d["inputs"])
    inputs = ",".join(os.path.join(d["inputs"], i) for i in ("x", "u"))
    road.step(n, "golden outputs (checkpoint)", [
        PY, "verify/reference.py", "--signature", sig, "--input", inputs, "--output", d["ref"]], d["ref"])
    offline_and_check(road, n, d, sig, inputs, "fp32")
    fp16 = os.path.join(d["model"], "realnvp.fp16.onnx")
    offline_and_check(road, n, d, os.path.join(d["model"], "realnvp.fp16.json"), inputs, "fp16", fp16)
    # The precision doctor on the harshest mode (every op fp16, ATC's default force_fp16),
    # then the same mode with the layers it names kept in fp32.
    f16 = os.path.join(d["model"], "realnvp.force_fp16.onnx")
    road.step(n, "convert force_fp16 (to_onnx.py)", [
        PY, "convert/to_onnx.py", "--model", pb, "--output", f16, "--precision_mode", "force_fp16"], f16)
    lc = offline_and_check(road, n, d, f16[:-5] + ".json", inputs, "force_fp16", f16)
    # the doctor examines the first batch loss_check named as failing (else the first batch);
    # --iterate: the layer it names first (Log of 1 - p) fails in fp32 too, p having been
    # rounded to 1.0 upstream, so it rebuilds with its keep list and walks up until nothing
    # fails on that batch
    bad = [os.path.basename(f["file"]).rsplit("_output_", 1)[0] for f in lc.get("failed_files", [])]
    keep = os.path.join(d["model"], "keep_dtype.cfg")
    road.step(n, "precision doctor (force_fp16, --iterate 8)", [
        PY, "verify/compare_layers.py", "--pb", pb, "--onnx", f16, "--fp32-onnx",
        os.path.join(d["model"], "realnvp.onnx"), "--input", inputs, "--keep-dtype-out", keep,
        "--report", os.path.join(d["root"], "doctor_force_fp16.json"), "--iterate", "8",
        *(["--batch-file", bad[0]] if bad else [])], keep)
    if os.path.isfile(keep) and os.path.getsize(keep):
        kept = os.path.join(d["model"], "realnvp.force_fp16_keep.onnx")
        road.step(n, "convert force_fp16 + keep_dtype", [
            PY, "convert/to_onnx.py", "--model", pb, "--output", kept, "--precision_mode",
            "force_fp16", "--keep_dtype", keep], kept)
        offline_and_check(road, n, d, kept[:-5] + ".json", inputs, "force_fp16_keep", kept)


def rebar(road, a):
    n, d = "rebar", dirs(a.out, "rebar")
    pb, sig = os.path.join(d["model"], "rebar.pb"), os.path.join(d["model"], "rebar.json")
    road.step(n, "train (SBNDynamicRebar)", [
        PY, "train/train_rebar.py", "--data_path", a.data_dir, "--working_dir", d["train"],
        "--hparams", "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn",
        "--steps", a.rebar_steps, "--log_every", "500", "--eval_freq", "0", "--eval_limit", "1000",
        "--seed", "0"], d["train"])
    road.step(n, "freeze", [PY, "freeze/freeze_rebar.py", "--ckpt", d["train"], "--batch", "25",
                            "--samples", "100", "--out", d["model"]], pb)
    road.step(n, "convert fp32 (atc_rebar.sh)", [
        "bash", "convert/atc_rebar.sh", "--model", pb, "--output", os.path.join(d["model"], n),
        "--precision_mode", "force_fp32"], os.path.join(d["model"], "rebar.onnx"))
    road.step(n, "convert fp16 (allow_fp32_to_fp16)", [
        "bash", "convert/atc_rebar.sh", "--model", pb, "--output", os.path.join(d["model"], n),
        "--precision_mode", "allow_fp32_to_fp16"], os.path.join(d["model"], "rebar.fp16.onnx"))
    road.step(n, f"img2bin (MNIST test, first {a.rebar_images})", [
        PY, "data_tools/img2bin.py", "--dataset", "binarized_mnist", "--split", "test", "--signature",
        sig, "--data-dir", a.data_dir, "-o", d["inputs"], "--seed", "0", "--limit", a.rebar_images],
        d["inputs"])
    inputs = ",".join(os.path.join(d["inputs"], i) for i in ("x", "u"))
    road.step(n, "golden outputs (checkpoint)", [
        PY, "verify/reference.py", "--signature", sig, "--input", inputs, "--output", d["ref"]], d["ref"])
    offline_and_check(road, n, d, sig, inputs, "fp32")
    offline_and_check(road, n, d, os.path.join(d["model"], "rebar.fp16.json"), inputs, "fp16",
                      os.path.join(d["model"], "rebar.fp16.onnx"))


# Values the accuracy table quotes (verify/report.py --paper): RealNVP paper, CIFAR-10 test
# bits/dim; REBAR paper, train ELBO of the linear 2-layer SBN. A model without one gets none.
PAPER = {"realnvp": "RealNVP paper: test bpd=3.49", "rebar": "REBAR paper: train elbo=-98.8"}


def write_report(road, a):
    """The self-verification report of every model road under --out (a folder with model/,
    any TF model the road ran), with its training run where kept under _train/; prints its path."""
    names = sorted(n for n in os.listdir(a.out) if not n.startswith(("_", ".")) and n != "report"
                   and os.path.isdir(os.path.join(a.out, n, "model")))
    if not names:
        return
    out = os.path.join(a.out, "report")
    cmd = [PY, "verify/report.py", "-o", out, "--force"]  # regenerated from this run's outputs
    for n in names:
        cmd += ["--road", os.path.join(a.out, n)]
        if os.path.isfile(os.path.join(a.out, "_train", n, "metrics.jsonl")):
            cmd += ["--train", os.path.join(a.out, "_train", n) + ":CPU"]
        cmd += ["--paper", PAPER[n]] if n in PAPER else []
    road.step("+".join(names), "self-verification report", cmd, os.path.join(out, "index.html"))
    print(f"\nSelf-verification report: {os.path.join(out, 'index.html')} (Markdown: {os.path.join(out, 'REPORT.md')})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("DATA_DIR", "data"))
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--realnvp-steps", type=int, default=400)
    ap.add_argument("--rebar-steps", type=int, default=2000)
    ap.add_argument("--rebar-images", type=int, default=1000,
                    help="MNIST test images for the offline road (K=100 noise is 160 kB per image)")
    ap.add_argument("--only", choices=("realnvp", "rebar"))
    a = ap.parse_args(argv)
    a.out, a.data_dir = os.path.abspath(a.out), os.path.abspath(a.data_dir)
    for name in ("realnvp", "rebar"):
        old = os.path.join(a.out, name)
        if os.path.isdir(old) and a.only in (None, name):
            print(f"removing the previous demo output {old}")
            shutil.rmtree(old)
    road = Road()
    if a.only in (None, "realnvp"):
        realnvp(road, a)
    if a.only in (None, "rebar"):
        rebar(road, a)
    road.table()
    print(f"\nArtifacts under {a.out}: <model>/model (pb, onnx, signatures), <model>/inputs (bins + "
          f"manifest), <model>/out (msame layout), <model>/ref (golden), loss_check_*.json/png; "
          f"training runs under {os.path.join(a.out, '_train')}")
    write_report(road, a)


if __name__ == "__main__":
    main()
