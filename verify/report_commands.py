"""The command that reproduces each part of the self-verification report, rebuilt from what
the stages recorded (signatures, config.json, loss_check and doctor reports, the runner's
summaries), with paths as a user in the checkout types them.
"""

import os

from verify.report_road import Road, run_inputs, run_path
from verify.report_text import cmd, rel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def freeze(sig: dict) -> str | None:
    """The built-in model's freeze command, where the checkpoint and the freeze script are known."""
    ck = sig.get("checkpoint") or {}
    if not ck.get("path") or not os.path.isfile(os.path.join(ROOT, "freeze", f"freeze_{sig.get('model')}.py")):
        return None
    ckdir = ck["path"] if os.path.isdir(ck["path"]) else os.path.dirname(ck["path"])
    return cmd(
        "python",
        f"freeze/freeze_{sig['model']}.py",
        "--ckpt",
        rel(ckdir),
        "--batch",
        sig.get("batch"),
        "--out",
        rel(os.path.dirname(sig["_path"])),
    )


def train(run_) -> str | None:
    """A training run's command from the flags its config.json recorded, where its trainer exists."""
    flags = (run_.config or {}).get("train") or {}
    if not flags or not os.path.isfile(os.path.join(ROOT, "train", f"train_{run_.model}.py")):
        return None
    argv = ["python", f"train/train_{run_.model}.py"]
    for k, v in flags.items():
        if isinstance(v, bool):
            argv += [f"--{k}"] if v else []
        elif v is not None:
            argv += [f"--{k}", v]
    return cmd(*argv)


def compare_runs(runs: list) -> str:
    return cmd("python", "verify/compare_runs.py", *[f"{rel(r.path)}:{r.label}" for r in runs], "--png", "cmp.png")


def loss_check(lc: dict) -> str:
    return cmd(
        "python",
        "verify/loss_check.py",
        "--signature",
        rel(lc.get("signature")),
        "--offline",
        rel(lc.get("offline")),
        "--reference",
        rel(lc.get("reference")),
        *(["--manifest", rel(lc["manifest"])] if lc.get("manifest") else []),
        "--report",
        rel(lc["_path"]),
        "--force",
    )


def msame(summary: dict) -> str:
    return cmd(
        "python",
        "infer/msame.py",
        "--model",
        rel(run_path(summary, "model")),
        "--input",
        ",".join(rel(i) for i in run_inputs(summary)) or "INPUT_DIRS",
        "--output",
        rel(os.path.dirname(os.path.normpath(summary["run_dir"]))),
        *(["--outfmt", "TXT"] if summary.get("outfmt") == "TXT" else []),
    )


def _onnx(road: Road, mode: str | None, plain: bool) -> str | None:
    """The .onnx artifact in a precision mode (``plain``: one built without a keep list)."""
    return next(
        (
            p
            for p, sig, kind, m in road.artifacts()
            if kind == "onnx" and m == mode and not (plain and (sig.get("artifact") or {}).get("keep_dtype"))
        ),
        None,
    )


def doctor(road: Road, d: dict) -> str:
    """The precision doctor's command for one of its reports, on the batch loss_check named."""
    s, mode = road.main_sig, d.get("precision_mode")
    art = (s or {}).get("artifact") or {}
    pb = os.path.join(os.path.dirname(s["_path"]), art["file"]) if art.get("file") else "MODEL.pb"
    # the doctor examines a batch loss_check named (make demo: the first failing file)
    lc = next(
        (x for x in road.found["loss_check"] if x.get("precision_mode") == mode and x.get("failed_files")),
        None,
    )
    batch = os.path.basename(lc["failed_files"][0]["file"]).rsplit("_output_", 1)[0] if lc else None
    summ = road.summary_for(lc.get("offline")) if lc else None
    fp32 = _onnx(road, "force_fp32", plain=False)
    return cmd(
        "python",
        "verify/compare_layers.py",
        "--pb",
        rel(pb),
        "--onnx",
        rel(_onnx(road, mode, plain=True) or "MODEL.force_fp16.onnx"),
        *(["--fp32-onnx", rel(fp32)] if fp32 else []),
        "--input",
        ",".join(rel(i) for i in run_inputs(summ)) or "INPUT_DIRS",
        "--keep-dtype-out",
        rel(os.path.join(os.path.dirname(pb), "keep_dtype.cfg")),
        "--report",
        rel(d["_path"]),
        *(["--iterate", d["iterate"]] if d.get("iterate") else []),
        *(["--batch-file", batch] if batch else []),
        "--force",
    )
