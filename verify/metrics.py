"""Comparison metrics, in float64, with Ascend's and Polygraphy's definitions.

Ascend (msit cmp_algorithm), golden g, mine m, eps = float32 eps:
    cosine   g.m / (|g||m|); both all-zero -> 1
    max_abs  max |m - g| over |g| > eps          max_rel / mean_rel  |m/g - 1| over |g| > eps
    red      sqrt(sum (m-g)^2 / sum g^2)         rmse  sqrt(mean (m-g)^2)
Polygraphy elementwise: an element fails if |m-g| > atol AND |m-g|/|g| > rtol (either
tolerance suffices; relative to the golden). NaN and Inf are counted first and fail.

``Stats`` accumulates these over many files (sums and maxima), so 10,000 images'
outputs are compared without concatenating them.
"""

import threading

import numpy as np

EPS = float(np.finfo(np.float32).eps)
COSINE_MIN = 0.99  # msit's thresholds
RED_MAX = 0.05
TINY = 2.220446049250313e-16  # Polygraphy's guard for golden zeros
CHUNK = 1 << 18  # elements per numpy pass of Stats (5 float64 work rows = 10 MB)

_local = threading.local()


def _scratch():
    """Per-thread work arrays reused by every Stats.add: float64 [5, CHUNK] and bool [CHUNK]."""
    s = getattr(_local, "scratch", None)
    if s is None:
        s = _local.scratch = (np.empty((5, CHUNK)), np.empty(CHUNK, bool))
    return s


def _dot(a, b):
    """float sum(a * b) of float64 vectors, single-threaded and without a temporary.

    Not ``a @ b``: that is a threaded BLAS call, which costs milliseconds per call on a
    loaded machine (threads woken for 50k elements)."""
    return float(np.einsum("i,i->", a, b))


