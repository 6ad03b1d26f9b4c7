"""verify/report.py on road folders made on the fly (the layout make demo writes): its
numbers are the source JSON's, missing parts are said, the HTML parses and fetches
nothing, and a real headless Chromium renders it to a non-blank screenshot."""

import html.parser
import json
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from verify import report

SIG = "ascend-road-signature/1"


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        if isinstance(obj, (dict, list)):
            json.dump(obj, f)
        else:
            f.write(obj)


def _png(path, color):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.new("RGB", (60, 40), color).save(path)


def _sha(path):
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _sig(model, mode, art, outputs, checks=None):
    return {
        "format": SIG,
        "model": model,
        "graph": "forward",
        "batch": 4,
        "config": {},
        "checkpoint": {"path": "/nowhere/ckpt/model.ckpt-30", "step": 30},
        "precision_mode": mode,
        "inputs": [{"name": "x", "tensor": "x:0", "shape": [4, 8], "dtype": "float32", "layout": "ND"}],
        "outputs": [{"name": n, "tensor": n + ":0", "shape": [4], "dtype": "float32"} for n in outputs],
        "checks": checks or {},
        "artifact": art,
        "options": {},
    }


def _out(name, cosine, red, max_abs, nan=0, passed=True, why=""):
    return {
        "name": name,
        "passed": passed,
        "why": why,
        "tolerance": {},
        "n": 100,
        "nan": nan,
        "inf": 0,
        "cosine": cosine,
        "max_abs": max_abs,
        "max_rel": max_abs * 3,
        "mean_rel": 1e-7,
        "red": red,
        "rmse": max_abs / 2,
        "elementwise_fail": 2 if not passed else 0,
        "min_atol": 0,
        "min_rtol": 0,
    }


