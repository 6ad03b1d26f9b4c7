"""What every bench figure carries: its median and spread, how its sides were interleaved,
and the load it was measured under (issue #24).

A figure is a dict ``{"median", "min", "max", "q1", "q3", "n", "samples", "unit", "load"}``;
``load`` says how many cores the machine has, the 1-minute load average before and after,
and the CPU the *other* processes used meanwhile. The flag ``loaded`` is set from the
latter, not from the load average: the load average counts this bench's own threads too
(it climbs towards their number within a minute), so after the first measurement of a run
it would flag everything. The CPU of the others is read from /proc/stat (all processes)
minus os.times() (this process and the children it waited for) over the same interval.
"""

import contextlib
import ctypes
import math
import os
import statistics
import sys
import time

# How much CPU of other processes (in cores, averaged over the measurement) a figure tolerates.
# name: (fraction of the machine's cores, why)
TOLERANCE = {
    "all_cores": (
        0.1,
        "a timing that keeps every core busy (ONNX Runtime, TF, sgemm, a training step) loses about "
        "other/cores of its CPU: 0.1 x cores keeps that under ~10%",
    ),
    "one_core": (
        0.5,
        "a single-threaded timing still has a core of its own while the others use at most half of the cores",
    ),
}


def cores():
    return os.cpu_count() or 1


def load_1min():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # no load average on this platform
        return None


def busy_seconds():
    """CPU seconds all processes have spent busy (user, nice, system, irq, softirq), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_seconds():
    """CPU seconds of this process (all threads) and of the children it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Load:
    """The load around one figure's measurements (one or several watched intervals)."""

    def __init__(self):
        self.before = self.after = None
        self.seconds = 0.0
        self.other_cpu_s = 0.0
        self.known = True  # False where /proc/stat cannot be read

    @contextlib.contextmanager
    def watch(self):
        b = (time.perf_counter(), busy_seconds(), own_seconds())
        if self.before is None:
            self.before = load_1min()
        try:
            yield self
        finally:
            a = (time.perf_counter(), busy_seconds(), own_seconds())
            self.after = load_1min()
            self.add(a[0] - b[0], None if None in (a[1], b[1]) else (a[1] - b[1]) - (a[2] - b[2]))

    def add(self, seconds, other_cpu_s):
        self.seconds += seconds
        if other_cpu_s is None:
            self.known = False
        else:
            self.other_cpu_s += max(0.0, other_cpu_s)

    @classmethod
    def merged(cls, *loads):
        """One Load over several (the two sides of a ratio): first before, last after, sums."""
        m = cls()
        m.before, m.after = loads[0].before, loads[-1].after
        for x in loads:
            m.add(x.seconds, x.other_cpu_s if x.known else None)
        return m

    def other_cores(self):
        """Mean CPU of the other processes in cores; where unknown, the load average before."""
        if self.known and self.seconds > 0:
            return self.other_cpu_s / self.seconds
        return self.before

    def record(self, tolerance, name="figure", n_cores=None):
        """The JSON of this load for a figure of the given tolerance (a TOLERANCE key, or
        None for a figure the load cannot change: a memory peak, an accuracy); warns when loaded."""
        n_cores = n_cores or cores()
        other = self.other_cores()
        rec = {
            "cores": n_cores,
            "load_1min_before": self.before,
            "load_1min_after": self.after,
            "seconds": round(self.seconds, 3),
            "other_cpu_cores": None if other is None else round(other, 3),
            "other_cpu_from": "/proc/stat - os.times()" if self.known else "load average before",
            "tolerance": tolerance,
        }
        if tolerance is None:
            return dict(rec, loaded=False)
        fraction, _why = TOLERANCE[tolerance]
        limit = fraction * n_cores
        loaded = other is None or other > limit
        if loaded:
            used = "?" if other is None else f"{other:.2f}"
            print(
                f"warning: {name}: other processes used {used} cores during it (limit {limit:g}: {fraction} x "
                f"{n_cores} cores for a {tolerance.replace('_', '-')} timing); marked loaded, not a clean figure",
                file=sys.stderr,
                flush=True,
            )
        return dict(rec, limit_other_cpu_cores=limit, loaded=loaded)