class Stats:
    """Running sums for one output (or one file of it)."""

    KEYS = (
        "n",
        "nan",
        "inf",
        "gm",
        "gg",
        "mm",
        "dd",
        "max_abs",
        "max_rel",
        "sum_rel",
        "fail",
        "need_atol",
        "need_rtol",
    )

    def __init__(self, atol=None, rtol=None):
        self.atol, self.rtol = atol, rtol
        self.v = dict.fromkeys(self.KEYS, 0.0)

    def add(self, m, g):
        """Accumulate one pair (any shape and real dtype; compared flattened, in float64)."""
        m, g = np.asarray(m), np.asarray(g)
        if m.size != g.size:
            raise ValueError(f"shapes differ: {(m.size,)} vs {(g.size,)}")
        m, g = m.reshape(-1), g.reshape(-1)
        for i in range(0, m.size, CHUNK):  # bounded scratch memory, cache-sized passes
            self._add(m[i : i + CHUNK], g[i : i + CHUNK])
        return self

    @classmethod
    def rows(cls, ms, gs, atol=None, rtol=None):
        """One Stats per pair (ms[i], gs[i]) (e.g. one per file), equal to
        ``Stats(atol, rtol).add(ms[i], gs[i])`` each, but small pairs are stacked and
        computed together: one numpy pass per block of rows instead of one per pair."""
        if len(ms) != len(gs):
            raise ValueError(f"{len(ms)} arrays vs {len(gs)}")
        ms = [np.asarray(m).reshape(-1) for m in ms]
        gs = [np.asarray(g).reshape(-1) for g in gs]
        out = []
        i = 0
        while i < len(ms):
            size = ms[i].size
            r, limit = 0, min(max(1, CHUNK // max(size, 1)), len(ms) - i)
            while r < limit and ms[i + r].size == size == gs[i + r].size:
                r += 1  # a run of equal sizes (padding can make the last file shorter)
            r = max(r, 1)
            if r == 1 or size == 0:
                out.append(cls(atol, rtol).add(ms[i], gs[i]))
            else:
                out += cls._rows(ms[i : i + r], gs[i : i + r], atol, rtol)
            i += r
        return out

    @classmethod
    def _rows(cls, ms, gs, atol, rtol):
        r, n = len(ms), ms[0].size
        buf, flag = _scratch()
        m = np.concatenate(ms, out=buf[0, : r * n], casting="unsafe").reshape(r, n)
        g = np.concatenate(gs, out=buf[1, : r * n], casting="unsafe").reshape(r, n)
        mm = np.einsum("ij,ij->i", m, m)
        gm = np.einsum("ij,ij->i", g, m)
        gg = np.einsum("ij,ij->i", g, g)
        ad = np.subtract(m, g, out=buf[2, : r * n].reshape(r, n))
        dd = np.einsum("ij,ij->i", ad, ad)
        np.abs(ad, out=ad)
        need_atol = ad.max(axis=1)
        ag = np.abs(g, out=buf[3, : r * n].reshape(r, n))
        fail = cls._fails(ad, ag, atol, rtol, buf[4, : r * n].reshape(r, n), flag[: r * n].reshape(r, n), need_atol)
        small = np.less_equal(ag, EPS, out=flag[: r * n].reshape(r, n))
        max_abs = need_atol
        if small.any():
            np.copyto(ad, 0.0, where=small)
            np.copyto(ag, 1.0, where=small)
            max_abs = ad.max(axis=1)
        rel = np.divide(ad, ag, out=ag)
        max_rel, sum_rel = rel.max(axis=1), rel.sum(axis=1)
        cols = [
            x.tolist()
            for x in (
                gm,
                gg,
                mm,
                dd,
                need_atol,
                max_abs,
                max_rel,
                sum_rel,
                fail if fail is not None else np.zeros(r, int),
            )
        ]
        out = []
        for j, vals in enumerate(zip(*cols)):
            if not np.isfinite(vals[2]):  # non-finite values in this row: the exact path
                out.append(cls(atol, rtol).add(ms[j], gs[j]))
                continue
            s = cls(atol, rtol)
            s._update(n, *vals)
            out.append(s)
        return out

    @staticmethod
    def _fails(ad, ag, atol, rtol, thr, flag, ad_max):
        """Elements with |m-g| > atol AND |m-g| > rtol |g| (per row when 2-D); None when
        none can fail: a tolerance is unset (infinite), or every |m-g| <= atol."""
        atol = np.inf if atol is None else atol
        rtol = np.inf if rtol is None else rtol
        if not (np.isfinite(atol) and np.isfinite(rtol)):
            return None
        floor = max(atol, rtol * TINY)
        if not np.any(ad_max > floor):  # the passing case: no element is above the floor
            return None
        # fails iff |m-g| > max(atol, rtol |g|): no division
        np.multiply(ag, rtol, out=thr)
        np.maximum(thr, floor, out=thr)
        return np.count_nonzero(np.greater(ad, thr, out=flag), axis=-1)

    def _update(self, n, gm, gg, mm, dd, need_atol, max_abs, max_rel, sum_rel, fail=0):
        v = self.v
        v["n"] += n
        v["gm"] += gm
        v["gg"] += gg
        v["mm"] += mm
        v["dd"] += dd
        v["fail"] += int(fail)
        v["need_atol"] = max(v["need_atol"], need_atol)
        v["max_abs"] = max(v["max_abs"], max_abs)
        v["max_rel"] = max(v["max_rel"], max_rel)
        v["need_rtol"] = v["max_rel"]
        v["sum_rel"] += sum_rel

    def _add(self, m, g):
        v = self.v
        buf, flag = _scratch()
        n = m.size
        # float64 copies in reused buffers (float32 -> float64 is exact): no allocation
        if m.dtype != np.float64:
            np.copyto(buf[0, :n], m, casting="unsafe")
            m = buf[0, :n]
        if g.dtype != np.float64:
            np.copyto(buf[1, :n], g, casting="unsafe")
            g = buf[1, :n]
        mm = _dot(m, m)
        if not np.isfinite(mm):  # the common all-finite case costs nothing extra
            bad = ~np.isfinite(m)
            v["nan"] += int(np.isnan(m).sum())
            v["inf"] += int(np.isinf(m).sum())
            if bad.any():  # non-finite elements are counted, then compared as failures only
                v["n"] += int(bad.sum())
                v["fail"] += int(bad.sum())
                m, g = m[~bad], g[~bad]
                mm = _dot(m, m)
        n_ok = m.size
        if not n_ok:
            return
        gm, gg = _dot(g, m), _dot(g, g)
        ad = np.subtract(m, g, out=buf[2, :n_ok])
        dd = _dot(ad, ad)
        np.abs(ad, out=ad)
        need_atol = float(ad.max())
        ag = np.abs(g, out=buf[3, :n_ok])
        fail = self._fails(ad, ag, self.atol, self.rtol, buf[4, :n_ok], flag[:n_ok], need_atol) or 0
        small = np.less_equal(ag, EPS, out=flag[:n_ok])
        max_abs = need_atol
        if small.any():  # msit: elements with a ~zero golden count as zero error
            np.copyto(ad, 0.0, where=small)
            np.copyto(ag, 1.0, where=small)
            max_abs = float(ad.max())
        rel = np.divide(ad, ag, out=ag)
        self._update(n_ok, gm, gg, mm, dd, need_atol, max_abs, float(rel.max()), float(rel.sum()), fail)

    def merge(self, other):
        for k in self.KEYS:
            if k.startswith(("max", "need")):
                self.v[k] = max(self.v[k], other.v[k])
            else:
                self.v[k] += other.v[k]
        return self

    def result(self):
        v = self.v
        n = max(v["n"], 1)
        if v["gg"] == 0 and v["mm"] == 0:
            cos = 1.0
        elif v["gg"] == 0 or v["mm"] == 0:
            cos = 0.0
        else:
            cos = round(v["gm"] / np.sqrt(v["gg"] * v["mm"]), 10)
        red = float(np.sqrt(v["dd"] / v["gg"])) if v["gg"] > EPS else 0.0
        return {
            "n": int(v["n"]),
            "nan": int(v["nan"]),
            "inf": int(v["inf"]),
            "cosine": float(cos),
            "max_abs": v["max_abs"],
            "max_rel": v["max_rel"],
            "mean_rel": v["sum_rel"] / n,
            "red": red,
            "rmse": float(np.sqrt(v["dd"] / n)),
            "elementwise_fail": int(v["fail"]),
            "min_atol": v["need_atol"],
            "min_rtol": v["need_rtol"],
        }


def compare(m, g, atol=None, rtol=None):
    """All metrics for one pair of arrays."""
    return Stats(atol, rtol).add(m, g).result()


def judge(r, atol=None, rtol=None, cosine_min=None, red_max=None, max_fail_fraction=0.0):
    """PASSED/FAILED for a result dict of ``Stats.result`` and the checks applied.
    ``max_fail_fraction``: the share of elements that may be beyond atol/rtol (threshold
    draws, models/spec.py ``draw_outputs``); 0 for every other output."""
    why = []
    if r["nan"] or r["inf"]:
        why.append(f"{r['nan']} NaN, {r['inf']} Inf")
    fails = r["elementwise_fail"]
    if (atol is not None or rtol is not None) and fails > max_fail_fraction * r["n"]:
        budget = f" (more than the {max_fail_fraction:g} allowed for threshold draws)" if max_fail_fraction else ""
        why.append(f"{fails} elements beyond atol={atol} rtol={rtol}{budget}")
    if cosine_min is not None and not r["cosine"] >= cosine_min:
        why.append(f"cosine {r['cosine']:.6f} < {cosine_min}")
    if red_max is not None and not r["red"] <= red_max:
        why.append(f"RED {r['red']:.4g} > {red_max}")
    return not why, "; ".join(why)


def elementwise_ok(m, g, atol=1e-5, rtol=1e-5):
    """Polygraphy's ``simple`` elemwise check: True when every element meets atol OR rtol."""
    return compare(m, g, atol, rtol)["elementwise_fail"] == 0


# --- per-row reductions used by the model specs' metrics (models/*_spec.py) ----------


def row_sq_sums(a):
    """float64 sum of squares of each row of a 2-D array, a block of rows at a time
    (float32 squares are exact in float64; no full float64 copy of a large array)."""
    a = np.asarray(a)
    if a.dtype == np.float64:
        return np.einsum("ij,ij->i", a, a)
    d = a.shape[1]
    sq = np.empty(a.shape[0])
    step = max(1, CHUNK // max(d, 1))
    tmp = np.empty((min(step, a.shape[0]), d))
    for i in range(0, a.shape[0], step):
        blk = tmp[: a[i : i + step].shape[0]]
        np.copyto(blk, a[i : i + step], casting="unsafe")
        sq[i : i + step] = np.einsum("ij,ij->i", blk, blk)
    return sq