def make_road(root, model="toy", metric=True, doctor=True, top1=False):
    """A model's road as the demo lays it out: model/ (pb + fp32 and fp16 onnx, signatures),
    out/<label>/<T> with runner summaries, loss_check_<label>.json + png, a doctor report."""
    road = os.path.join(root, model)
    m = os.path.join(road, "model")
    outs = ["z", "score"] if metric else ["y", "s"]
    for f, data in (("m.pb", b"pb"), ("m.onnx", b"onnx32"), ("m.fp16.onnx", b"onnx16")):
        os.makedirs(m, exist_ok=True)
        with open(os.path.join(m, f), "wb") as fh:
            fh.write(data)
    _write(
        os.path.join(m, "m.json"),
        _sig(
            model,
            "force_fp32",
            {"file": "m.pb", "kind": "pb", "onnx": {"file": "m.onnx", "kind": "onnx", "precision_mode": "force_fp32"}},
            outs,
            {"frozen_vs_checkpoint_max_rel": 3.25e-7, "batch_independent": True},
        ),
    )
    _write(
        os.path.join(m, "m.fp16.json"),
        _sig(
            model,
            "allow_fp32_to_fp16",
            {"file": "m.fp16.onnx", "kind": "onnx", "precision_mode": "allow_fp32_to_fp16"},
            outs,
        ),
    )
    reports = {}
    for label, onnx, sig, mode, passed, shift, nonfin in (
        ("fp32", "m.onnx", "m.json", "force_fp32", True, 4.6e-8, 0),
        ("fp16", "m.fp16.onnx", "m.fp16.json", "allow_fp32_to_fp16", False, -4.2e-3, 3),
    ):
        run_dir = os.path.join(road, "out", label, "2026122_15_0_0_1")
        os.makedirs(run_dir)
        # fp32: today's OUT/<T>_summary.json; fp16: OUT/<T>/run.json, the same keys plus digests
        summary_path = run_dir + "_summary.json" if label == "fp32" else os.path.join(run_dir, "run.json")
        summary = {
            "format": "ascend-road-run/1",
            "run_dir": run_dir,
            "mode": "folder",
            "backend": "onnxruntime",
            "model": os.path.join(m, onnx),
            "signature": os.path.join(m, sig),
            "batch": 4,
            "outfmt": "BIN",
            "loop": 1,
            "files": 8,
            "skipped_resume": 0,
            "images": 32,
            "wall_s": 0.5,
            "wall_throughput_images_per_s": 64.0 + len(label),
            "latency_ms": {
                "count": 8,
                "min": 1.0,
                "median": 1.5 + len(label),
                "p99": 9.75,
                "mean": 2.0,
                "max": 10.0,
                "throughput_images_per_s": 1234.5 + len(label),
            },
            "throughput_images_per_s": 1234.5 + len(label),
            "inputs": [os.path.join(road, "inputs", "x")],
        }
        if label == "fp16":  # the run record: paths with their digests
            summary.update(
                format="ascend-road-run/2",
                model={"path": os.path.join(m, onnx), "sha256": _sha(os.path.join(m, onnx))},
                signature={"path": os.path.join(m, sig), "sha256": "cd" * 32, "model": model, "batch": 4},
                inputs=[
                    {"name": "x", "path": os.path.join(road, "inputs", "x"), "files": 8, "listing_sha256": "ab" * 32}
                ],
            )
        _write(summary_path, summary)
        lc = {
            "passed": passed,
            "signature": os.path.join(m, sig),
            "model": model,
            "precision_mode": mode,
            "offline": run_dir,
            "reference": os.path.join(road, "ref"),
            "manifest": None,
            "files_compared": 8,
            "n_images": 30,
            "outputs": [
                _out(
                    outs[0],
                    0.99999912 if passed else 0.98765432,
                    1.4e-6 if passed else 0.0625,
                    2.5e-5,
                    nan=0 if passed else 7,
                    passed=passed,
                    why="" if passed else "7 NaN, 0 Inf",
                ),
                _out(outs[1], 1.0, 2.2e-7, 1.5e-6),
            ],
            "model_metrics": [
                {
                    "name": "score",
                    "n_images": 30,
                    "offline_mean": 6.04540142 + shift,
                    "reference_mean": 6.04540142,
                    "diff": shift,
                    "max_abs_diff_per_image": 1e-6,
                    "nonfinite": nonfin,
                    "tolerance": 1e-4 if passed else None,
                    "passed": passed,
                }
            ]
            if metric
            else [],
            "problems": {"missing": [], "extra": [], "wrong_size": []},
            "failed_files": []
            if passed
            else [{"file": os.path.join(run_dir, "b003_output_0.bin"), "output": outs[0], "why": "7 NaN"}],
            "n_failed_files": 0 if passed else 1,
        }
        if top1:
            lc["classification"] = {
                "output": outs[0],
                "n_images": 30,
                "top1_agreement": 29 / 30,
                "n_disagree": 1,
                "judged": passed,
                "passed": True,
                "offline_accuracy": 0.5 + shift,
                "reference_accuracy": 0.5,
                "accuracy_shift": shift,
            }
        p = os.path.join(road, f"loss_check_{label}.json")
        if metric:
            lc["plot"] = os.path.splitext(p)[0] + ".png"
            _png(lc["plot"], (200, 30, 30))
        _write(p, lc)
        reports[label] = lc
    if doctor:
        _write(
            os.path.join(road, "doctor_force_fp16.json"),
            {
                "tf_tensors": 120,
                "matched": 80,
                "name_matches_dropped": 5,
                "layers": [],
                "keep_dtype": ["Log_1", "add_1"],
                "first_failing": None,
                "first_failing_why": None,
                "converged": True,
                "precision_mode": "allow_fp32_to_fp16",
                "iterate": 8,
                "pruned": ["mul_9"],
                "rounds": [
                    {
                        "round": 0,
                        "keep": 0,
                        "first_failing": "Log_3",
                        "first_failing_why": "1 NaN, 0 Inf",
                        "failing_layers": 4,
                        "bpd": {"mean": 6.2413, "nonfinite": 1},
                        "bpd_tf": {"mean": 6.2129},
                        "added": ["Log_3"],
                    },
                    {
                        "round": 1,
                        "keep": 3,
                        "first_failing": None,
                        "first_failing_why": None,
                        "failing_layers": 0,
                        "bpd": {"mean": 6.2123, "nonfinite": 0},
                        "bpd_tf": {"mean": 6.2129},
                        "added": [],
                    },
                ],
            },
        )
    return road, reports