def spread(samples):
    """Median, min, max and quartiles (inclusive method) of a list of numbers."""
    xs = sorted(float(x) for x in samples)
    if not xs:
        raise ValueError("no samples")
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else (xs[0],) * 3
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "q1": q1, "q3": q3, "n": len(xs)}


def figure(samples, unit, load, tolerance, name="figure", label=None, target=None, met=None, **extra):
    """One published figure: spread of its samples, the samples, and its load record."""
    d = dict(spread(samples), unit=unit, samples=[float(x) for x in samples])
    if label:
        d["label"] = label
    if target is not None:
        d["target"] = target
    if callable(met):
        met = bool(met(d["median"]))
    if met is not None:
        d["met"] = met
    d.update(extra)
    d["load"] = load.record(tolerance, name) if isinstance(load, Load) else load
    return d


def interleave(sides, rounds):
    """Run each side once per round in the given order, A B A B ... (the rounds share the
    machine's state: each side sees the same drift). Returns ({side: [result per round]},
    {side: Load over its own calls})."""
    samples = {k: [] for k in sides}
    loads = {k: Load() for k in sides}
    for _ in range(rounds):
        for k, fn in sides.items():
            with loads[k].watch():
                samples[k].append(fn())
    return samples, loads


def ratios(num, den):
    """Per-round ratios num[i] / den[i] of two interleaved sides (paired by round)."""
    if len(num) != len(den):
        raise ValueError(f"unpaired sides: {len(num)} vs {len(den)} samples")
    return [a / b for a, b in zip(num, den)]


# --- the BLAS under numpy, for the sgemm ceiling ---------------------------------------


def _openblas():
    """(path, ctypes lib, symbol suffix) of the OpenBLAS numpy loaded, or None."""
    import numpy  # noqa: F401  (loads its BLAS)

    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "")):
            if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                return path, lib, prefix, suffix
    return None


def blas_info():
    """Which BLAS numpy uses, its kernel (core name) and thread count, and the OpenBLAS
    environment variables that change them (reported, never changed here)."""
    env = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS")}
    try:
        found = _openblas()
    except OSError:
        found = None
    if not found:
        return {"library": None, "env": env}
    path, lib, p, s = found
    getattr(lib, f"{p}get_corename{s}").restype = ctypes.c_char_p
    getattr(lib, f"{p}get_config{s}").restype = ctypes.c_char_p
    return {
        "library": os.path.basename(path),
        "config": getattr(lib, f"{p}get_config{s}")().decode(),
        "core": getattr(lib, f"{p}get_corename{s}")().decode(),
        "threads": int(getattr(lib, f"{p}get_num_threads{s}")()),
        "env": env,
    }


@contextlib.contextmanager
def blas_threads(n):
    """numpy's OpenBLAS on ``n`` threads inside the block (the runtime's count), restored after."""
    found = _openblas()
    if not found:
        yield
        return
    _, lib, p, s = found
    old = int(getattr(lib, f"{p}get_num_threads{s}")())
    getattr(lib, f"{p}set_num_threads{s}")(int(n))
    try:
        yield
    finally:
        getattr(lib, f"{p}set_num_threads{s}")(old)


def sgemm_flops(n=2048, reps=5):
    """float32 FLOP/s of an n x n matmul through numpy: the best of ``reps`` after one warm-up
    (the ceiling this BLAS reaches, with nothing else of ours running)."""
    import numpy as np

    rng = np.random.RandomState(0)
    a, b = rng.rand(n, n).astype(np.float32), rng.rand(n, n).astype(np.float32)
    a @ b
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best
