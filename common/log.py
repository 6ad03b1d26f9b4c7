"""The one logger of every tool: progress and diagnostics to stderr, results stay on stdout.

``from common.log import log`` then ``log.info(...)``. One handler writes the plain message
to stderr; ``-v/--verbose`` shows debug lines, ``-q/--quiet`` only warnings and errors
(``common.cli.add_verbosity``). The handler looks up ``sys.stderr`` at each line, so a
test's captured stderr (pytest's capsys) sees what a user's terminal would.
"""

import logging
import sys

log = logging.getLogger("ascend_road")


class _Stderr(logging.StreamHandler):
    """A StreamHandler on whatever ``sys.stderr`` is when a line is written."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


def setup(level: int = logging.INFO) -> logging.Logger:
    """Route ``log`` to stderr at ``level`` (the handler is added once; later calls set the level)."""
    if not any(isinstance(h, _Stderr) for h in log.handlers):
        h = _Stderr()
        h.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(h)
        log.propagate = False  # one line per message, whatever the root logger holds
    log.setLevel(level)
    return log


def quiet() -> bool:
    """-q given: no progress bars and no chatter (only warnings, errors and results)."""
    return log.getEffectiveLevel() > logging.INFO


setup()  # at import, so code called outside a tool's main (tests, notebooks) prints as a tool does
