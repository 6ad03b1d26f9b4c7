"""Input .bin files and their manifest: the writer and the reader (this stage owns them).

An input .bin holds one static batch of one model input: raw C-order bytes in the
signature's dtype and shape, no header (what msame feeds to the model). A set of inputs
written for a model (img2bin's dataset mode, or its image mode with --signature) is a
folder:

    DIR/manifest.json
    DIR/<input name>/<prefix>_<00000>.bin       one folder per model input, in signature order

so msame's multi-input form is ``--input DIR/x,DIR/u`` (files matched by name). The
manifest says which images are in which file and how many rows are padding:

    {"format": "ascend-road-inputs/1",
     "source": "dataset" | "images",
     "dataset": "cifar10" | null, "split": "test" | null,
     "images_dir": null | "/abs/folder/of/images",
     "images": null | ["a.png", "b.png", ...],      # image mode: source files, row order
     "preprocess": null | {"width": 32, ..., "output_type": "float32"},   # image mode flags
     "signature": {...path, model, graph, batch, inputs...},
     "image_input": "x", "noise_inputs": ["u"],
     "seed": 0, "n_images": 1017, "padding": "repeat_last", "noise": "...",
     "inputs": [{"name": "x", "dir": "x"}, {"name": "u", "dir": "u"}],
     "files": [{"stem": "cifar10_test_00000", "first": 0, "n_real": 16, "n_pad": 0,
                "sha256": {"x": "<hex>", "u": "<hex>"}}, ...]}

``sha256``: each file's content digest per input (``content_digest``), so a run record
(infer/runner.py, which records the same digests of what it read) can be held against the
set; manifests written before it have none, and are matched by file names only.

Row r of the whole set (over the files in order, padding rows skipped) is image r: in
image mode ``images[r]``, so labels kept beside the images (one per line, same order)
line up with the rows.
"""

import hashlib
import os
import re
import stat

import numpy as np

from common import fsio
from common.errors import UserError
from freeze.signature import Signature, Tensor

FORMAT = "ascend-road-inputs/1"
MANIFEST = "manifest.json"
PADDING = "repeat_last"
NOISE = "uniform (0,1) float32, numpy PCG64([seed, crc32(name)]), image order"


def write_bin(path: str | os.PathLike, array: np.ndarray, tensor: Tensor | None = None) -> None:
    """Write one input .bin atomically, checked against a signature Tensor if given."""
    array = np.ascontiguousarray(array)
    if tensor is not None:
        if list(array.shape) != tensor.shape or array.dtype != tensor.np_dtype:
            raise UserError(
                f"{path}: input {tensor.name!r} expects {tensor.shape} {tensor.dtype}, "
                f"got {list(array.shape)} {array.dtype}"
            )
    fsio.write_array(path, array)


def check_bin(path: str | os.PathLike, tensor: Tensor, nbytes: int | None = None) -> None:
    """Raise a UserError naming the file unless it is a file of exactly the tensor's byte
    size (``nbytes``: that size, precomputed by a caller checking many files). One stat."""
    try:
        st = os.stat(path)
    except OSError:  # as os.path.isfile: any error means "not found"
        st = None
    if st is None or not stat.S_ISREG(st.st_mode):
        what = "is a folder, not a file" if st is not None else "not found"
        raise UserError(f"{os.fspath(path)}: input file {what} (input {tensor.name!r})")
    if st.st_size != (tensor.nbytes if nbytes is None else nbytes):
        raise UserError(
            f"{os.fspath(path)}: input {tensor.name!r} expects {tensor.nbytes} bytes ({tensor.shape} {tensor.dtype}), "
            f"found {st.st_size}"
        )


def read_bin(path: str | os.PathLike, tensor: Tensor) -> np.ndarray:
    """One input .bin as an array of the tensor's shape and dtype (size checked)."""
    check_bin(path, tensor)
    return np.fromfile(path, dtype=tensor.np_dtype).reshape(tensor.shape)


