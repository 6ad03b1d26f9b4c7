"""verify/metrics.py against hand-computed values; verify/loss_check.py on msame-layout folders."""

import json
import os

import numpy as np
import pytest

from data_tools.binfiles import FORMAT as MANIFEST_FORMAT
from freeze.signature import Signature, Tensor
from infer import layout
from models.realnvp_spec import bits_per_dim
from models.sbn_spec import bounds as sbn_bounds
from verify import loss_check, metrics

B = 4


def test_metrics_by_hand():
    r = metrics.compare([1.0, 0.0], [0.0, 1.0])
    assert r["cosine"] == 0.0 and r["max_abs"] == 1.0  # only |g|>eps counts: the second element
    assert metrics.compare([0.0, 0.0], [0.0, 0.0])["cosine"] == 1.0
    r = metrics.compare([1.1, 2.0, 5.0], [1.0, 2.0, 0.0])
    assert r["max_rel"] == pytest.approx(0.1) and r["max_abs"] == pytest.approx(0.1)  # g=0 masked
    assert r["mean_rel"] == pytest.approx(0.1 / 3)
    assert r["red"] == pytest.approx(np.sqrt((0.01 + 25) / 5))
    assert r["rmse"] == pytest.approx(np.sqrt((0.01 + 25) / 3))
    # Polygraphy: an element passes if EITHER tolerance holds, relative to the golden
    assert metrics.elementwise_ok([100.5], [100.0], atol=1e-3, rtol=1e-2)
    assert metrics.elementwise_ok([0.0005], [0.0], atol=1e-3, rtol=1e-9)
    assert not metrics.elementwise_ok([0.6], [0.5], atol=1e-3, rtol=1e-2)
    r = metrics.compare([np.nan, np.inf, 1.0], [1.0, 1.0, 1.0], 1e-5, 1e-5)
    assert (r["nan"], r["inf"], r["elementwise_fail"]) == (1, 1, 2)
    assert metrics.judge(r, 1e-5, 1e-5)[0] is False
    # bpd of z=0, logdet=0 over D dims: 8 + 0.5 ln(2 pi) / ln 2
    assert bits_per_dim(np.zeros((2, 4, 4, 3)), np.zeros(2)) == pytest.approx(8 + 0.5 * np.log2(2 * np.pi))
    assert bits_per_dim(np.zeros((1, 3072)), [3072 * np.log(2)])[0] == pytest.approx(7 + 0.5 * np.log2(2 * np.pi))
    elbo, iwae = sbn_bounds(np.log([[1.0, 3.0]]))
    assert elbo[0] == pytest.approx(np.log(3) / 2) and iwae[0] == pytest.approx(np.log(2.0))


def _sig(tmp, mode="force_fp32"):
    s = Signature(
        "realnvp",
        "forward",
        B,
        [Tensor("x", "x:0", [B, 4, 4, 3]), Tensor("u", "u:0", [B, 4, 4, 3])],
        [Tensor("z", "z:0", [B, 4, 4, 3]), Tensor("logdet", "logdet:0", [B]), Tensor("bpd", "bpd:0", [B])],
        precision_mode=mode,
    )
    p = os.path.join(tmp, f"m_{mode}.json")
    s = s.save(p)
    return s, p


def _outs(seed, n_files=3):
    rng = np.random.RandomState(seed)
    res = {}
    for f in range(n_files):
        z = rng.randn(B, 4, 4, 3).astype(np.float32)
        ld = rng.uniform(-50, 50, B).astype(np.float32)
        res[f"img_{f:05d}"] = [z, ld, bits_per_dim(z, ld).astype(np.float32)]
    return res


def _write(root, outs, fmt="BIN"):
    d = layout.new_run_dir(root)
    for stem, arrs in outs.items():
        for i, a in enumerate(arrs):
            layout.write_output(os.path.join(d, layout.output_name(stem, i, fmt)), a, fmt)
    return d


@pytest.fixture
def pair(tmp_path):
    outs = _outs(0)
    return tmp_path, outs, _write(tmp_path / "ref", outs), _write(tmp_path / "off", outs)


def _main(sig_path, off, ref, *extra):
    return loss_check.main(
        ["--signature", sig_path, "--offline", str(off), "--reference", str(ref), "--no-progress", *extra]
    )


