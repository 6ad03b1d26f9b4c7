"""ais_bench (msame's successor in CANN), on any host: its command line, its output
files and its Python API, over this project's runners.

    python infer/ais_bench.py --model m/cls.onnx --input bins/images --output out --outfmt NPY
    ascend-road ais_bench -m m/cls.onnx -o out --loop 100          # speed test on zero inputs
    PYTHONPATH=compat python -m ais_bench --model m/cls.onnx ...     # `python3 -m ais_bench` as typed on Ascend

The model is an .onnx (ONNX Runtime), a frozen .pb (TensorFlow) or, on an Ascend host,
an .om (each inference through the real msame: prefer the real ais_bench there). Flags,
input grouping and output files follow ais_bench's source (Ascend/tools
ais-bench_workload/tool/ais_bench: __main__.py, io_oprations.py, utils.py, summary.py):

  * --input: .bin/.npy files or folders (one per model input; natural sort of .bin/.npy in
    each); files smaller than the model input are concatenated, tensor size / file size of
    them per inference (the last group padded with its first file, whose outputs are not
    saved), and each output is split back along --output_batchsize_axis;
  * without --input: one inference on --pure_data_type zero|random bytes, outputs named
    pure_infer_data_<i>; without --output nothing is saved (no folder, no summary);
  * OUT/%Y_%m_%d-%H_%M_%S/ (or OUT/--output_dirname/), files <input name up to its first
    '.'>_<i>.bin|npy|txt, TXT in ais_bench's format, OUT/<T>_summary.json, the console's
    "Performance Summary" (infer/ais_layout.py);
  * --warmup_count inferences first (not timed, not saved), each inference runs --loop
    times, every run's time in the summary (here the runner's wall time per inference:
    there is no device, so H2D/D2H latencies are empty, count 0);
  * --device 0,1: one process per device, the input files shared out as ais_bench does,
    outputs in OUT/<T>/device<N>/, then each process's throughput and their sum;
  * --dymBatch/--dymHW/--dymDims choose a gear of a model whose card records dynamic gears
    (infer/gears.py); --dymShape gives the free dims of a bare .onnx; the auto_set modes set
    them per inference from each .npy file's shape;
  * --profiler/--dump write OUT/acl.json and make OUT/profiler or OUT/dump as ais_bench
    does; with no NPU they stay empty (one [WARN] line says so).
Different on purpose: a user error is one line `error: ...` and exit 2 (ais_bench raises a
RuntimeError with a traceback); --run_mode and --acl_json_path are accepted and change
nothing here (there is no device memory to arrange, no ACL to configure).

The Python API: ``InferSession`` below, as ais_bench.infer.interface's (also importable as
``ais_bench.infer.interface`` with ``compat/`` on PYTHONPATH).
"""

import argparse
import enum
import json
import math
import os
import random
import re
import subprocess
import sys
import time

if __package__ in (None, ""):  # `python stage/tool.py` without the package installed: the repo root first
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from common.cli import ArgumentParser  # noqa: E402
from common.errors import UserError, cli, run  # noqa: E402
from infer import ais_layout  # noqa: E402

PADDING = "padding_infer_fake_file"
ACL_FORMAT = {"NCHW": 0, "NHWC": 1, "ND": 2}


class dtype(enum.Enum):  # noqa: N801  (aclruntime's enum is spelled so: str(desc.datatype) == "dtype.float32")
    float32 = 0
    float16 = 1
    int8 = 2
    int32 = 3
    uint8 = 4
    int16 = 6
    uint16 = 7
    uint32 = 8
    int64 = 9
    uint64 = 10
    float64 = 11
    bool = 12


class TensorDesc:
    """aclruntime's tensor description: ``size`` the buffer (the largest gear), ``realsize``
    the bytes at the current gear."""

    def __init__(self, t, buffer_nbytes):
        self.name, self.shape = t.name, list(t.shape)
        self.datatype = dtype[t.dtype]
        self.format = ACL_FORMAT.get(t.layout, 2)
        self.size, self.realsize = buffer_nbytes, t.nbytes

    def __repr__(self):
        return f"<TensorDesc {self.name} {self.datatype} {self.shape} size={self.size} realsize={self.realsize}>"


