"""What keeps a training run safe to stop and to restart: the folder lock, the
SIGINT/SIGTERM handler, and the metrics.jsonl reader/truncator both trainers share.

- ``FolderLock``: one trainer per output folder. ``train.lock`` holds the owner's pid and
  host; a second trainer is refused with a line naming that pid; the lock of a pid that
  no longer runs (a killed trainer) is taken over, said in one line.
- ``Interrupts``: the first SIGINT/SIGTERM only raises a flag the training loop reads
  after each finished step, so the loop saves that step's checkpoint and stops
  (``Interrupted``: exit 130 for SIGINT, 143 for SIGTERM); a second signal stops at once.
- ``read_metrics`` / ``truncate_metrics`` / ``append_metrics``: one JSON record a line; a
  corrupt line is a one-line error naming the file and line; a resumed run drops the
  records past its checkpoint's step (they belong to the lost tail of the interrupted run).
- ``run_in_folder``: the trainer's run under the lock; ``checkpoint_to_resume``: what the
  folder holds decides between a fresh run and a resume (--load_params), checked before any work.
"""

import json
import os
import signal
import socket
import sys
from collections.abc import Callable

from common import fsio
from common.errors import UserError
from common.log import log
from train import runinfo

LOCK = "train.lock"
METRICS = "metrics.jsonl"


class Interrupted(UserError):
    """Stopped by a signal after saving; the exit status says which signal."""

    def __init__(self, msg, signum):
        super().__init__(msg)
        self.exit_code = 128 + signum


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class FolderLock:
    """``with FolderLock(folder):`` -- exclusive use of a training folder by this process."""

    def __init__(self, folder):
        self.path = os.path.join(folder, LOCK)
        self.held = False

    def __enter__(self):
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue  # vanished or half-written by a dying owner: try again
                pid, host = owner.get("pid"), owner.get("host")
                if host not in (None, me["host"]):
                    raise UserError(
                        f"{self.path}: folder in use by a trainer on host {host} (pid {pid}); "
                        "stop it, or remove the lock file if that run is gone"
                    ) from None
                if isinstance(pid, int) and _pid_alive(pid):
                    raise UserError(
                        f"{self.path}: another trainer (pid {pid}) is using this folder; "
                        "wait for it or stop it, or choose another output folder"
                    ) from None
                if isinstance(pid, int):
                    log.warning(f"{self.path}: stale lock of pid {pid} (not running); taken over")
                else:
                    log.warning(f"{self.path}: lock file holds no pid (not a lock this tool wrote); taken over")
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UserError(f"{self.path}: could not take the lock (it keeps changing); is another trainer starting?")

    def _owner(self):
        try:
            with open(self.path) as f:
                d = json.load(f)
            return d if isinstance(d, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: no live pid to protect

    def __exit__(self, *exc):
        if self.held:
            owner = self._owner()
            if owner and owner.get("pid") == os.getpid():
                os.unlink(self.path)
            self.held = False
        return False


class Interrupts:
    """``with Interrupts() as stop:`` then ``if stop.signum: save and raise stop.error(...)``."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = 0
        self._old = {}

    def _handler(self, signum, frame):
        if self.signum:  # the second one: no more waiting for the step to finish
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after the current step (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self):
        try:
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        except ValueError:  # not the main thread (e.g. called from a thread in a test): no handler
            self._old = {}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False

    def error(self, msg):
        name = signal.Signals(self.signum).name if self.signum else "signal"
        return Interrupted(f"{name}: {msg}", self.signum or signal.SIGINT)


def read_metrics(path):
    """The records of a metrics.jsonl ([] when absent); a broken line is a one-line error."""
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                raise UserError(f"{path}: line {n} is not JSON ({e}); expected one JSON record a line") from None
            if not isinstance(r, dict) or not isinstance(r.get("step"), int):
                raise UserError(
                    f"{path}: line {n}: expected a JSON object with an integer 'step', found {line.strip()[:60]!r}"
                )
            out.append(r)
    return out


def truncate_metrics(path, step):
    """Keep the records up to ``step`` (the checkpoint a run resumes from), atomically."""
    kept = [r for r in read_metrics(path) if r["step"] <= step]
    fsio.write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


def append_metrics(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def run_in_folder(folder: str, cluster, train: Callable[[], int | None]) -> int | None:
    """``train()`` holding the folder's lock (the folder made if missing); a worker other than
    the chief writes nothing into the folder: no folder, no lock."""
    if cluster is not None and not cluster.is_chief:
        return train()
    fsio.make_dirs(folder)
    with FolderLock(folder):
        return train()


def checkpoint_to_resume(
    folder: str,
    load_params: int | None,
    model: str,
    flag: str,
    refuse: str,
    check: Callable[[dict], None] | None = None,
) -> tuple[str | None, dict | None]:
    """(checkpoint, run info) to resume, or (None, None) for a fresh run, as the folder and
    ``load_params`` (1: resume, required; 0: fresh, refusing a checkpoint; None: whichever the
    folder holds) say. A resume is checked before any work: the model (``model``, then
    ``check(info)``), the checkpoint's files and metrics.jsonl; a fresh run refuses results
    left without a checkpoint. ``flag`` names the folder's flag, ``refuse`` is what to do
    when load_params 0 meets a checkpoint."""
    ckpt = runinfo.latest(folder) if os.path.isdir(folder) else None
    metrics = os.path.join(folder, METRICS)
    if load_params == 1 and ckpt is None:
        raise UserError(f"{folder}: --load_params 1 but no checkpoint in this folder")
    if load_params == 0 and ckpt is not None:
        raise UserError(f"{folder}: already holds checkpoint {os.path.basename(ckpt)}; {refuse}")
    if ckpt is None:
        if os.path.isfile(metrics):
            raise UserError(
                f"{metrics}: results without a checkpoint; refusing to overwrite (use another {flag} or remove it)"
            )
        return None, None
    info = runinfo.expect_model(runinfo.load(folder), model, f"use another {flag}")
    if check is not None:
        check(info)
    runinfo.check_readable(ckpt)
    read_metrics(metrics)  # a corrupt metrics.jsonl stops the run before any work
    return ckpt, info


def check_nonneg(**flags):
    for k, v in flags.items():
        if v < 0:
            raise UserError(f"--{k} must be >= 0, got {v}")
