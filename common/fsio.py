"""Atomic file writes: write to a temporary name beside the target, then rename.

Nothing is ever half-written: a reader sees either the old file or the whole new one.
"""
import contextlib
import json
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's folder; rename it to ``path`` on success."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=d)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="wb"):
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def write_bytes(path, data):
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path, text):
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_array(path, array):
    """Raw C-order bytes, no header (the msame / img2bin .bin convention)."""
    with atomic_open(path, "wb") as f:
        array.tofile(f)
