"""The command line every tool shares: one parser class and one group per common flag.

``ArgumentParser`` turns a usage error into a ``UserError`` (one line ``error: ... (see
--help)``, exit 2 through ``@cli``), and applies ``-v``/``-q`` to ``common.log`` as it
parses. Each ``add_*`` defines ONE canonical flag; the aliases keep every spelling users
type today working (the Ascend port's trainers, ATC, msame, img2bin, TensorFlow's
freeze_graph) and parse to the same value:

  --data_dir   aliases --data-dir, --data_url (the Ascend port's trainer), --data_path
  -o/--output  plus the tool's old name where it had one (--out, --train_url, ...)
  --input      plus --inputs where a tool had it
  --force, --device, -v/--verbose, -q/--quiet

A tool keeps its old ``dest`` where its code or its saved config uses it (``dest=``), so
``a.data_url`` and a trainer's config.json stay as they were.
"""

import argparse
import logging

from common import log as logs
from common.errors import UserError

DATA_DIR_FLAGS = ("--data_dir", "--data-dir", "--data_url", "--data_path")
DEVICES = ("cpu", "gpu", "npu")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors, and ``-v``/``-q`` applied to the log level."""

    def error(self, message):
        raise UserError(f"{message} (see --help)")

    def parse_known_args(self, args=None, namespace=None):
        ns, extra = super().parse_known_args(args, namespace)
        level = getattr(ns, "log_level", None)
        if level is not None:
            logs.setup(level)
        if logs.log.isEnabledFor(logging.DEBUG):  # -v: what the flags were taken to mean
            logs.log.debug("%s: %s", self.prog, ", ".join(f"{k}={v!r}" for k, v in sorted(vars(ns).items())))
        return ns, extra


def _flags(canonical, aliases):
    """Short flags first (argparse shows the first in usage lines), then the canonical, then the rest."""
    short = [f for f in aliases if not f.startswith("--")]
    return [*short, *canonical, *(f for f in aliases if f.startswith("--") and f not in canonical)]


def add_data_dir(p, dest: str = "data_dir", default: str | None = None, help: str | None = None):
    """``--data_dir`` (aliases ``--data-dir``, ``--data_url``, ``--data_path``): the DATA_DIR folder."""
    return p.add_argument(
        *DATA_DIR_FLAGS, dest=dest, default=default, help=help or "DATA_DIR (default $DATA_DIR or ./data)"
    )


def add_output(p, *aliases: str, dest: str = "output", help: str = "where to write", **kw):
    """``-o/--output`` plus the tool's old spellings (``aliases``); ``kw`` as add_argument's."""
    return p.add_argument(*_flags(["-o", "--output"], aliases), dest=dest, help=help, **kw)


def add_input(p, *aliases: str, dest: str = "input", help: str = "input folders or files, comma separated", **kw):
    """``--input`` plus the tool's old spellings (``-i``, ``--inputs``)."""
    return p.add_argument(*_flags(["--input"], aliases), dest=dest, help=help, **kw)


def add_force(p, help: str = "replace existing outputs"):
    """``--force``: without it an existing output is an error (common.fsio.refuse_overwrite)."""
    return p.add_argument("--force", action="store_true", help=help)


def add_device(p, choices=DEVICES, default: str = "cpu", help: str | None = None, flag: str = "--device", **kw):
    """``--device cpu|gpu|npu``: where TensorFlow or ONNX Runtime runs."""
    return p.add_argument(flag, default=default, choices=choices, help=help or f"default {default}", **kw)


def add_verbosity(p):
    """``-v/--verbose`` (debug lines too) and ``-q/--quiet`` (warnings and errors only) on stderr."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG, help="also print debug lines"
    )
    g.add_argument(
        "-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING, help="only warnings and errors"
    )
    p.set_defaults(log_level=logging.INFO)
    return g


def tool_parser(prog: str | None = None, doc: str | None = None, example: str | None = None, **kw) -> ArgumentParser:
    """The usual tool parser: description from the module docstring, an example as epilog,
    text kept as written, -v/-q added."""
    p = ArgumentParser(
        prog=prog, description=doc, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter, **kw
    )
    add_verbosity(p)
    return p
