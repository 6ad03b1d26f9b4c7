"""How the self-verification report writes a fact: numbers, verdict cells, paths as a user
types them, command lines. A cell is a string, or (string, css class) with class
ok | bad | na (see verify/report_doc.py).
"""

import os
import shlex

NOT_RUN = ("not run", "na")
NOT_LOGGED = ("not logged", "na")


def num(v: object, spec: str = ".8g") -> str:
    """A recorded number as the report shows it; None is "not recorded"."""
    if v is None:
        return "not recorded"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float) and v != v:
        return "NaN"
    return format(v, spec)


def signed(v: object, spec: str = "+.3g") -> str:
    return num(v, spec)


def verdict(ok: bool) -> tuple:
    return ("PASS", "ok") if ok else ("FAIL", "bad")


def short_list(names: list, n: int = 3) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names) - n} more)" if len(names) > n else "")


def with_keep(mode: str, sig: dict | None) -> str:
    """The precision mode, and the keep_dtype list the artifact was built with."""
    kd = ((sig or {}).get("artifact") or {}).get("keep_dtype")
    if not isinstance(kd, dict):
        return mode
    n = len(kd.get("nodes_kept_fp32") or []) or "some"
    return f"{mode} + keep_dtype ({n} nodes fp32)"


def freeze_checks(checks: dict) -> tuple:
    """The .pb's row: what freeze verified, from the signature's checks."""
    if checks.get("frozen_vs_checkpoint_max_rel") is None:
        return "freeze checks not recorded", "na"
    said = [f"freeze: frozen vs checkpoint max rel {num(checks['frozen_vs_checkpoint_max_rel'], '.3g')}"]
    bad = False
    for key, yes, no in (
        ("batch_independent", "batch independent", "BATCH COUPLED"),
        ("loads_in_fresh_process", "loads in a fresh process", "does NOT load in a fresh process"),
        ("no_variables", "no variables", "HAS variables"),
        ("no_random_ops", "no random ops", "HAS random ops"),
    ):
        if key in checks:
            said.append(yes if checks[key] else no)
            bad |= not checks[key]
    return "; ".join(said), "bad" if bad else "ok"


def cmd(*argv: object) -> str:
    """One shell command line; None arguments are left out."""
    return " ".join(shlex.quote(str(a)) for a in argv if a is not None)


def rel(p: str | None) -> str | None:
    """A path as a user in the checkout would type it."""
    if not p:
        return p
    p = os.path.abspath(p)
    r = os.path.relpath(p, os.getcwd())
    return p if r.startswith("../..") else r
