"""The whole road, end to end, on real data: what `make demo` runs.

For each model: train briefly -> freeze -> convert (ATC where installed, else the
portable ONNX model; fp32 and fp16) -> img2bin on the real test images -> the
msame-compatible runner on each model -> golden outputs from the checkpoint ->
loss_check. RealNVP also gets a force_fp16 model (every op in fp16, ATC's default mode),
the precision doctor on it, and the same model rebuilt with the layers the doctor names
kept in fp32. Third, a model this project did not write: examples/cifar_classifier
(a TF1 CIFAR-10 classifier with its own Saver) trained for a minute and walked through
the generic commands (freeze_graph.py, atc.sh, img2bin image mode with --signature,
loss_check --top1 --labels), as the README's "Bring your own model" shows.

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

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.cli import ArgumentParser, add_data_dir, add_output  # noqa: E402
from common.errors import cli, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


class Road:
    def __init__(self):
        self.rows = []
        self.results = []  # (model, label, loss_check report)

    def step(self, model, stage, cmd, artifact="", ok=(0,)):
        print(f"\n=== {model}: {stage}\n$ {' '.join(shlex.quote(str(c)) for c in cmd)}", flush=True)
        t = time.time()
        rc = subprocess.call([str(c) for c in cmd], cwd=ROOT)
        self.rows.append((model, stage, os.path.relpath(artifact, ROOT) if artifact else "", time.time() - t, rc))
        if rc not in ok:
            self.table()
            sys.exit(f"error: {model}: {stage} failed with exit code {rc}")
        return rc

    def table(self):
        line = "-" * 120
        print(f"\n{line}\n{'model':10} {'stage':44} {'artifact':52} {'time':>7}  rc\n{line}")
        for model, stage, art, dt, rc in self.rows:
            art = art if len(art) <= 52 else "..." + art[-49:]
            print(f"{model:10} {stage:44} {art:52} {dt:6.1f}s  {rc}")
        print(f"{line}\n{'total':107} {sum(r[3] for r in self.rows):6.1f}s")
        if self.results:
            print(
                f"\n{'model':10} {'artifact':30} {'precision mode':20} {'loss_check':10}  offline vs checkpoint\n{line}"
            )
            for model, label, r in self.results:
                print(
                    f"{model:10} {label:30} {r['precision_mode']:20} {'PASS' if r['passed'] else 'FAIL':10}  "
                    f"{summary(r)}"
                )


def report_line(path):
    with open(path) as f:
        r = json.load(f)
    return r


def summary(r):
    """One line of what a loss_check report measured: model metrics, else top-1, else outputs."""
    parts = [
        f"{m['name']} {m['offline_mean']:.6g} vs {m['reference_mean']:.6g} ({m['diff']:+.2g})"
        + (f", {m['nonfinite']} non-finite" if m["nonfinite"] else "")
        for m in r["model_metrics"]
    ]
    c = r.get("classification")
    if c:
        parts.append(
            f"top-1 agreement {c['top1_agreement']:.2%}"
            + (
                f", accuracy {c['offline_accuracy']:.2%} vs {c['reference_accuracy']:.2%} ({c['accuracy_shift']:+.2%})"
                if "offline_accuracy" in c
                else ""
            )
        )
    if not parts:
        parts = [f"{o['name']} cosine {o['cosine']:.6f}" for o in r["outputs"]]
    return "; ".join(parts)


def offline_and_check(road, name, d, sig, inputs, label, extra_model=None, extra=()):
    """runner on one model + loss_check against the golden outputs; returns the report."""
    model = extra_model or os.path.join(d["model"], f"{name}.onnx")
    out = os.path.join(d["root"], "out", label)
    road.step(
        name,
        f"msame runner ({label})",
        [PY, "infer/msame.py", "--model", model, "--input", inputs, "--output", out],
        out,
    )
    report = os.path.join(d["root"], f"loss_check_{label}.json")
    fp16 = label != "fp32"
    road.step(
        name,
        f"loss_check ({label})",
        [
            PY,
            "verify/loss_check.py",
            "--signature",
            sig,
            "--offline",
            out,
            "--reference",
            d["ref"],
            "--inputs",
            inputs,
            "--report",
            report,
            *extra,
        ],
        report,
        ok=(0, 1) if fp16 else (0,),
    )
    r = report_line(report)
    road.results.append((name, os.path.basename(model), r))
    return r


def dirs(out, name):
    root = os.path.join(out, name)
    return {
        "root": root,
        "train": os.path.join(out, "_train", name),
        "model": os.path.join(root, "model"),
        "inputs": os.path.join(root, "inputs"),
        "ref": os.path.join(root, "ref"),
    }


def realnvp(road, a):
    n, d = "realnvp", dirs(a.out, "realnvp")
    pb, sig = os.path.join(d["model"], "realnvp.pb"), os.path.join(d["model"], "realnvp.json")
    road.step(
        n,
        "train (small config)",
        [
            PY,
            "train/train_realnvp.py",
            "--config",
            "small",
            "--data_url",
            a.data_dir,
            "--train_url",
            d["train"],
            "--batch_size",
            "16",
            "--max_steps",
            a.realnvp_steps,
            "--log_every",
            "50",
            "--load_params",
            int(os.path.isfile(os.path.join(d["train"], "checkpoint"))),
            "--seed",
            "0",
        ],
        d["train"],
    )
    road.step(
        n, "freeze", [PY, "freeze/freeze_realnvp.py", "--ckpt", d["train"], "--batch", "16", "--out", d["model"]], pb
    )
    road.step(
        n,
        "convert fp32 (atc_realnvp.sh)",
        [
            "bash",
            "convert/atc_realnvp.sh",
            "--model",
            pb,
            "--output",
            os.path.join(d["model"], n),
            "--precision_mode",
            "force_fp32",
        ],
        os.path.join(d["model"], "realnvp.onnx"),
    )
    road.step(
        n,
        "convert fp16 (allow_fp32_to_fp16)",
        [
            "bash",
            "convert/atc_realnvp.sh",
            "--model",
            pb,
            "--output",
            os.path.join(d["model"], n),
            "--precision_mode",
            "allow_fp32_to_fp16",
        ],
        os.path.join(d["model"], "realnvp.fp16.onnx"),
    )
    road.step(
        n,
        "img2bin (CIFAR-10 test)",
        [
            PY,
            "data_tools/img2bin.py",
            "--dataset",
            "cifar10",
            "--split",
            "test",
            "--signature",
            sig,
            "--data-dir",
            a.data_dir,
            "-o",
            d["inputs"],
            "--seed",
            "0",
        ],
        d["inputs"],
    )
    inputs = ",".join(os.path.join(d["inputs"], i) for i in ("x", "u"))
    road.step(
        n,
        "golden outputs (checkpoint)",
        [PY, "verify/reference.py", "--signature", sig, "--input", inputs, "--output", d["ref"]],
        d["ref"],
    )
    offline_and_check(road, n, d, sig, inputs, "fp32")
    fp16 = os.path.join(d["model"], "realnvp.fp16.onnx")
    offline_and_check(road, n, d, os.path.join(d["model"], "realnvp.fp16.json"), inputs, "fp16", fp16)
    # The precision doctor on the harshest mode (every op fp16, ATC's default force_fp16),
    # then the same mode with the layers it names kept in fp32.
    f16 = os.path.join(d["model"], "realnvp.force_fp16.onnx")
    road.step(
        n,
        "convert force_fp16 (to_onnx.py)",
        [PY, "convert/to_onnx.py", "--model", pb, "--output", f16, "--precision_mode", "force_fp16"],
        f16,
    )
    lc = offline_and_check(road, n, d, f16[:-5] + ".json", inputs, "force_fp16", f16)
    # the doctor examines the first batch loss_check named as failing (else the first batch);
    # --iterate: the layer it names first (Log of 1 - p) fails in fp32 too, p having been
    # rounded to 1.0 upstream, so it rebuilds with its keep list and walks up until nothing
    # fails on that batch
    bad = [os.path.basename(f["file"]).rsplit("_output_", 1)[0] for f in lc.get("failed_files", [])]
    keep = os.path.join(d["model"], "keep_dtype.cfg")
    road.step(
        n,
        "precision doctor (force_fp16, --iterate 8)",
        [
            PY,
            "verify/compare_layers.py",
            "--pb",
            pb,
            "--onnx",
            f16,
            "--fp32-onnx",
            os.path.join(d["model"], "realnvp.onnx"),
            "--input",
            inputs,
            "--keep-dtype-out",
            keep,
            "--report",
            os.path.join(d["root"], "doctor_force_fp16.json"),
            "--iterate",
            "8",
            *(["--batch-file", bad[0]] if bad else []),
        ],
        keep,
    )
    if os.path.isfile(keep) and os.path.getsize(keep):
        kept = os.path.join(d["model"], "realnvp.force_fp16_keep.onnx")
        road.step(
            n,
            "convert force_fp16 + keep_dtype",
            [
                PY,
                "convert/to_onnx.py",
                "--model",
                pb,
                "--output",
                kept,
                "--precision_mode",
                "force_fp16",
                "--keep_dtype",
                keep,
            ],
            kept,
        )
        offline_and_check(road, n, d, kept[:-5] + ".json", inputs, "force_fp16_keep", kept)


def rebar(road, a):
    n, d = "rebar", dirs(a.out, "rebar")
    pb, sig = os.path.join(d["model"], "rebar.pb"), os.path.join(d["model"], "rebar.json")
    road.step(
        n,
        "train (SBNDynamicRebar)",
        [
            PY,
            "train/train_rebar.py",
            "--data_path",
            a.data_dir,
            "--working_dir",
            d["train"],
            "--hparams",
            "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn",
            "--steps",
            a.rebar_steps,
            "--log_every",
            "500",
            "--eval_freq",
            "0",
            "--eval_limit",
            "1000",
            "--seed",
            "0",
        ],
        d["train"],
    )
    road.step(
        n,
        "freeze",
        [PY, "freeze/freeze_rebar.py", "--ckpt", d["train"], "--batch", "25", "--samples", "100", "--out", d["model"]],
        pb,
    )
    road.step(
        n,
        "convert fp32 (atc_rebar.sh)",
        [
            "bash",
            "convert/atc_rebar.sh",
            "--model",
            pb,
            "--output",
            os.path.join(d["model"], n),
            "--precision_mode",
            "force_fp32",
        ],
        os.path.join(d["model"], "rebar.onnx"),
    )
    road.step(
        n,
        "convert fp16 (allow_fp32_to_fp16)",
        [
            "bash",
            "convert/atc_rebar.sh",
            "--model",
            pb,
            "--output",
            os.path.join(d["model"], n),
            "--precision_mode",
            "allow_fp32_to_fp16",
        ],
        os.path.join(d["model"], "rebar.fp16.onnx"),
    )
    road.step(
        n,
        f"img2bin (MNIST test, first {a.rebar_images})",
        [
            PY,
            "data_tools/img2bin.py",
            "--dataset",
            "binarized_mnist",
            "--split",
            "test",
            "--signature",
            sig,
            "--data-dir",
            a.data_dir,
            "-o",
            d["inputs"],
            "--seed",
            "0",
            "--limit",
            a.rebar_images,
        ],
        d["inputs"],
    )
    inputs = ",".join(os.path.join(d["inputs"], i) for i in ("x", "u"))
    road.step(
        n,
        "golden outputs (checkpoint)",
        [PY, "verify/reference.py", "--signature", sig, "--input", inputs, "--output", d["ref"]],
        d["ref"],
    )
    offline_and_check(road, n, d, sig, inputs, "fp32")
    offline_and_check(
        road,
        n,
        d,
        os.path.join(d["model"], "rebar.fp16.json"),
        inputs,
        "fp16",
        os.path.join(d["model"], "rebar.fp16.onnx"),
    )


CIFAR_MEAN, CIFAR_COEF = "[127.5,127.5,127.5]", "[0.00784313725490196,0.00784313725490196,0.00784313725490196]"


def classifier(road, a):
    """A user's model: examples/cifar_classifier, through the generic commands only."""
    n, d = "classifier", dirs(a.out, "classifier")
    m = os.path.join(d["model"], n)
    road.step(
        n,
        f"train (examples/, {a.classifier_seconds:g} s)",
        [
            PY,
            "examples/cifar_classifier/train.py",
            "--data_dir",
            a.data_dir,
            "--train_dir",
            d["train"],
            "--max_seconds",
            a.classifier_seconds,
        ],
        d["train"],
    )
    road.step(
        n,
        "freeze (freeze_graph.py)",
        [
            PY,
            "freeze/freeze_graph.py",
            "--input_checkpoint",
            d["train"],
            "--output_node_names",
            "logits,probs,pred",
            "--input_shape",
            "images:16,32,32,3",
            "--input_defaults",
            "is_training:false;drop_rate:0",
            "--output",
            m,
        ],
        m + ".pb",
    )
    road.step(n, "convert fp32 (atc.sh)", ["bash", "convert/atc.sh", "--model", m + ".pb", "--output", m], m + ".onnx")
    road.step(
        n,
        "convert fp16 (atc.sh allow_fp32_to_fp16)",
        ["bash", "convert/atc.sh", "--model", m + ".pb", "--output", m, "--precision_mode", "allow_fp32_to_fp16"],
        m + ".fp16.onnx",
    )
    images = os.path.join(d["root"], "images")
    road.step(
        n,
        "export test images (PNG + labels)",
        [
            PY,
            "data_tools/export_images.py",
            "--dataset",
            "cifar10",
            "--split",
            "test",
            "--data-dir",
            a.data_dir,
            "-o",
            images,
        ],
        images,
    )
    road.step(
        n,
        "img2bin (image mode, --signature)",
        [
            PY,
            "data_tools/img2bin.py",
            "-i",
            images,
            "-w",
            "32",
            "-h",
            "32",
            "-f",
            "RGB",
            "-a",
            "NHWC",
            "-t",
            "float32",
            "-m",
            CIFAR_MEAN,
            "-c",
            CIFAR_COEF,
            "--signature",
            m + ".json",
            "-o",
            d["inputs"],
        ],
        d["inputs"],
    )
    inputs = os.path.join(d["inputs"], "images")
    road.step(
        n,
        "golden outputs (checkpoint)",
        [PY, "verify/reference.py", "--signature", m + ".json", "--input", inputs, "--output", d["ref"]],
        d["ref"],
    )
    labels = ["--top1", "logits", "--labels", os.path.join(images, "labels.txt")]
    offline_and_check(road, n, d, m + ".json", inputs, "fp32", extra=labels)
    offline_and_check(road, n, d, m + ".fp16.json", inputs, "fp16", m + ".fp16.onnx", extra=labels)


