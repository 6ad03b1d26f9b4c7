"""The report's environment section: library versions (CANN where installed), host and git
commit of the machine writing the report, and the command that wrote it.
"""

import datetime
import glob
import importlib.metadata
import os
import platform
import shutil
import subprocess

from verify.report_doc import Blocks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARIES = (
    ("TensorFlow", ("tensorflow-cpu", "tensorflow", "tensorflow-gpu")),
    ("tf2onnx", ("tf2onnx",)),
    ("ONNX", ("onnx",)),
    ("ONNX Runtime", ("onnxruntime",)),
    ("onnxconverter-common", ("onnxconverter-common",)),
    ("NumPy", ("numpy",)),
)


def versions() -> list:
    """[(library, "version (distribution)" or "not installed")], then CANN and Python."""
    out = []
    for label, dists in LIBRARIES:
        v = None
        for d in dists:
            try:
                v = f"{importlib.metadata.version(d)} ({d})"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out.append((label, v or "not installed"))
    out.append(("CANN", cann_version()))
    out.append(("Python", platform.python_version()))
    return out


def cann_version() -> str:
    homes = [os.environ.get(k) for k in ("ASCEND_TOOLKIT_HOME", "ASCEND_HOME_PATH")]
    homes += ["/usr/local/Ascend/ascend-toolkit/latest", "/usr/local/Ascend/latest"]
    for h in filter(None, homes):
        for f in [os.path.join(h, "version.cfg")] + sorted(glob.glob(os.path.join(h, "*", "version.info"))):
            if os.path.isfile(f):
                with open(f, errors="replace") as fh:
                    line = next((x.strip() for x in fh if "version" in x.lower()), "")
                return f"{line or 'installed'} ({f})"
    atc = shutil.which("atc")
    return (
        f"atc at {atc} (version file not found)"
        if atc
        else "not installed (no ASCEND_TOOLKIT_HOME, no /usr/local/Ascend, no atc on PATH): portable ONNX road"
    )


def host() -> list:
    return [
        ("host", platform.node()),
        ("system", platform.platform()),
        ("processor", platform.processor() or platform.machine()),
        ("CPU cores", os.cpu_count()),
    ]


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        if head.returncode:
            return "not a git checkout"
        dirty = subprocess.run(
            ["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
        n = len(dirty.splitlines())
        return head.stdout.strip() + (f" (+{n} modified file{'s' * (n != 1)})" if n else " (clean)")
    except (OSError, subprocess.SubprocessError):
        return "git not available"


def environment_section(argv_text: str) -> Blocks:
    """The Environment section; ``argv_text`` is the command that wrote the report."""
    b = Blocks()
    b.h("Environment", 2)
    b.p(
        "Versions and host of the machine that wrote this report (the road's stages ran on it when "
        "the report is written at the end of the road, as make demo does)."
    )
    b.kv(
        versions()
        + host()
        + [
            ("git commit", git_commit()),
            ("written", datetime.datetime.now().astimezone().isoformat(timespec="seconds")),
        ]
    )
    b.cmd(argv_text)
    return b
