"""loss_check: offline outputs (msame layout) against golden ones, per output and per model.

Files are matched by input stem and output index. Per output: cosine, max abs, max rel,
RED, RMSE and Polygraphy's elementwise atol/rtol, NaN/Inf counted first. Per model, over
every real image (the manifest's padding rows excluded): RealNVP bits/dim recomputed from
z and logdet; SBN ELBO and IWAE-K from log_weights.

Tolerances follow the signature's precision_mode:
    fp32 modes   elementwise rtol = 1e-5 and atol = 1e-5 x the output's largest golden
                 magnitude (either suffices, Polygraphy's rule): float32 rounding in a deep
                 flow is absolute error on the scale of the tensor, so an element near zero
                 cannot be held to 1e-5 of itself; |mean bpd diff| <= 1e-4
                 (SBN: |mean ELBO / IWAE diff| <= max(1e-4, 1e-5 |reference|))
                 Outputs computed through hard threshold draws (the SBN's Bernoulli samples,
                 models/spec.py draw_outputs) may have a small share of elements beyond
                 tolerance: a draw whose logit + logit(u) is within float32 rounding of 0 flips
                 between two correct implementations; within the budget they are reported
                 (``draw_flip_files``), over it the files fail.
    fp16 modes   cosine >= 0.99 and RED <= 0.05 per output; the model metric's shift reported
``--atol/--rtol name:value`` (or a bare value for every output) override them.
Exit 0 PASS, 1 FAIL, 2 bad input.
"""

import argparse
import os
import sys
import tempfile

import numpy as np

from common import fsio
from common.cli import ArgumentParser, add_force, add_input, add_verbosity
from common.errors import UserError, cli, run
from common.log import log, quiet
from data_tools.binfiles import Manifest, find_manifest
from freeze.signature import Signature
from infer import layout
from models import spec as model_spec
from verify import metrics

FP32_TOL = 1e-5


def parse_tols(items, names, what):
    """['1e-4', 'z:1e-3'] -> {output name: value}; '' key = every output."""
    out = {}
    for item in items or []:
        name, _, val = item.rpartition(":")
        if name and name not in names:
            raise UserError(f"--{what} {item}: no output {name!r}; outputs are {names}")
        try:
            v = float(val)
        except ValueError:
            raise UserError(f"--{what} {item}: expected name:value or value, found {val!r}") from None
        if not (np.isfinite(v) and v >= 0):
            raise UserError(f"--{what} {item}: a tolerance must be a finite number >= 0, found {val!r}")
        out[name] = v
    return out


def tolerances(sig, atol=None, rtol=None, spec=None):
    """{output: dict(atol, rtol, cosine_min, red_max)} for the signature's precision mode.
    Integer and bool outputs must be equal in fp32 modes; in fp16 modes they are reported.
    An output the model's spec lists in ``draw_outputs`` (threshold draws) also gets
    ``max_fail_fraction`` in fp32 modes: that share of its elements may be beyond atol/rtol."""
    names = [t.name for t in sig.outputs]
    a, r = parse_tols(atol, names, "atol"), parse_tols(rtol, names, "rtol")
    tol = {}
    exact = {t.name for t in sig.outputs if t.np_dtype.kind in "biu"}
    for n in names:
        if n in exact:  # integer and bool outputs (an argmax): equal, or reported in fp16 modes
            t = (
                dict(atol=None, rtol=None, cosine_min=None, red_max=None)
                if sig.is_fp16
                else dict(atol=0.0, rtol=0.0, cosine_min=None, red_max=None)
            )
        elif sig.is_fp16:
            t = dict(atol=None, rtol=None, cosine_min=metrics.COSINE_MIN, red_max=metrics.RED_MAX)
        else:
            t = dict(atol=None, rtol=FP32_TOL, cosine_min=None, red_max=None, atol_of_scale=FP32_TOL)
            if spec is not None and n in spec.draw_outputs:
                t["max_fail_fraction"] = spec.draw_outputs[n]
        for key, given in (("atol", a), ("rtol", r)):
            if n in given or "" in given:
                t[key] = given.get(n, given.get(""))
                if key == "atol":
                    t.pop("atol_of_scale", None)
        tol[n] = t
    return tol