class _Sumary:
    def __init__(self, times):
        self.exec_time_list = list(times)


class InferSession:
    """ais_bench.infer.interface.InferSession on this project's runners. ``device_id`` is
    the NPU's (an .om's msame gets it); the portable backends run on the CPU. ``run`` and
    ``infer`` return numpy arrays (there are no device tensors here)."""

    def __init__(self, device_id: int, model_path: str, acl_json_path: str = None, debug: bool = False, loop: int = 1):
        if acl_json_path is not None and not os.path.isfile(acl_json_path):
            raise UserError(f"{acl_json_path}: acl json file not found (acl_json_path)")
        self.device_id, self.model_path, self.loop, self.debug = device_id, model_path, int(loop), debug
        self._dym, self._runners, self._custom, self._times = {}, {}, None, []
        try:
            self._runner()  # load now, as ais_bench does: a wrong model fails here
        except UserError:
            if not self._card_gears():  # a dims model loads, and runs once set_dynamic_dims chose a gear
                raise

    def _runner(self, quiet=False):
        from infer.runner import open_runner

        key = tuple(sorted(self._dym.items()))
        if key not in self._runners:
            device = str(self.device_id) if self.model_path.endswith(".om") else "cpu"
            try:
                self._runners[key] = open_runner(self.model_path, device=device, **self._dym).activate()
            except UserError:
                if quiet:
                    return None
                raise
        return self._runners[key]

    def _card_gears(self):
        from freeze.signature import find_beside
        from infer import gears

        try:
            return gears.dynamic(find_beside(self.model_path))
        except UserError:
            return None

    def _signature(self):
        """The signature at the current gear; a dims model before set_dynamic_dims: its card's."""
        r = self._runner(quiet=True)
        if r is not None:
            return r.signature
        from freeze.signature import find_beside

        return find_beside(self.model_path)

    def _descs(self, which):
        from infer import gears

        sig = self._signature()
        ts = sig.inputs if which == "in" else sig.outputs
        d = gears.dynamic(sig) or {}
        buf = d.get("buffer_nbytes") if which == "out" else None
        return [TensorDesc(t, buf[i] if buf else t.nbytes) for i, t in enumerate(ts)]

    def get_inputs(self):
        self.intensors_desc = self._descs("in")
        return self.intensors_desc

    def get_outputs(self):
        self.outtensors_desc = self._descs("out")
        return self.outtensors_desc

    def set_loop_count(self, loop):
        self.loop = int(loop)

    def set_staticbatch(self):
        self._dym = {}

    def set_dynamic_batchsize(self, dymBatch):  # noqa: N803  (ais_bench's argument name)
        self._dym = {"dym_batch": str(dymBatch)}

    def set_dynamic_hw(self, w: int, h: int):
        """ais_bench's __main__ passes --dymHW's two numbers in order: the gear "h,w" of ATC's
        --dynamic_image_size, whatever the parameter names say."""
        self._dym = {"dym_hw": f"{int(w)},{int(h)}"}

    def set_dynamic_dims(self, dym_dims: str):
        self._dym = {"dym_dims": dym_dims}

    def set_dynamic_shape(self, dym_shape: str):
        self._dym = {"input_shape": dym_shape}

    def set_custom_outsize(self, custom_sizes):
        self._custom = [int(n) for n in custom_sizes]

    def run(self, feeds, out_array=False):
        r = self._runner()
        sig = r.signature
        if len(feeds) != len(sig.inputs):
            raise UserError(f"{self.model_path}: the model has {len(sig.inputs)} inputs, {len(feeds)} fed")
        feed = {t.name: _as_input(a, t, self.model_path) for a, t in zip(feeds, sig.inputs)}
        outs = None
        for _ in range(self.loop):
            outs = r.infer(feed, check=False)
            self._times.append(r.inference_time * 1e3)
        if self._custom is not None:
            if len(self._custom) != len(outs):
                raise UserError(f"outputSize {self._custom}: the model has {len(outs)} outputs")
            for t, a, n in zip(sig.outputs, outs, self._custom):
                if a.nbytes > n:
                    raise UserError(f"outputSize: output {t.name!r} needs {a.nbytes} bytes, its buffer has {n}")
        return outs

    def infer(self, feeds, mode="static", custom_sizes=100000):
        arrays = [np.asarray(f) for f in feeds]
        if mode in ("dymshape", "dymdims"):
            names = [d.name for d in self.get_inputs()]
            text = ";".join(f"{n}:{','.join(map(str, a.shape))}" for n, a in zip(names, arrays))
            if mode == "dymshape":
                self.set_dynamic_shape(text)
                n_out = len(self._signature().outputs)
                sizes = [custom_sizes] * n_out if isinstance(custom_sizes, int) else custom_sizes
                if not isinstance(sizes, list):
                    raise UserError(f"custom_sizes: {custom_sizes!r} type {type(custom_sizes).__name__} invalid")
                self.set_custom_outsize(sizes)
            else:
                self.set_dynamic_dims(text)
        elif mode != "static":
            raise UserError(f"mode {mode!r}: expected static, dymshape or dymdims")
        return self.run(arrays, out_array=True)

    def reset_sumaryinfo(self):
        self._times = []

    def sumary(self):
        return _Sumary(self._times)

    def finalize(self):
        for r in self._runners.values():
            r.deactivate()
        self._runners = {}


