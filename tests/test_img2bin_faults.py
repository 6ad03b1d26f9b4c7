"""Faults of the data tools and the converter's inputs: each is exit 2 with one line
``error: ...`` saying what was expected and found, and nothing written before is lost
or changed."""

import json
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from common.errors import UserError
from convert import to_onnx
from data_tools import binfiles, datasets, fetch_data, image_tool, img2bin
from freeze.signature import Signature, Tensor


def _img(path, h, w, seed=0, value=None):
    img = (
        np.random.RandomState(seed).randint(0, 256, (h, w, 3))
        if value is None
        else np.broadcast_to(np.uint8(value), (h, w, 3))
    ).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return img


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _snapshot(d):
    """{relative path: bytes} of every file under d (hidden ones too)."""
    out = {}
    for root, _, files in os.walk(d):
        for n in files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, d)] = open(p, "rb").read()
    return out


@pytest.fixture
def pics(tmp_path):
    src = tmp_path / "pics"
    src.mkdir()
    for i in range(3):
        _img(src / f"{i}.png", 4, 4, seed=i)
    out = tmp_path / "out"
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out)]) == 0
    return src, out, _snapshot(out)


def _user_sig(path, shape, batch=2, dtype="float32", layout="NHWC", names=("images",)):
    s = Signature(
        "mine",
        "forward",
        batch,
        [Tensor(n, n + ":0", [batch] + shape, dtype, layout) for n in names],
        [Tensor("logits", "logits:0", [batch, 10])],
        source={"kind": "pb"},
    )
    s.save(path)
    return str(path)


# --- image mode: overwrite, all or nothing, signals, stale staging folders -------------------


def test_existing_bins_are_kept_without_force(pics, capsys):
    src, out, before = pics
    _img(src / "0.png", 4, 4, seed=9)  # new content for an existing output
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "0.bin: already exists" in line and "--force" in line
    assert _snapshot(out) == before
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out), "--force"]) == 0
    assert _snapshot(out)["0.bin"] != before["0.bin"] and _snapshot(out)["1.bin"] == before["1.bin"]


def test_a_bad_image_leaves_the_previous_state(pics, capsys):
    src, out, before = pics
    _img(src / "0.png", 4, 4, seed=9)
    (src / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)  # corrupt, sorted last
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out), "--force"]) == 2
    line = _one_error_line(capsys)
    assert "2.png: not a readable image" in line
    assert _snapshot(out) == before  # 0.bin not replaced although it came first; no staging left


def test_sigterm_removes_the_staging_folder(tmp_path, repo_root):
    src = tmp_path / "pics"
    src.mkdir()
    for i in range(40):
        _img(src / f"{i:02d}.png", 4, 4, seed=i)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.bin").write_bytes(b"old")
    code = (
        "import sys, time\nfrom data_tools import image_tool, img2bin\nconv = image_tool.convert_image\n"
        "def slow(*a, **k):\n    time.sleep(0.05)\n    return conv(*a, **k)\n"
        "image_tool.convert_image = slow\nsys.exit(img2bin.main(sys.argv[1:]))"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code, "-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out)],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not any(n.startswith(".img2bin-") for n in os.listdir(out)) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # some images staged
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1].startswith("error: interrupted by SIGTERM")
    assert os.listdir(out) == ["keep.bin"] and (out / "keep.bin").read_bytes() == b"old"


def test_a_dead_runs_staging_folder_is_removed(pics, capsys):
    src, out, before = pics
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = out / f".img2bin-{dead.pid}-abc"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    mine = out / f".img2bin-{os.getpid()}-live"  # a live process's folder is left alone
    mine.mkdir()
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out), "--force"]) == 0
    assert not stale.exists() and mine.exists()
    assert "left by a run that died" in capsys.readouterr().err


def test_unwritable_output_is_one_line(pics, tmp_path, capsys):
    src, _, _ = pics
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(blocker / "o")]) == 2
    line = _one_error_line(capsys)
    assert str(blocker) in line and "cannot write" in line
    assert blocker.read_text() == "not a folder"


# --- NV12 ------------------------------------------------------------------------------------


def test_nv12_wraps_u_and_v_like_the_real_tool(tmp_path):
    _img(tmp_path / "blue.png", 2, 2, value=(255, 0, 0))  # BGR pure blue
    y = image_tool.convert_image(str(tmp_path / "blue.png"), 2, 2, "YUV")
    # Y = 29*255 >> 8 = 28; U = (131*255 >> 8) + 128 = 258 -> 2 (uint8 wrap); V = (-21*255 >> 8) + 128 = 107
    assert y.tolist() == [[28, 28], [28, 28], [2, 107]]
    _img(tmp_path / "red.png", 2, 2, value=(0, 0, 255))
    y = image_tool.convert_image(str(tmp_path / "red.png"), 2, 2, "YUV")
    # V = (131*255 >> 8) + 128 = 258 -> 2; U = (-44*255 >> 8) + 128 = 84
    assert y[2].tolist() == [84, 2]


