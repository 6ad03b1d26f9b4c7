"""All or nothing for an output folder: a tool writes its files into a hidden
``.img2bin-<pid>-*`` folder inside it and renames them into place at the end. The hidden
folder is removed on error, on SIGTERM / SIGINT (the CLI prints one line and exits
128 + signal), or by the next run when its process died (SIGKILL, power loss).
img2bin (both modes) and export_images write through it.
"""

import contextlib
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator

from common.errors import UserError
from common.log import log

TMP_PREFIX = ".img2bin-"


class Interrupted(UserError):
    """SIGTERM / SIGINT during a run: one line, exit 128 + signal."""

    def __init__(self, signum: int):
        super().__init__(
            f"interrupted by {signal.Signals(signum).name}; no partial output left "
            "(the output folder holds its previous files, or all the new ones)"
        )
        self.exit_code = 128 + signum


_commit = {"active": False, "pending": None}


def _raise_interrupted(signum, frame):
    if _commit["active"]:  # the final renames run to the end; the signal is raised after
        _commit["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def committing() -> Iterator[None]:
    """The renames that move a finished staging folder's files into place: a SIGTERM /
    SIGINT arriving meanwhile waits until they are all done."""
    _commit["active"], _commit["pending"] = True, None
    try:
        yield
    finally:
        _commit["active"] = False
        signum, _commit["pending"] = _commit["pending"], None
        if signum is not None:
            raise Interrupted(signum)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM / SIGINT raise Interrupted: ``finally`` blocks remove staging folders, the
    CLI prints one line and exits 128 + signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _pid_alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def clean_stale(out: str) -> list[str]:
    """Remove ``.img2bin-<pid>-*`` folders under ``out`` left by processes that died
    (SIGKILL, power loss); returns the removed paths."""
    removed = []
    if not os.path.isdir(out):
        return removed
    for n in os.listdir(out):
        m = re.match(re.escape(TMP_PREFIX) + r"(\d+)-", n)
        p = os.path.join(out, n)
        if m and os.path.isdir(p) and not _pid_alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


@contextlib.contextmanager
def staging(out: str) -> Iterator[str]:
    """A new hidden folder inside ``out`` (so the final renames stay on one filesystem);
    removed afterwards whatever happens. An OSError (unwritable, disk full) becomes one
    UserError naming the path."""
    try:
        os.makedirs(out, exist_ok=True)
        for p in clean_stale(out):
            log.info(f"[info] removed {p} (left by a run that died)")
        tmp = tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=out)
    except OSError as e:
        raise UserError(f"{e.filename or out}: cannot write the output folder ({e.strerror or e})") from None
    try:
        yield tmp
    except OSError as e:
        raise UserError(
            f"{e.filename or out}: cannot write ({e.strerror or e}); nothing was written (partial output removed)"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
