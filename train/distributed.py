"""Synchronous data parallelism over processes and hosts, for both trainers.

The cluster comes the standard ways: ``TF_CONFIG`` ({"cluster": {"worker": ["host:port", ...]},
"task": {"type": "worker", "index": i}}) or ``--worker_hosts h:p,h:p --task_index i`` (the
flags win). Without either, or with one worker, the trainers run as a single process.

Each worker runs a ``tf.train.Server`` (gRPC) and its own session on it; the workers meet
only in collective ops (``collective_ops.all_reduce`` / ``broadcast_send|recv``, graph
mode, group leader = task 0): one all-reduce per step of every gradient, flattened into
one vector (plus the loss and a stop flag), and one broadcast of every variable from the
chief after its init or restore. So variables start identical (the chief's values,
data-dependent init included), every worker applies the identical averaged update, and a
signal on any worker stops all of them after the same step.

A missing peer never hangs a worker: every collective carries ``--peer_timeout`` and a
watchdog thread ends the process (exit 2) if a collective step outlives it anyway; the
error line names the tasks whose port does not answer.

On Ascend (``--device npu``) the same two operations are HCCL's (npu_bridge's hccl_ops),
and the cluster is Ascend's: RANK_TABLE_FILE, RANK_ID, RANK_SIZE (DEVICE_ID picks the
chip). npu_bridge is imported lazily; that path is unit-tested with the imports stubbed
and has not been run on an NPU.
"""

import contextlib
import json
import os
import socket
import sys
import tempfile
import threading
import time

from common.errors import UserError

GROUP_KEY = 1
LEADER = "/job:worker/replica:0/task:0"


def add_flags(ap):
    g = ap.add_argument_group("several processes / hosts (see README: Training on several devices and hosts)")
    g.add_argument(
        "--worker_hosts",
        default="",
        help="host:port,host:port,... of every worker (else TF_CONFIG; neither: one process)",
    )
    g.add_argument("--task_index", type=int, default=None, help="this worker's index in --worker_hosts")
    g.add_argument(
        "--peer_timeout",
        type=float,
        default=300.0,
        help="seconds a worker waits for the others in a step before stopping with an error",
    )


def _split_host(addr, where):
    host, sep, port = str(addr).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"{where}: expected host:port, found {addr!r}")
    return host, int(port)