def test_identical_pass_with_report_and_plot(pair, capsys):
    tmp, outs, ref, off = pair
    _, p = _sig(str(tmp))
    assert _main(p, tmp / "off", tmp / "ref", "--report", str(tmp / "r.json")) == 0  # parents: newest <T>
    rep = json.loads((tmp / "r.json").read_text())
    assert rep["passed"] and rep["n_images"] == 12 and rep["files_compared"] == 3
    want = np.mean([bits_per_dim(v[0], v[1]) for v in outs.values()])
    assert rep["model_metrics"][0]["reference_mean"] == pytest.approx(want)
    assert (tmp / "r.png").stat().st_size > 1000
    assert "PASSED | 3 files, 12 images" in capsys.readouterr().out
    assert _main(p, off, ref, "--report", str(tmp / "r.json")) == 2  # never overwritten silently


def test_corrupted_file_named(pair, capsys):
    tmp, outs, ref, off = pair
    _, p = _sig(str(tmp))
    bad = os.path.join(off, "img_00001_output_0.bin")
    z = outs["img_00001"][0].copy()
    z[0, 0, 0, :] += 0.01
    layout.write_output(bad, z)
    assert _main(p, off, ref, "--report", str(tmp / "r.json")) == 1
    out = capsys.readouterr().out
    assert f"FAILED | {bad} (z)" in out and "img_00000" not in out


def test_missing_extra_and_wrong_size(pair, capsys):
    tmp, outs, ref, off = pair
    _, p = _sig(str(tmp))
    os.remove(os.path.join(off, "img_00002_output_1.bin"))
    layout.write_output(os.path.join(off, "stray_output_0.bin"), outs["img_00000"][0])
    assert _main(p, off, ref, "--report", str(tmp / "a.json")) == 1
    out = capsys.readouterr().out
    assert "missing file: " + os.path.join(off, "img_00002_output_1.bin") in out
    assert "extra file: " + os.path.join(off, "stray_output_0.bin") in out
    with open(os.path.join(off, "img_00001_output_2.bin"), "wb") as f:
        f.write(b"\0" * 12)
    assert _main(p, off, ref, "--report", str(tmp / "b.json")) == 1
    assert "img_00001_output_2.bin: expected 16 bytes" in capsys.readouterr().out
    with open(os.path.join(ref, "img_00000_output_1.bin"), "wb") as f:
        f.write(b"\0" * 12)  # a broken golden is bad input, not a failed model
    assert _main(p, off, ref, "--report", str(tmp / "c.json")) == 2
    assert "img_00000_output_1.bin: expected 16 bytes" in capsys.readouterr().err


def test_txt_offline_vs_bin_reference(tmp_path):
    outs = _outs(1)
    _, p = _sig(str(tmp_path))
    ref, off = _write(tmp_path / "ref", outs), _write(tmp_path / "off", outs, "TXT")
    assert _main(p, off, ref, "--report", str(tmp_path / "r.json")) == 0
    assert json.loads((tmp_path / "r.json").read_text())["outputs"][0]["max_rel"] > 0  # 6 digits, not bits


def test_padding_excluded_and_nan_counted(pair, capsys):
    tmp, outs, ref, off = pair
    _, p = _sig(str(tmp))
    files = [
        {"stem": s, "first": 4 * i, "n_real": 4 if i < 2 else 1, "n_pad": 0 if i < 2 else 3}
        for i, s in enumerate(sorted(outs))
    ]
    man = tmp / "bins" / "manifest.json"
    man.parent.mkdir()
    (man.parent / "x").mkdir()
    for s in outs:  # the input files the manifest lists (loss_check checks the set is this one)
        (man.parent / "x" / f"{s}.bin").write_bytes(b"")
    man.write_text(
        json.dumps({"format": MANIFEST_FORMAT, "n_images": 9, "inputs": [{"name": "x", "dir": "x"}], "files": files})
    )
    z = outs["img_00002"][0].copy()
    z[1:] = np.nan  # padding rows: ignored
    layout.write_output(os.path.join(off, "img_00002_output_0.bin"), z)
    assert _main(p, off, ref, "--inputs", str(man.parent / "x"), "--report", str(tmp / "r.json")) == 0
    rep = json.loads((tmp / "r.json").read_text())
    bpd = np.concatenate([bits_per_dim(*outs[s][:2])[: f["n_real"]] for s, f in zip(sorted(outs), files)])
    assert rep["n_images"] == 9 == rep["model_metrics"][0]["n_images"]
    assert rep["model_metrics"][0]["offline_mean"] == pytest.approx(bpd.mean())
    z[0, 0, 0, :2] = np.nan  # a real row: counted and failed
    layout.write_output(os.path.join(off, "img_00002_output_0.bin"), z)
    assert _main(p, off, ref, "--manifest", str(man), "--report", str(tmp / "r2.json")) == 1
    rep = json.loads((tmp / "r2.json").read_text())
    assert rep["outputs"][0]["nan"] == 2 and rep["model_metrics"][0]["nonfinite"] == 1


