"""Atomic file writes: write to a temporary name beside the target, then rename.

Nothing is ever half-written: a reader sees either the old file or the whole new one.

The temporary name is ``<target name>.<pid>-<n>.tmp`` in the target's folder, created
with O_CREAT|O_EXCL (never reuses an existing file; a stale name left by a crashed
process is skipped). write_bytes / write_text / write_array go straight through
os.open / os.write / os.replace: a few system calls per file, no Python file object,
no ``tempfile.mkstemp`` (which cost ~0.7 ms per file in the runner's output loop).
New files get the usual ``0o666 & ~umask`` permissions, as ``open()`` would give.
"""

import contextlib
import itertools
import json
import locale
import os

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
_counter = itertools.count()  # next() is atomic under the GIL: thread-safe names
_live = set()  # temporary names that may exist now: what discard_temporaries() removes


class UnwritableError(OSError):
    """An output cannot be written (folder missing and not creatable, no permission, disk
    full): a user's environment, so ``common.errors.cli`` prints it as one line naming the
    target, not the temporary name."""

    def __str__(self):
        return f"{self.filename}: cannot write the output ({self.strerror})"


def _create_temp(path):
    """(fd, temp path) for a new, empty temporary file beside ``path``; creates the
    folder if missing. An OSError is an UnwritableError naming ``path``."""
    try:
        return _create_temp_once(path)
    except UnwritableError:
        raise
    except OSError as e:
        raise UnwritableError(e.errno, e.strerror or str(e), os.fspath(path)) from None


def _create_temp_once(path):
    pid = os.getpid()
    for _ in range(1000):
        tmp = f"{path}.{pid}-{next(_counter)}.tmp"
        _live.add(tmp)  # before it exists: a signal between the open and the caller's try is covered
        try:
            return os.open(tmp, _FLAGS, 0o666), tmp
        except FileExistsError:
            _live.discard(tmp)
            continue  # stale leftover from an earlier process with the same pid
        except FileNotFoundError:
            d = os.path.dirname(os.path.abspath(path))
            if os.path.isdir(d):
                raise
            os.makedirs(d, exist_ok=True)
    raise FileExistsError(f"{path}: could not create a temporary file beside it")


def _discard(fd, tmp):
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    _live.discard(tmp)


def discard_temporaries():
    """Remove every temporary file this process has open for writing: a SIGTERM or Ctrl-C
    can land between a temporary's creation and the ``try`` that would remove it."""
    for tmp in list(_live):
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _live.discard(tmp)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; rename it to ``path`` on success."""
    path = os.fspath(path)
    fd, tmp = _create_temp(path)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
        _live.discard(tmp)
    except BaseException:
        _discard(None, tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def _write_all(fd, data, nbytes):
    n = os.write(fd, data)
    if n < nbytes:  # short write (rare for regular files; > 2 GiB on Linux)
        view = memoryview(data).cast("B")
        while n < nbytes:
            n += os.write(fd, view[n:])


def _atomic_write(path, data, nbytes):
    path = os.fspath(path)
    fd, tmp = _create_temp(path)
    try:
        if nbytes:
            _write_all(fd, data, nbytes)
        os.close(fd)
        fd = None
        os.replace(tmp, path)
        _live.discard(tmp)
    except OSError as e:  # disk full, a target that is a folder: named, nothing left behind
        _discard(fd, tmp)
        raise UnwritableError(e.errno, e.strerror or str(e), path) from None
    except BaseException:
        _discard(fd, tmp)
        raise


def write_bytes(path, data):
    data = memoryview(data)
    _atomic_write(path, data, data.nbytes)


def write_text(path, text):
    # open(path, "w")'s encoding (locale's, or UTF-8 in UTF-8 mode); no newline translation on POSIX
    if os.linesep != "\n":
        text = text.replace("\n", os.linesep)
    data = text.encode(locale.getpreferredencoding(False))
    _atomic_write(path, data, len(data))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_array(path, array):
    """Raw C-order bytes, no header (the msame / img2bin .bin convention)."""
    import numpy as np

    a = array if isinstance(array, np.ndarray) and array.flags.c_contiguous else np.ascontiguousarray(array)
    if a.dtype.hasobject:
        raise ValueError(f"{path}: cannot write an object array as raw bytes")
    _atomic_write(path, a.reshape(-1).view(np.uint8), a.nbytes)  # bytes view: any dtype, 0-d too


def read_json(path, missing_hint):
    """A JSON file's content; a one-line UserError when it is missing or not JSON."""
    from common.errors import UserError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{path}: {missing_hint}")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def refuse_overwrite(paths, force=False, other=None, what="files to write"):
    """Raise one UserError naming the first of ``paths`` that exists, unless ``force``.

    ``other`` names the flag that picks another output (e.g. ``-o``), offered beside --force;
    with several paths the message says how many of them (``what``) already exist."""
    from common.errors import UserError

    if force:
        return
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    busy = [p for p in paths if os.path.lexists(p)]
    if not busy:
        return
    fix = "pass --force to replace " + ("it" if len(busy) == 1 else "them") + (f", or another {other}" if other else "")
    count = f"{len(busy)} of the {len(paths)} {what}; " if len(paths) > 1 else ""
    raise UserError(f"{busy[0]}: already exists ({count}{fix})")


def make_dirs(path):
    """``os.makedirs(path, exist_ok=True)``; an OSError is an UnwritableError naming ``path``."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UnwritableError(e.errno, e.strerror or str(e), os.fspath(path)) from None