def content_digest(data) -> str:
    """sha256 (hex) of an input file's bytes: ``data`` is the bytes (an array's buffer) or a
    path. The one digest of input contents that the manifest and the run record both hold."""
    if isinstance(data, (str, os.PathLike)):
        h = hashlib.sha256()
        try:
            with open(data, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
        except OSError as e:
            raise UserError(f"{os.fspath(data)}: cannot read the input file ({e.strerror or e})") from None
        return h.hexdigest()
    if isinstance(data, np.ndarray):
        data = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    return hashlib.sha256(data).hexdigest()


def input_dirs(sig: Signature) -> dict[str, str]:
    """{input name: folder name}: the name itself, or with characters other than letters,
    digits, ``_ . -`` replaced by ``_`` (TF names like ``input/images``), made unique."""
    dirs, used = {}, set()
    for t in sig.inputs:
        d = re.sub(r"[^A-Za-z0-9_.-]", "_", t.name).strip(".") or "input"
        base, k = d, 1
        while d in used:
            k += 1
            d = f"{base}_{k}"
        used.add(d)
        dirs[t.name] = d
    return dirs


def batch_stem(prefix: str, index: int) -> str:
    return f"{prefix}_{index:05d}"


def file_entry(stem: str, first: int, n_real: int, batch: int, sha256: dict | None = None) -> dict:
    """One ``files`` entry; ``sha256``: {input name: content_digest of its file}."""
    e = {"stem": stem, "first": int(first), "n_real": int(n_real), "n_pad": int(batch - n_real)}
    if sha256 is not None:
        e["sha256"] = dict(sha256)
    return e


def new_manifest(
    sig: Signature,
    files: list[dict],
    n_images: int,
    image_input: str | None,
    noise_inputs: tuple[str, ...] | list[str] = (),
    seed: int = 0,
    dataset: str | None = None,
    split: str | None = None,
    images: list[str] | None = None,
    images_dir: str | None = None,
    preprocess: dict | None = None,
) -> dict:
    """The manifest dict of a set of input files written for ``sig`` (img2bin's two modes
    build it here, so both write the same fields). ``files``: ``file_entry`` dicts in
    order; ``images``: source file names in row order (image mode), else None."""
    return {
        "format": FORMAT,
        "source": "images" if images is not None else "dataset",
        "dataset": dataset,
        "split": split,
        "images_dir": images_dir and os.path.abspath(images_dir),
        "images": list(images) if images is not None else None,
        "preprocess": preprocess,
        "signature": {
            "path": sig.path and os.path.abspath(sig.path),
            "model": sig.model,
            "graph": sig.graph,
            "batch": sig.batch,
            "inputs": [t.to_dict() for t in sig.inputs],
        },
        "image_input": image_input,
        "noise_inputs": list(noise_inputs),
        "seed": int(seed),
        "n_images": int(n_images),
        "padding": PADDING,
        "noise": NOISE if noise_inputs else None,
        "inputs": [{"name": name, "dir": d} for name, d in input_dirs(sig).items()],
        "files": list(files),
    }


def _validate(d, path):
    """Structure and arithmetic of a manifest: one UserError naming the first problem."""

    def bad(what, found):
        raise UserError(f"{path}: {what}, found {found!r}")

    sig = d.get("signature", {})
    if not isinstance(sig, dict):
        bad("expected 'signature' an object", sig)
    batch = sig.get("batch")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        bad("expected signature.batch a positive integer", batch)
    n = d.get("n_images")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        bad("expected n_images a positive integer", n)
    inputs = d.get("inputs")
    if (
        not isinstance(inputs, list)
        or not inputs
        or not all(
            isinstance(i, dict)
            and isinstance(i.get("name"), str)
            and isinstance(i.get("dir"), str)
            and i["dir"]
            and os.sep not in i["dir"]
            and i["dir"] not in (".", "..")
            for i in inputs
        )
    ):
        bad("expected inputs a non-empty list of {name, dir} (dir a plain folder name)", inputs)
    files = d.get("files")
    if not isinstance(files, list) or not files:
        bad("expected files a non-empty list", files)
    first, stems = 0, set()
    for k, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("stem"), str) or not f["stem"]:
            bad(f"files[{k}]: expected an object with a 'stem'", f)
        vals = [f.get(key) for key in ("first", "n_real", "n_pad")]
        if any(isinstance(v, bool) or not isinstance(v, int) for v in vals):
            bad(f"files[{k}] ({f['stem']}): first, n_real, n_pad must be integers", vals)
        if batch is None:  # a manifest without its signature: the first file says the batch
            batch = f["n_real"] + f["n_pad"]
        if not 1 <= f["n_real"] <= batch:
            bad(f"files[{k}] ({f['stem']}): n_real must be 1..{batch} (the batch)", f["n_real"])
        if f["n_real"] + f["n_pad"] != batch:
            bad(f"files[{k}] ({f['stem']}): n_real + n_pad must be the batch {batch}", f["n_real"] + f["n_pad"])
        if f["first"] != first:
            bad(f"files[{k}] ({f['stem']}): first must be {first} (rows run on from the file before)", f["first"])
        if f["stem"] in stems:
            bad(f"files[{k}]: stems must be unique", f["stem"])
        dg = f.get("sha256")
        names = {i["name"] for i in inputs}
        if dg is not None and not (
            isinstance(dg, dict)
            and all(k in names and isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) for k, v in dg.items())
        ):
            bad(f"files[{k}] ({f['stem']}): sha256 must map the input names {sorted(names)} to hex sha256 digests", dg)
        stems.add(f["stem"])
        first += f["n_real"]
    if first != n:
        bad(f"n_images must equal the real rows of the files ({first})", n)
    images = d.get("images")
    if images is not None and (not isinstance(images, list) or len(images) != n):
        bad(f"images must list the {n} source files", images if not isinstance(images, list) else len(images))