def test_fp16_mode_judges_cosine_and_reports_shift(tmp_path):
    outs = _outs(2)
    noisy = {s: [a * np.float32(1.001) for a in v] for s, v in outs.items()}
    _, p16 = _sig(str(tmp_path), "force_fp16")
    _, p32 = _sig(str(tmp_path), "force_fp32")
    ref, off = _write(tmp_path / "ref", outs), _write(tmp_path / "off", noisy)
    assert _main(p32, off, ref, "--report", str(tmp_path / "a.json")) == 1
    assert _main(p16, off, ref, "--report", str(tmp_path / "b.json")) == 0
    rep = json.loads((tmp_path / "b.json").read_text())
    assert rep["model_metrics"][0]["tolerance"] is None and rep["model_metrics"][0]["diff"] != 0
    # a per-output override brings the elementwise check back
    assert _main(p16, off, ref, "--rtol", "z:1e-5", "--atol", "1e-5", "--report", str(tmp_path / "c.json")) == 1


def test_rebar_bounds(tmp_path):
    s = Signature(
        "rebar",
        "forward",
        B,
        [Tensor("x", "x:0", [B, 784])],
        [Tensor("log_weights", "lw:0", [B, 5]), Tensor("elbo", "elbo:0", [B]), Tensor("iwae", "iwae:0", [B])],
    )
    s.save(tmp_path / "r.json")
    lw = np.random.RandomState(0).uniform(-120, -90, (B, 5)).astype(np.float32)
    e, i = sbn_bounds(lw)
    outs = {"a": [lw, e.astype(np.float32), i.astype(np.float32)]}
    ref, off = _write(tmp_path / "ref", outs), _write(tmp_path / "off", outs)
    assert _main(str(tmp_path / "r.json"), off, ref, "--report", str(tmp_path / "x.json")) == 0
    mm = {m["name"]: m for m in json.loads((tmp_path / "x.json").read_text())["model_metrics"]}
    assert mm["elbo"]["reference_mean"] == pytest.approx(lw.astype(np.float64).mean())
    assert mm["iwae"]["reference_mean"] > mm["elbo"]["reference_mean"]


def _rebar_folders(tmp_path, n_files, flips):
    """A rebar signature and reference/offline folders of n_files files (B images x K=100
    samples); ``flips`` offline log weights move by 0.44 nats, as one Bernoulli draw sitting
    at its threshold does under float32 rounding (seen in a demo run, 1 of 100,000)."""
    k = 100
    s = Signature(
        "rebar",
        "forward",
        B,
        [Tensor("x", "x:0", [B, 784])],
        [Tensor("log_weights", "lw:0", [B, k]), Tensor("elbo", "elbo:0", [B]), Tensor("iwae", "iwae:0", [B])],
    )
    s.save(tmp_path / "r.json")
    rng = np.random.RandomState(1)
    ref, off = {}, {}
    for f in range(n_files):
        lw = rng.uniform(-230, -90, (B, k)).astype(np.float32)
        ref[f"m_{f:05d}"] = [lw] + [b.astype(np.float32) for b in sbn_bounds(lw)]
        lw2 = lw.copy()
        if f < flips:
            lw2[0, f] -= 0.44
        off[f"m_{f:05d}"] = [lw2] + [b.astype(np.float32) for b in sbn_bounds(lw2)]
    return str(tmp_path / "r.json"), _write(tmp_path / "ref", ref), _write(tmp_path / "off", off)