class Cluster:
    """The workers' addresses and this process's place among them."""

    def __init__(self, hosts, index, timeout=300.0, source="--worker_hosts"):
        if not hosts:
            raise UserError(f"{source}: expected at least one host:port, found none")
        for h in hosts:
            _split_host(h, source)
        if len(set(hosts)) != len(hosts):
            raise UserError(f"{source}: the same host:port appears twice in {hosts}")
        if not isinstance(index, int) or not 0 <= index < len(hosts):
            raise UserError(
                f"{source}: task index must be in 0..{len(hosts) - 1} for {len(hosts)} workers, found {index!r}"
            )
        if not timeout > 0:
            raise UserError(f"--peer_timeout must be > 0 seconds, got {timeout}")
        self.hosts, self.index, self.timeout, self.source = list(hosts), index, float(timeout), source
        self.n = len(hosts)
        self.is_chief = index == 0
        self.device = f"/job:worker/replica:0/task:{index}"
        self.server = None
        self.backend = "grpc"

    @property
    def target(self):
        return self.server.target if self.server is not None else ""

    def __repr__(self):
        return f"worker {self.index} of {self.n} ({self.hosts[self.index]})"

    # --- the server ---------------------------------------------------------------
    def start(self, config):
        """Start this worker's gRPC server (a port in use is a one-line error); HCCL needs none."""
        from common.tfcompat import tf

        if self.backend != "grpc":
            return None
        host, port = _split_host(self.hosts[self.index], self.source)
        with socket.socket() as s:  # TF's own failure here is a multi-line log plus a traceback
            try:
                s.bind(("" if host in ("localhost", "127.0.0.1", "0.0.0.0") else host, port))
            except OSError as e:
                raise UserError(
                    f"{self.source}: cannot listen on {self.hosts[self.index]} (task {self.index}): "
                    f"{e.strerror or e}; expected a free port"
                ) from None
        quiet_native_logs()
        try:
            self.server = tf.train.Server(
                tf.train.ClusterSpec({"worker": self.hosts}),
                job_name="worker",
                task_index=self.index,
                config=config,
                start=True,
            )
        except Exception as e:
            raise UserError(
                f"{self.source}: could not start the server for task {self.index} on "
                f"{self.hosts[self.index]} ({type(e).__name__}: {str(e).strip().splitlines()[0][:120]})"
            ) from None
        return self.server

    def session_config(self, config):
        if self.backend != "grpc":
            return config
        # a distributed session has no per-session pools: the server's (sized by this same
        # config, e.g. one thread each with --deterministic) run the steps
        config.use_per_session_threads = False
        config.experimental.collective_group_leader = LEADER
        del config.device_filters[:]
        config.device_filters.append(self.device)  # never wait for the other workers' devices
        return config

    # --- diagnosis ------------------------------------------------------------------
    def unreachable(self):
        """Indices of the other tasks whose port refuses a connection."""
        out = []
        for i, h in enumerate(self.hosts):
            if i == self.index:
                continue
            host, port = _split_host(h, self.source)
            try:
                with socket.create_connection((host, port), timeout=2) as c:
                    if c.getsockname() == c.getpeername():  # TCP self-connect to a closed local port
                        raise OSError("self-connect")
            except OSError:
                out.append(i)
        return out

    def missing_message(self, what):
        gone = self.unreachable() if self.backend == "grpc" else []
        if gone:
            who = ", ".join(f"task {i} ({self.hosts[i]})" for i in gone)
            why = f"{who} {'is' if len(gone) == 1 else 'are'} not running (port closed)"
        else:
            who = ", ".join(f"task {i} ({h})" for i, h in enumerate(self.hosts) if i != self.index)
            why = f"no answer from {who} within {self.timeout:g} s (--peer_timeout)"
        return (
            f"{self!r}: {what}: {why}; stopped. Restart every worker with --load_params 1 "
            f"to continue from the chief's last checkpoint"
        )


def from_args(a, env=None, device="cpu"):
    """The Cluster of the flags or TF_CONFIG (on npu: of RANK_SIZE/RANK_ID/RANK_TABLE_FILE);
    None for a single-process run."""
    env = os.environ if env is None else env
    timeout = getattr(a, "peer_timeout", 300.0)
    if device == "npu":
        return ascend_cluster(env, timeout)
    if getattr(a, "worker_hosts", ""):
        hosts = [h.strip() for h in a.worker_hosts.split(",") if h.strip()]
        if a.task_index is None:
            raise UserError(f"--worker_hosts {a.worker_hosts}: expected --task_index too, found none")
        c = Cluster(hosts, a.task_index, timeout, "--worker_hosts")
    elif env.get("TF_CONFIG", "").strip():
        c = _from_tf_config(env["TF_CONFIG"], timeout)
    else:
        if getattr(a, "task_index", None) is not None:
            raise UserError(f"--task_index {a.task_index}: expected --worker_hosts (or TF_CONFIG) too, found none")
        return None
    return c if c.n > 1 else None


def _from_tf_config(text, timeout):
    src = "TF_CONFIG"
    try:
        d = json.loads(text)
    except ValueError as e:
        raise UserError(
            f"{src}: not valid JSON ({e}); expected "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}'
        ) from None
    if not isinstance(d, dict) or not isinstance(d.get("cluster"), dict) or not isinstance(d.get("task"), dict):
        raise UserError(f"{src}: expected an object with 'cluster' and 'task' objects, found {text.strip()[:80]!r}")
    other = sorted(set(d["cluster"]) - {"worker"})
    if other:
        raise UserError(f"{src}: only a 'worker' job is supported (synchronous all-reduce), found jobs {other}")
    hosts = d["cluster"].get("worker")
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise UserError(f"{src}: cluster.worker must be a list of 'host:port' strings, found {hosts!r}")
    t = d["task"]
    if t.get("type", "worker") != "worker":
        raise UserError(f"{src}: task.type must be 'worker', found {t.get('type')!r}")
    idx = t.get("index")
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise UserError(f"{src}: task.index must be an integer, found {idx!r}")
    return Cluster(hosts, idx, timeout, src)


