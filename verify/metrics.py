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
import numpy as np

EPS = float(np.finfo(np.float32).eps)
COSINE_MIN = 0.99  # msit's thresholds
RED_MAX = 0.05
TINY = 2.220446049250313e-16  # Polygraphy's guard for golden zeros


class Stats:
    """Running sums for one output (or one file of it)."""

    KEYS = ("n", "nan", "inf", "gm", "gg", "mm", "dd", "max_abs", "max_rel", "sum_rel",
            "fail", "need_atol", "need_rtol")

    def __init__(self, atol=None, rtol=None):
        self.atol, self.rtol = atol, rtol
        self.v = dict.fromkeys(self.KEYS, 0.0)

    def add(self, m, g):
        m = np.asarray(m, np.float64).ravel()
        g = np.asarray(g, np.float64).ravel()
        if m.shape != g.shape:
            raise ValueError(f"shapes differ: {m.shape} vs {g.shape}")
        v = self.v
        v["n"] += m.size
        if not np.isfinite(m.sum()):  # one cheap pass in the common all-finite case
            bad = ~np.isfinite(m)
            v["nan"] += int(np.isnan(m).sum())
            v["inf"] += int(np.isinf(m).sum())
            if bad.any():  # non-finite elements are counted, then compared as failures only
                v["fail"] += int(bad.sum())
                m, g = m[~bad], g[~bad]
        if not m.size:
            return self
        d = m - g
        v["gm"] += float(g @ m)
        v["gg"] += float(g @ g)
        v["mm"] += float(m @ m)
        v["dd"] += float(d @ d)
        ad = np.abs(d, out=d)
        ag = np.abs(g)
        v["need_atol"] = max(v["need_atol"], float(ad.max()))
        if self.atol is not None or self.rtol is not None:
            atol = np.inf if self.atol is None else self.atol
            rtol = np.inf if self.rtol is None else self.rtol
            # fails iff |m-g| > atol AND |m-g| > rtol |g|, i.e. > max(atol, rtol |g|): no division
            thr = np.multiply(ag, rtol) if np.isfinite(rtol) else np.full_like(ag, np.inf)
            np.maximum(thr, max(atol, rtol * TINY) if np.isfinite(rtol) else atol, out=thr)
            v["fail"] += int(np.count_nonzero(ad > thr))
        small = ag <= EPS
        if small.any():  # msit: elements with a ~zero golden count as zero error
            ad = np.where(small, 0.0, ad)
            ag = np.where(small, 1.0, ag)
        rel = np.divide(ad, ag, out=ag)
        v["max_abs"] = max(v["max_abs"], float(ad.max()))
        v["max_rel"] = max(v["max_rel"], float(rel.max()))
        v["need_rtol"] = v["max_rel"]
        v["sum_rel"] += float(rel.sum())
        return self

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
        return {"n": int(v["n"]), "nan": int(v["nan"]), "inf": int(v["inf"]), "cosine": float(cos),
                "max_abs": v["max_abs"], "max_rel": v["max_rel"], "mean_rel": v["sum_rel"] / n,
                "red": red, "rmse": float(np.sqrt(v["dd"] / n)),
                "elementwise_fail": int(v["fail"]), "min_atol": v["need_atol"], "min_rtol": v["need_rtol"]}


def compare(m, g, atol=None, rtol=None):
    """All metrics for one pair of arrays."""
    return Stats(atol, rtol).add(m, g).result()


def judge(r, atol=None, rtol=None, cosine_min=None, red_max=None):
    """PASSED/FAILED for a result dict of ``Stats.result`` and the checks applied."""
    why = []
    if r["nan"] or r["inf"]:
        why.append(f"{r['nan']} NaN, {r['inf']} Inf")
    if (atol is not None or rtol is not None) and r["elementwise_fail"]:
        why.append(f"{r['elementwise_fail']} elements beyond atol={atol} rtol={rtol}")
    if cosine_min is not None and not r["cosine"] >= cosine_min:
        why.append(f"cosine {r['cosine']:.6f} < {cosine_min}")
    if red_max is not None and not r["red"] <= red_max:
        why.append(f"RED {r['red']:.4g} > {red_max}")
    return not why, "; ".join(why)


def elementwise_ok(m, g, atol=1e-5, rtol=1e-5):
    """Polygraphy's ``simple`` elemwise check: True when every element meets atol OR rtol."""
    return compare(m, g, atol, rtol)["elementwise_fail"] == 0


# --- model metrics --------------------------------------------------------------

def realnvp_bpd(z, logdet):
    """Per-image bits/dim: 8 + (0.5 sum z^2 + 0.5 D ln 2pi - logdet) / (D ln 2)."""
    z = np.asarray(z, np.float64)
    z = z.reshape(z.shape[0], -1)
    d = z.shape[1]
    nll = 0.5 * np.sum(z * z, axis=1) + 0.5 * d * np.log(2 * np.pi) - np.asarray(logdet, np.float64).reshape(-1)
    return 8.0 + nll / (d * np.log(2.0))


def sbn_bounds(log_weights):
    """Per-image (ELBO, IWAE-K) from log p(x,b) - log q(b|x), shape [B, K]."""
    from scipy.special import logsumexp

    lw = np.asarray(log_weights, np.float64)
    lw = lw.reshape(lw.shape[0], -1)
    return lw.mean(axis=1), logsumexp(lw, axis=1) - np.log(lw.shape[1])


def model_metrics(kind, outputs):
    """{metric name: per-image array} from {output name: array} for a model kind."""
    if kind == "realnvp":
        return {"bpd": realnvp_bpd(outputs["z"], outputs["logdet"])}
    if kind == "rebar":
        elbo, iwae = sbn_bounds(outputs["log_weights"])
        return {"elbo": elbo, "iwae": iwae}
    return {}