def test_rebar_threshold_draw_flips_within_budget_pass_and_are_named(tmp_path, capsys):
    sig, ref, off = _rebar_folders(tmp_path, 40, 1)  # 1 flipped log weight of 40 x B x 100
    assert _main(sig, off, ref, "--report", str(tmp_path / "r1.json")) == 0
    assert "threshold draws that flipped, within budget" in capsys.readouterr().out
    rep = json.loads((tmp_path / "r1.json").read_text())
    lw = next(o for o in rep["outputs"] if o["name"] == "log_weights")
    assert lw["elementwise_fail"] == 1 and lw["draw_flip_files"][0].endswith("m_00000_output_0.bin")
    assert rep["n_failed_files"] == 0


def test_rebar_draw_flips_over_budget_fail_and_name_the_files(tmp_path, capsys):
    sig, ref, off = _rebar_folders(tmp_path, 4, 4)  # 4 of 4 x B x 100 log weights: far over 1e-4
    assert _main(sig, off, ref, "--report", str(tmp_path / "r2.json")) == 1
    out = capsys.readouterr().out
    assert "more than the 0.0001 allowed for threshold draws" in out and "m_00003_output_0.bin" in out
    # an output without draws (RealNVP's z) has no budget: one element beyond tolerance fails
    from models import spec

    rn = Signature.load(_sig(str(tmp_path))[1])
    assert "max_fail_fraction" not in loss_check.tolerances(rn, spec=spec.for_signature(rn))["z"]


# --- the fast Stats against plain float64 numpy formulas ----------------------------


def _plain(m, g, atol, rtol):
    """The metric definitions written out in float64, one array at a time (no tricks)."""
    m, g = np.asarray(m, np.float64).ravel(), np.asarray(g, np.float64).ravel()
    d = m - g
    ad, ag = np.abs(d), np.abs(g)
    keep = ag > metrics.EPS
    rel = np.where(keep, ad / np.where(keep, ag, 1.0), 0.0)
    reldiff = ad / np.where(g == 0, metrics.TINY, ag)  # Polygraphy: relative to the golden
    return {
        "n": m.size,
        "nan": 0,
        "inf": 0,
        "cosine": round(float(np.sum(g * m) / np.sqrt(np.sum(g * g) * np.sum(m * m))), 10),
        "max_abs": float(np.where(keep, ad, 0.0).max()),
        "max_rel": float(rel.max()),
        "mean_rel": float(rel.sum() / m.size),
        "red": float(np.sqrt(np.sum(d * d) / np.sum(g * g))),
        "rmse": float(np.sqrt(np.mean(d * d))),
        "elementwise_fail": int(np.count_nonzero((ad > atol) & (reldiff > rtol))),
        "min_atol": float(ad.max()),
        "min_rtol": float(rel.max()),
    }


def _close(got, want):
    assert got.keys() == want.keys()
    for k in want:
        if k == "cosine":
            assert got[k] == pytest.approx(want[k], abs=2e-10), k
        else:
            assert got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-300), k


def _random_pairs(rng, sizes):
    out = []
    for n in sizes:
        g = rng.randn(n).astype(np.float32)
        pick = rng.rand(n)
        g[pick < 0.02] = 0.0  # exact zeros, below eps, just above eps: the |g| > eps mask
        g[(pick >= 0.02) & (pick < 0.04)] = np.float32(3e-8)
        g[(pick >= 0.04) & (pick < 0.05)] = np.float32(2.5 * metrics.EPS)
        scale = np.where(rng.rand(n) < 0.5, 1e-7, 1e-4)  # about half the elements beyond 1e-5/1e-5
        m = (g * (1 + scale * rng.randn(n)) + 1e-6 * rng.randn(n)).astype(np.float32)
        out.append((m, g))
    return out


@pytest.mark.parametrize("atol,rtol", [(1e-5, 1e-5), (1e-3, 1e-2), (1e-2, 1e-2)])
def test_fast_stats_match_plain_float64(atol, rtol):
    rng = np.random.RandomState(7)
    pairs = _random_pairs(rng, [16, 16, 49152, 49152, 49152, 49152, 49152, 49152, 3, 1, 300_000])
    for m, g in pairs:  # one pair at a time (300,000 elements: several chunks)
        _close(metrics.compare(m, g, atol, rtol), _plain(m, g, atol, rtol))
    # stacked: the files of one output compared in blocks, then merged into the total
    rows = metrics.Stats.rows([m for m, _ in pairs], [g for _, g in pairs], atol, rtol)
    total = metrics.Stats(atol, rtol)
    for (m, g), s in zip(pairs, rows):
        _close(s.result(), _plain(m, g, atol, rtol))
        total.merge(s)
    allm, allg = np.concatenate([m for m, _ in pairs]), np.concatenate([g for _, g in pairs])
    _close(total.result(), _plain(allm, allg, atol, rtol))
    # float64 inputs take the same path without copies
    _close(
        metrics.compare(allm.astype(np.float64), allg.astype(np.float64), atol, rtol), _plain(allm, allg, atol, rtol)
    )