def quiet_native_logs():
    """gRPC and the collective executor log every retry and abort to fd 2 (absl, not
    affected by TF_CPP_MIN_LOG_LEVEL); send fd 2 to a log file and keep Python's stderr
    (errors, progress) on the terminal. Returns the log file's path."""
    if getattr(quiet_native_logs, "path", None):
        return quiet_native_logs.path
    path = os.path.join(tempfile.gettempdir(), f"ascend-road-tf-{os.getpid()}.log")
    try:
        sys.stderr.flush()
        keep = os.dup(2)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stderr = os.fdopen(keep, "w", buffering=1)
    except OSError:
        return None
    quiet_native_logs.path = path
    return path


# --- collectives -------------------------------------------------------------------------


class Collectives:
    """All-reduce and broadcast between the workers (TF's collective ops, graph mode).

    Every call takes the next instance key: the workers build their ops in the same order,
    so the keys match without any exchange."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.n = cluster.n
        self._key = 0

    def _next(self):
        self._key += 1
        return self._key

    def allreduce_mean(self, tensors):
        """The mean over workers of each tensor (float32), as one flat all-reduce."""
        from tensorflow.python.ops import collective_ops

        from common.tfcompat import tf

        # in a name scope: the model's own ops keep the names a single process gives them
        # (variables such as the EMA's shadows are named after tensors)
        with tf.name_scope("allreduce"):
            flat, shapes = _flatten(tensors)
            with tf.device(self.cluster.device + "/device:CPU:0"):
                red = collective_ops.all_reduce(
                    flat, self.n, GROUP_KEY, self._next(), "Add", "Div", timeout=self.cluster.timeout
                )
            return _unflatten(red, shapes)

    def broadcast_from_chief(self, variables):
        """An op that sets every variable to the chief's value (float and integer ones)."""

        from common.tfcompat import tf

        ops = []
        with tf.name_scope("broadcast"):
            return self._broadcast(variables, ops)

    def _broadcast(self, variables, ops):
        from tensorflow.python.ops import collective_ops

        from common.tfcompat import tf

        for kind, vs in _by_kind(variables):
            wire = tf.float32 if kind == "f32" else tf.float64
            with tf.device(self.cluster.device + "/device:CPU:0"):
                if self.cluster.is_chief:
                    flat, _ = _flatten([tf.cast(v, wire) for v in vs])
                    ops.append(
                        collective_ops.broadcast_send(
                            flat, flat.shape, wire, self.n, GROUP_KEY, self._next(), timeout=self.cluster.timeout
                        )
                    )
                else:
                    size = sum(v.shape.num_elements() for v in vs)
                    flat = collective_ops.broadcast_recv(
                        [size], wire, self.n, GROUP_KEY, self._next(), timeout=self.cluster.timeout
                    )
                    parts = _unflatten(flat, [v.shape.as_list() for v in vs])
                    ops += [tf.assign(v, tf.cast(p, v.dtype.base_dtype)) for v, p in zip(vs, parts)]
        return tf.group(*ops)