def _check_manifest(d, path):
    """What Manifest.load accepts: the format tag, then ``_validate``."""
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        found = d.get("format") if isinstance(d, dict) else type(d).__name__
        raise UserError(f"{path}: not an input manifest (expected format {FORMAT!r}, found {found!r})")
    _validate(d, path)


def manifest_path(folder) -> str:
    """A set's manifest: ``folder/manifest.json``."""
    return os.path.join(os.fspath(folder), MANIFEST)


def write_manifest(folder, manifest: dict) -> str:
    """Write ``manifest`` (``new_manifest``'s dict) as ``folder/manifest.json``, atomically
    (common/fsio.py), after the checks ``Manifest.load`` makes: nothing writes a manifest
    its reader rejects. Returns the path. The one writer of manifest.json."""
    path = manifest_path(folder)
    _check_manifest(manifest, path)
    fsio.write_json(path, manifest)
    return path


class Manifest:
    """A set's manifest.json as read (``load``) and checked against a signature and folders."""

    def __init__(self, d: dict, path: str) -> None:
        self.d, self.path = d, path
        self.root = os.path.dirname(os.path.abspath(path))

    @property
    def files(self) -> list[dict]:
        return self.d["files"]

    @property
    def inputs(self) -> list[dict]:
        return self.d["inputs"]

    @property
    def n_images(self) -> int:
        return int(self.d["n_images"])

    @property
    def batch(self) -> int:
        f = self.files[0]
        return int(self.d.get("signature", {}).get("batch") or f["n_real"] + f["n_pad"])

    @property
    def images(self) -> list[str] | None:
        """Source image file names in row order (image mode), else None."""
        return self.d.get("images")

    def input_dirs(self) -> list[str]:
        return [os.path.join(self.root, i["dir"]) for i in self.inputs]

    def real_rows(self, stem: str) -> int:
        """Number of real (non-padding) rows at the start of the batch in file ``stem``."""
        for f in self.files:
            if f["stem"] == stem:
                return int(f["n_real"])
        raise UserError(
            f"{self.path}: no file with stem {stem!r} in the manifest "
            f"(is it another set's manifest? it lists {self.files[0]['stem']}...)"
        )

    def check_signature(self, sig: Signature) -> None:
        """UserError unless the manifest was written for this signature's batch and inputs."""
        want = [(t.name, t.shape, t.dtype) for t in sig.inputs]
        got = [(t.get("name"), t.get("shape"), t.get("dtype")) for t in self.d.get("signature", {}).get("inputs") or []]
        if self.batch != sig.batch or (got and want != got):
            raise UserError(
                f"{self.path}: written for batch {self.batch} inputs {got}, but "
                f"{sig.path or 'the signature'} has batch {sig.batch} inputs {want}"
            )

    def check_inputs(self, dirs: list[str | os.PathLike]) -> None:
        """UserError unless ``dirs`` (msame's --input folders) are this set's folders and hold
        exactly its files."""
        mine = [os.path.realpath(p) for p in self.input_dirs()]
        given = [os.path.realpath(os.fspath(p)) for p in dirs]
        if given != mine:
            raise UserError(f"{self.path}: belongs to the input folders {mine}, not {given}")
        stems = {f["stem"] for f in self.files}
        for p in given:
            found = {os.path.splitext(n)[0] for n in os.listdir(p) if n.endswith(".bin")}
            if found != stems:
                odd = sorted(found ^ stems)[:3]
                raise UserError(
                    f"{p}: holds {len(found)} .bin files, the manifest {self.path} lists "
                    f"{len(stems)}; they differ in {odd}"
                )

    def check_member(self, folder: str | os.PathLike) -> None:
        """UserError unless ``folder`` is one of this set's input folders and every .bin in
        it is listed here."""
        folder = os.path.realpath(os.fspath(folder))
        mine = [os.path.realpath(p) for p in self.input_dirs()]
        if folder not in mine:
            raise UserError(f"{self.path}: belongs to the input folders {mine}, not {folder}")
        stems = {f["stem"] for f in self.files}
        extra = sorted(
            os.path.splitext(n)[0]
            for n in os.listdir(folder)
            if n.endswith(".bin") and os.path.splitext(n)[0] not in stems
        )
        if extra:
            raise UserError(
                f"{folder}: {extra[0]}.bin is not in the manifest {self.path} "
                f"({len(extra)} such file(s)); is the manifest another set's?"
            )

    def check_read(self, read: dict[str, dict[str, str]], where: str) -> None:
        """UserError unless a run read exactly this set: ``read`` is {input name: {file name:
        content_digest}} from a run record (``where``: that record). Every listed file, no
        other; the contents the manifest records (else those of the files in its folders)."""
        for e in self.inputs:
            got = read.get(e["name"])
            if got is None:
                raise UserError(f"{where}: the run read no input {e['name']!r}, which {self.path} lists")
            want = {f["stem"] + ".bin": (f.get("sha256") or {}).get(e["name"]) for f in self.files}
            odd = sorted(set(want) ^ set(got))
            if odd:
                side = "not read by the run" if odd[0] in want else "not in the manifest"
                raise UserError(
                    f"{where}: input {e['name']!r}: the run read {len(got)} files, {self.path} lists "
                    f"{len(want)}; {odd[0]} is {side} (is it another set's manifest?)"
                )
            folder = os.path.join(self.root, e["dir"])
            for name in sorted(want):
                digest = want[name]
                source = self.path
                if digest is None and os.path.isfile(os.path.join(folder, name)):
                    digest, source = content_digest(os.path.join(folder, name)), os.path.join(folder, name)
                if digest is not None and digest != got[name]:
                    raise UserError(
                        f"{where}: input {e['name']!r}: {name} the run read has other contents than "
                        f"{source} records (sha256 {got[name][:12]} vs {digest[:12]})"
                    )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = os.fspath(path)
        if os.path.isdir(path):
            path = manifest_path(path)
        d = fsio.read_json(path, "manifest not found (img2bin --dataset, or -i with --signature, writes it)")
        _check_manifest(d, path)
        return cls(d, path)


def find_manifest(path: str | os.PathLike) -> "Manifest | None":
    """The manifest for an input folder: in it, or in its parent (DIR/x -> DIR). A manifest
    found in the parent must be this folder's: the folder is one of its input folders and
    holds no .bin file it does not list (else it is another set's: UserError)."""
    path = os.path.abspath(os.fspath(path))
    for d in (path, os.path.dirname(path)):
        p = manifest_path(d)
        if os.path.isfile(p):
            m = Manifest.load(p)
            if d != path:
                m.check_member(path)
            return m
    return None