def model_tolerance(sig, spec, name, ref_mean):
    if sig.is_fp16:
        return None  # fp16 shifts the likelihood by design: reported, not judged
    return spec.metric(name).fp32_tolerance(ref_mean)


GROUP = 64  # files whose outputs are compared together (one numpy pass per block, not per file)


def _row_counts(stems, manifest, batch):
    """{stem: real rows}; the manifest's padding rows are excluded."""
    if manifest is None:
        return dict.fromkeys(stems, batch)
    known = {f["stem"]: int(f["n_real"]) for f in manifest.files if "stem" in f and "n_real" in f}
    return {s: known[s] if s in known else manifest.real_rows(s) for s in stems}  # its error if absent


def _scale_atol(tol, outputs, ref, stems, rows):
    """atol = factor x the output's largest golden magnitude (one cheap pass over the goldens)."""
    for i, t in enumerate(outputs):
        factor = tol[t.name].pop("atol_of_scale", None)
        if factor is None:
            continue
        scale = 0.0
        for stem in stems:
            g = layout.read_output(ref[stem][i], t)[: rows[stem]]
            if g.size:
                scale = max(scale, float(np.nanmax(np.abs(g))))
        tol[t.name]["atol"] = factor * scale


def read_labels(path, manifest, classes=None):
    """One integer label per real image, in manifest order (``first`` index of each file),
    each in [0, classes)."""
    if manifest is None:
        raise UserError(
            f"--labels {path}: needs the inputs' manifest (--inputs or --manifest) to know which image is in which file"
        )
    try:
        with open(path) as f:
            labels = np.array([int(w) for w in f.read().split()], np.int64)
    except OSError as e:
        raise UserError(f"{path}: cannot read labels ({e.strerror})") from None
    except ValueError as e:
        raise UserError(f"{path}: expected one integer label per line ({e})") from None
    if labels.size != manifest.n_images:
        raise UserError(f"{path}: {labels.size} labels, the manifest {manifest.path} has {manifest.n_images} images")
    bad = np.flatnonzero((labels < 0) | (labels >= classes)) if classes else []
    if len(bad):  # one-based labels, or another dataset's: the accuracy would be silently wrong
        k = int(bad[0])
        raise UserError(f"{path}:{k + 1}: label {labels[k]} is not a class of the model: expected [0, {classes})")
    return labels


class _Top1:
    """Top-1 agreement of one output (offline vs reference), and accuracy against labels."""

    def __init__(self, sig, name, labels, manifest):
        self.t = sig.output(name)
        # [batch, 1, 1, classes] (slim's predictions) is [batch, classes]: singleton dims squeezed
        if len(self.t.shape) < 2 or self.t.shape[0] != sig.batch or sum(d != 1 for d in self.t.shape[1:]) > 1:
            raise UserError(
                f"--top1 {name}: expected a [batch, classes] output (singleton dims allowed), found {self.t.shape}"
            )
        self.labels = labels
        self.first = {f["stem"]: int(f["first"]) for f in manifest.files} if labels is not None else {}
        self.off, self.ref, self.lab = [], [], []

    def add(self, stem, got, want):
        for side, a in ((self.off, got[self.t.name]), (self.ref, want[self.t.name])):
            side.append(np.argmax(np.reshape(a, (len(a), -1)), axis=-1))
        if self.labels is not None:
            k = len(self.off[-1])
            if stem not in self.first:
                raise UserError(f"--labels: file {stem!r} is not in the manifest")
            self.lab.append(self.labels[self.first[stem] : self.first[stem] + k])

    def result(self, fp16):
        o, r = np.concatenate(self.off), np.concatenate(self.ref)
        agree = float(np.mean(o == r)) if o.size else 1.0
        res = {
            "output": self.t.name,
            "n_images": int(o.size),
            "top1_agreement": agree,
            "n_disagree": int(np.sum(o != r)),
            "judged": not fp16,
            "passed": fp16 or agree == 1.0,
        }
        if r.size > 1 and np.all(r == r[0]):
            res["same_class_for_every_image"] = int(r[0])
        if self.labels is not None:
            lab = np.concatenate(self.lab)
            res.update(offline_accuracy=float(np.mean(o == lab)), reference_accuracy=float(np.mean(r == lab)))
            res["accuracy_shift"] = res["offline_accuracy"] - res["reference_accuracy"]
        return res