def make_train(root, name="run", offset=0.0, sps=20.0, model="toy"):
    """A REBAR-style run (eval records with a split, steps_per_sec) of the same toy model."""
    d = os.path.join(root, name)
    recs = []
    for step in (100, 200, 300, 400):
        recs.append(
            {
                "step": step,
                "kind": "train",
                "epoch": 0,
                "score": -200 + step / 10 + offset,
                "log_grad_variance": -3.0,
                "steps_per_sec": sps,
            }
        )
    recs.append({"step": 400, "kind": "epoch", "epoch": 0, "score": -170.25 + offset, "n_steps": 400})
    recs.append(
        {
            "step": 400,
            "kind": "eval",
            "split": "valid",
            "score": -165.5 + offset,
            "iwae": -160.0,
            "samples": 10,
            "n_images": 20,
        }
    )
    recs.append(
        {
            "step": 400,
            "kind": "eval",
            "split": "test",
            "score": -166.125 + offset,
            "iwae": -161.0 + offset,
            "samples": 10,
            "n_images": 20,
        }
    )
    _write(os.path.join(d, "metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in recs))
    _write(os.path.join(d, "config.json"), {"model": model, "config": {"batch_size": 24}, "train": {}, "step": 400})
    return d


class Tables(html.parser.HTMLParser):
    """Every table of an HTML page as lists of cell texts; tags seen; resources referenced."""

    def __init__(self):
        super().__init__()
        self.tables, self.tags, self.refs, self.stack, self.text = [], [], [], [], []
        self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in ("meta", "img", "br", "link", "input"):
            self.stack.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "action", "data", "poster", "srcset"):
                self.refs.append(v)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()
        if tag in ("td", "th"):
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr":
            self.tables[-1].append(self._row)

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(path):
    p = Tables()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    p.close()
    assert not p.stack, f"unclosed tags {p.stack}"
    return p


def table_with(tables, first_header):
    return [t for t in tables if t and t[0] and t[0][0] == first_header]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("report"))
    road, reports = make_road(tmp)
    plain, _ = make_road(tmp, model="plain", metric=False, doctor=False)
    cls, cls_reports = make_road(tmp, model="cls", metric=False, doctor=False, top1=True)
    cpu, npu = make_train(tmp, "cpu"), make_train(tmp, "npu", offset=-1.5, sps=10.0)
    out = os.path.join(tmp, "report")
    rc = report.main(
        [
            "--road",
            road,
            "--train",
            f"{cpu}:CPU",
            "--train",
            f"{npu}:NPU",
            "--paper",
            "test score=-150.5, train score=-140",
            "--road",
            plain,
            "--road",
            cls,
            "-o",
            out,
        ]
    )
    assert rc == 0
    return {
        "out": out,
        "road": road,
        "reports": reports,
        "cpu": cpu,
        "npu": npu,
        "plain": plain,
        "tmp": tmp,
        "cls_reports": cls_reports,
    }


def test_numbers_are_the_source_jsons(built):
    p = parse(os.path.join(built["out"], "index.html"))
    offline = [t for t in table_with(p.tables, "artifact") if "loss_check" in t[0]]
    road_rows = [r for t in offline for r in t if r[0] in ("m.onnx", "m.fp16.onnx")]
    assert len(road_rows) == 6  # two artifacts in each of the three models
    header = next(t for t in offline if any(r[0] == "m.onnx" for r in t) and "score offline" in t[0])[0]
    rows = {r[0]: dict(zip(header, r)) for t in offline if t[0] == header for r in t[1:]}
    for label, art in (("fp32", "m.onnx"), ("fp16", "m.fp16.onnx")):
        lc, row = built["reports"][label], rows[art]
        mm = lc["model_metrics"][0]
        assert float(row["score offline"]) == pytest.approx(mm["offline_mean"], rel=1e-8)
        assert float(row["score checkpoint"]) == pytest.approx(mm["reference_mean"], rel=1e-8)
        assert float(row["score shift"]) == pytest.approx(mm["diff"], rel=1e-2)
        assert row["loss_check"] == ("PASS" if lc["passed"] else "FAIL")
        assert row["non-finite"].startswith(f"{mm['nonfinite']} of 30")
        assert row["precision mode"] == lc["precision_mode"]
    assert rows["m.pb"]["loss_check"] == "freeze: frozen vs checkpoint max rel 3.25e-07; batch independent"
    # per-output cosine / RED / max error
    outs = [t for t in table_with(p.tables, "output")]
    assert len(outs) == 6  # one per loss_check of the three models
    fp16 = next(t for t in outs if any(r[-1].startswith("FAIL") for r in t))
    z = dict(zip(fp16[0], fp16[1]))
    src = built["reports"]["fp16"]["outputs"][0]
    assert float(z["cosine"]) == pytest.approx(src["cosine"], rel=1e-8)
    assert float(z["RED"]) == pytest.approx(src["red"], rel=1e-2)
    assert float(z["max abs"]) == pytest.approx(src["max_abs"], rel=1e-2)
    assert z["NaN/Inf"] == "7"
    # runner performance
    perf = table_with(p.tables, "model")[0]
    prow = {r[0]: dict(zip(perf[0], r)) for r in perf[1:]}
    assert float(prow["m.fp16.onnx"]["images/s (inference)"]) == pytest.approx(1238.5, rel=1e-3)
    assert float(prow["m.onnx"]["latency median (ms)"]) == 5.5 and float(prow["m.onnx"]["latency p99 (ms)"]) == 9.75
    # the runner's run.json inside the run folder is read too, its model digest checked against the file
    assert (
        prow["m.fp16.onnx"]["model digest"]
        == _sha(os.path.join(built["road"], "model", "m.fp16.onnx"))[:16] + " (matches the file)"
    )
    assert prow["m.onnx"]["model digest"] == "not recorded"
    # doctor rounds and keep list
    rounds = table_with(p.tables, "round")[0]
    assert [r[2] for r in rounds[1:]] == ["Log_3", "none"] and float(rounds[1][5]) == 6.2413
    text = "".join(p.text)
    assert "Keep list (2 ops kept in fp32, the --keep_dtype file for ATC): Log_1, add_1" in text


