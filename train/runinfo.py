"""config.json beside the checkpoints: what freeze needs to rebuild the exact graph.

    {"model": "realnvp" | "rebar",
     "config": {...},          # model hyperparameters: inference_graph(config, ...) rebuilds it
     "train": {...},           # the trainer's flags, for the record
     "data_stats": {...},      # statistics of the training data the model depends on
     "step": 1234}             # global step of the newest checkpoint

Checkpoints are TF Saver checkpoints (``<dir>/model.ckpt-<step>`` + ``checkpoint``). A
training folder is relocatable: the trainers write the ``checkpoint`` index with paths
relative to the folder, and ``latest``/``resolve`` read any index (also an old one with
absolute paths) against the folder it sits in, never against where it was written.
"""

import glob
import os

from common import fsio
from common.errors import UserError

CONFIG = "config.json"
CKPT_PREFIX = "model.ckpt"


def save(train_dir, model, config, train=None, data_stats=None, step=0, **extra):
    d = {"model": model, "config": config, "train": train or {}, "data_stats": data_stats or {}, "step": int(step)}
    d.update(extra)
    fsio.write_json(os.path.join(train_dir, CONFIG), d)


def load(train_dir):
    p = os.path.join(os.fspath(train_dir), CONFIG)
    d = fsio.read_json(p, "not found (the trainer saves config.json beside its checkpoints)")
    if not isinstance(d, dict):
        raise UserError(f"{p}: expected a JSON object, found {type(d).__name__}")
    for k in ("model", "config"):
        if k not in d:
            raise UserError(f"{p}: missing key {k!r}")
    d["_path"] = p
    return d


def expect_model(info: dict, name: str, hint: str = "") -> dict:
    """``info`` (from ``load``/``resolve``) when it records a ``name`` model; else the one-line
    error every tool gives for a checkpoint of another model (``hint``: what to do instead)."""
    if info["model"] != name:
        raise UserError(
            f"{info['_path']}: checkpoint is a {info['model']!r} model, expected {name!r}"
            + (f" ({hint})" if hint else "")
        )
    return info


def resume_state(train_dir: str, step: int) -> dict:
    """The trainer's running sums saved with the checkpoint of ``step`` (``resume`` in
    config.json), so a resumed run writes the records of an uninterrupted one; {} when they
    belong to another step."""
    st = load(train_dir).get("resume") or {}
    return st if st.get("step") == step else {}


def _index_files(d):
    return sorted(os.path.basename(f) for f in glob.glob(os.path.join(glob.escape(d), "*.index")))


def latest(train_dir):
    """The newest checkpoint prefix of a training folder, inside that folder; None when the
    folder has no ``checkpoint`` index and no .index file. The index's entry is re-rooted to
    the folder (a copied or moved folder resolves its own files, never the original's); an
    entry naming no file in the folder is a one-line error listing the .index files there."""
    d = os.fspath(train_dir)
    index = os.path.join(d, "checkpoint")
    if not os.path.isfile(index):
        found = _index_files(d) if os.path.isdir(d) else []
        if found:
            raise UserError(
                f"{d}: no 'checkpoint' index file beside {', '.join(found)}; "
                f"expected one naming the newest (the trainer writes it)"
            )
        return None
    from common.tfcompat import tf

    try:
        state = tf.train.get_checkpoint_state(d)
    except Exception as e:  # a text-protobuf parse error
        raise UserError(
            f"{index}: unreadable checkpoint index ({type(e).__name__}); .index files here: "
            f"{', '.join(_index_files(d)) or 'none'}"
        ) from None
    named = state.model_checkpoint_path if state is not None else ""
    if not named:
        raise UserError(
            f"{index}: expected a line 'model_checkpoint_path: \"...\"', found none "
            f"(.index files here: {', '.join(_index_files(d)) or 'none'})"
        )
    ckpt = os.path.join(d, os.path.basename(named))  # relative or absolute: this folder's file
    if not os.path.isfile(ckpt + ".index"):
        raise UserError(
            f"{d}: the 'checkpoint' index names {named!r}, not in this folder "
            f"(expected {os.path.basename(named)}.index; .index files here: "
            f"{', '.join(_index_files(d)) or 'none'})"
        )
    return ckpt


def resolve(ckpt_or_dir):
    """(checkpoint prefix, run info) from a training folder or a checkpoint prefix."""
    from common.tfcompat import tf

    p = os.fspath(ckpt_or_dir)
    if os.path.isdir(p):
        ckpt = latest(p)
        if ckpt is None:
            raise UserError(
                f"{p}: no checkpoint in this folder (expected a 'checkpoint' index file and {CKPT_PREFIX}-<step>.index)"
            )
        d = p
    else:
        ckpt, d = p, os.path.dirname(p) or "."
        if not os.path.isfile(ckpt + ".index"):
            raise UserError(f"{ckpt}: no checkpoint at this prefix (expected {ckpt}.index)")
    try:
        tf.train.load_checkpoint(ckpt)
    except Exception as e:
        raise UserError(
            f"{ckpt}: unreadable checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    info = load(d)
    try:
        info["checkpoint_step"] = int(ckpt.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        info["checkpoint_step"] = info.get("step", 0)
    return ckpt, info


def check_readable(ckpt):
    """A one-line error when a checkpoint's index or data files are missing, truncated or corrupt
    (TF's restore would fail later with a long traceback)."""
    from common.tfcompat import tf

    try:
        r = tf.train.load_checkpoint(ckpt)
        for name in r.get_variable_to_shape_map():  # reads every tensor: catches truncated data files
            r.get_tensor(name)
    except Exception as e:  # DataLossError, OutOfRangeError, NotFoundError, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UserError(
            f"{ckpt}: unreadable checkpoint ({type(e).__name__}: {first[:200]}); expected the files "
            f"{os.path.basename(ckpt)}.index and .data-* as the trainer wrote them"
        ) from None
