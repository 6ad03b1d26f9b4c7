"""Start N worker processes of a trainer on this host (like torchrun --nproc_per_node).

    python train/launch.py --nproc 2 -- python train/train_realnvp.py --config small ...

Picks N free loopback ports, gives process i TF_CONFIG = {"cluster": {"worker": [...]},
"task": {"type": "worker", "index": i}}, prefixes every line it prints with "[i] ", and
stops all of them (SIGTERM, then SIGKILL after --grace seconds) as soon as one fails;
the launcher's exit status is the first failure's (0 when all succeed). A SIGINT or
SIGTERM to the launcher is passed to every worker (the trainers then save and stop
together). For several hosts, run the trainer on each host with its own TF_CONFIG
(README: Training on several devices and hosts).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.cli import tool_parser  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from common.log import log  # noqa: E402


def free_ports(n, host="127.0.0.1"):
    """n distinct ports free now (the OS picks them; a race with another program is possible,
    and then the trainer says which port is in use)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def tf_configs(n, host="localhost", ports=None):
    ports = ports or free_ports(n)
    hosts = [f"{host}:{p}" for p in ports]
    return [json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": i}}) for i in range(n)]


def _pump(stream, rank, out, lock):
    for line in iter(stream.readline, b""):
        with lock:
            out.write(f"[{rank}] " + line.decode("utf-8", "replace"))
            out.flush()
    stream.close()


def parser():
    ap = tool_parser(None, __doc__.split("\n\n")[0], __doc__.split("\n\n", 1)[1])
    ap.add_argument("--nproc", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL when stopping")
    ap.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the trainer's command line")
    return ap


@cli
def main(argv=None):
    a = parser().parse_args(argv)
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        raise UserError(
            "launch.py: expected a command after --, found none (e.g. -- python train/train_realnvp.py --config small)"
        )
    if a.nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {a.nproc}")
    if "TF_CONFIG" in os.environ:
        log.warning("launch.py: TF_CONFIG in the environment is replaced for each worker")
    lock = threading.Lock()
    procs, pumps = _spawn(cmd, tf_configs(a.nproc), a.grace, lock)
    signalled = []

    def forward(signum, frame):
        signalled.append(signum)  # the workers stop together and save: no stopping them early
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failed = _watch(procs, a.grace, lock, signalled)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for t in pumps:
        t.join(timeout=2)
    if failed is None and signalled:
        bad = [c for c in (p.returncode for p in procs) if c]
        failed = (None, bad[0]) if bad else None
    if failed is not None:
        return failed[1] if failed[1] > 0 else 128 - failed[1]
    return 0


def _spawn(cmd, configs, grace, lock):
    """One worker per TF_CONFIG, each line it prints prefixed with its index: (processes, pump threads)."""
    procs, pumps = [], []
    for i, cfg in enumerate(configs):
        env = dict(os.environ, TF_CONFIG=cfg, PYTHONUNBUFFERED="1")
        try:
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            _stop(procs, grace)
            raise UserError(f"launch.py: cannot start {cmd[0]!r}: {e.strerror or e}") from None
        procs.append(p)
        for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
            t = threading.Thread(target=_pump, args=(stream, i, out, lock), daemon=True)
            t.start()
            pumps.append(t)
    return procs, pumps


def _watch(procs, grace, lock, signalled):
    """Wait for every worker to end; the first failure (unless a signal was forwarded: then the
    workers stop together) stops the others. (index, status) of that failure, or None."""
    failed = None
    while True:
        codes = [p.poll() for p in procs]
        bad = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if bad and failed is None and not signalled:
            failed = bad[0]
            with lock:
                log.warning(f"launch.py: worker {failed[0]} exited with status {failed[1]}; stopping the others")
            _stop(procs, grace)
        if all(c is not None for c in [p.poll() for p in procs]):
            return failed
        time.sleep(0.1)


def _stop(procs, grace):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    end = time.time() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


if __name__ == "__main__":
    run(main)