# --- usage errors: one line, exit 2, earlier output untouched ---------------------------------


@pytest.mark.parametrize(
    "extra,words",
    [
        (["-m", "[1,2,3,4,5]"], ["-m", "expected 3 value", "found 5"]),
        (["-c", "[1,NaN,1]"], ["-c", "finite"]),
        (["-m", "[Infinity,0,0]"], ["-m", "finite"]),
        (["-f", "GRAY", "-m", "[0,0]"], ["-m", "expected 1 value", "found 2"]),
        (["--seed", "-1"], ["--seed", ">= 0", "-1"]),
        (["-w", "100000"], ["16384", "-w 100000"]),
        (["-h", "-3"], ["greater than 0", "-h -3"]),
        (["-f", "CMYK"], ["CMYK", "invalid choice"]),
        (["--bogus"], ["--bogus"]),
        (["-f", "YUV", "-m", "[1,1,1]"], ["-m", "YUV"]),
    ],
)
def test_usage_errors(pics, capsys, extra, words):
    src, out, before = pics
    args = ["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out), "--force"]
    for i in range(0, len(extra), 2):  # a flag given twice: the later one counts in argparse
        args += extra[i : i + 2]
    assert img2bin.main(args) == 2
    line = _one_error_line(capsys)
    assert all(w in line for w in words), line
    assert _snapshot(out) == before


def test_image_that_letterboxes_to_zero_pixels(tmp_path, capsys):
    src = tmp_path / "thin"
    src.mkdir()
    _img(src / "thin.png", 2, 300)  # 300 wide, 2 high: 32/300 * 2 -> 0 rows
    out = tmp_path / "out"
    assert img2bin.main(["-i", str(src), "-w", "32", "-h", "32", "-t", "float32", "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "thin.png" in line and "300x2" in line and "32x0" in line
    assert not out.exists() or os.listdir(out) == []


def test_corrupt_image_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    assert (
        img2bin.main(["-i", str(tmp_path / "bad.jpg"), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(tmp_path / "o")])
        == 2
    )
    assert "bad.jpg: not a readable image" in _one_error_line(capsys)


# --- image mode with --signature: the flags must give the model's rows -----------------------


def test_layout_mismatch_names_both_shapes(pics, tmp_path, capsys):
    src, _, _ = pics
    sig = _user_sig(tmp_path / "mine.json", [4, 4, 3])  # NHWC
    out = tmp_path / "set"
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-a", "NCHW", "--signature", sig, "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "[3, 4, 4]" in line and "[4, 4, 3]" in line and "NHWC" in line
    assert not out.exists() or os.listdir(out) == []


def test_several_inputs_of_a_user_model(pics, tmp_path, capsys):
    src, _, _ = pics
    sig = _user_sig(tmp_path / "two.json", [4, 4, 3], names=("a", "b"))
    assert (
        img2bin.main(
            ["-i", str(src), "-w", "4", "-h", "4", "-a", "NHWC", "--signature", sig, "-o", str(tmp_path / "s")]
        )
        == 2
    )
    assert "['a', 'b']" in (line := _one_error_line(capsys)) and "--input_name" in line
    assert (
        img2bin.main(
            [
                "-i",
                str(src),
                "-w",
                "4",
                "-h",
                "4",
                "-a",
                "NHWC",
                "--signature",
                sig,
                "--input_name",
                "a",
                "-o",
                str(tmp_path / "s"),
            ]
        )
        == 2
    )
    line = _one_error_line(capsys)
    assert "'b'" in line and "cannot fill it" in line
    assert not (tmp_path / "s").exists() or os.listdir(tmp_path / "s") == []


def test_dtype_flag_must_match_the_signature(pics, tmp_path, capsys):
    src, _, _ = pics
    sig = _user_sig(tmp_path / "mine.json", [4, 4, 3])
    assert (
        img2bin.main(
            [
                "-i",
                str(src),
                "-w",
                "4",
                "-h",
                "4",
                "-a",
                "NHWC",
                "-t",
                "uint8",
                "--signature",
                sig,
                "-o",
                str(tmp_path / "s"),
            ]
        )
        == 2
    )
    line = _one_error_line(capsys)
    assert "-t uint8" in line and "float32" in line


def test_dataset_mode_needs_a_builtin_model(tmp_path, capsys, fake_cifar):
    sig = _user_sig(tmp_path / "mine.json", [32, 32, 3])
    assert (
        img2bin.main(["--dataset", "cifar10", "--signature", sig, "--data-dir", fake_cifar, "-o", str(tmp_path / "s")])
        == 2
    )
    line = _one_error_line(capsys)
    assert "not a built-in model" in line and "--signature" in line and "-i IMAGES" in line
    rn = Signature(
        "realnvp",
        "forward",
        2,
        [Tensor("x", "x:0", [2, 32, 32, 3], layout="NHWC"), Tensor("u", "u:0", [2, 32, 32, 3])],
        [Tensor("z", "z:0", [2])],
    )
    rn.save(tmp_path / "rn.json")
    assert (
        img2bin.main(
            ["--dataset", "binarized_mnist", "--signature", str(tmp_path / "rn.json"), "-o", str(tmp_path / "s")]
        )
        == 2
    )
    line = _one_error_line(capsys)
    assert "cifar10" in line and "binarized_mnist" in line
    assert not (tmp_path / "s").exists()


# --- data files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content,words",
    [
        (b"\x00\x9f\x92\x96" * 100, ["binarized_mnist_test.amat:1", "expected text", "0x9f"]),
        (b"0 1 x" + b" 0" * 781 + b"\n", ["binarized_mnist_test.amat:1", "expected numbers", "'x'"]),
        (b"", ["binarized_mnist_test.amat", "empty"]),
        (b" ".join([b"nan"] * 784) + b"\n", ["binarized_mnist_test.amat", "expected 0 or 1", "nan"]),
    ],
)
def test_amat_garbage(tmp_path, content, words):
    root = tmp_path / "binarized_mnist"
    root.mkdir()
    (root / "binarized_mnist_test.amat").write_bytes(content)
    with pytest.raises(UserError) as e:
        datasets.load_binarized_mnist(tmp_path, "test")
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)


def test_truncated_tarball(tmp_path, capsys):
    from tests.test_fetch_data import _fake_cifar_tgz

    tgz = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar_tgz(tgz, n=200)
    data = tgz.read_bytes()
    tgz.write_bytes(data[: len(data) // 2])
    out = tmp_path / "data"
    out.mkdir()
    (out / "other").write_text("mine")
    assert fetch_data.main(["--data-dir", str(out), "--from", str(tgz)]) == 2
    line = _one_error_line(capsys)
    assert str(tgz) in line and "not a complete" in line
    assert sorted(os.listdir(out)) == ["other"] and (out / "other").read_text() == "mine"


def _manifest(tmp_path, **change):
    sig = Signature("mine", "forward", 4, [Tensor("x", "x:0", [4, 2])], [Tensor("y", "y:0", [4])])
    files = [binfiles.file_entry("s_00000", 0, 4, 4), binfiles.file_entry("s_00001", 4, 2, 4)]
    m = binfiles.new_manifest(sig, files, 6, "x")
    m.update(change)
    d = tmp_path / "set"
    (d / "x").mkdir(parents=True, exist_ok=True)
    for f in files:
        (d / "x" / f"{f['stem']}.bin").write_bytes(b"\0" * 32)
    (d / "manifest.json").write_text(json.dumps(m))
    return d, sig


@pytest.mark.parametrize(
    "change,words",
    [
        ({"files": [{"stem": "s_00000", "first": 0, "n_real": 6, "n_pad": -2}]}, ["n_real must be 1..4", "6"]),
        ({"n_images": 7}, ["n_images", "6", "7"]),
        (
            {
                "files": [
                    {"stem": "s_00000", "first": 0, "n_real": 4, "n_pad": 0},
                    {"stem": "s_00001", "first": 5, "n_real": 2, "n_pad": 2},
                ]
            },
            ["first must be 4", "5"],
        ),
        ({"format": "something-else/1"}, ["not an input manifest"]),
    ],
)
def test_bad_manifest(tmp_path, change, words):
    d, _ = _manifest(tmp_path, **change)
    before = (d / "manifest.json").read_bytes()
    with pytest.raises(UserError) as e:
        binfiles.Manifest.load(d)
    assert "manifest.json" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    assert (d / "manifest.json").read_bytes() == before


def test_manifest_of_another_set(tmp_path):
    d, sig = _manifest(tmp_path)
    m = binfiles.Manifest.load(d)
    m.check_signature(sig)
    m.check_inputs([d / "x"])
    other = tmp_path / "other" / "x"
    other.mkdir(parents=True)
    (other / "t_00000.bin").write_bytes(b"\0" * 32)
    with pytest.raises(UserError, match="belongs to the input folders"):
        m.check_inputs([other])
    (d / "x" / "s_00001.bin").unlink()
    with pytest.raises(UserError, match="holds 1 .bin files, the manifest .* lists 2"):
        m.check_inputs([d / "x"])
    with pytest.raises(UserError, match="no file with stem 't_00000'"):
        m.real_rows("t_00000")
    sig8 = Signature("mine", "forward", 8, [Tensor("x", "x:0", [8, 2])], [Tensor("y", "y:0", [8])])
    with pytest.raises(UserError, match="written for batch 4"):
        m.check_signature(sig8)


def test_corrupt_manifest_json(tmp_path):
    d, _ = _manifest(tmp_path)
    (d / "manifest.json").write_text('{"format": "ascend-road-inputs/1", "files": [')
    with pytest.raises(UserError, match=r"manifest.json: not valid JSON"):
        binfiles.Manifest.load(d)


@pytest.mark.parametrize(
    "content,words",
    [
        (b"fp32_vars/Relu\n\xff\xfebad\n", ["k.cfg:2", "UTF-8", "0xff"]),
        (b"two names\n", ["k.cfg:1", "one op name", "two names"]),
        (b"OpType::\n", ["k.cfg:1", "OpType::TYPE"]),
    ],
)
def test_keep_dtype_with_invalid_bytes(tmp_path, content, words):
    (tmp_path / "k.cfg").write_bytes(content)
    with pytest.raises(UserError) as e:
        to_onnx.read_keep_dtype(str(tmp_path / "k.cfg"))
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)
    assert to_onnx.read_keep_dtype(None) == ([], [])


def test_fetch_into_an_unwritable_data_dir(tmp_path, capsys):
    from tests.test_fetch_data import _fake_cifar_tgz

    tgz = tmp_path / "cifar-10-python.tar.gz"
    _fake_cifar_tgz(tgz)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert fetch_data.main(["--data-dir", str(blocker / "data"), "--from", str(tgz)]) == 2
    line = _one_error_line(capsys)
    assert str(blocker) in line and "cannot write" in line
    assert blocker.read_text() == "not a folder"


def test_image_flags_are_not_silently_ignored_in_dataset_mode(tmp_path, capsys, fake_cifar):
    rn = Signature(
        "realnvp",
        "forward",
        2,
        [Tensor("x", "x:0", [2, 32, 32, 3], layout="NHWC"), Tensor("u", "u:0", [2, 32, 32, 3])],
        [Tensor("z", "z:0", [2])],
    )
    rn.save(tmp_path / "rn.json")
    base = [
        "--dataset",
        "cifar10",
        "--signature",
        str(tmp_path / "rn.json"),
        "--data-dir",
        fake_cifar,
        "-o",
        str(tmp_path / "s"),
    ]
    assert img2bin.main(base + ["-m", "[1,1,1]", "-a", "NCHW"]) == 2
    line = _one_error_line(capsys)
    assert "-a -m" in line and "not used with --dataset" in line
    assert img2bin.main(base + ["--input_name", "u"]) == 2
    assert "'x'" in _one_error_line(capsys)
    assert not (tmp_path / "s").exists()
    assert img2bin.main(base) == 0 and binfiles.Manifest.load(tmp_path / "s").n_images == 8


def test_find_manifest_refuses_another_sets_manifest(tmp_path):
    d, _ = _manifest(tmp_path)
    assert binfiles.find_manifest(d / "x").n_images == 6
    (d / "x" / "foreign_00000.bin").write_bytes(b"\0" * 32)  # a .bin the manifest does not list
    with pytest.raises(UserError, match="foreign_00000.bin is not in the manifest"):
        binfiles.find_manifest(d / "x")
    (d / "y").mkdir()
    with pytest.raises(UserError, match="belongs to the input folders"):
        binfiles.find_manifest(d / "y")


def test_a_signal_during_the_final_renames_waits_for_them(tmp_path, monkeypatch, capsys):
    """SIGTERM while the finished files are moved into place: all of them are moved, then
    the run stops with the one line."""
    src = tmp_path / "pics"
    src.mkdir()
    for i in range(3):
        _img(src / f"{i}.png", 4, 4, seed=i)
    out = tmp_path / "out"
    real = os.replace
    calls = []

    def replace(a, b):
        if os.path.dirname(os.fspath(b)) == str(out):  # a final rename, not a staged write
            calls.append(b)
            if len(calls) == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before the next rename
        real(a, b)

    monkeypatch.setattr(os, "replace", replace)
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out)]) == 128 + signal.SIGTERM
    assert "interrupted by SIGTERM" in _one_error_line(capsys)
    assert sorted(os.listdir(out)) == ["0.bin", "1.bin", "2.bin"] and len(calls) == 3