def check(sig, offline, reference, manifest=None, atol=None, rtol=None, progress=True, top1=None, labels=None):
    """Compare two msame output folders; returns the report dict (``report['passed']``).

    ``top1``: an output of class scores [batch, classes]: top-1 agreement offline vs
    reference (must be 1.0 in fp32 modes, reported in fp16 modes); ``labels``: the labels
    file, for accuracy offline and reference."""
    if labels is not None and top1 is None:
        raise UserError("--labels needs --top1 OUTPUT (the output holding class scores)")
    classes = sig.output(top1).shape[-1] if top1 else None
    cls = _Top1(sig, top1, read_labels(labels, manifest, classes) if labels else None, manifest) if top1 else None
    spec = model_spec.for_signature(sig)
    off, ref = layout.collect_outputs(offline), layout.collect_outputs(reference)
    off_dir, ref_dir = layout.select_run(offline), layout.select_run(reference)
    records = hold_records(sig, off_dir, ref_dir, manifest)
    tol = tolerances(sig, atol, rtol, spec)
    stems, problems = _pair_files(sig, off, ref, off_dir, ref_dir)
    rows = _row_counts(stems, manifest, sig.batch)
    _scale_atol(tol, sig.outputs, ref, stems, rows)
    acc = _Totals(sig, tol, spec, off)
    spread = _Spread()
    n_images = _compare_files(sig, off, ref, stems, rows, acc, cls, problems["wrong_size"], progress, spread)
    outputs = acc.output_results()
    model = acc.model_results()
    classification = cls.result(sig.is_fp16) if cls is not None else None
    passed = (
        all(o["passed"] for o in outputs)
        and all(m["passed"] for m in model)
        and not acc.bad_files
        and not any(problems.values())
        and (classification is None or classification["passed"])
    )
    return {
        "passed": passed,
        "signature": sig.path,
        "model": sig.model,
        "precision_mode": sig.precision_mode,
        "offline": off_dir,
        "reference": ref_dir,
        "manifest": manifest.path if manifest is not None else None,
        "records": records,
        "files_compared": len(stems),
        "n_images": n_images,
        "outputs": outputs,
        "model_metrics": model,
        "problems": problems,
        "classification": classification,
        "failed_files": acc.bad_files[:50],
        "n_failed_files": len(acc.bad_files),
        "warnings": _warnings(sig, spread, classification),
        "_per_image": {s: {k: np.concatenate(v) for k, v in d.items()} for s, d in acc.per_image.items()},
    }


def hold_records(sig, off_dir, ref_dir, manifest):
    """The run records of both folders held against the signature, each other and the
    manifest (infer/runner.py and data_tools/binfiles.py own those checks); what they
    proved, for the report. A folder without a record (msame's own run) is said, not proved."""
    from infer.runner import hold_runs, record_reads

    off, ref = hold_runs(off_dir, ref_dir, sig)
    if manifest is not None:
        for d, rec in ((off_dir, off), (ref_dir, ref)):
            if rec is not None:
                manifest.check_read(record_reads(rec, layout.record_path(d)), layout.record_path(d))
    for side, d, rec in (("offline", off_dir, off), ("reference", ref_dir, ref)):
        if rec is None:
            log.warning(f"note: {d} has no run record (run.json): what made the {side} outputs is not checked")

    def said(rec):
        if rec is None:
            return None
        m = rec.get("model") or {}
        return {"model": m.get("path"), "model_sha256": m.get("sha256"), "backend": rec.get("backend")}

    return {"offline": said(off), "reference": said(ref), "inputs_same_bytes": off is not None and ref is not None}