def test_accuracy_table_in_the_ports_form(built):
    p = parse(os.path.join(built["out"], "index.html"))
    acc = table_with(p.tables, "source")[0]
    rows = {r[0]: dict(zip(acc[0], r)) for r in acc[1:]}
    assert float(rows["paper (given)"]["test score"]) == -150.5
    assert float(rows["paper (given)"]["train score"]) == -140
    cpu, npu = rows["CPU (training run)"], rows["NPU (training run)"]
    assert float(cpu["train score"]) == -170.25  # the epoch mean, not the last window
    assert float(cpu["test score"]) == -166.125 and float(npu["test score"]) == -167.625
    assert float(cpu["test iwae"]) == -161.0
    off = rows["offline m.fp16.onnx (allow_fp32_to_fp16)"]
    assert float(off["test score"]) == pytest.approx(built["reports"]["fp16"]["model_metrics"][0]["offline_mean"])
    # the two runs compared as compare_runs does: relative difference to the first
    final = table_with(p.tables, "final")[0]
    test_row = next(r for r in final if r[0] == "test score")
    assert test_row[2] == f"-167.625 ({(-167.625 + 166.125) / 166.125:+.3%})"
    # throughput: steps/s and images/s (batch 24 from config.json)
    runs = table_with(p.tables, "run")[0]
    r = {x[0]: dict(zip(runs[0], x)) for x in runs[1:]}
    assert float(r["NPU"]["steps/s"]) == 10 and float(r["NPU"]["images/s"]) == 240


def test_missing_parts_are_said(built):
    p = parse(os.path.join(built["out"], "index.html"))
    text = " ".join(p.text)
    plain = text[text.index("plain (") : text.index("cls (")]
    assert "No training folder given" in plain
    assert "Precision doctor not run on this model" in plain
    assert "No metric declared" in plain
    # per-output results where the model declares no metric: NaN/Inf elements, not images
    offline = [t for t in table_with(p.tables, "artifact") if "loss_check" in t[0] and "score offline" not in t[0]]
    row = next(r for t in offline for r in t if r[0] == "m.fp16.onnx")
    assert "7 elements" in row


def test_top1_accuracy_where_loss_check_had_labels(built):
    """A classifier (no declared metric, loss_check --top1 --labels): top-1 accuracy is its metric."""
    p = parse(os.path.join(built["out"], "index.html"))
    acc = table_with(p.tables, "source")[-1]
    rows = {r[0]: dict(zip(acc[0], r)) for r in acc[1:]}
    c = built["cls_reports"]["fp16"]["classification"]
    assert float(rows["offline m.fp16.onnx (allow_fp32_to_fp16)"]["test top-1 accuracy"]) == pytest.approx(
        c["offline_accuracy"], rel=1e-8
    )
    text = " ".join(p.text)
    assert "offline and checkpoint agree on 96.6667% (1 differ)" in text
    assert "reported, not judged (fp16 mode): PASS" in text


def test_html_is_self_contained_and_markdown_has_the_same_numbers(built):
    page = open(os.path.join(built["out"], "index.html"), encoding="utf-8").read()
    p = parse(os.path.join(built["out"], "index.html"))
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert p.refs and all(r.startswith("data:image/png;base64,") for r in p.refs)
    assert not re.search(r"(https?:)?//[\w.-]+\.\w", re.sub(r'src="data:[^"]*"', "", page).replace("<!DOCTYPE", ""))
    assert "@import" not in page and "url(" not in page
    md = open(os.path.join(built["out"], "REPORT.md"), encoding="utf-8").read()
    for needle in ("6.0454014", "-167.625", "Log_1, add_1", "1238.5"):
        assert needle in md and needle in page
    imgs = re.findall(r"!\[[^\]]*\]\((img/[^)]+)\)", md)
    assert imgs and all(os.path.isfile(os.path.join(built["out"], i)) for i in imgs)
    assert len(imgs) == len(p.refs)