def _as_input(a, t, model):
    """A fed array as the model input: its bytes, as the device reads them (ais_bench
    hands the buffer over without a dtype); a wrong byte count is an error."""
    a = np.ascontiguousarray(a)
    if a.dtype == t.np_dtype and list(a.shape) == t.shape:
        return a
    if a.nbytes != t.nbytes:
        raise UserError(
            f"{model}: input {t.name!r} expects {t.nbytes} bytes ({t.shape} {t.dtype}), "
            f"got {a.nbytes} ({list(a.shape)} {a.dtype})"
        )
    return np.frombuffer(a.tobytes(), t.np_dtype).reshape(t.shape)


# --- the command line ----------------------------------------------------------------


def _bool(v):
    if isinstance(v, bool):
        return v
    if v.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if v.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError("Boolean value expected true, 1, false, 0 with case insensitive.")


def _int(low):
    def check(v):
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{v} is not an integer") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"{v} is an invalid {'positive' if low else 'nonnegative'} int value")
        return n

    return check


def _devices(v):
    try:
        ids = [int(x) for x in str(v).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"device:{v} is invalid: expected N or N,M,...") from None
    if any(not 0 <= i <= 255 for i in ids):
        raise argparse.ArgumentTypeError(f"device:{v} is invalid. valid value range is [0, 255]")
    return ids if "," in str(v) else ids[0]


def parser():
    ap = ArgumentParser(prog="ais_bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", "-m", required=True, help="the model: .onnx | .pb | .om")
    ap.add_argument("--input", "-i", default=None, help="input files or folders, comma separated")
    ap.add_argument("--output", "-o", default=None, help="outputs go to OUTPUT/<date>/ (none: nothing saved)")
    ap.add_argument("--output_dirname", default=None, help="OUTPUT/<this>/ instead of the date")
    ap.add_argument("--outfmt", default="BIN", choices=["NPY", "BIN", "TXT"])
    ap.add_argument("--loop", "-l", type=_int(1), default=1, help="runs per inference")
    ap.add_argument("--debug", type=_bool, default=False)
    ap.add_argument("--device", "-d", type=_devices, default=0, help="NPU id, or ids 0,1 (one process each)")
    ap.add_argument("--dymBatch", type=int, default=0)
    ap.add_argument("--dymHW", default=None)
    ap.add_argument("--dymDims", default=None)
    ap.add_argument("--dymShape", default=None)
    ap.add_argument("--outputSize", default=None)
    ap.add_argument("--auto_set_dymshape_mode", type=_bool, default=False)
    ap.add_argument("--auto_set_dymdims_mode", type=_bool, default=False)
    ap.add_argument("--batchsize", type=_int(1), default=None)
    ap.add_argument("--pure_data_type", default="zero", choices=["zero", "random"])
    ap.add_argument("--profiler", type=_bool, default=False)
    ap.add_argument("--dump", type=_bool, default=False)
    ap.add_argument("--acl_json_path", default=None)
    ap.add_argument("--output_batchsize_axis", type=_int(0), default=0)
    ap.add_argument("--run_mode", default="array", choices=["array", "files", "tensor", "full"])
    ap.add_argument("--display_all_summary", type=_bool, default=False)
    ap.add_argument("--warmup_count", type=_int(0), default=1)
    return ap


