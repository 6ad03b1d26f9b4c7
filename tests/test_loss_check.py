"""verify/metrics.py against hand-computed values; verify/loss_check.py on msame-layout folders."""
import json
import os

import numpy as np
import pytest

from data_tools.binfiles import FORMAT as MANIFEST_FORMAT
from freeze.signature import Signature, Tensor
from infer import layout
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
    assert metrics.realnvp_bpd(np.zeros((2, 4, 4, 3)), np.zeros(2)) == pytest.approx(8 + 0.5 * np.log2(2 * np.pi))
    assert metrics.realnvp_bpd(np.zeros((1, 3072)), [3072 * np.log(2)])[0] == pytest.approx(7 + 0.5 * np.log2(2 * np.pi))
    elbo, iwae = metrics.sbn_bounds(np.log([[1.0, 3.0]]))
    assert elbo[0] == pytest.approx(np.log(3) / 2) and iwae[0] == pytest.approx(np.log(2.0))


def _sig(tmp, mode="force_fp32"):
    s = Signature("realnvp", "forward", B, [Tensor("x", "x:0", [B, 4, 4, 3]), Tensor("u", "u:0", [B, 4, 4, 3])],
                  [Tensor("z", "z:0", [B, 4, 4, 3]), Tensor("logdet", "logdet:0", [B]), Tensor("bpd", "bpd:0", [B])],
                  precision_mode=mode)
    p = os.path.join(tmp, f"m_{mode}.json")
    s.save(p)
    return s, p


def _outs(seed, n_files=3):
    rng = np.random.RandomState(seed)
    res = {}
    for f in range(n_files):
        z = rng.randn(B, 4, 4, 3).astype(np.float32)
        ld = rng.uniform(-50, 50, B).astype(np.float32)
        res[f"img_{f:05d}"] = [z, ld, metrics.realnvp_bpd(z, ld).astype(np.float32)]
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
    return loss_check.main(["--signature", sig_path, "--offline", str(off), "--reference", str(ref),
                            "--no-progress", *extra])


def test_identical_pass_with_report_and_plot(pair, capsys):
    tmp, outs, ref, off = pair
    _, p = _sig(str(tmp))
    assert _main(p, tmp / "off", tmp / "ref", "--report", str(tmp / "r.json")) == 0  # parents: newest <T>
    rep = json.loads((tmp / "r.json").read_text())
    assert rep["passed"] and rep["n_images"] == 12 and rep["files_compared"] == 3
    want = np.mean([metrics.realnvp_bpd(v[0], v[1]) for v in outs.values()])
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
    files = [{"stem": s, "first": 4 * i, "n_real": 4 if i < 2 else 1, "n_pad": 0 if i < 2 else 3}
             for i, s in enumerate(sorted(outs))]
    man = tmp / "bins" / "manifest.json"
    man.parent.mkdir()
    (man.parent / "x").mkdir()
    man.write_text(json.dumps({"format": MANIFEST_FORMAT, "n_images": 9, "inputs": [{"name": "x", "dir": "x"}],
                               "files": files}))
    z = outs["img_00002"][0].copy()
    z[1:] = np.nan  # padding rows: ignored
    layout.write_output(os.path.join(off, "img_00002_output_0.bin"), z)
    assert _main(p, off, ref, "--inputs", str(man.parent / "x"), "--report", str(tmp / "r.json")) == 0
    rep = json.loads((tmp / "r.json").read_text())
    bpd = np.concatenate([metrics.realnvp_bpd(*outs[s][:2])[:f["n_real"]] for s, f in zip(sorted(outs), files)])
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
    s = Signature("rebar", "forward", B, [Tensor("x", "x:0", [B, 784])],
                  [Tensor("log_weights", "lw:0", [B, 5]), Tensor("elbo", "elbo:0", [B]), Tensor("iwae", "iwae:0", [B])])
    s.save(tmp_path / "r.json")
    lw = np.random.RandomState(0).uniform(-120, -90, (B, 5)).astype(np.float32)
    e, i = metrics.sbn_bounds(lw)
    outs = {"a": [lw, e.astype(np.float32), i.astype(np.float32)]}
    ref, off = _write(tmp_path / "ref", outs), _write(tmp_path / "off", outs)
    assert _main(str(tmp_path / "r.json"), off, ref, "--report", str(tmp_path / "x.json")) == 0
    mm = {m["name"]: m for m in json.loads((tmp_path / "x.json").read_text())["model_metrics"]}
    assert mm["elbo"]["reference_mean"] == pytest.approx(lw.astype(np.float64).mean())
    assert mm["iwae"]["reference_mean"] > mm["elbo"]["reference_mean"]
