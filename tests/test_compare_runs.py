"""verify/compare_runs.py: two small real REBAR runs (real MNIST) that differ only in the
learning rate, and two runs made on the fly with a known offset; the gate's exit codes."""

import json
import os

import pytest

from verify import compare_runs
from verify.runlog import Run


def _write_run(d, recs, batch=24, model="sbn_toy"):
    os.makedirs(d)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"model": model, "config": {}, "train": {"batch_size": batch}, "step": recs[-1]["step"]}, f)
    return d


def realnvp_style(d, offset, seconds_per_step):
    """RealNVP's records: train_/test_ prefixes, 'seconds' restarting at 0 on resume after step 20."""
    recs = [{"step": 0, "kind": "start", "test_bpd": 8.0 + offset}]
    for s in (10, 20, 30, 40):
        t = (s if s <= 20 else s - 20) * seconds_per_step
        recs.append({"step": s, "kind": "train", "train_bpd": 7.0 - s / 100 + offset, "lr": 1e-3, "seconds": t})
    recs.append({"step": 40, "kind": "end", "test_bpd": 6.5 + offset})
    return _write_run(d, recs, batch=16)


def test_known_difference_and_gate(tmp_path, capsys):
    a = realnvp_style(str(tmp_path / "a"), 0.0, 0.5)
    b = realnvp_style(str(tmp_path / "b"), 0.13, 0.25)
    res = compare_runs.compare([Run(a, "fp32"), Run(b, "mixed")])
    final = {(r["metric"], r["split"]): r["values"] for r in res["final"]}
    test = final[("bpd", "test")]
    assert test[0]["value"] == 6.5 and test[1]["value"] == pytest.approx(6.63)
    assert test[1]["rel_diff"] == pytest.approx(0.13 / 6.5) and test[1]["abs_diff"] == pytest.approx(0.13)
    assert final[("bpd", "train")][1]["how"] == "last logged value"
    matched = [m for m in res["matched"] if m["split"] == "train"]
    assert [m["step"] for m in matched] == [10, 20, 30, 40]
    assert all(m["values"][1] - m["values"][0] == pytest.approx(0.13) for m in matched)
    # step time from 'seconds', chained over the resume: 40 steps in 20 s and in 10 s
    ra, rb = res["runs"]
    assert ra["wall_s"] == pytest.approx(20.0) and rb["wall_s"] == pytest.approx(10.0)
    assert ra["step_time_s"] == pytest.approx(0.5) and rb["images_per_sec"] == pytest.approx(4 * 16)
    # the gate: 2% is exceeded (0.13 / 6.5 = 2.0% on test, 1.9-2.0% on train), 2.5% is not
    png = str(tmp_path / "cmp.png")
    assert compare_runs.main([f"{a}:fp32", f"{b}:mixed", "--max-diff", "0.025", "--png", png]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "+2.00%" in out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert compare_runs.main([f"{a}:fp32", f"{b}:mixed", "--max-diff", "0.015"]) == 1
    out = capsys.readouterr().out
    assert "FAILED | final test bpd of mixed differs from fp32 by +0.02" in out
    assert compare_runs.main([f"{a}:fp32", f"{b}:mixed", "--abs-diff", "0.1"]) == 1
    assert compare_runs.main([f"{a}:fp32", f"{b}:mixed", "--abs-diff", "0.14"]) == 0
    assert compare_runs.main([f"{a}:fp32", f"{b}:mixed"]) == 0  # no gate: a comparison only


def test_user_errors(tmp_path, capsys):
    a = realnvp_style(str(tmp_path / "a"), 0.0, 0.5)
    other = _write_run(str(tmp_path / "o"), [{"step": 1, "kind": "train", "train_bpd": 1.0}], model="other")
    for argv, needle in (
        ([a], "at least two runs"),
        ([a, str(tmp_path / "missing")], "training run folder not found"),
        ([f"{a}:x", f"{a}:x"], "share a label"),
        ([a, other], "runs of different models"),
        ([a, f"{a}:b", "--metric", "elbo"], "--metric elbo: not in"),
        ([a, f"{a}:b", "--max-diff", "-1"], "--max-diff must be >= 0"),
    ):
        assert compare_runs.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and "Traceback" not in err
    with open(os.path.join(a, "metrics.jsonl"), "a") as f:
        f.write("{not json\n")
    assert compare_runs.main([a, f"{a}:b"]) == 2
    assert "metrics.jsonl: line 7 is not JSON" in capsys.readouterr().err


@pytest.fixture(scope="module")
def rebar_pair(mnist_dir, tmp_path_factory):
    """Two short real REBAR-family trainings on real MNIST, the same but for the learning rate."""
    from train import train_rebar

    d = tmp_path_factory.mktemp("rebar_pair")
    runs = {}
    for label, lr in (("lr3e-4", "0.0003"), ("lr3e-2", "0.03")):
        runs[label] = str(d / label)
        assert (
            train_rebar.main(
                [
                    "--data_path",
                    mnist_dir,
                    "--working_dir",
                    runs[label],
                    "--hparams",
                    f"model=SBNNVIL,n_layer=1,task=sbn,learning_rate={lr}",
                    "--steps",
                    "20",
                    "--log_every",
                    "10",
                    "--eval_freq",
                    "0",
                    "--eval_limit",
                    "20",
                    "--eval_samples",
                    "10",
                    "--seed",
                    "0",
                ]
            )
            == 0
        )
    return runs


def _last(path, **match):
    with open(os.path.join(path, "metrics.jsonl")) as f:
        recs = [json.loads(line) for line in f if line.strip()]
    return [r for r in recs if all(r.get(k) == v for k, v in match.items())][-1]


def test_two_real_runs(rebar_pair, tmp_path, capsys):
    a, b = rebar_pair["lr3e-4"], rebar_pair["lr3e-2"]
    js = str(tmp_path / "cmp.json")
    assert compare_runs.main([f"{a}:slow", f"{b}:fast", "--json", js, "--png", str(tmp_path / "c.png")]) == 0
    with open(js) as f:
        res = json.load(f)
    assert res["metrics"] == ["elbo", "iwae"]
    final = {(r["metric"], r["split"]): r["values"] for r in res["final"]}
    # the numbers are metrics.jsonl's: last test evaluation, last logged train window
    for (metric, split), vals in final.items():
        for v, path in zip(vals, (a, b)):
            src = _last(path, kind="eval", split=split) if split != "train" else _last(path, kind="train")
            assert v["value"] == src[metric] and v["step"] == 20
    test = final[("elbo", "test")]
    known = (test[1]["value"] - test[0]["value"]) / abs(test[0]["value"])
    assert known != 0 and test[1]["rel_diff"] == pytest.approx(known)
    diffs = [abs(v[1]["rel_diff"]) for v in final.values()]
    assert [m["step"] for m in res["matched"] if m["split"] == "train" and m["metric"] == "elbo"] == [10, 20]
    assert all(
        r["steps_per_sec"] > 0 and r["images_per_sec"] == pytest.approx(r["steps_per_sec"] * 24) for r in res["runs"]
    )
    # the gate, around the measured difference
    capsys.readouterr()
    assert compare_runs.main([f"{a}:slow", f"{b}:fast", "--max-diff", f"{max(diffs) * 1.01}"]) == 0
    assert compare_runs.main([f"{a}:slow", f"{b}:fast", "--max-diff", f"{max(diffs) * 0.99}"]) == 1
    assert compare_runs.main([f"{a}:slow", f"{a}:same", "--max-diff", "0"]) == 0  # a run against itself