def test_fast_stats_nonfinite_rows_and_edge_cases():
    rng = np.random.RandomState(3)
    (m0, g0), (m1, g1), (m2, g2) = _random_pairs(rng, [4096, 4096, 4096])
    m1 = m1.copy()
    m1[[5, 9]] = np.nan
    m1[11] = -np.inf
    rows = metrics.Stats.rows([m0, m1, m2], [g0, g1, g2], 1e-5, 1e-5)
    r = rows[1].result()
    keep = np.isfinite(m1)
    want = _plain(m1[keep], g1[keep], 1e-5, 1e-5)
    assert (r["n"], r["nan"], r["inf"]) == (4096, 2, 1)
    assert r["elementwise_fail"] == want["elementwise_fail"] + 3  # non-finite elements fail
    for k in ("cosine", "max_abs", "max_rel", "red", "min_atol"):
        assert r[k] == pytest.approx(want[k], rel=1e-6), k
    for (m, g), s in (((m0, g0), rows[0]), ((m2, g2), rows[2])):  # the block's other rows
        _close(s.result(), _plain(m, g, 1e-5, 1e-5))
    # an unset tolerance: nothing fails elementwise (either tolerance suffices)
    assert metrics.compare(m0, g0, None, 1e-9)["elementwise_fail"] == 0
    assert metrics.compare(m0, g0, 1e-9, None)["elementwise_fail"] == 0
    assert metrics.compare([], [])["n"] == 0
    with pytest.raises(ValueError):
        metrics.Stats().add(np.zeros(3), np.zeros(4))


def test_realnvp_bpd_blocks_match_plain():
    rng = np.random.RandomState(5)
    z = rng.randn(200, 16, 16, 12).astype(np.float32)  # more rows than one float64 block
    ld = rng.uniform(-3000, -1000, 200).astype(np.float32)
    z64 = z.astype(np.float64).reshape(200, -1)
    d = z64.shape[1]
    want = 8 + (0.5 * (z64 * z64).sum(1) + 0.5 * d * np.log(2 * np.pi) - ld.astype(np.float64)) / (d * np.log(2))
    np.testing.assert_allclose(bits_per_dim(z, ld), want, rtol=1e-12)
    np.testing.assert_allclose(bits_per_dim(z64, ld), want, rtol=1e-12)


def test_no_plot(pair):
    tmp, _, ref, off = pair
    _, p = _sig(str(tmp))
    assert _main(p, off, ref, "--report", str(tmp / "r.json"), "--no-plot") == 0
    assert not (tmp / "r.png").exists() and json.loads((tmp / "r.json").read_text())["plot"] is None


def test_fp32_atol_follows_the_output_scale(tmp_path):
    """fp32: an element near zero may be off by float32 rounding on the tensor's scale
    (1e-5 x its largest magnitude), but not by more."""
    sig, _ = _sig(str(tmp_path))
    outs = _outs(1)
    scale = max(float(np.abs(v[0]).max()) for v in outs.values())
    near = {s: [a.copy() for a in v] for s, v in outs.items()}
    first = sorted(near)[0]
    outs[first][0].flat[0] = 1e-6  # golden ~0 here ...
    near[first][0].flat[0] = 1e-6 + 0.5e-5 * scale  # ... offline within 1e-5 x scale: passes
    r = loss_check.check(sig, _write(tmp_path / "o1", near), _write(tmp_path / "r1", outs), progress=False)
    z = r["outputs"][0]
    assert r["passed"] and z["tolerance"]["atol"] == pytest.approx(1e-5 * scale) and z["max_rel"] > 1
    near[first][0].flat[0] += 2e-5 * scale  # 2.5e-5 x scale: fails, the file is named
    r = loss_check.check(sig, _write(tmp_path / "o2", near), _write(tmp_path / "r2", outs), progress=False)
    assert not r["passed"] and r["failed_files"][0]["file"].endswith(f"{first}_output_0.bin")