# Values the accuracy table quotes (verify/report.py --paper): RealNVP paper, CIFAR-10 test
# bits/dim; REBAR paper, train ELBO of the linear 2-layer SBN. A model without one gets none.
PAPER = {"realnvp": "RealNVP paper: test bpd=3.49", "rebar": "REBAR paper: train elbo=-98.8"}


def write_report(road, a):
    """The self-verification report of every model road under --out (a folder with model/,
    any TF model the road ran), with its training run where kept under _train/; prints its path."""
    names = sorted(
        n
        for n in os.listdir(a.out)
        if not n.startswith(("_", ".")) and n != "report" and os.path.isdir(os.path.join(a.out, n, "model"))
    )
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


@cli
def main(argv=None):
    ap = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_dir(ap, default=os.environ.get("DATA_DIR", "data"))
    add_output(ap, "--out", dest="out", default="runs/demo", help="demo output folder (default runs/demo)")
    ap.add_argument("--realnvp-steps", type=int, default=400)
    ap.add_argument("--rebar-steps", type=int, default=2000)
    ap.add_argument(
        "--rebar-images",
        type=int,
        default=1000,
        help="MNIST test images for the offline road (K=100 noise is 160 kB per image)",
    )
    ap.add_argument(
        "--classifier-seconds",
        type=float,
        default=60.0,
        help="training time of the example user model (examples/cifar_classifier)",
    )
    ap.add_argument("--only", choices=("realnvp", "rebar", "classifier"))
    a = ap.parse_args(argv)
    a.out, a.data_dir = os.path.abspath(a.out), os.path.abspath(a.data_dir)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines, in every step
    for name in ("realnvp", "rebar", "classifier"):
        old = os.path.join(a.out, name)
        if os.path.isdir(old) and a.only in (None, name):
            print(f"removing the previous demo output {old}")
            shutil.rmtree(old)
    road = Road()
    if a.only in (None, "realnvp"):
        realnvp(road, a)
    if a.only in (None, "rebar"):
        rebar(road, a)
    if a.only in (None, "classifier"):
        classifier(road, a)
    road.table()
    print(
        f"\nArtifacts under {a.out}: <model>/model (pb, onnx, signatures), <model>/inputs (bins + "
        f"manifest), <model>/out (msame layout), <model>/ref (golden), loss_check_*.json/png; "
        f"training runs under {os.path.join(a.out, '_train')}"
    )
    write_report(road, a)


if __name__ == "__main__":
    run(main)
