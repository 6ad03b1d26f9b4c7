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
from dataclasses import dataclass

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


def offline_and_check(road, name, d, model, sig, inputs, label, extra=()):
    """runner on one model + loss_check against the golden outputs; returns the report."""
    out = os.path.join(d["root"], "out", label)
    road.step(
        name,
        f"msame runner ({label})",
        [PY, "infer/msame.py", "--model", model, "--input", inputs, "--output", out],
        out,
    )
    report = os.path.join(d["root"], f"loss_check_{label}.json")
    check = flags(
        {"--signature": sig, "--offline": out, "--reference": d["ref"], "--inputs": inputs, "--report": report}
    )
    fp16 = label != "fp32"
    road.step(
        name, f"loss_check ({label})", [PY, "verify/loss_check.py", *check, *extra], report, ok=(0, 1) if fp16 else (0,)
    )
    r = report_line(report)
    road.results.append((name, os.path.basename(model), r))
    return r


def flags(pairs: dict) -> list:
    """["--flag", value, ...] from {"--flag": value}, in order."""
    return [x for pair in pairs.items() for x in pair]


def dirs(out, name):
    root = os.path.join(out, name)
    return {
        "root": root,
        "train": os.path.join(out, "_train", name),
        "model": os.path.join(root, "model"),
        "inputs": os.path.join(root, "inputs"),
        "ref": os.path.join(root, "ref"),
    }


# model/<name><suffix>.onnx and .json, per offline model: atc.sh names a portable model by its mode
SUFFIX = {"fp32": "", "fp16": ".allow_fp32_to_fp16"}


@dataclass
class ModelRoad:
    """What differs between the models' roads: the commands that train, freeze and write the
    input bins, the convert script and its precision modes. walk() runs the rest alike."""

    name: str  # the folder under --out, and the stem of the files under model/
    train: tuple  # (stage, argv): writes the checkpoint to _train/<name>
    freeze: tuple  # (stage, argv): writes model/<name>.pb and its signature
    atc: str  # the convert script, run once per precision mode
    modes: tuple  # (label in SUFFIX, stage, --precision_mode): one offline model each, its mode explicit
    inputs: list  # [(stage, argv, artifact)]: the steps that write the input bins
    input_dirs: tuple  # the input folders under inputs/ the runner reads
    check_flags: tuple = ()  # loss_check's flags beyond the road's own
    doctor: bool = False  # then force_fp16, the precision doctor, and the model with its keep list


def walk(road, m: ModelRoad, d: dict) -> None:
    """train -> freeze -> convert per mode -> input bins -> golden outputs -> runner + loss_check per mode."""
    stem = os.path.join(d["model"], m.name)
    road.step(m.name, m.train[0], m.train[1], d["train"])
    road.step(m.name, m.freeze[0], m.freeze[1], stem + ".pb")
    for label, stage, mode in m.modes:
        convert = ["bash", m.atc, "--model", stem + ".pb", "--output", stem, "--precision_mode", mode]
        road.step(m.name, stage, convert, stem + SUFFIX[label] + ".onnx")
    for stage, argv, artifact in m.inputs:
        road.step(m.name, stage, argv, artifact)
    inputs = ",".join(os.path.join(d["inputs"], i) for i in m.input_dirs)
    golden = [PY, "verify/reference.py", "--signature", stem + ".json", "--input", inputs, "--output", d["ref"]]
    road.step(m.name, "golden outputs (checkpoint)", golden, d["ref"])
    for label, _, _ in m.modes:
        model, sig = stem + SUFFIX[label] + ".onnx", stem + SUFFIX[label] + ".json"
        offline_and_check(road, m.name, d, model, sig, inputs, label, m.check_flags)
    if m.doctor:
        precision_doctor(road, m.name, d, inputs)


