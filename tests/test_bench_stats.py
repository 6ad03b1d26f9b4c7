"""bench/stats.py: the spread, interleaving and load flag every bench figure carries (issue #24).
Nothing here is timed: the counters are fed by hand where the arithmetic is the point."""

import subprocess
import sys
import time

import numpy as np
import pytest

from bench import stats


@pytest.mark.parametrize("xs", [[5, 1, 4, 2, 3], [1, 2, 3, 10], [7.5], [3, 3, 9]])
def test_spread_matches_numpy_percentiles(xs):
    s = stats.spread(xs)
    # numpy's default percentile (linear interpolation between order statistics) is the
    # "inclusive" quartile: an independent implementation of the same definition
    assert s["median"] == pytest.approx(np.median(xs))
    assert s["q1"] == pytest.approx(np.percentile(xs, 25))
    assert s["q3"] == pytest.approx(np.percentile(xs, 75))
    assert (s["min"], s["max"], s["n"]) == (min(xs), max(xs), len(xs))


def test_spread_of_known_values():
    s = stats.spread([1, 2, 3, 10])
    assert (s["median"], s["q1"], s["q3"]) == (2.5, 1.75, 4.75)
    with pytest.raises(ValueError):
        stats.spread([])


def test_interleave_runs_sides_alternately_and_keeps_rounds_paired():
    calls = []

    def side(name, values):
        it = iter(values)
        return lambda: calls.append(name) or next(it)

    samples, loads = stats.interleave({"a": side("a", [1, 10, 3]), "b": side("b", [1, 2, 3])}, rounds=3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert samples == {"a": [1, 10, 3], "b": [1, 2, 3]}
    assert set(loads) == {"a", "b"} and all(ld.seconds >= 0 for ld in loads.values())
    r = stats.ratios(samples["a"], samples["b"])
    assert r == [1, 5, 1]
    # the per-round ratio's median (1) is not the ratio of the medians (3 / 2)
    assert stats.spread(r)["median"] == 1
    with pytest.raises(ValueError):
        stats.ratios([1, 2], [1])


def _load(seconds, other_cpu_s, before=0.1, after=0.2):
    ld = stats.Load()
    ld.before, ld.after = before, after
    ld.add(seconds, other_cpu_s)
    return ld


def test_load_flag_against_each_tolerance(capsys):
    # others used 3 CPU-seconds in 10 s: 0.3 cores
    rec = _load(10, 3.0).record("all_cores", "runner ort", n_cores=2)
    assert rec["other_cpu_cores"] == pytest.approx(0.3)
    assert rec["limit_other_cpu_cores"] == pytest.approx(0.1 * 2) and rec["loaded"] is True
    err = capsys.readouterr().err
    assert err.startswith("warning: runner ort: other processes used 0.30 cores") and "marked loaded" in err
    assert err.count("\n") == 1
    assert _load(10, 1.0).record("all_cores", n_cores=2)["loaded"] is False  # 0.1 <= 0.2
    assert _load(10, 3.0).record("one_core", n_cores=2)["loaded"] is False  # 0.3 <= 0.5 x 2
    assert _load(10, 11.0).record("one_core", n_cores=2)["loaded"] is True  # 1.1 > 1
    assert _load(10, 19.0).record(None, n_cores=2)["loaded"] is False  # a memory peak: never
    assert capsys.readouterr().err.count("warning:") == 1
    rec = _load(10, 1.0, before=0.4, after=1.7).record("all_cores", n_cores=2)
    assert (rec["load_1min_before"], rec["load_1min_after"], rec["cores"]) == (0.4, 1.7, 2)


def test_load_without_proc_stat_falls_back_to_the_load_average():
    rec = _load(10, None, before=0.5).record("all_cores", n_cores=2)
    assert rec["other_cpu_cores"] == 0.5 and rec["loaded"] is True
    assert rec["other_cpu_from"] == "load average before"
    assert _load(10, None, before=0.1).record("all_cores", n_cores=2)["loaded"] is False
    # neither /proc/stat nor a load average: the load is unknown, so the figure is not clean
    assert _load(10, None, before=None).record("one_core", n_cores=2)["loaded"] is True


def test_watch_subtracts_our_own_cpu(monkeypatch):
    busy, own, clock = iter([100.0, 105.0]), iter([20.0, 23.0]), iter([1.0, 11.0])
    monkeypatch.setattr(stats, "busy_seconds", lambda: next(busy))
    monkeypatch.setattr(stats, "own_seconds", lambda: next(own))
    monkeypatch.setattr(stats.time, "perf_counter", lambda: next(clock))
    ld = stats.Load()
    with ld.watch():
        pass
    # all processes: 5 CPU-s; ours: 3; others: 2 over 10 s
    assert ld.seconds == 10 and ld.other_cpu_s == 2 and ld.other_cores() == pytest.approx(0.2)


def test_merged_load_spans_both_sides():
    m = stats.Load.merged(_load(10, 1.0, 0.3, 0.5), _load(30, 5.0, 0.6, 0.9))
    assert (m.before, m.after, m.seconds, m.other_cpu_s) == (0.3, 0.9, 40, 6.0)
    assert m.other_cores() == pytest.approx(0.15)
    assert stats.Load.merged(_load(10, 1.0), _load(10, None)).known is False


def test_watch_sees_a_process_that_is_not_ours():
    """A child spinning for 1 s that we do not wait for inside the interval is another process."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass"])
    try:
        ld = stats.Load()
        with ld.watch():
            time.sleep(1.0)
    finally:
        child.wait()
    assert ld.known and ld.other_cpu_s >= 0.3  # at least a third of a core, even on a busy machine


def test_figure_carries_spread_target_and_load():
    f = stats.figure(
        [3.0, 1.0, 2.0], "x", _load(10, 0.5), "all_cores", label="a ratio", target=">= 2", met=lambda m: m >= 2
    )
    assert (f["median"], f["min"], f["max"], f["unit"], f["met"]) == (2.0, 1.0, 3.0, "x", True)
    assert f["samples"] == [3.0, 1.0, 2.0] and f["load"]["loaded"] is False


def test_blas_threads_are_set_and_restored():
    info = stats.blas_info()
    if info["library"] is None:
        pytest.skip("numpy is not on OpenBLAS here")
    before = info["threads"]
    with stats.blas_threads(1):
        assert stats.blas_info()["threads"] == 1
    assert stats.blas_info()["threads"] == before


def test_table_row_shows_median_spread_and_a_loaded_figure(tmp_path, capsys):
    import json

    from bench import table

    f = stats.figure(
        [0.8, 0.9, 1.0], "fraction", _load(10, 3.0), "all_cores", label="ort/sgemm", met=lambda m: m > 0.85
    )
    capsys.readouterr()
    r = table.row("x", f)
    assert r.startswith("| ort/sgemm | 90.0% | 80.0% to 100.0% (n=3) | **loaded**: others 0.3 of ")
    assert r.endswith("| yes (loaded) |")
    clean = table.row("y", stats.figure([1.1, 1.3], "x", _load(10, 0.0), "all_cores", label="a/b"))
    assert "| 1.2x | 1.1x to 1.3x (n=2) | clean: others 0.0 of " in clean
    (tmp_path / "runner.json").write_text(json.dumps({"figures": {"r": f}, "measured_at": "2026-12-03 20:00:00"}))
    (tmp_path / "img2bin.json").write_text(json.dumps({"ratio_vs_plain_tofile": 0.9}))  # before issue #24
    lines, skipped = table.table(str(tmp_path))
    assert skipped == ["img2bin.json"] and lines[-1] == r and "2026-12-03 20:00:00" in lines[0]