def test_refuses_to_overwrite_and_names_bad_input(built, capsys):
    assert report.main(["--road", built["road"], "-o", built["out"]]) == 2
    assert "already exists" in capsys.readouterr().err
    assert report.main(["--road", os.path.join(built["tmp"], "nope"), "-o", built["out"] + "2"]) == 2
    assert "road folder not found" in capsys.readouterr().err
    assert report.main(["--road", built["road"], "--paper", "test score", "-o", built["out"] + "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --paper 'test score'") and "METRIC=VALUE" in err
    assert report.main(["--road", built["road"], "--train", built["plain"], "-o", built["out"] + "4"]) == 2
    assert "metrics.jsonl: not found" in capsys.readouterr().err
    # with several models, a --train must follow its --road
    assert (
        report.main(
            ["--train", built["cpu"], "--road", built["road"], "--road", built["plain"], "-o", built["out"] + "5"]
        )
        == 2
    )
    assert "given before any --road" in capsys.readouterr().err
    assert not any(os.path.exists(built["out"] + s) for s in "2345")  # nothing written on a bad input


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    msg = (
        "no headless browser found (chromium): install the distribution's package "
        "(apt-get install chromium; .ci/run does it)"
    )
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_DATA") == "1":
        pytest.fail(msg)
    pytest.skip(msg)


def screenshot(html_path, png_path, width, height, timeout=120):
    """Headless Chromium's screenshot of a local file; returns the completed process."""
    browser = _browser()
    with tempfile.TemporaryDirectory(prefix="chromium_") as profile:
        return subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png_path}",
                "file://" + os.path.abspath(html_path),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def page_height(img, background=(246, 247, 249)):
    """Rows down to the last one that is not the body's background: the page's height."""
    rows = np.where((np.abs(img - np.array(background)).sum(2) > 12).any(1))[0]
    return int(rows.max()) + 1 if rows.size else 0


def test_renders_in_a_real_browser(built, tmp_path):
    """One screenshot taller than the page; the page's extent is measured on it, and the
    page region is checked: text, the section bars, the embedded (red) picture decoded."""
    from PIL import Image

    shot = str(tmp_path / "shot.png")
    w, h = 1200, 9000
    r = screenshot(os.path.join(built["out"], "index.html"), shot, w, h)
    assert os.path.isfile(shot), f"no screenshot (exit {r.returncode}): {r.stderr[-1500:]}"
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (h, w, 3)
    ph = page_height(img)
    assert 2000 < ph < h, f"page height {ph}: not rendered, or longer than the screenshot"
    page = img[:ph]
    dark = (page.sum(2) < 200).mean()
    bars = ((page[..., 2] - page[..., 0] > 40) & (page[..., 2] < 140)).mean()  # the #1f3b57 section bars
    assert dark > 0.002, f"only {dark:.4%} dark pixels: text not rendered"
    assert bars > 0.002, "no section heading bar rendered"
    assert len(np.unique(page[..., 0] << 16 | page[..., 1] << 8 | page[..., 2])) > 50
    red = (page[..., 0] == 200) & (page[..., 1] == 30) & (page[..., 2] == 30)
    assert red.sum() > 500, "the embedded loss_check picture is not shown"
    # every quarter of the page holds something (no blank tail of a half-rendered page)
    for q in range(4):
        part = page[q * ph // 4 : (q + 1) * ph // 4]
        assert (part.sum(2) < 300).mean() > 0.0005, f"quarter {q + 1} of the page is blank"


def test_demo_writes_one_report_for_every_road(tmp_path, repo_root, capsys):
    """demo/road.py's last step on a demo-like --out: every model folder, its training run, its paper row."""
    import importlib.util
    import types

    spec = importlib.util.spec_from_file_location("demo_road", os.path.join(repo_root, "demo", "road.py"))
    road = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(road)
    out = tmp_path / "demo"
    make_road(str(out), model="realnvp")
    make_road(str(out), model="user_model", metric=False, doctor=False)  # any TF model: no paper, no training
    make_train(str(out / "_train"), "realnvp", model="realnvp")
    steps = road.Road()
    road.write_report(steps, types.SimpleNamespace(out=str(out)))
    ((model, stage, art, _, rc),) = steps.rows
    assert rc == 0 and stage == "self-verification report" and model == "realnvp+user_model"
    assert str(out / "report" / "index.html") in capsys.readouterr().out
    p = parse(str(out / "report" / "index.html"))
    text = " ".join(p.text)
    assert "RealNVP paper (given)" in text and "user_model (" in text and "CPU (training run)" in text