class HcclCollectives:
    """The same two operations on Ascend, through npu_bridge's HCCL ops (imported lazily).
    The cluster is Ascend's: RANK_SIZE workers, this one RANK_ID, chips from RANK_TABLE_FILE."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.n = cluster.n
        try:
            from npu_bridge.hccl import hccl_ops
        except ImportError as e:
            raise UserError(
                "--device npu with several workers needs the Ascend TensorFlow adapter "
                f"(npu_bridge.hccl, from CANN's tfplugin) in this Python: {e}. Source the CANN "
                "set_env.sh or use --device cpu"
            ) from None
        self.ops = hccl_ops

    def allreduce_mean(self, tensors):
        from common.tfcompat import tf

        with tf.name_scope("allreduce"):
            flat, shapes = _flatten(tensors)
            red = self.ops.allreduce(flat, "sum") / float(self.n)
            return _unflatten(red, shapes)

    def broadcast_from_chief(self, variables):
        from common.tfcompat import tf

        vs = list(variables)
        # HCCL broadcasts float and int32 tensors: integer variables (the global step) go as int32
        wire = [v.read_value() if v.dtype.base_dtype.is_floating else tf.cast(v, tf.int32) for v in vs]
        vals = self.ops.broadcast(wire, root_rank=0)
        return tf.group(*[tf.assign(v, tf.cast(x, v.dtype.base_dtype)) for v, x in zip(vs, vals)])


def ascend_cluster(env=None, timeout=300.0):
    """The cluster of Ascend's variables (RANK_TABLE_FILE, RANK_ID, RANK_SIZE); None when absent
    or one rank. Its hosts are placeholders: HCCL, not gRPC, connects the ranks."""
    env = os.environ if env is None else env
    if "RANK_SIZE" not in env:
        return None
    try:
        size, rank = int(env["RANK_SIZE"]), int(env.get("RANK_ID", "-1"))
    except ValueError:
        raise UserError(
            f"RANK_SIZE/RANK_ID: expected integers, found {env.get('RANK_SIZE')!r}/{env.get('RANK_ID')!r}"
        ) from None
    if size <= 1:
        return None
    table = env.get("RANK_TABLE_FILE", "")
    if not table or not os.path.isfile(table):
        raise UserError(
            f"RANK_TABLE_FILE: expected the HCCL rank table (a JSON file) for RANK_SIZE {size}, found {table!r}"
        )
    c = Cluster([f"rank{i}:{i + 1}" for i in range(size)], rank, timeout, "RANK_ID/RANK_SIZE")
    c.device, c.backend = None, "hccl"
    return c


def make_collectives(cluster, device):
    return HcclCollectives(cluster) if device == "npu" else Collectives(cluster)


def _flatten(tensors):
    from common.tfcompat import tf

    shapes = [t.shape.as_list() for t in tensors]
    flat = (
        tf.concat(
            [tf.reshape(tf.cast(t, tf.float32) if t.dtype.base_dtype != tf.float64 else t, [-1]) for t in tensors], 0
        )
        if len(tensors) > 1
        else tf.reshape(tensors[0], [-1])
    )
    return flat, shapes


def _unflatten(flat, shapes):
    from common.tfcompat import tf

    sizes = [int(_prod(s)) for s in shapes]
    parts = tf.split(flat, sizes) if len(sizes) > 1 else [flat]
    return [tf.reshape(p, s) for p, s in zip(parts, shapes)]


def _prod(s):
    n = 1
    for d in s:
        n *= d
    return n


def _by_kind(variables):
    from common.tfcompat import tf

    f32 = [v for v in variables if v.dtype.base_dtype == tf.float32]
    other = [v for v in variables if v.dtype.base_dtype != tf.float32]
    return [(k, vs) for k, vs in (("f32", f32), ("f64", other)) if vs]


# --- never hang ----------------------------------------------------------------------------


class Watchdog:
    """Ends the process with the one-line error if a collective step outlives the timeout
    (the collective ops' own timeout normally fires first; this is the backstop for a
    group that never forms)."""

    def __init__(self, cluster, grace=15.0):
        self.cluster, self.grace = cluster, grace
        self._deadline, self._what = None, ""
        self._lock = threading.Lock()
        t = threading.Thread(target=self._watch, daemon=True, name="peer-watchdog")
        t.start()

    @contextlib.contextmanager
    def waiting(self, what):
        with self._lock:
            self._deadline, self._what = time.time() + self.cluster.timeout + self.grace, what
        try:
            yield
        finally:
            with self._lock:
                self._deadline = None

    def _watch(self):
        while True:
            time.sleep(0.5)
            with self._lock:
                late = self._deadline is not None and time.time() > self._deadline
                what = self._what
            if late:
                print(f"error: {self.cluster.missing_message(what)}", file=sys.stderr, flush=True)
                os._exit(2)


def run_collective(sess, fetches, feed, cluster, watchdog, what):
    """sess.run of a step that meets the other workers: a missing peer is a one-line error."""
    from common.tfcompat import tf

    with watchdog.waiting(what):
        try:
            return sess.run(fetches, feed)
        except (
            tf.errors.DeadlineExceededError,
            tf.errors.UnavailableError,
            tf.errors.AbortedError,
            tf.errors.CancelledError,
            tf.errors.InternalError,
            tf.errors.UnknownError,
        ) as e:
            raise UserError(cluster.missing_message(what)) from e
