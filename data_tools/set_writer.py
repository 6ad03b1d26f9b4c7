"""Write a model's batched input set to disk: ``out/<input>/<prefix>_<00000>.bin`` plus the
manifest (data_tools/binfiles.py owns the layout and writes the manifest), all or nothing
through a staging folder (data_tools/staging.py). ``ahead`` computes the next batch in a
thread while this one is written.
"""

import os
import shutil
from collections.abc import Iterable, Iterator

import numpy as np

from common import fsio
from data_tools import binfiles
from data_tools.staging import committing, staging

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _write_raw(path, a):
    """Raw C-order bytes of a contiguous array to a new file (inside a staging folder,
    which makes the whole set atomic by its final rename)."""
    view = memoryview(a.reshape(-1).view(np.uint8))
    fd = os.open(path, _O_NEW, 0o666)
    try:
        n = os.write(fd, view)
        while n < len(view):
            n += os.write(fd, view[n:])
    finally:
        os.close(fd)


def ahead(it: Iterator) -> Iterator:
    """Compute the next item in a thread while the caller writes this one (numpy's
    random fill, ufuncs, cv2 and os.write release the GIL). The caller must be done with
    an item before it asks for the next one (then two buffer sets suffice)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(next, it, None)
        while True:
            item = fut.result()
            if item is None:
                return
            fut = ex.submit(next, it, None)
            yield item


def write_set(
    sig, out: str, items: Iterable, n_images: int, prefix: str, manifest_fields: dict, force=False, progress=True
) -> dict:
    """Write the batches ``items`` yields ((first, n_real, {input name: batch array}), in
    order) as ``out/<input>/<prefix>_<00000>.bin`` plus ``out/manifest.json``. Everything
    goes into a staging folder first: the set is complete or absent, and an existing one
    is replaced only with ``force``. Returns the manifest dict."""
    from tqdm import tqdm

    manifest_path = binfiles.manifest_path(out)
    names = binfiles.input_dirs(sig)
    targets = [os.path.join(out, d) for d in names.values()] + [manifest_path]
    fsio.refuse_overwrite(targets, force, what="outputs (expected an empty output folder)")
    busy = [p for p in targets if os.path.lexists(p)]
    B = sig.batch
    with staging(out) as tmp:
        dirs = {}
        for name, d in names.items():
            os.mkdir(os.path.join(tmp, d))
            dirs[name] = os.path.join(tmp, d, "")
        files = []
        for first, k, arrays in tqdm(
            items, total=-(-n_images // B), disable=not progress, unit="batch", desc="img2bin"
        ):
            stem = binfiles.batch_stem(prefix, first // B)
            for name, a in arrays.items():
                _write_raw(dirs[name] + stem + ".bin", a)
            digests = {name: binfiles.content_digest(a) for name, a in arrays.items()}
            files.append(binfiles.file_entry(stem, first, k, B, digests))
        manifest = binfiles.new_manifest(sig, files, n_images, **manifest_fields)
        staged_manifest = binfiles.write_manifest(tmp, manifest)
        # the old manifest goes first and the new one comes last: a folder never holds a
        # manifest that does not describe its files
        with committing():
            for p in sorted(busy, key=lambda p: p != manifest_path):
                shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.unlink(p)
            for d in names.values():
                os.replace(os.path.join(tmp, d), os.path.join(out, d))
            os.replace(staged_manifest, manifest_path)
    return manifest
