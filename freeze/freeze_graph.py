"""Freeze any TensorFlow 1 or TF 2 compat.v1 model to a static-shape .pb plus its signature (MODEL.json).

Flags are named as in TensorFlow's freeze_graph and ATC. Sources: a checkpoint with its
.meta (a training folder resolves through its ``checkpoint`` file), a SavedModel, or an
already frozen .pb (checks and signature only).

What freeze folds, so that the graph is the inference graph: the inputs get the static
shapes of --input_shape (a dynamic batch fixed); placeholders of --input_defaults
(``is_training:false;drop_rate:0``) and every other placeholder_with_default become
constants; tf.cond on a now-constant predicate keeps the taken branch (batch norm with
moving averages; a TF2 If or Case becomes its taken branch's function body, and function
calls are inlined, while an If on a real input or a While stays for tf2onnx); dropout at
rate 0 loses its random op; optimizer, saver and summary nodes are pruned. Integer and
bool outputs (an argmax) keep their dtype.

What freeze checks: no variables; no random op (an error names it and the input that
would replace it); every op converts with tf2onnx (the nodes that do not are listed);
the frozen graph equals the checkpoint on example inputs; it loads in a fresh process;
outputs do not depend on the other images of the batch (a graph whose batch norm still uses
the batch's statistics is refused, naming those ops, unless --allow_batch_coupling).
"""

import argparse
import os
import sys

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import fsio  # noqa: E402
from common.cli import add_device, add_force, add_output, tool_parser  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from common.log import log  # noqa: E402

EXAMPLE = """examples:
  python freeze/freeze_graph.py --input_checkpoint runs/mine/model.ckpt-300 \\
      --output_node_names logits,probs,pred --input_shape "images:16,32,32,3" \\
      --input_defaults "is_training:false;drop_rate:0" --output m/mine
  python freeze/freeze_graph.py --input_saved_model_dir export/1 --output_node_names probs \\
      --input_shape "images:16,224,224,3" --output m/mine
  python freeze/freeze_graph.py --input_graph frozen.pb --output_node_names probs \\
      --input_shape "images:16,224,224,3" --output m/mine"""


def build_parser():
    p = tool_parser(None, __doc__.split("\n\n")[0], EXAMPLE)
    src = p.add_argument_group("source (one of)")
    src.add_argument("--input_checkpoint", help="checkpoint prefix (DIR/model.ckpt-300) or its folder")
    src.add_argument("--input_meta_graph", help="meta graph (default: CHECKPOINT.meta)")
    src.add_argument("--input_saved_model_dir", help="SavedModel folder")
    src.add_argument("--saved_model_tags", default="serve", help="comma separated (default serve)")
    src.add_argument("--input_graph", help="an already frozen GraphDef .pb")
    p.add_argument(
        "--output_node_names",
        required=True,
        help="output op names, comma separated, in the order of msame's _output_<i> files",
    )
    p.add_argument(
        "--input_shape",
        required=True,
        help='static input shapes, ATC syntax: "images:16,32,32,3;mask:16,32" (input order)',
    )
    p.add_argument(
        "--input_defaults", default="", help='placeholders folded to constants: "is_training:false;drop_rate:0"'
    )
    add_output(p, required=True, help="output path without suffix: writes OUTPUT.pb + OUTPUT.json")
    p.add_argument("--name", help="model name recorded in the signature (default: OUTPUT's file name)")
    p.add_argument("--opset", type=int, default=13, help="ONNX opset of the converter preflight (default 13)")
    p.add_argument(
        "--allow_batch_coupling",
        action="store_true",
        help="freeze a graph whose outputs depend on the other images of the batch (batch norm in training "
        "mode) instead of refusing it; recorded in the signature, and reference/loss_check warn",
    )
    add_device(p, choices=("cpu", "gpu"), help="device used for the checks")
    add_force(p, help="overwrite OUTPUT.pb / OUTPUT.json")
    return p