def _pair_files(sig, off, ref, off_dir, ref_dir):
    """Planning: the stems to compare (every output on both sides) and the problems (missing
    and extra offline files); ``off`` and ``ref`` are {stem: {output index: path}}."""
    n_out = len(sig.outputs)
    problems = {"missing": [], "extra": [], "wrong_size": []}
    for stem, files in ref.items():
        lacking = [i for i in range(n_out) if i not in files]
        if lacking:
            raise UserError(
                f"{ref_dir}: reference for {stem!r} lacks output(s) {lacking} "
                f"(signature {sig.path} has {n_out} outputs)"
            )
    for stem in sorted(set(ref) - set(off)):
        problems["missing"] += [os.path.join(off_dir, os.path.basename(p)) for p in ref[stem].values()]
    for stem in sorted(off):
        for i, p in sorted(off[stem].items()):
            if stem not in ref or i >= n_out:
                problems["extra"].append(p)
        if stem in ref:
            problems["missing"] += [
                os.path.join(off_dir, os.path.basename(ref[stem][i])) for i in range(n_out) if i not in off[stem]
            ]
    stems = sorted(s for s in set(off) & set(ref) if all(i in off[s] for i in range(n_out)))
    if not stems:
        raise UserError(
            f"{off_dir}: no output files in common with {ref_dir} (stems {sorted(off)[:3]} vs {sorted(ref)[:3]})"
        )
    return stems, problems


def _compare_files(sig, off, ref, stems, rows, acc, cls, wrong_size, progress, spread=None):
    """Reading: each stem's real rows, offline and reference, compared GROUP files at a time;
    an offline file of the wrong size is listed in ``wrong_size``. Returns the images compared."""
    from tqdm import tqdm

    n_images, group = 0, []
    for stem in tqdm(stems, desc="loss_check", unit="file", disable=not progress, file=sys.stderr):
        k = rows[stem]
        got, want = {}, {}
        for i, t in enumerate(sig.outputs):
            want[t.name] = layout.read_output(ref[stem][i], t)[:k]
            try:
                got[t.name] = layout.read_output(off[stem][i], t)[:k]
            except UserError as e:
                wrong_size.append(str(e))
        if len(got) < len(sig.outputs):
            continue
        n_images += k
        if cls is not None:
            cls.add(stem, got, want)
        if spread is not None:
            spread.add(want)
        group.append((stem, got, want))
        if len(group) == GROUP:
            acc.add(group)
            group = []
    if group:
        acc.add(group)
    return n_images


class _Spread:
    """How much each reference output varies across images (elementwise max - min over rows)."""

    def __init__(self):
        self.lo, self.hi, self.n = {}, {}, 0

    def add(self, want):
        for name, a in want.items():
            a = np.asarray(a, np.float64)
            if not len(a):
                continue
            lo, hi = a.min(axis=0), a.max(axis=0)
            self.lo[name] = np.minimum(self.lo.get(name, lo), lo)
            self.hi[name] = np.maximum(self.hi.get(name, hi), hi)
        self.n += len(next(iter(want.values()), []))

    def constant(self, rel=1e-5):
        """Outputs whose every element is the same for every image (within float32 noise)."""
        if self.n < 2:
            return []
        out = []
        for name, lo in self.lo.items():
            hi = self.hi[name]
            scale = max(float(np.max(np.abs(np.concatenate([lo.ravel(), hi.ravel()])))), 1e-12)
            if float(np.max(hi - lo)) <= rel * scale:
                out.append(name)
        return out


