"""One exception type for user errors, caught once at each CLI's top.

A user error is reported as a single line ``error: ...`` on stderr with a
non-zero exit status, never as a traceback. The message names the file, what was
expected and what was found.
"""

import functools
import sys

from common import log


class UserError(Exception):
    """A problem with the user's input or environment, not a bug."""

    exit_code = 2


def first_line(e):
    """The informative line of an exception's message, for a one-line error (TensorFlow's
    start with "Graph execution error:" and a node trace before the cause)."""
    text = getattr(e, "message", None) or str(e) or type(e).__name__
    skip = ("Graph execution error", "Detected at node", "Node:", "[[", "Original stack trace", 'File "')
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip() and not ln.strip().startswith(skip)]
    # TensorFlow puts the Python stack of the op's definition (indented) before its cause
    cause = [ln.strip() for ln in str(text).strip().splitlines()[1:] if ln[:1] not in (" ", "\t", "")]
    cause = [ln for ln in cause if not ln.startswith(skip)]
    return ((cause if "Detected at node" in str(text) else lines) or lines or [type(e).__name__])[0][:300]


def fail(msg):
    raise UserError(msg)


def cli(main):
    """Decorate a ``main(argv=None)`` so user errors become one line and exit 2, and ``common.log``
    writes to stderr."""

    @functools.wraps(main)
    def wrapper(argv=None):
        log.setup()  # INFO on stderr until the tool's -v/-q says otherwise
        try:
            rc = main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt:
            from common.fsio import discard_temporaries

            discard_temporaries()  # one created just before the interrupt, outside its try
            print("error: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # `tool | head`: the reader left; say nothing more
            _silence_stdout()
            return 141
        except OSError as e:
            from common.fsio import UnwritableError

            if not isinstance(e, UnwritableError):
                raise  # any other OSError is a bug until a tool says otherwise
            print(f"error: {e}", file=sys.stderr)
            return UserError.exit_code
        return 0 if rc is None else rc

    return wrapper


def _silence_stdout():
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _terminated(signum, frame):
    """SIGTERM unwinds like an error (exit 128 + 15): every ``fsio`` temporary file is removed
    on the way out, where the default action would kill the process and leave it."""
    from common import fsio

    fsio.discard_temporaries()
    print("error: terminated (SIGTERM)", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def unwind_on_sigterm():
    """From here on a SIGTERM unwinds (tools that handle it themselves, the trainers and
    img2bin, install their own handler inside ``main``)."""
    import signal

    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)


def run(main):
    """``if __name__ == '__main__': run(main)``, SIGTERM unwinding."""
    unwind_on_sigterm()
    sys.exit(main())