def _check(a):
    if a.profiler and a.dump:
        raise UserError("parameter --profiler cannot be true at the same time as parameter --dump, please check them!")
    if (a.profiler or a.dump) and a.output is None:
        raise UserError("when dump or profiler, miss output path, please check them!")
    if a.output is None and a.output_dirname is not None:
        raise UserError(
            "parameter --output_dirname cann't be used alone. Please use it together with the parameter --output!"
        )
    a.no_combine = a.auto_set_dymshape_mode or a.auto_set_dymdims_mode
    if a.profiler and a.warmup_count and a.input is not None:
        print("[INFO] profiler mode with input change warmup_count to 0")
        a.warmup_count = 0


def _acl_json(a):
    """miscellaneous.get_acl_json_path: OUT/acl.json for --profiler / --dump, and its folder."""
    if a.acl_json_path is not None or not (a.profiler or a.dump):
        return a.acl_json_path
    from common import fsio

    what = "profiler" if a.profiler else "dump"
    sub = os.path.join(a.output, what)
    fsio.make_dirs(sub)
    if a.profiler:
        cfg = {"profiler": {"aic_metrics": "", "aicpu": "on", "output": sub, "switch": "on"}}
    else:
        cfg = {"dump": {"dump_list": [{"model_name": a.model.split("/")[-1].split(".")[0]}], "dump_mode": "all"}}
        cfg["dump"]["dump_path"] = sub
    path = os.path.join(a.output, "acl.json")
    fsio.write_text(path, json.dumps(cfg, indent=4, separators=(", ", ": "), sort_keys=True))
    print(f"[WARN] --{what}: no NPU here, nothing to {what}; {sub} and {path} are made as ais_bench makes them")
    return path


def natural_sort(names):
    def key(s):
        return [int(c) if c.isdigit() else c.lower() for c in re.split("([0-9]+)", s)]

    return sorted(names, key=key)


def _folder_files(d):
    if not os.path.isdir(d):
        raise UserError(f"{d}: input folder not found")
    files = [os.path.join(d, f) for f in os.listdir(d) if f.endswith((".npy", ".NPY", ".bin", ".BIN"))]
    if not files:
        raise UserError(f"{d} of input args not find valid file,valid file format:[*.npy *.NPY *.bin *.BIN]")
    return natural_sort(sorted(files))


def _split(items, n, pad):
    for x in range(0, len(items), n):
        chunk = items[x : x + n]
        yield chunk + [pad] * (n - len(chunk))