def _warnings(sig, spread, classification):
    """What makes a PASS prove less than it says: a batch-coupled graph, outputs that do not
    depend on the image (a degenerate model agrees with itself in every precision mode)."""
    out = [sig.batch_coupling_warning] if sig.batch_coupling_warning else []
    const = spread.constant()
    if const:
        out.append(
            f"output(s) {', '.join(const)} are the same for every one of the {spread.n} images in the reference: "
            "the model ignores its input (degenerate, e.g. batch norm moving statistics not yet trained), so a "
            "PASS here proves nothing about the conversion"
        )
    if classification and "same_class_for_every_image" in classification:
        out.append(
            f"top-1: the reference predicts class {classification['same_class_for_every_image']} for every "
            f"image: agreement on a constant prediction proves little"
        )
    return out


class _Totals:
    """What the compared files add up to: per-output statistics, the files that fail,
    and the model's per-image metrics on each side."""

    def __init__(self, sig, tol, spec, off):
        self.sig, self.tol, self.spec, self.off = sig, tol, spec, off
        self.stats = {t.name: metrics.Stats(tol[t.name]["atol"], tol[t.name]["rtol"]) for t in sig.outputs}
        self.bad_files = []
        self.draw_files = {t.name: [] for t in sig.outputs}  # files whose only failure may be draw flips
        self.per_image = {"offline": {}, "reference": {}}

    def add(self, group):
        """Per-file and per-output metrics of a group [(stem, got, want)], and its model metrics."""
        bad = []
        for i, t in enumerate(self.sig.outputs):
            tol = self.tol[t.name]
            ms = [got[t.name] for _, got, _ in group]
            gs = [want[t.name] for _, _, want in group]
            for f, s in enumerate(metrics.Stats.rows(ms, gs, tol["atol"], tol["rtol"])):
                r = s.result()
                ok, why = metrics.judge(r, **dict(tol, max_fail_fraction=0.0))
                entry = {"file": self.off[group[f][0]][i], "output": t.name, "why": why}
                only_elements = metrics.judge(r, **dict(tol, atol=None, rtol=None))[0]
                if not ok and tol.get("max_fail_fraction") and only_elements:
                    self.draw_files[t.name].append(entry)  # judged on the output's totals (draw flips)
                elif not ok:
                    bad.append((f, i, entry))
                self.stats[t.name].merge(s)
        self.bad_files.extend(b for _, _, b in sorted(bad, key=lambda x: x[:2]))  # file order, then output
        if self.spec is None:
            return
        for side, j in (("offline", 1), ("reference", 2)):
            for f in group:
                for name, v in self.spec.image_metrics(f[j]).items():
                    self.per_image[side].setdefault(name, []).append(v)

    def output_results(self):
        """Per output: the totals over every file, judged against its tolerance. An output with
        threshold draws within its budget lists its files as ``draw_flip_files`` (reported); over
        the budget, they join the failed files."""
        res = []
        for t in self.sig.outputs:
            r = self.stats[t.name].result()
            ok, why = metrics.judge(r, **self.tol[t.name])
            flips = self.draw_files[t.name]
            if flips and not ok:
                self.bad_files.extend(flips)
            elif flips:
                why = f"{r['elementwise_fail']} elements beyond tolerance: threshold draws that flipped, within budget"
            res.append(dict(name=t.name, passed=ok, why=why, tolerance=self.tol[t.name], **r))
            if flips and ok:
                res[-1]["draw_flip_files"] = [d["file"] for d in flips]
        return res

    def model_results(self):
        """Per model metric (bits/dim, ELBO, ...): offline mean against reference mean."""
        res = []
        for name in self.per_image["reference"]:
            o = np.concatenate(self.per_image["offline"][name])
            g = np.concatenate(self.per_image["reference"][name])
            d = o - g
            mo, mg = float(np.mean(o)), float(np.mean(g))
            lim = model_tolerance(self.sig, self.spec, name, mg)
            nonfinite = int((~np.isfinite(o)).sum())
            res.append(
                {
                    "name": name,
                    "n_images": int(o.size),
                    "offline_mean": mo,
                    "reference_mean": mg,
                    "diff": mo - mg,
                    "max_abs_diff_per_image": float(np.nanmax(np.abs(d))) if d.size else 0.0,
                    "nonfinite": nonfinite,
                    "tolerance": lim,
                    "passed": nonfinite == 0 and (lim is None or abs(mo - mg) <= lim),
                }
            )
        return res