def precision_doctor(road, n, d, inputs):
    """The precision doctor on the harshest mode (every op fp16, ATC's default force_fp16),
    then the same mode with the layers it names kept in fp32."""
    pb, f16 = os.path.join(d["model"], f"{n}.pb"), os.path.join(d["model"], f"{n}.force_fp16.onnx")
    to_onnx = [PY, "convert/to_onnx.py", "--model", pb, "--output", f16, "--precision_mode", "force_fp16"]
    road.step(n, "convert force_fp16 (to_onnx.py)", to_onnx, f16)
    lc = offline_and_check(road, n, d, f16, f16[:-5] + ".json", inputs, "force_fp16")
    # the doctor examines the first batch loss_check named as failing (else the first batch);
    # --iterate: the layer it names first (Log of 1 - p) fails in fp32 too, p having been
    # rounded to 1.0 upstream, so it rebuilds with its keep list and walks up until nothing
    # fails on that batch
    bad = [os.path.basename(f["file"]).rsplit("_output_", 1)[0] for f in lc.get("failed_files", [])]
    keep = os.path.join(d["model"], "keep_dtype.cfg")
    doctor = flags(
        {
            "--pb": pb,
            "--onnx": f16,
            "--fp32-onnx": os.path.join(d["model"], f"{n}.onnx"),
            "--input": inputs,
            "--keep-dtype-out": keep,
            "--report": os.path.join(d["root"], "doctor_force_fp16.json"),
            "--iterate": "8",
        }
    )
    batch = ["--batch-file", bad[0]] if bad else []
    road.step(n, "precision doctor (force_fp16, --iterate 8)", [PY, "verify/compare_layers.py", *doctor, *batch], keep)
    if os.path.isfile(keep) and os.path.getsize(keep):
        kept = os.path.join(d["model"], f"{n}.force_fp16_keep.onnx")
        with_keep = [PY, "convert/to_onnx.py", "--model", pb, "--output", kept, "--precision_mode", "force_fp16"]
        road.step(n, "convert force_fp16 + keep_dtype", [*with_keep, "--keep_dtype", keep], kept)
        offline_and_check(road, n, d, kept, kept[:-5] + ".json", inputs, "force_fp16_keep")


# --- the three models ---------------------------------------------------------------------------

FP16 = ("fp16", "convert fp16 (allow_fp32_to_fp16)", "allow_fp32_to_fp16")  # a built-in model's fp16 mode


def dataset_bins(stage, dataset, sig, a, d, *more):
    """img2bin's dataset mode on the test split: the step that writes a built-in model's inputs."""
    pairs = {"--dataset": dataset, "--split": "test", "--signature": sig, "--data-dir": a.data_dir}
    pairs.update({"-o": d["inputs"], "--seed": "0"})
    return [(stage, [PY, "data_tools/img2bin.py", *flags(pairs), *more], d["inputs"])]


def realnvp(a, d) -> ModelRoad:
    sig = os.path.join(d["model"], "realnvp.json")
    train = {
        "--config": "small",
        "--data_url": a.data_dir,
        "--train_url": d["train"],
        "--batch_size": "16",
        "--max_steps": a.realnvp_steps,
        "--log_every": "50",
        "--load_params": int(os.path.isfile(os.path.join(d["train"], "checkpoint"))),
        "--seed": "0",
    }
    return ModelRoad(
        name="realnvp",
        train=("train (small config)", [PY, "train/train_realnvp.py", *flags(train)]),
        freeze=("freeze", [PY, "freeze/freeze_realnvp.py", "--ckpt", d["train"], "--batch", "16", "--out", d["model"]]),
        atc="convert/atc_realnvp.sh",
        modes=(("fp32", "convert fp32 (atc_realnvp.sh)", "force_fp32"), FP16),
        inputs=dataset_bins("img2bin (CIFAR-10 test)", "cifar10", sig, a, d),
        input_dirs=("x", "u"),
        doctor=True,
    )


def rebar(a, d) -> ModelRoad:
    sig = os.path.join(d["model"], "rebar.json")
    train = {
        "--data_path": a.data_dir,
        "--working_dir": d["train"],
        "--hparams": "model=SBNDynamicRebar,learning_rate=0.0003,n_layer=2,task=sbn",
        "--steps": a.rebar_steps,
        "--log_every": "500",
        "--eval_freq": "0",
        "--eval_limit": "1000",
        "--seed": "0",
    }
    freeze = {"--ckpt": d["train"], "--batch": "25", "--samples": "100", "--out": d["model"]}
    return ModelRoad(
        name="rebar",
        train=("train (SBNDynamicRebar)", [PY, "train/train_rebar.py", *flags(train)]),
        freeze=("freeze", [PY, "freeze/freeze_rebar.py", *flags(freeze)]),
        atc="convert/atc_rebar.sh",
        modes=(("fp32", "convert fp32 (atc_rebar.sh)", "force_fp32"), FP16),
        inputs=dataset_bins(
            f"img2bin (MNIST test, first {a.rebar_images})", "binarized_mnist", sig, a, d, "--limit", a.rebar_images
        ),
        input_dirs=("x", "u"),
    )