def _file_size(path):
    try:
        return np.load(path, mmap_mode="r").nbytes if path.lower().endswith(".npy") else os.path.getsize(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read the input file ({e})") from None


def plan(inputs, descs, no_combine=False):
    """io_oprations.create_infileslist_from_inputs_list: per inference, per model input,
    the files it concatenates (PADDING fills the last group)."""
    n_in = len(descs)
    if os.path.isfile(inputs[0]):
        for f in inputs:
            if not os.path.isfile(f):
                raise UserError(f"--input {','.join(inputs)}: {f} is not a file (files, or folders, not both)")
        fileslist = list(_split(inputs, len(inputs) // n_in, PADDING)) if len(inputs) >= n_in else []
    elif os.path.isdir(inputs[0]):
        if len(inputs) != n_in:
            raise UserError(f"Invalid args. args input dir num:{len(inputs)} not equal to model inputs num:{n_in}")
        fileslist = [_folder_files(d) for d in inputs]
    else:
        raise UserError(f"Invalid args. {inputs[0]} of --input is invalid (not a file or a folder)")
    if len(fileslist) != n_in:
        raise UserError(
            f"--input {','.join(inputs)}: the model has {n_in} inputs, {len(inputs)} file(s) given; give the "
            "files of input 0, then of input 1, ... (an equal number each), or one folder per input"
        )
    filesize, tensorsize = _file_size(fileslist[0][0]), descs[0].realsize
    if no_combine:
        k = 1
    elif filesize == 0 or tensorsize % filesize:
        raise UserError(f"{fileslist[0][0]}: arg0 tensorsize: {tensorsize} filesize: {filesize} not match")
    else:
        k = tensorsize // filesize
    groups = [list(_split(fl, k, PADDING)) for fl in fileslist]
    runs = math.ceil(len(fileslist[0]) / k)
    if any(len(g) < runs for g in groups):
        raise UserError(f"--input: input 0 has {len(fileslist[0])} files, another input fewer")
    plan = [[groups[j][i] for j in range(n_in)] for i in range(runs)]
    for infiles in plan if not no_combine else ():  # every size checked before anything runs or is written
        for files, d in zip(infiles, descs):
            n = sum(_file_size(files[0] if f == PADDING else f) for f in files)
            if n != d.realsize:
                raise UserError(
                    f"{files[0]}: input {d.name!r} expects {d.realsize} bytes ({d.shape} {d.datatype.name}) "
                    f"per inference; {len(files)} file(s) give {n}"
                )
    return plan, k


def _read(files, desc, pure_type, keep_shape=False):
    """io_oprations.get_narray_from_files_list: the files' bytes concatenated (a padding
    entry repeats the group's first file; pure_infer_data is zero or random bytes)."""
    parts = []
    for f in files:
        if f == ais_layout.PURE:
            if pure_type == "random":
                parts.append(np.frombuffer(bytes(random.randrange(256) for _ in range(desc.realsize)), np.uint8))
            else:
                parts.append(np.zeros(desc.realsize, np.uint8))
            continue
        f = files[0] if f == PADDING else f
        try:
            parts.append(np.load(f, allow_pickle=False) if f.lower().endswith(".npy") else np.fromfile(f, np.uint8))
        except (OSError, ValueError) as e:
            raise UserError(f"{f}: cannot read the input file ({e})") from None
    if keep_shape and len(parts) == 1:
        return parts[0]
    data = b"".join(np.ascontiguousarray(p).tobytes() for p in parts)
    if len(data) != desc.realsize:
        raise UserError(
            f"{files[0]}: ndata size:{len(data)} not match {desc.realsize} (input {desc.name!r} {desc.shape} "
            f"{desc.datatype.name})"
        )
    return np.frombuffer(data, desc.datatype.name).reshape(desc.shape)


def _set_auto_dims(session, a, arrays):
    text = ";".join(f"{d.name}:{','.join(map(str, x.shape))}" for d, x in zip(session.get_inputs(), arrays))
    (session.set_dynamic_shape if a.auto_set_dymshape_mode else session.set_dynamic_dims)(text)


def _session(a):
    s = InferSession(a.device, a.model, _acl_json(a), a.debug, a.loop)
    if a.dymBatch:
        s.set_dynamic_batchsize(a.dymBatch)
    elif a.dymHW is not None:
        hw = a.dymHW.split(",")
        if len(hw) != 2:
            raise UserError(f"--dymHW {a.dymHW!r}: expected 'h,w'")
        s.set_dynamic_hw(int(hw[0]), int(hw[1]))
    elif a.dymDims is not None:
        s.set_dynamic_dims(a.dymDims)
    elif a.dymShape is not None:
        s.set_dynamic_shape(a.dymShape)
    if a.outputSize is not None:
        s.set_custom_outsize(int(n) for n in a.outputSize.split(","))
    return s


def _batchsize(a, descs):
    """miscellaneous.get_batchsize: --batchsize, else --dymBatch, else the first dim of
    input 0 in --dymDims/--dymShape, else the model's."""
    if a.batchsize is not None:
        return a.batchsize
    if a.dymBatch:
        return a.dymBatch
    b = descs[0].shape[0] if descs[0].shape else 1
    for elem in (a.dymDims or a.dymShape or "").split(";"):
        name, _, shape = elem.rpartition(":")
        if name == descs[0].name and shape:
            b = int(shape.split(",")[0])
    return b


def _save(outputs, prefix, infiles, a, index, k, filesinfo):
    """io_oprations.save_tensors_to_file: each output split in k along the axis, one file
    per real sample, named after its input 0 file."""
    per_sample = [list(x) for x in zip(*infiles)]  # [sample][input]
    for i, out in enumerate(outputs):
        nd = np.asarray(out)
        axis = a.output_batchsize_axis
        if axis >= nd.ndim:
            raise UserError(f"--output_batchsize_axis {axis}: output {i} has shape {list(nd.shape)}")
        if k != 1 and nd.shape[axis] % k:
            raise UserError(f"output {i} shape {list(nd.shape)} cannot be split in {k} along axis {axis}")
        for j, sub in enumerate(np.array_split(nd, k, axis)):
            if per_sample[j][0] == PADDING:
                continue
            sample = index * k + j
            path = os.path.join(prefix, ais_layout.output_name(ais_layout.stem_of(per_sample[j][0]), i, a.outfmt))
            info = filesinfo.setdefault(sample, {"infiles": [], "outfiles": []})
            info["infiles"] = info["infiles"] or list(per_sample[j])
            info["outfiles"].append(path)
            ais_layout.write_output(path, sub)


def bench(a):
    """One ais_bench process (__main__.main): warm-up, the inferences, the outputs, the summary."""
    session = _session(a)
    if a.debug:
        for what, ds in (("input", session.get_inputs()), ("output", session.get_outputs())):
            for d in ds:
                print(f"[DEBUG] {what} {d.name}: {d.datatype} {d.shape} size {d.size} realsize {d.realsize}")
    descs = session.get_inputs()
    if a.batchsize is None:
        print(f"[INFO] try get model batchsize:{_batchsize(a, descs)}")
    inputs = [] if a.input is None else [s for s in a.input.split(",")]
    if inputs:
        runs, k = plan(inputs, descs, a.no_combine)
        first = runs[0][0][0]
        print(
            f"[INFO] get filesperbatch files0 size:{_file_size(first)} tensor0size:{descs[0].realsize} "
            f"filesperbatch:{k} runcount:{len(runs)}"
        )
    else:
        runs, k = [[[ais_layout.PURE] for _ in descs]], 1
    for i, d in enumerate(session.get_outputs()):
        if a.output_batchsize_axis >= len(d.shape):
            raise UserError(f"--output_batchsize_axis {a.output_batchsize_axis}: output {i} has shape {d.shape}")
    prefix = None
    if a.output is not None:
        prefix = ais_layout.run_dir(a.output, a.output_dirname)
        print(f"[INFO] output path:{prefix}")
    batches = []

    def feeds(infiles):
        if a.no_combine:
            arrays = [_read(f, d, a.pure_data_type, keep_shape=True) for f, d in zip(infiles, descs)]
            _set_auto_dims(session, a, arrays)
            batches.append(arrays[0].shape[0] if arrays[0].ndim else 1)
            return arrays
        return [_read(f, d, a.pure_data_type) for f, d in zip(infiles, session.get_inputs())]

    loop = session.loop
    session.set_loop_count(1)
    for _ in range(a.warmup_count):
        session.run(feeds(runs[0]))
    session.set_loop_count(loop)
    session.reset_sumaryinfo()
    batches.clear()
    print(f"[INFO] warm up {a.warmup_count} done")
    filesinfo = {}
    t0 = time.time()
    for i, infiles in enumerate(runs):
        outs = session.run(feeds(infiles))
        if prefix is not None:
            _save(outs, prefix, infiles, a, i, k, filesinfo)
    t1 = time.time()
    batch = sum(batches) / len(batches) if batches else _batchsize(a, descs)
    s = ais_layout.make_summary(filesinfo, a.argv, session.sumary().exec_time_list, batch)
    print("\n".join(ais_layout.summary_lines(s, batch, a.display_all_summary)))
    if prefix is not None:
        ais_layout.write_summary(prefix, s)
    session.finalize()
    return s, t0, t1


def _drop_flags(argv, flags):
    out, skip = [], False
    for tok in argv:
        if skip:
            skip = False
            continue
        if tok in flags:
            skip = True
            continue
        if any(tok.startswith(f + "=") for f in flags if f.startswith("--")):
            continue
        out.append(tok)
    return out


def _split_inputs(a, n_jobs):
    """__main__.split_inputs_new: every input file (folders listed), cut into one chunk per
    model input, each chunk dealt in n_jobs consecutive parts."""
    if a.input is None:
        return None
    inputs = a.input.split(",")
    if os.path.isfile(inputs[0]):
        files = inputs
    elif os.path.isdir(inputs[0]):
        files = [f for d in inputs for f in _folder_files(d)]
    else:
        raise UserError(f"error {inputs[0]} not file or dir")
    a0 = argparse.Namespace(**vars(a))
    a0.device, a0.acl_json_path, a0.profiler, a0.dump = 0, None, False, False
    s = _session(a0)
    n_in = len(s.get_inputs())
    s.finalize()
    per = [[] for _ in range(n_jobs)]
    for chunk in _split(files, math.ceil(len(files) / n_in), None):
        for j, part in enumerate(_split(chunk, math.ceil(len(chunk) / n_jobs), None)):
            per[j].extend(part)
    return [",".join(f for f in p if f) for p in per]


def multidevice(a, argv):
    """One process per device (ais_bench's multidevice_run), each with its share of the inputs."""
    devices = a.device
    print(f"[INFO] multidevice:{devices} run begin")
    splits = _split_inputs(a, len(devices))
    base = _drop_flags(argv, {"--device", "-d", "--input", "-i", "--output_dirname"})
    stamp = ais_layout.timestamp()
    procs = []
    for i, dev in enumerate(devices):
        sub = os.path.join(a.output_dirname if a.output_dirname is not None else stamp, f"device{dev}")
        cmd = [sys.executable, os.path.abspath(__file__), *base, "--device", str(dev)]
        cmd += ["--input", splits[i]] if splits is not None else []
        cmd += ["--output_dirname", sub] if a.output is not None else []
        procs.append((i, dev, time.time(), subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))
    results, failed = [], 0
    for i, dev, start, p in procs:
        out, _ = p.communicate()
        sys.stdout.write(out)
        m = re.findall(r"^\[INFO\] throughput .*: (\S+)$", out, re.M)
        if p.returncode or not m:
            failed += 1
            continue
        results.append((i, dev, float(m[-1]), start, time.time()))
    print(f"[INFO] multidevice run end qsize:{2 * len(results)} result:{1 if failed else 0}")
    for i, dev, thr, start, end in results:
        print(f"i:{i} device_{dev} throughput:{thr} start_time:{start} end_time:{end}")
    print(f"[INFO] summary throughput:{sum(r[2] for r in results)}")
    return 1 if failed else 0


@cli
def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parser().parse_args(argv)
    a.argv = [sys.argv[0], *argv]  # the summary's "args": the command line, as ais_bench's sys.argv
    _check(a)
    if isinstance(a.device, list):
        return multidevice(a, argv)
    bench(a)
    return 0


if __name__ == "__main__":
    run(main)