def source_of(a):
    """The signature's record of the source, with paths absolute and relative to the card."""
    given = [k for k in ("input_checkpoint", "input_saved_model_dir", "input_graph") if getattr(a, k)]
    if len(given) != 1:
        raise UserError(
            "give exactly one source: --input_checkpoint, --input_saved_model_dir or "
            f"--input_graph (found {', '.join('--' + g for g in given) or 'none'})"
        )
    card_dir = os.path.dirname(os.path.abspath(a.output))

    def both(key, path):
        path = os.path.abspath(path)
        return {key: path, key + "_rel": os.path.relpath(path, card_dir)}

    if a.input_checkpoint:
        from freeze.sources import resolve_checkpoint

        ckpt, step = resolve_checkpoint(a.input_checkpoint)
        meta = a.input_meta_graph or ckpt + ".meta"
        if not os.path.isfile(meta):
            raise UserError(
                f"{meta}: meta graph not found (tf.train.Saver writes CKPT.meta beside the "
                "checkpoint; pass --input_meta_graph)"
            )
        return dict(kind="checkpoint", step=step, **both("checkpoint", ckpt), **both("meta_graph", meta))
    if a.input_saved_model_dir:
        d = a.input_saved_model_dir
        if not any(os.path.isfile(os.path.join(d, f)) for f in ("saved_model.pb", "saved_model.pbtxt")):
            raise UserError(f"{d}: not a SavedModel (expected saved_model.pb in it)")
        tags = [t.strip() for t in a.saved_model_tags.split(",") if t.strip()]
        return dict(kind="saved_model", tags=tags, **both("dir", d))
    if not os.path.isfile(a.input_graph):
        raise UserError(f"{a.input_graph}: frozen graph not found")
    return dict(kind="pb", **both("path", a.input_graph))


@cli
def main(argv=None):
    a = build_parser().parse_args(argv)
    from freeze import core, fold
    from freeze.sources import UserModel

    shapes = fold.parse_input_shape(a.input_shape)
    defaults = fold.parse_defaults(a.input_defaults)
    outputs = [n.strip() for n in a.output_node_names.split(",") if n.strip()]
    if not outputs:
        raise UserError(f"--output_node_names: no names in {a.output_node_names!r}")
    out = a.output[:-3] if a.output.endswith(".pb") else a.output
    out_dir, stem = os.path.dirname(out) or ".", os.path.basename(out)
    if not stem:
        raise UserError(f"--output {a.output!r}: expected a path without suffix, e.g. m/mine")
    fsio.refuse_overwrite([out + ext for ext in (".pb", ".json")], a.force)
    source = source_of(argparse.Namespace(**{**vars(a), "output": out}))
    with UserModel(source, shapes, outputs, defaults, device=a.device, name=a.name or stem) as m:
        sig = core.freeze(m, out_dir, stem, batch_independent=not a.allow_batch_coupling, opset=a.opset, force=a.force)
    c = sig.checks
    print(f"wrote {out}.pb ({sig.artifact['bytes']} bytes, {c['op_count']} ops) and {out}.json")
    print(f"inputs:  {sig.atc_input_shape()}")
    print(f"outputs: {', '.join(f'{t.op} {t.shape} {t.dtype}' for t in sig.outputs)}")
    f = c.get("folding", {})
    print(
        f"folded: {len(f.get('defaults_folded', {}))} placeholder default(s), {f.get('tf_cond_folded', 0)} "
        f"tf.cond switch(es), {len(f.get('tf2_calls_inlined', []))} TF2 If/Case/call(s) inlined, "
        f"{len(f.get('dropout_masks_folded', []))} dropout mask(s); frozen vs "
        f"checkpoint max rel err {c['frozen_vs_checkpoint_max_rel']:.2e}; batch independent: "
        f"{c.get('batch_independent')}"
    )
    if c.get("batch_coupling_allowed"):
        log.warning(
            f"warning: {out}.pb is BATCH-COUPLED (--allow_batch_coupling): an image's outputs depend on "
            f"the other images of its batch; batch statistics: {core.describe_ops(c['batch_statistics_ops'])}"
        )
    return 0


if __name__ == "__main__":
    run(main)
