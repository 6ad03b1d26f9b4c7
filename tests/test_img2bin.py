"""img2bin: Ascend image mode (naming, letterbox, mean/coef, layouts, dtypes, txt, errors)
and dataset mode on the real CIFAR-10 and MNIST test sets."""

import json
import os

import cv2
import numpy as np
import pytest

from data_tools import binfiles, datasets, image_tool, img2bin, noise
from freeze.signature import Signature, Tensor


def _img(path, h, w, seed=0):
    img = np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return img


def test_letterbox_mean_coef_layout(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    img = _img(src / "b.png", 10, 20)  # wide: 20x10 -> 8x4 + 2 rows padding top and bottom
    out = tmp_path / "out"
    rc = img2bin.main(
        [
            "-i",
            str(src),
            "-w",
            "8",
            "-h",
            "8",
            "-f",
            "RGB",
            "-a",
            "NCHW",
            "-t",
            "float32",
            "-m",
            "[1,2,3]",
            "-c",
            "[0.5,2,1]",
            "-o",
            str(out),
        ]
    )
    assert rc == 0
    a = np.fromfile(out / "b.bin", np.float32).reshape(3, 8, 8)
    small = cv2.resize(img, (8, 4), interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float32)
    want = (small - [1, 2, 3]) * np.float32([0.5, 2, 1])
    np.testing.assert_array_equal(a[:, 2:6, :], want.transpose(2, 0, 1))
    np.testing.assert_array_equal(a[0, :2], (0 - 1) * 0.5)  # zero padding, then mean and coef


def test_gray_stays_hw_and_uint8_nhwc_and_yuv(tmp_path):
    _img(tmp_path / "g.jpg", 8, 8)
    g = image_tool.convert_image(tmp_path / "g.jpg", 8, 8, "GRAY", "NCHW", "uint8")
    assert g.shape == (8, 8) and g.dtype == np.uint8
    c = image_tool.convert_image(tmp_path / "g.jpg", 8, 8, "BGR", "NHWC", "int32")
    assert c.shape == (8, 8, 3) and c.dtype == np.int32
    np.testing.assert_array_equal(c, cv2.imread(str(tmp_path / "g.jpg")).astype(np.int32))
    np.testing.assert_array_equal(g, cv2.cvtColor(cv2.imread(str(tmp_path / "g.jpg")), cv2.COLOR_BGR2GRAY))
    y = image_tool.convert_image(tmp_path / "g.jpg", 8, 8, "YUV")
    assert y.shape == (12, 8) and y.dtype == np.uint8
    bgr = cv2.imread(str(tmp_path / "g.jpg")).astype(np.int64)  # what the tool read (jpg is lossy)
    np.testing.assert_array_equal(y[:8], (bgr @ [29, 150, 77]) >> 8)  # Ascend's integer Y
    sub = bgr[::2, ::2]
    np.testing.assert_array_equal(y[8:, 0::2], ((sub @ [131, -87, -44]) >> 8) + 128 & 0xFF)
    np.testing.assert_array_equal(y[8:, 1::2], ((sub @ [-21, -110, 131]) >> 8) + 128 & 0xFF)


@pytest.mark.parametrize("mean,coef", [(None, None), ("[104,117,123]", "[0.5,2,3]"), ("[7]", "[0.25]")])
def test_gray_takes_the_first_of_three_values(tmp_path, mean, coef):
    """The real img2bin's GRAY branch: ``input_img[:, :] -= args.mean[0]`` and
    ``*= args.coefficient[0]``, whatever the list holds (its default is [0, 0, 0]), so a BGR
    command with only -f changed to GRAY runs and uses the first value."""
    (tmp_path / "in").mkdir()
    _img(tmp_path / "in" / "g.png", 6, 6)
    img = cv2.imread(str(tmp_path / "in" / "g.png"))
    args = ["-i", str(tmp_path / "in"), "-w", "6", "-h", "6", "-f", "GRAY", "-t", "float32", "-o", str(tmp_path / "o")]
    args += ["-m", mean, "-c", coef] if mean else []
    assert img2bin.main(args) == 0
    m, c = (float(mean.strip("[]").split(",")[0]), float(coef.strip("[]").split(",")[0])) if mean else (0.0, 1.0)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    np.testing.assert_array_equal(np.fromfile(tmp_path / "o" / "g.bin", np.float32), ((gray - m) * c).ravel())


def test_sorted_txt_and_collision(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for n in ("c.png", "a.jpg"):
        _img(src / n, 4, 4)
    (src / "t.txt").write_text("[baseconf]\ninput_node=[1, 2, 3, 4]\nshape=[1, 4]\n")
    assert [os.path.basename(f) for f in image_tool.list_inputs(str(src))] == ["a.jpg", "c.png", "t.txt"]
    out = tmp_path / "out"
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint32", "-o", str(out)]) == 0
    np.testing.assert_array_equal(np.fromfile(out / "t.bin", np.uint32), [1, 2, 3, 4])
    assert os.path.getsize(out / "a.bin") == 4 * 4 * 3 * 4
    _img(src / "a.png", 4, 4)  # a.jpg + a.png would both write a.bin
    assert img2bin.main(["-i", str(src), "-w", "4", "-h", "4", "-t", "uint8", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "a.jpg" in err and "error: " in err


@pytest.mark.parametrize(
    "args,words",
    [
        (["-i", "nope.jpg", "-w", "4", "-h", "4", "-t", "uint8"], ["nope.jpg", "does not exist"]),
        (["-i", "{src}", "-w", "0", "-h", "4", "-t", "uint8"], ["greater than 0"]),
        (["-i", "{src}", "-w", "4", "-h", "4"], ["-t required"]),
        (["-i", "{src}", "-w", "4", "-h", "4", "-t", "uint8", "-m", "[1]"], ["-m", "3 value"]),
    ],
)
def test_errors_exit_nonzero(tmp_path, capsys, args, words):
    _img(tmp_path / "a.jpg", 4, 4)
    rc = img2bin.main([a.replace("{src}", str(tmp_path / "a.jpg")) for a in args] + ["-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and all(w in err for w in words), err


def _sig(path, batch, x_shape, u_shape, model="realnvp"):
    s = Signature(
        model,
        "forward",
        batch,
        [Tensor("x", "x:0", [batch] + x_shape, layout="NHWC"), Tensor("u", "u:0", [batch] + u_shape)],
        [Tensor("z", "z:0", [batch])],
    )
    s.save(path)
    return str(path)


def test_dataset_mode_real_cifar(tmp_path, cifar_dir):
    sig = _sig(tmp_path / "m.json", 16, [32, 32, 3], [32, 32, 3])
    out = tmp_path / "bins"
    assert (
        img2bin.main(
            [
                "--dataset",
                "cifar10",
                "--split",
                "test",
                "--signature",
                sig,
                "-o",
                str(out),
                "--data-dir",
                cifar_dir,
                "--seed",
                "3",
            ]
        )
        == 0
    )
    m = binfiles.Manifest.load(out)
    images = datasets.load("cifar10", "test", cifar_dir)
    n = len(images)
    assert m.n_images == n and len(m.files) == -(-n // 16)
    last = m.files[-1]
    assert last["n_real"] == n % 16 and last["n_pad"] == 16 - n % 16  # 1017 = 63*16 + 9
    assert sum(f["n_real"] for f in m.files) == n
    t = Signature.load(sig).inputs
    x = binfiles.read_bin(out / "x" / f"{last['stem']}.bin", t[0])
    np.testing.assert_array_equal(x[: last["n_real"]], (images[last["first"] :].astype(np.float32) - 127.5) / 127.5)
    np.testing.assert_array_equal(
        x[last["n_real"] :], np.broadcast_to(x[last["n_real"] - 1], x[last["n_real"] :].shape)
    )
    u = binfiles.read_bin(out / "u" / f"{m.files[0]['stem']}.bin", t[1])
    assert u.min() > 0 and u.max() < 1 and 0.45 < u.mean() < 0.55
    # existing results are not overwritten without --force
    assert img2bin.main(["--dataset", "cifar10", "--signature", sig, "-o", str(out), "--data-dir", cifar_dir]) == 2


def test_dataset_mode_real_mnist_noise_independent_of_batch(tmp_path, mnist_dir):
    outs = {}
    for b in (4, 7):
        sig = _sig(tmp_path / f"m{b}.json", b, [784], [2, 400], model="rebar")
        outs[b] = tmp_path / f"bins{b}"
        assert (
            img2bin.main(
                [
                    "--dataset",
                    "binarized_mnist",
                    "--signature",
                    sig,
                    "-o",
                    str(outs[b]),
                    "--data-dir",
                    mnist_dir,
                    "--limit",
                    "30",
                    "--seed",
                    "1",
                ]
            )
            == 0
        )

    def rows(b, name, shape):
        m = binfiles.Manifest.load(outs[b])
        parts = [
            np.fromfile(outs[b] / name / f"{f['stem']}.bin", np.float32).reshape([b] + shape)[: f["n_real"]]
            for f in m.files
        ]
        return np.concatenate(parts)

    assert binfiles.Manifest.load(outs[7]).files[-1]["n_pad"] == 5  # 30 = 4*7 + 2
    x4, x7 = rows(4, "x", [784]), rows(7, "x", [784])
    np.testing.assert_array_equal(x4, datasets.load("binarized_mnist", "test", mnist_dir)[:30])
    np.testing.assert_array_equal(x4, x7)
    np.testing.assert_array_equal(rows(4, "u", [2, 400]), rows(7, "u", [2, 400]))
    assert json.load(open(outs[4] / "manifest.json"))["seed"] == 1


# --- image mode with --signature: a user's folder of images, batched for their model -------


def _user_sig(path, batch, shape, dtype="float32", layout="NHWC", inputs=None, model="mine"):
    ins = inputs or [Tensor("images", "images:0", [batch] + shape, dtype, layout)]
    s = Signature(model, "forward", batch, ins, [Tensor("logits", "logits:0", [batch, 10])], source={"kind": "pb"})
    s.save(path)
    return str(path)


def test_image_mode_with_signature_batches_pads_and_lists_files(tmp_path, capsys):
    src = tmp_path / "pics"
    src.mkdir()
    imgs = {f"p{i}.png": _img(src / f"p{i}.png", 6, 6, seed=i) for i in range(5)}
    sig = _user_sig(tmp_path / "mine.json", 2, [6, 6, 3])
    out = tmp_path / "bins"
    assert (
        img2bin.main(
            [
                "-i",
                str(src),
                "-w",
                "6",
                "-h",
                "6",
                "-f",
                "RGB",
                "-a",
                "NHWC",
                "-m",
                "[1,2,3]",
                "-c",
                "[0.5,0.25,2]",
                "--signature",
                sig,
                "-o",
                str(out),
            ]
        )
        == 0
    )
    m = binfiles.Manifest.load(out)
    assert m.images == sorted(imgs) and m.n_images == 5 and m.d["source"] == "images"
    assert [(f["stem"], f["first"], f["n_real"], f["n_pad"]) for f in m.files] == [
        ("pics_00000", 0, 2, 0),
        ("pics_00001", 2, 2, 0),
        ("pics_00002", 4, 1, 1),
    ]
    assert m.d["preprocess"]["output_type"] == "float32" and m.d["image_input"] == "images"
    t = Signature.load(sig).inputs[0]
    rows = np.concatenate([binfiles.read_bin(out / "images" / f"{f['stem']}.bin", t) for f in m.files])
    want = np.stack(
        [(imgs[n][..., ::-1].astype(np.float32) - [1, 2, 3]) * np.float32([0.5, 0.25, 2]) for n in sorted(imgs)]
    )
    np.testing.assert_array_equal(rows[:5], want)
    np.testing.assert_array_equal(rows[5], rows[4])  # padding repeats the last image
    assert sorted(os.listdir(out)) == ["images", "manifest.json"]  # no staging folder left
    # layout and dtype come from the signature: NCHW uint8
    sig2 = _user_sig(tmp_path / "mine2.json", 4, [3, 6, 6], "uint8", "NCHW")
    assert img2bin.main(["-i", str(src), "-w", "6", "-h", "6", "--signature", sig2, "-o", str(tmp_path / "b2")]) == 0
    t2 = Signature.load(sig2).inputs[0]
    x = binfiles.read_bin(tmp_path / "b2" / "images" / "pics_00000.bin", t2)
    np.testing.assert_array_equal(x[0], imgs["p0.png"].transpose(2, 0, 1))  # BGR, NCHW, uint8
    capsys.readouterr()


def test_image_mode_with_signature_fills_a_builtin_models_noise(tmp_path):
    src = tmp_path / "pics"
    src.mkdir()
    for i in range(3):
        _img(src / f"{i}.png", 4, 4, seed=i)
    sig = _sig(tmp_path / "rn.json", 2, [4, 4, 3], [4, 4, 3])  # built-in realnvp: x + noise u
    out = tmp_path / "bins"
    assert (
        img2bin.main(
            ["-i", str(src), "-w", "4", "-h", "4", "-a", "NHWC", "--signature", sig, "-o", str(out), "--seed", "5"]
        )
        == 0
    )
    m = binfiles.Manifest.load(out)
    assert m.d["noise_inputs"] == ["u"] and [i["dir"] for i in m.inputs] == ["x", "u"]
    u = binfiles.read_bin(out / "u" / "pics_00000.bin", Signature.load(sig).inputs[1])
    np.testing.assert_array_equal(u.reshape(-1), noise.Noise(5, "u").next(u.size))


def test_export_images_round_trip(tmp_path, fake_cifar):
    from data_tools import export_images

    pics = tmp_path / "pics"
    assert (
        export_images.main(
            ["--dataset", "cifar10", "--split", "test", "--data-dir", fake_cifar, "-o", str(pics), "--limit", "5"]
        )
        == 0
    )
    images, labels = datasets.load_labeled("cifar10", "test", fake_cifar)
    assert sorted(os.listdir(pics)) == [f"cifar10_test_{i:05d}.png" for i in range(5)] + ["labels.txt"]
    assert (pics / "labels.txt").read_text().split() == [str(v) for v in labels[:5]]
    sig = _user_sig(tmp_path / "mine.json", 4, [32, 32, 3])
    out = tmp_path / "bins"
    assert (
        img2bin.main(
            ["-i", str(pics), "-w", "32", "-h", "32", "-f", "RGB", "-a", "NHWC", "--signature", sig, "-o", str(out)]
        )
        == 0
    )
    m = binfiles.Manifest.load(out)
    assert m.images == [f"cifar10_test_{i:05d}.png" for i in range(5)]
    t = Signature.load(sig).inputs[0]
    rows = np.concatenate([binfiles.read_bin(out / "images" / f"{f['stem']}.bin", t)[: f["n_real"]] for f in m.files])
    np.testing.assert_array_equal(rows, images[:5].astype(np.float32))  # PNG is lossless, RGB kept
    # again without --force: refused, nothing changed
    before = {n: (pics / n).read_bytes() for n in os.listdir(pics)}
    assert export_images.main(["--dataset", "cifar10", "--data-dir", fake_cifar, "-o", str(pics)]) == 2
    assert {n: (pics / n).read_bytes() for n in os.listdir(pics)} == before


def test_export_images_folder_goes_through_plain_image_mode(tmp_path, fake_cifar):
    """export_images' labels.txt beside its PNGs is not an input of Ascend's image mode;
    a labels.txt in Ascend's [baseconf] form still is."""
    from data_tools import export_images

    pics = tmp_path / "pics"
    args = ["--dataset", "cifar10", "--split", "test", "--data-dir", fake_cifar, "-o", str(pics), "--limit", "3"]
    assert export_images.main(args) == 0
    assert (pics / "labels.txt").is_file()
    out = tmp_path / "bins"
    flags = ["-w", "32", "-h", "32", "-f", "RGB", "-a", "NHWC", "-t", "uint8"]
    assert img2bin.main(["-i", str(pics), *flags, "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == [f"cifar10_test_{i:05d}.bin" for i in range(3)]
    images = datasets.load("cifar10", "test", fake_cifar)
    for i in range(3):
        got = np.fromfile(out / f"cifar10_test_{i:05d}.bin", np.uint8).reshape(32, 32, 3)
        np.testing.assert_array_equal(got, images[i])  # PNG is lossless, RGB kept
    (pics / "labels.txt").write_text("[baseconf]\ninput_node=[7, 8]\nshape=[2]\n")
    assert img2bin.main(["-i", str(pics), *flags, "-o", str(tmp_path / "b2")]) == 0
    np.testing.assert_array_equal(np.fromfile(tmp_path / "b2" / "labels.bin", np.uint8), [7, 8])


def test_input_names_with_slashes_get_plain_folders(tmp_path):
    src = tmp_path / "pics"
    src.mkdir()
    _img(src / "a.png", 4, 4)
    t = Tensor("input/images", "input/images:0", [1, 4, 4, 3], layout="NHWC")
    Signature("mine", "forward", 1, [t], [Tensor("y", "y:0", [1])], source={"kind": "pb"}).save(tmp_path / "s.json")
    out = tmp_path / "bins"
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
                str(tmp_path / "s.json"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    m = binfiles.Manifest.load(out)
    assert m.inputs == [{"name": "input/images", "dir": "input_images"}]
    assert os.listdir(out / "input_images") == ["pics_00000.bin"]