CIFAR_MEAN, CIFAR_COEF = "[127.5,127.5,127.5]", "[0.00784313725490196,0.00784313725490196,0.00784313725490196]"


def classifier(a, d) -> ModelRoad:
    """A user's model: examples/cifar_classifier, through the generic commands only."""
    m, images = os.path.join(d["model"], "classifier"), os.path.join(d["root"], "images")
    train = {"--data_dir": a.data_dir, "--train_dir": d["train"], "--max_seconds": a.classifier_seconds}
    freeze = {
        "--input_checkpoint": d["train"],
        "--output_node_names": "logits,probs,pred",
        "--input_shape": "images:16,32,32,3",
        "--input_defaults": "is_training:false;drop_rate:0",
        "--output": m,
    }
    export = {"--dataset": "cifar10", "--split": "test", "--data-dir": a.data_dir, "-o": images}
    image_mode = {"-i": images, "-w": "32", "-h": "32", "-f": "RGB", "-a": "NHWC", "-t": "float32"}
    image_mode.update({"-m": CIFAR_MEAN, "-c": CIFAR_COEF, "--signature": m + ".json", "-o": d["inputs"]})
    return ModelRoad(
        name="classifier",
        train=(
            f"train (examples/, {a.classifier_seconds:g} s)",
            [PY, "examples/cifar_classifier/train.py", *flags(train)],
        ),
        freeze=("freeze (freeze_graph.py)", [PY, "freeze/freeze_graph.py", *flags(freeze)]),
        atc="convert/atc.sh",
        modes=(
            ("fp32", "convert fp32 (atc.sh)", "force_fp32"),
            ("fp16", "convert fp16 (atc.sh allow_fp32_to_fp16)", "allow_fp32_to_fp16"),
        ),
        inputs=[
            ("export test images (PNG + labels)", [PY, "data_tools/export_images.py", *flags(export)], images),
            ("img2bin (image mode, --signature)", [PY, "data_tools/img2bin.py", *flags(image_mode)], d["inputs"]),
        ],
        input_dirs=("images",),
        check_flags=("--top1", "logits", "--labels", os.path.join(images, "labels.txt")),
    )


MODELS = {"realnvp": realnvp, "rebar": rebar, "classifier": classifier}


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


DATASETS = {"realnvp": "cifar10", "rebar": "binarized_mnist", "classifier": "cifar10"}


def fetch_missing_data(data_dir, only=None):
    """A first `make demo` on a machine without data: download the datasets the chosen
    models need and data_dir lacks (data_tools/fetch_data.py: checksums, tqdm progress,
    temporary names). Offline: stop with fetch_data's one-line error, which names
    ``python data_tools/fetch_data.py --from``."""
    from common.errors import UserError
    from data_tools import fetch_data

    which = sorted({d for m, d in DATASETS.items() if only in (None, m)})
    try:
        for msg in fetch_data.ensure(data_dir, which):
            print(msg, flush=True)
    except UserError as e:
        sys.exit(f"error: {e}")


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
    fetch_missing_data(a.data_dir, a.only)
    for name in MODELS:
        old = os.path.join(a.out, name)
        if os.path.isdir(old) and a.only in (None, name):
            print(f"removing the previous demo output {old}")
            shutil.rmtree(old)
    road = Road()
    for name, describe in MODELS.items():
        if a.only in (None, name):
            d = dirs(a.out, name)
            walk(road, describe(a, d), d)
    road.table()
    print(
        f"\nArtifacts under {a.out}: <model>/model (pb, onnx, signatures), <model>/inputs (bins + "
        f"manifest), <model>/out (msame layout), <model>/ref (golden), loss_check_*.json/png; "
        f"training runs under {os.path.join(a.out, '_train')}"
    )
    write_report(road, a)


if __name__ == "__main__":
    run(main)