def table(report):
    w = max([12] + [len(o["name"]) + 2 for o in report["outputs"]])  # whole names, columns aligned
    lines = [
        f"{'output':<{w}}{'cosine':>12}{'max_abs':>11}{'max_rel':>11}{'RED':>11}{'RMSE':>11}"
        f"{'NaN/Inf':>9}{'elem_fail':>10}  result"
    ]
    for o in report["outputs"]:
        lines.append(
            f"{o['name']:<{w}}{o['cosine']:>12.8f}{o['max_abs']:>11.3g}{o['max_rel']:>11.3g}"
            f"{o['red']:>11.3g}{o['rmse']:>11.3g}{o['nan'] + o['inf']:>9d}"
            f"{o['elementwise_fail']:>10d}  {'FAILED ' + o['why'] if not o['passed'] else 'PASSED'}"
            + (f" ({o['why']})" if o["passed"] and o.get("draw_flip_files") else "")
        )
    for m in report["model_metrics"]:
        lim = "reported only" if m["tolerance"] is None else f"tol {m['tolerance']:.3g}"
        lines.append(
            f"{'PASSED' if m['passed'] else 'FAILED'} | mean {m['name']} over {m['n_images']} images: "
            f"offline {m['offline_mean']:.6f} reference {m['reference_mean']:.6f} "
            f"diff {m['diff']:+.3g} ({lim})" + (f", {m['nonfinite']} non-finite" if m["nonfinite"] else "")
        )
    c = report.get("classification")
    if c:
        line = (
            f"{'PASSED' if c['passed'] else 'FAILED'} | top-1 of {c['output']} over {c['n_images']} images: "
            f"agreement {c['top1_agreement']:.4%} ({c['n_disagree']} differ)"
            + ("" if c["judged"] else " (reported only)")
        )
        if "offline_accuracy" in c:
            line += (
                f"; accuracy offline {c['offline_accuracy']:.4%} reference {c['reference_accuracy']:.4%} "
                f"shift {c['accuracy_shift']:+.4%}"
            )
        lines.append(line)
    for kind, items in report["problems"].items():
        for p in items[:10]:
            lines.append(f"FAILED | {kind.replace('_', ' ')} file: {p}")
    for f in report["failed_files"][:10]:
        lines.append(f"FAILED | {f['file']} ({f['output']}): {f['why']}")
    lines += [f"WARNING | {w}" for w in report.get("warnings", [])]
    lines.append(
        f"{'PASSED' if report['passed'] else 'FAILED'} | {report['files_compared']} files, "
        f"{report['n_images']} images | {report['precision_mode']}"
    )
    return "\n".join(lines)


