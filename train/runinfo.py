"""config.json beside the checkpoints: what freeze needs to rebuild the exact graph.

    {"model": "realnvp" | "rebar",
     "config": {...},          # model hyperparameters: inference_graph(config, ...) rebuilds it
     "train": {...},           # the trainer's flags, for the record
     "data_stats": {...},      # statistics of the training data the model depends on
     "step": 1234}             # global step of the newest checkpoint

Checkpoints are TF Saver checkpoints (``<dir>/model.ckpt-<step>`` + ``checkpoint``).
"""
import os

from common import fsio
from common.errors import UserError

CONFIG = "config.json"
CKPT_PREFIX = "model.ckpt"


def save(train_dir, model, config, train=None, data_stats=None, step=0, **extra):
    d = {"model": model, "config": config, "train": train or {}, "data_stats": data_stats or {},
         "step": int(step)}
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


def resolve(ckpt_or_dir):
    """(checkpoint prefix, run info) from a training folder or a checkpoint prefix."""
    from common.tfcompat import tf

    p = os.fspath(ckpt_or_dir)
    if os.path.isdir(p):
        ckpt = tf.train.latest_checkpoint(p)
        if ckpt is None:
            raise UserError(f"{p}: no checkpoint in this folder (expected a 'checkpoint' index file "
                            f"and {CKPT_PREFIX}-<step>.index)")
        d = p
    else:
        ckpt, d = p, os.path.dirname(p) or "."
        if not os.path.isfile(ckpt + ".index"):
            raise UserError(f"{ckpt}: no checkpoint at this prefix (expected {ckpt}.index)")
    try:
        tf.train.load_checkpoint(ckpt)
    except Exception as e:
        raise UserError(f"{ckpt}: unreadable checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''})") from None
    info = load(d)
    try:
        info["checkpoint_step"] = int(ckpt.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        info["checkpoint_step"] = info.get("step", 0)
    return ckpt, info