def plot(report, path):
    """Per-image offline vs reference model metric, and the histogram of their differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["_per_image"]["reference"])
    if not names:
        return None
    fig, axes = plt.subplots(2, len(names), figsize=(4.5 * len(names), 8), squeeze=False)
    for j, n in enumerate(names):
        o, g = report["_per_image"]["offline"][n], report["_per_image"]["reference"][n]
        axes[0, j].scatter(g, o, s=3)
        axes[0, j].set(xlabel=f"reference {n}", ylabel=f"offline {n}", title=f"{n} per image")
        d = (o - g)[np.isfinite(o - g)]
        axes[1, j].hist(d, bins=50)
        axes[1, j].set(xlabel=f"offline - reference {n}", ylabel="images")
    fig.tight_layout()
    with fsio.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
    return path


def build_parser():
    p = ArgumentParser(
        description="Compare offline outputs (msame layout) with golden outputs: per-output "
        "metrics and the model's metric (bits/dim, ELBO/IWAE). Exit 0 PASS, 1 FAIL, 2 bad input.",
        epilog="examples:\n  python verify/loss_check.py --signature m/realnvp.json --offline out/om "
        "--reference out/golden --report lc.json\n"
        "  python verify/loss_check.py --signature m/realnvp.allow_fp32_to_fp16.json --offline out/fp16 "
        "--checkpoint-reference --inputs bins/x,bins/u",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--signature", required=True, help="signature of the offline model (.json)")
    p.add_argument(
        "--offline",
        required=True,
        help="msame --output folder holding one run (several: name one, OUT/<T>) or a <T> folder",
    )
    p.add_argument("--reference", help="golden outputs folder (with --checkpoint-reference: where to write them)")
    p.add_argument(
        "--checkpoint-reference",
        action="store_true",
        help="compute the golden outputs from the checkpoint on --inputs first",
    )
    add_input(
        p, "--inputs", dest="inputs", help="input folders, comma separated (msame --input form); finds the manifest"
    )
    p.add_argument("--manifest", help="input manifest (default: found from --inputs)")
    p.add_argument(
        "--report",
        help="JSON report path (default: <offline T folder>/loss_check.json); "
        "a PNG with the same stem is written beside it (unless --no-plot)",
    )
    p.add_argument(
        "--top1",
        metavar="OUTPUT",
        help="classifier: top-1 agreement of this [batch, classes] output, offline vs reference",
    )
    p.add_argument(
        "--labels",
        help="with --top1: one integer label per real image, in manifest order "
        "(export_images.py writes labels.txt): accuracy offline and reference",
    )
    p.add_argument("--atol", nargs="+", help="absolute tolerance: value or name:value ...")
    p.add_argument("--rtol", nargs="+", help="relative tolerance: value or name:value ...")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG (matplotlib takes seconds)")
    add_force(p, help="replace an existing report")
    p.add_argument("--no-progress", action="store_true")
    add_verbosity(p)
    return p


@cli
def main(argv=None):
    a = build_parser().parse_args(argv)
    sig = Signature.load(a.signature)
    if sig.batch_coupling_warning:
        log.warning(sig.batch_coupling_warning)
    inputs = [s.strip() for s in a.inputs.split(",")] if a.inputs else []
    manifest = Manifest.load(a.manifest) if a.manifest else (find_manifest(inputs[0]) if inputs else None)
    if manifest is None:
        log.warning("note: no manifest (--manifest or --inputs): every row counts as a real image")
    else:  # the manifest of these inputs, written for this model: else its padding counts are wrong
        manifest.check_signature(sig)
        if inputs:
            manifest.check_inputs(inputs)
    offline_dir = layout.select_run(a.offline)
    report_path = a.report or os.path.join(offline_dir, "loss_check.json")
    fsio.refuse_overwrite(report_path, a.force, other="--report")
    tmp = None
    if a.checkpoint_reference:
        from verify.reference import make_reference

        if not inputs:
            raise UserError("--checkpoint-reference needs --inputs DIR[,DIR2] (the files msame ran on)")
        ref_out = a.reference or (tmp := tempfile.TemporaryDirectory(prefix="golden_")).name
        reference = make_reference(sig, inputs, ref_out, progress=not (a.no_progress or quiet()))
    elif a.reference:
        reference = a.reference
    else:
        raise UserError("give --reference DIR (golden outputs) or --checkpoint-reference --inputs DIRS")
    try:
        report = check(
            sig,
            a.offline,
            reference,
            manifest,
            a.atol,
            a.rtol,
            progress=not (a.no_progress or quiet()),
            top1=a.top1,
            labels=a.labels,
        )
        print(table(report))
        png = None if a.no_plot else plot(report, os.path.splitext(report_path)[0] + ".png")
        report["plot"] = png
        fsio.write_json(report_path, {k: v for k, v in report.items() if not k.startswith("_")})
        print(f"report: {report_path}" + (f", plot: {png}" if png else ""))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    run(main)
