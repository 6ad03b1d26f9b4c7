"""Static AIPP (convert/aipp.py) against Huawei's ATC AIPP pages, written out here as numpy.

The references below are the documented formulas, written per pixel in this file (not taken
from convert/aipp.py): NV12 is a Y plane then interleaved U,V, one pair per 2x2 block;
CSC from YUV is ``(M (yuv - input_bias)) >> 8``, from RGB ``(M rgb) >> 8 + output_bias``;
normalisation ``(x - mean_chn_i - min_chn_i) * var_reci_chn_i`` (AIPP outputs float16);
the order is channel swap, crop, CSC, normalisation, padding."""

import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

from common import loaders
from common.errors import UserError
from convert import aipp, to_onnx
from freeze.signature import Signature, card_beside

H, W = 4, 6  # the model's image input: [1, 4, 6, 3] NHWC, and a grey one [1, 4, 6, 1]
JPEG = "matrix_r0c0: 256\nmatrix_r0c1: 0\nmatrix_r0c2: 359\nmatrix_r1c0: 256\nmatrix_r1c1: -88\n" + (
    "matrix_r1c2: -183\nmatrix_r2c0: 256\nmatrix_r2c1: 454\nmatrix_r2c2: 0\ninput_bias_0: 0\n"
    "input_bias_1: 128\ninput_bias_2: 128\n"
)  # the CSC page's "YUV420SP_U8 to RGB888_U8", JPEG column
BT601_NARROW = "matrix_r0c0: 298\nmatrix_r0c1: 0\nmatrix_r0c2: 409\nmatrix_r1c0: 298\nmatrix_r1c1: -100\n" + (
    "matrix_r1c2: -208\nmatrix_r2c0: 298\nmatrix_r2c1: 516\nmatrix_r2c2: 0\ninput_bias_0: 16\n"
    "input_bias_1: 128\ninput_bias_2: 128\n"
)
CONV_W = np.random.RandomState(7).randn(3, 3, 3, 2).astype(np.float32) * 0.3


def _write_graph(path, batch, h, w, gray):
    """images -> a = 2 * images, conv = conv2d(images); gray -> b = 2 * gray (a frozen .pb)."""
    from common.tfcompat import tf

    g = tf.Graph()
    with g.as_default():
        x = tf.placeholder(tf.float32, [batch, h, w, 3], name="images")
        tf.identity(x * 2.0, name="a")
        if gray:
            tf.identity(tf.placeholder(tf.float32, [batch, h, w, 1], name="gray") * 2.0, name="b")
        tf.identity(tf.nn.conv2d(x, tf.constant(CONV_W), [1, 1, 1, 1], "SAME"), name="conv")
    with open(path, "wb") as f:
        f.write(g.as_graph_def().SerializeToString())


def _freeze(tmp, batch=1, h=H, w=W, gray=True):
    """The frozen .pb and its card, through freeze_graph.py as a user would."""
    from freeze import freeze_graph

    raw = os.path.join(tmp, "raw.pb")
    _write_graph(raw, batch, h, w, gray)
    out = os.path.join(tmp, "m")
    shape = f"images:{batch},{h},{w},3" + (f";gray:{batch},{h},{w},1" if gray else "")
    names = "a,b,conv" if gray else "a,conv"
    freeze_graph.main(["--input_graph", raw, "--output_node_names", names, "--output", out, "--input_shape", shape])
    return out + ".pb"


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    """The graph (already constant: no freezing to do) and a card written here, not by
    freeze_graph.py (whose checks take seconds; the road test below uses it)."""
    from freeze.signature import Tensor

    pb = str(tmp_path_factory.mktemp("aipp") / "m.pb")
    _write_graph(pb, 1, H, W, gray=True)
    ins = [Tensor("images", "images:0", [1, H, W, 3], layout="NHWC"), Tensor("gray", "gray:0", [1, H, W, 1])]
    outs = [Tensor(n, n + ":0", [1, H, W, c]) for n, c in (("a", 3), ("b", 1), ("conv", 2))]
    sig = Signature("m", "forward", 1, ins, outs, source={"kind": "pb", "path": pb}).save(pb[:-3] + ".json")
    plain = to_onnx.tf_to_onnx(loaders.load_graph_def(pb), sig)
    return pb, sig, plain


def _cfg(tmp_path, text, name="aipp.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _run(frozen, tmp_path, text, feed):
    """The portable model with this config on ``feed`` (uint8 / float by input): outputs by
    name; also checks that the numpy path the TF backends use gives the same model input."""
    pb, sig, plain = frozen
    ops = aipp.parse(_cfg(tmp_path, text))
    model, card, records = aipp.apply(onnx.ModelProto.FromString(plain.SerializeToString()), ops, sig)
    sess = loaders.ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    outs = dict(zip(names, sess.run(None, {t.tensor: feed[t.name] for t in card.inputs})))
    inner, pre = aipp.unwrap(card)
    fed = pre(feed)
    np.testing.assert_array_equal(fed["images"] * 2, outs["a:0"])  # numpy AIPP == ONNX AIPP
    return outs, card, records


def _gray(rng=None):
    return np.zeros([1, H, W, 1], np.float32)


# --- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n colour: 3\n}", 4, "unknown aipp_op field 'colour'"),
        ("aipp_op {\n aipp_mode: dynamic\n max_src_image_size: 100\n}", 2, "aipp_mode: dynamic AIPP"),
        ("aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n max_src_image_size: 9\n}", 4, "dynamic-AIPP field"),
        ("aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n support_rotation: false\n}", 4, "support_rotation"),
        ("aipp_op {\n aipp_mode: static\n input_format: BGR888_U8\n}", 3, "input_format: expected one of"),
        (
            "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n padding: yes\n}",
            4,
            "padding: expected true or false",
        ),
        ("aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n left_padding_size: 33\n}", 4, "in [0, 32]"),
        (
            "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n mean_chn_0: 1.5\n}",
            4,
            "mean_chn_0: expected an integer",
        ),
        ("aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n resize: true\n}", 4, "resize is reserved"),
        (
            "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n crop: true\n crop: false\n}",
            5,
            "crop given twice",
        ),
        ("aipp_op {\n aipp_mode: static\n}", 1, "lacks input_format"),
        ("aipp_op {\n input_format: RGB888_U8\n}", 1, "lacks aipp_mode"),
        ("aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n src_image_size_w: 7\n}", 4, "even"),
        ("aipp_op {\n aipp_mode: static\n input_format: YUV400_U8\n csc_switch: true\n}", 4, "csc_switch"),
        ("aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n", 3, "opened at line 1 is not closed"),
        ("aipp {\n}", 1, "expected an aipp_op"),
        (
            "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n}\naipp_op {\n aipp_mode: static\n"
            " input_format: RGB888_U8\n}",
            5,
            "related_input_rank 0 already has an aipp_op",
        ),
    ],
)
def test_parse_refuses_with_file_line_and_field(tmp_path, text, line, words):
    path = _cfg(tmp_path, text)
    with pytest.raises(UserError) as e:
        aipp.parse(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:{line}: ") and words in msg and "\n" not in msg


def test_parse_template_defaults_comments_and_blocks(tmp_path):
    path = _cfg(
        tmp_path,
        "# two inputs\naipp_op{ aipp_mode : static   # inline comment\n related_input_rank: 1\n"
        ' input_format: YUV420SP_U8 csc_switch: true related_input_name: ""\n}\n'
        "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n csc_switch: true\n var_reci_chn_1: 0.5\n}\n",
    )
    a, b = aipp.parse(path)
    assert (a.line, a.related_input_rank, b.related_input_rank) == (2, 1, 0)
    # the template's defaults; csc on YUV420SP without a matrix: the template's YUV -> BGR numbers
    assert a.matrix.tolist() == [[298, 516, 0], [298, -100, -208], [298, 0, 409]]
    assert [a.values[f"input_bias_{i}"] for i in range(3)] == [16, 128, 128]
    # csc on RGB without a matrix: GE's BT.601 RGB -> YUV
    assert b.matrix.tolist() == [[66, 129, 25], [-38, -74, 112], [112, -94, -18]]
    assert (b.var_reci_chn_0, b.var_reci_chn_1, b.mean_chn_3, b.min_chn_2) == (1.0, 0.5, 0, 0.0)
    assert (a.crop, a.padding, a.src_image_size_w, a.padding_value) == (False, False, 0, 0.0)


# --- the pipeline, feature by feature ------------------------------------------------------------


def _fp16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def test_rgb888_swap_crop_normalise_pad(frozen, tmp_path):
    """rbuv_swap (B,G,R packed in) -> crop 4x2 at (1,2) of an 8x6 source -> normalise -> pad 1."""
    rng = np.random.RandomState(0)
    src = rng.randint(0, 256, (1, 6, 8, 3)).astype(np.uint8)  # [N, src_h, src_w, C], bytes B,G,R
    text = (
        "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n src_image_size_w: 8\n src_image_size_h: 6\n"
        " rbuv_swap_switch: true\n crop: true\n load_start_pos_w: 1\n load_start_pos_h: 2\n crop_size_w: 4\n"
        " crop_size_h: 2\n padding: true\n left_padding_size: 1\n right_padding_size: 1\n top_padding_size: 1\n"
        " bottom_padding_size: 1\n padding_value: -3.5\n mean_chn_0: 10\n mean_chn_1: 20\n mean_chn_2: 30\n"
        " min_chn_0: 0.5\n min_chn_1: 1.5\n min_chn_2: 2.5\n var_reci_chn_0: 0.1\n var_reci_chn_1: 0.2\n"
        " var_reci_chn_2: 0.3\n}\n"
    )
    outs, card, records = _run(frozen, tmp_path, text, {"images": src, "gray": _gray()})
    ref = np.full([1, H, W, 3], -3.5, np.float32)
    for i in range(2):
        for j in range(4):
            b, g, r = src[0, 2 + i, 1 + j]
            for c, (v, mean, mn, var) in enumerate(zip((r, g, b), (10, 20, 30), (0.5, 1.5, 2.5), (0.1, 0.2, 0.3))):
                ref[0, 1 + i, 1 + j, c] = _fp16((float(v) - mean - _fp16(mn)) * _fp16(var))
    np.testing.assert_allclose(outs["a:0"], 2 * ref, rtol=0, atol=1e-6)
    t = card.input("images")
    assert (t.dtype, t.shape, t.layout) == ("uint8", [1, 6, 8, 3], "NHWC") and "B,G,R" in t.meaning
    assert card.input("gray").dtype == "float32" and records[0]["om_input"]["bytes"] == 6 * 8 * 3


def _nv12_ref_rgb(y, uv, m, bias):
    """Per pixel: the documented YUV -> RGB CSC on an NV12 buffer (U,V shared by a 2x2 block)."""
    h, w = y.shape
    out = np.zeros([h, w, 3], np.int64)
    for i in range(h):
        for j in range(w):
            yuv = [int(y[i, j]), int(uv[i // 2, 2 * (j // 2)]), int(uv[i // 2, 2 * (j // 2) + 1])]
            for r in range(3):
                acc = sum(m[r][k] * (yuv[k] - bias[k]) for k in range(3))
                out[i, j, r] = min(max(acc >> 8, 0), 255)  # Python's >> on ints: arithmetic shift
    return out


def test_yuv420sp_csc_jpeg_matrix(frozen, tmp_path):
    rng = np.random.RandomState(1)
    buf = rng.randint(0, 256, (1, H * 3 // 2, W)).astype(np.uint8)
    text = "aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n csc_switch: true\n" + JPEG + "}\n"
    outs, card, _ = _run(frozen, tmp_path, text, {"images": buf, "gray": _gray()})
    m = [[256, 0, 359], [256, -88, -183], [256, 454, 0]]
    ref = _nv12_ref_rgb(buf[0, :H], buf[0, H:], m, [0, 128, 128])
    np.testing.assert_array_equal(outs["a:0"][0], 2 * ref.astype(np.float32))
    assert card.input("images").shape == [1, H * 3 // 2, W] and "NV12" in card.input("images").meaning


def test_yuv420sp_nv21_swap_without_csc(frozen, tmp_path):
    """rbuv_swap on YUV420SP: the data is NV21 (V,U); without CSC the output is Y,U,V."""
    rng = np.random.RandomState(2)
    buf = rng.randint(0, 256, (1, H * 3 // 2, W)).astype(np.uint8)
    text = "aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n rbuv_swap_switch: true\n}\n"
    outs, _, _ = _run(frozen, tmp_path, text, {"images": buf, "gray": _gray()})
    i, j = 3, 5
    vu = buf[0, H + i // 2, 2 * (j // 2) : 2 * (j // 2) + 2]
    assert outs["a:0"][0, i, j].tolist() == [2.0 * buf[0, i, j], 2.0 * vu[1], 2.0 * vu[0]]


def test_rgb_to_yuv_csc_output_bias(frozen, tmp_path):
    rng = np.random.RandomState(3)
    src = rng.randint(0, 256, (1, H, W, 3)).astype(np.uint8)
    text = "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n csc_switch: true\n}\n"  # GE's defaults
    outs, _, _ = _run(frozen, tmp_path, text, {"images": src, "gray": _gray()})
    m, ob = [[66, 129, 25], [-38, -74, 112], [112, -94, -18]], [16, 128, 128]
    r, g, b = (int(v) for v in src[0, 2, 3])
    ref = [min(max(((m[k][0] * r + m[k][1] * g + m[k][2] * b) >> 8) + ob[k], 0), 255) for k in range(3)]
    assert outs["a:0"][0, 2, 3].tolist() == [2.0 * v for v in ref]


def test_xrgb_ax_swap_and_several_blocks(frozen, tmp_path):
    """XRGB packed (ax_swap_switch: X first in memory) on input 0; YUV400 on input 1 (rank 1)."""
    rng = np.random.RandomState(4)
    xrgb = rng.randint(0, 256, (1, H, W, 4)).astype(np.uint8)
    grey = rng.randint(0, 256, (1, H, W)).astype(np.uint8)
    text = (
        "aipp_op {\n aipp_mode: static\n related_input_rank: 0\n input_format: XRGB8888_U8\n"
        " ax_swap_switch: true\n mean_chn_0: 1\n mean_chn_1: 2\n mean_chn_2: 3\n}\n"
        "aipp_op {\n aipp_mode: static\n related_input_rank: 1\n input_format: YUV400_U8\n mean_chn_0: 100\n"
        " var_reci_chn_0: 0.25\n}\n"
    )
    outs, card, records = _run(frozen, tmp_path, text, {"images": xrgb, "gray": grey})
    ref = xrgb[0, ..., 1:].astype(np.float32) - np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(outs["a:0"][0], 2 * ref)
    np.testing.assert_array_equal(outs["b:0"][0, ..., 0], 2 * ((grey[0].astype(np.float32) - 100) * 0.25))
    assert [r["input"] for r in records] == ["images", "gray"]
    assert card.input("gray").shape == [1, H, W] and card.input("images").shape == [1, H, W, 4]


def test_bgr888_to_gray_feeds_a_one_channel_input(frozen, tmp_path):
    """The CSC page's "BGR888_U8 to GRAY": swap to R,G,B, then row 0 of the matrix is the grey
    channel a 1-channel input takes (rows 1 and 2 are zero)."""
    rng = np.random.RandomState(11)
    bgr = rng.randint(0, 256, (1, H, W, 3)).astype(np.uint8)
    text = (
        "aipp_op {\n aipp_mode: static\n related_input_rank: 1\n input_format: RGB888_U8\n csc_switch: true\n"
        " rbuv_swap_switch: true\n matrix_r0c0: 76\n matrix_r0c1: 150\n matrix_r0c2: 30\n"
        + "".join(f" matrix_r{r}c{c}: 0\n" for r in (1, 2) for c in range(3))
        + " output_bias_0: 0\n output_bias_1: 0\n output_bias_2: 0\n}\n"
    )
    images = np.zeros([1, H, W, 3], np.float32)
    outs, card, _ = _run(frozen, tmp_path, text, {"images": images, "gray": bgr})
    b, g, r = (bgr[0, 1, 4, k].astype(np.int64) for k in range(3))
    assert outs["b:0"][0, 1, 4, 0] == 2.0 * ((76 * r + 150 * g + 30 * b) >> 8)
    assert card.input("gray").shape == [1, H, W, 3] and card.input("images").dtype == "float32"


@pytest.mark.parametrize(
    "text, words",
    [
        ("input_format: RGB888_U8\n src_image_size_w: 8\n src_image_size_h: 6\n", "output would be 8x6"),
        ("input_format: YUV400_U8\n", "gives 1 channel(s)"),
        ("input_format: RGB888_U8\n related_input_rank: 2\n", "the model has 2 input(s)"),
        ('input_format: RGB888_U8\n related_input_name: "images"\n', "Caffe models only"),
        (
            "input_format: RGB888_U8\n src_image_size_w: 6\n src_image_size_h: 4\n crop: true\n load_start_pos_w: 2\n",
            "leaves the 6x4 source",
        ),
    ],
)
def test_apply_refuses_what_does_not_fit_the_model(frozen, tmp_path, text, words):
    path = _cfg(tmp_path, "aipp_op {\n aipp_mode: static\n " + text + "}\n")
    with pytest.raises(UserError, match=re.escape(words)) as e:
        aipp.apply(frozen[2], aipp.parse(path), frozen[1])
    assert str(e.value).startswith(path + ":")


def test_dynamic_batch_and_nchw(frozen, tmp_path):
    """A batch dimension left open by the model stays open (a dynamic-batch gear runs any N); an
    NCHW input gets AIPP's NHWC image transposed, the .om still taking packed NHWC bytes."""
    from common.tfcompat import tf
    from freeze.signature import Tensor

    pb, sig, plain = frozen
    model = onnx.ModelProto.FromString(plain.SerializeToString())
    for v in [*model.graph.input, *model.graph.output]:
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    text = "aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n csc_switch: true\n" + JPEG + "}\n"
    model, card, _ = aipp.apply(model, aipp.parse(_cfg(tmp_path, text)), sig)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    buf = np.random.RandomState(8).randint(0, 256, (3, H * 3 // 2, W)).astype(np.uint8)
    sess = loaders.ort_session(model)
    three = sess.run(["a:0"], {"images:0": buf, "gray:0": np.zeros([3, H, W, 1], np.float32)})[0]
    one = sess.run(["a:0"], {"images:0": buf[1:2], "gray:0": _gray()})[0]
    np.testing.assert_array_equal(three[1:2], one)
    m = [[256, 0, 359], [256, -88, -183], [256, 454, 0]]
    np.testing.assert_array_equal(three[2], 2 * _nv12_ref_rgb(buf[2, :H], buf[2, H:], m, [0, 128, 128]))

    g = tf.Graph()
    with g.as_default():
        tf.identity(tf.placeholder(tf.float32, [1, 3, H, W], name="x") * 2.0, name="y")
    nchw = Signature(
        "n", "forward", 1, [Tensor("x", "x:0", [1, 3, H, W], layout="NCHW")], [Tensor("y", "y:0", [1, 3, H, W])]
    )
    model = to_onnx.tf_to_onnx(g.as_graph_def(), nchw)
    text = "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n mean_chn_2: 5\n}\n"
    model, card, _ = aipp.apply(model, aipp.parse(_cfg(tmp_path, text, "nchw.cfg")), nchw)
    assert card.input("x").shape == [1, H, W, 3]
    rgb = np.random.RandomState(9).randint(0, 256, (1, H, W, 3)).astype(np.uint8)
    y = loaders.ort_session(model).run(None, {"x:0": rgb})[0]
    assert y.shape == (1, 3, H, W)
    np.testing.assert_array_equal(y[0, 0], 2.0 * rgb[0, ..., 0])
    np.testing.assert_array_equal(y[0, 2], 2.0 * (rgb[0, ..., 2].astype(np.float32) - 5))


# --- the physical check: an image through NV12 + AIPP equals the image normalised directly -------


def _smooth_rgb(h, w, seed):
    """An RGB image constant over 2x2 blocks (4:2:0 subsampling loses nothing), mid-range colours."""
    rng = np.random.RandomState(seed)
    small = rng.randint(40, 216, (h // 2, w // 2, 3)).astype(np.uint8)
    return small.repeat(2, 0).repeat(2, 1)


def _nv12_by_opencv(rgb):
    """OpenCV's RGB -> YUV I420 (BT.601 narrow range: Y plane, U plane, V plane), rearranged into
    NV12 (Y plane, then U,V interleaved): an encoder independent of this project."""
    import cv2

    h, w = rgb.shape[:2]
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    u = i420[h : h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4 :].reshape(h // 2, w // 2)
    return np.concatenate([i420[:h], np.stack([u, v], -1).reshape(h // 2, w)])


def _nv12_by_img2bin(rgb, tmp_path):
    import cv2

    from data_tools.image_tool import convert_image

    path = str(tmp_path / "smooth.png")
    cv2.imwrite(path, rgb[..., ::-1])
    return convert_image(path, rgb.shape[1], rgb.shape[0], "YUV420SP_U8")


@pytest.mark.parametrize(
    "encoder, matrix",
    [("opencv_i420", BT601_NARROW), ("img2bin", JPEG)],
    ids=["opencv-bt601-narrow", "img2bin-jpeg"],
)
def test_nv12_through_aipp_equals_the_image_normalised_directly(frozen, tmp_path, encoder, matrix):
    """An image encoded to NV12 (by OpenCV, or by img2bin -f YUV420SP_U8), decoded by AIPP with the
    CSC page's matrix for that YUV and normalised, equals the image normalised directly (and so
    does the model's output), within YUV rounding."""
    from common.tfcompat import tf

    rgb = _smooth_rgb(H, W, 5)
    nv12 = (_nv12_by_opencv(rgb) if encoder == "opencv_i420" else _nv12_by_img2bin(rgb, tmp_path))[None]
    norm = "min_chn_0: 127.5\nmin_chn_1: 127.5\nmin_chn_2: 127.5\n" + "".join(
        f"var_reci_chn_{i}: 0.00784313725\n" for i in range(3)
    )
    text = "aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n csc_switch: true\n" + matrix + norm + "}"
    outs, _, _ = _run(frozen, tmp_path, text, {"images": nv12, "gray": _gray()})
    direct = (rgb[None].astype(np.float32) - 127.5) / 127.5
    # YUV rounding: 8-bit Y/U/V and the >>8 move a channel by at most a few levels
    assert np.max(np.abs(outs["a:0"] / 2 - direct)) <= 3 / 127.5
    with tf.Graph().as_default() as g:
        tf.import_graph_def(loaders.load_graph_def(frozen[0]), name="")
        with tf.Session(graph=g) as s:
            conv_tf = s.run("conv:0", {"images:0": direct, "gray:0": _gray()})
    scale = np.abs(CONV_W).sum(axis=(0, 1, 2)).max()  # a conv output moves by at most this per unit input
    assert np.max(np.abs(outs["conv:0"] - conv_tf)) <= scale * 3 / 127.5
    cos = np.sum(outs["conv:0"] * conv_tf) / np.linalg.norm(outs["conv:0"]) / np.linalg.norm(conv_tf)
    assert cos > 0.999


# --- the road: atc.sh -> img2bin -> msame -> reference -> loss_check ------------------------------


def _sh(*argv, cwd):
    env = dict(os.environ, PYTHONPATH=cwd)
    r = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["RGB888_U8", "YUV420SP_U8"])
def test_road_with_aipp(tmp_path, repo_root, fmt):
    import cv2

    pb = _freeze(str(tmp_path), batch=2, h=8, w=8, gray=False)
    csc = "csc_switch: true\n" + JPEG if fmt == "YUV420SP_U8" else ""
    cfg = _cfg(
        tmp_path,
        f"aipp_op {{\n aipp_mode: static\n input_format: {fmt}\n src_image_size_w: 12\n src_image_size_h: 10\n"
        f" crop: true\n load_start_pos_w: 2\n load_start_pos_h: 2\n {csc}"
        " mean_chn_0: 120\n mean_chn_1: 120\n mean_chn_2: 120\n var_reci_chn_0: 0.0078125\n"
        " var_reci_chn_1: 0.0078125\n var_reci_chn_2: 0.0078125\n}\n",
    )
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    for k in range(3):
        cv2.imwrite(str(images / f"im{k}.png"), rng.randint(0, 256, (10, 12, 3)).astype(np.uint8))
    py = sys.executable
    m = str(tmp_path / "m")
    _sh(
        "bash",
        "convert/atc.sh",
        f"--model={pb}",
        f"--output={m}",
        f"--insert_op_conf={cfg}",
        "--precision_mode=force_fp32",
        cwd=repo_root,
    )
    card = m + ".onnx.json"
    assert Signature.load(card).input("images").dtype == "uint8"
    bins, out, ref = (str(tmp_path / d) for d in ("bins", "out", "ref"))
    # -f/-w/-h come from the card (the config's input_format and src_image_size)
    _sh(py, "data_tools/img2bin.py", "-i", str(images), "--signature", card, "-o", bins, cwd=repo_root)
    size = os.path.getsize(os.path.join(bins, "images", sorted(os.listdir(os.path.join(bins, "images")))[0]))
    assert size == 2 * {"RGB888_U8": 10 * 12 * 3, "YUV420SP_U8": 10 * 12 * 3 // 2}[fmt]  # the .om's buffer
    ins = os.path.join(bins, "images")
    _sh(py, "infer/msame.py", "--model", m + ".onnx", "--input", ins, "--output", out, cwd=repo_root)
    _sh(py, "verify/reference.py", "--signature", card, "--input", ins, "--output", ref, cwd=repo_root)
    report = _sh(py, "verify/loss_check.py", "--signature", card, "--offline", out, "--reference", ref, "--inputs",
                 ins, cwd=repo_root)  # fmt: skip
    assert "PASS" in report


def test_card_runner_on_the_pb(frozen, tmp_path):
    """to_onnx --insert_op_conf writes the card the road reads: the frozen .pb run on the card's
    uint8 inputs (the golden-output backends) equals the portable model."""
    from infer.runner import open_runner

    pb = frozen[0]
    cfg = _cfg(tmp_path, "aipp_op {\n aipp_mode: static\n input_format: RGB888_U8\n mean_chn_1: 7\n}\n")
    out = str(tmp_path / "m.onnx")
    assert to_onnx.main(["--model", pb, "--output", out, "--insert_op_conf", cfg]) == 0
    card = Signature.load(card_beside(out))
    assert card.artifact["aipp"][0]["input_format"] == "RGB888_U8"
    feed = {"images": np.random.RandomState(6).randint(0, 256, (1, H, W, 3)).astype(np.uint8), "gray": _gray()}
    with open_runner(out, signature=card) as onnx_r, open_runner(pb, signature=card, backend="tf") as tf_r:
        got, want = onnx_r.infer(feed), tf_r.infer(feed)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[0][0, ..., 1], 2 * (feed["images"][0, ..., 1].astype(np.float32) - 7))


def test_doctor_on_an_fp16_aipp_model_from_uint8_bins(frozen, tmp_path, capsys):
    """The precision doctor takes the AIPP model and the uint8 NV12 files msame runs it on:
    the AIPP front is stripped (the stripped model on the numpy-AIPP'd feed gives the AIPP
    model's outputs on the uint8 feed), the graph's layers are matched and judged."""
    from common.loaders import ort_session
    from convert.parity import run_onnx
    from data_tools import binfiles
    from verify import compare_layers

    pb = frozen[0]
    cfg = _cfg(tmp_path, "aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n csc_switch: true\n"
               " matrix_r0c0: 256\n matrix_r0c2: 359\n matrix_r1c0: 256\n matrix_r1c1: -88\n matrix_r1c2: -183\n"
               " matrix_r2c0: 256\n matrix_r2c1: 454\n input_bias_1: 128\n input_bias_2: 128\n"
               " var_reci_chn_0: 0.0039\n var_reci_chn_1: 0.0039\n var_reci_chn_2: 0.0039\n}\n")  # fmt: skip
    out = str(tmp_path / "m.force_fp16.onnx")
    assert (
        to_onnx.main(["--model", pb, "--output", out, "--insert_op_conf", cfg, "--precision_mode", "force_fp16"]) == 0
    )
    card = Signature.load(card_beside(out))
    rng = np.random.RandomState(8)
    feed = {t.name: rng.randint(0, 256, t.shape).astype(t.np_dtype) if t.dtype == "uint8" else _gray(rng)
            for t in card.inputs}  # fmt: skip
    assert feed["images"].dtype == np.uint8 and feed["images"].shape[1] == H * 3 // 2  # NV12 rows
    for t in card.inputs:
        binfiles.write_bin(str(tmp_path / "bins" / t.name / "x_0.bin"), feed[t.name], t)
    stripped, inner, pre = compare_layers._strip_aipp(out, card)
    assert not any(n.name.startswith("aipp0/") for n in stripped.graph.node)
    got = run_onnx(ort_session(stripped), inner, pre(feed))
    want = run_onnx(ort_session(onnx.load(out)), card, feed)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3)
    keep = str(tmp_path / "keep.cfg")
    ins = ",".join(str(tmp_path / "bins" / t.name) for t in card.inputs)
    capsys.readouterr()
    assert compare_layers.main(["--pb", pb, "--onnx", out, "--input", ins, "--keep-dtype-out", keep]) == 0
    text = capsys.readouterr().out
    matched = int(text.split("matched ")[1].split()[0])
    assert matched >= 3 and "every matched layer within thresholds" in text
    assert open(keep).read() == ""


# --- img2bin: the formats such a config takes ---------------------------------------------------


def _jfif(rgb):
    """JPEG/JFIF full-range BT.601 YCbCr (ITU-T T.871), unrounded, per pixel."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b, 128 + 0.5 * r - 0.418688 * g - 0.081312 * b


def test_img2bin_writes_each_aipp_format(tmp_path, repo_root):
    import cv2

    from data_tools.image_tool import convert_image

    rgb = np.random.RandomState(10).randint(0, 256, (10, 12, 3)).astype(np.uint8)
    path = str(tmp_path / "im.png")
    cv2.imwrite(path, rgb[..., ::-1])
    img = {f: convert_image(path, 12, 10, f) for f in ("RGB888_U8", "XRGB8888_U8", "YUV400_U8", "YUV420SP_U8")}
    assert all(a.dtype == np.uint8 for a in img.values())
    np.testing.assert_array_equal(img["RGB888_U8"], rgb)
    np.testing.assert_array_equal(img["XRGB8888_U8"], np.concatenate([np.zeros((10, 12, 1), np.uint8), rgb], -1))
    y, cb, cr = _jfif(rgb)
    assert img["YUV400_U8"].shape == (10, 12) and np.abs(img["YUV400_U8"] - y).max() <= 0.5 + 1e-6
    nv12 = img["YUV420SP_U8"]
    assert nv12.shape == (15, 12) and np.array_equal(nv12[:10], img["YUV400_U8"])
    for i in range(5):
        for j in range(6):
            blk = (slice(2 * i, 2 * i + 2), slice(2 * j, 2 * j + 2))
            assert abs(nv12[10 + i, 2 * j] - cb[blk].mean()) <= 1.0  # U, then V, per 2x2 block
            assert abs(nv12[10 + i, 2 * j + 1] - cr[blk].mean()) <= 1.0
    nv21 = convert_image(path, 12, 10, "YVU420SP_U8")
    np.testing.assert_array_equal(nv21[10:].reshape(5, 6, 2), nv12[10:].reshape(5, 6, 2)[..., ::-1])

    py, out = sys.executable, str(tmp_path / "bins")
    env = dict(os.environ, PYTHONPATH=repo_root)
    r = subprocess.run(
        [py, "data_tools/img2bin.py", "-i", path, "-f", "YUV420SP_U8", "-w", "12", "-h", "10", "-o", out],
        cwd=repo_root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0 and os.path.getsize(os.path.join(out, "im.bin")) == 12 * 10 * 3 // 2
    for bad, words in (
        (["-f", "RGB888_U8", "-w", "12", "-h", "10", "-t", "float32"], "uint8 data"),
        (["-f", "YUV420SP_U8", "-w", "11", "-h", "10"], "even width and height"),
        (["-f", "RGB888_U8", "-w", "12", "-h", "10", "-c", "[1,1,1]"], "-c: not used"),
    ):
        r = subprocess.run([py, "data_tools/img2bin.py", "-i", path, "-o", str(tmp_path / "b2"), *bad],
                           cwd=repo_root, env=env, capture_output=True, text=True)  # fmt: skip
        assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr
        assert not os.path.exists(tmp_path / "b2")


ATC_STANDIN = """#!{py}
import json, os, sys
open(os.environ["ATC_ARGV"], "w").write(json.dumps(sys.argv[1:]))
args = sys.argv[1:]
out = [a.split("=", 1)[1] if "=" in a else args[i + 1] for i, a in enumerate(args) if a.split("=")[0] == "--output"][0]
open(out + ".om", "wb").write(b"om")
print("ATC run success, welcome to the next use.")
"""


def test_real_atc_gets_the_config_and_the_om_card_takes_uint8(frozen, tmp_path, monkeypatch, capsys):
    """With CANN (a stand-in atc on PATH) the flag goes to atc unchanged and the .om's card gives
    the uint8 input the .om takes; a dynamic config (ATC's business) leaves the .pb's inputs."""
    import json

    from convert import atc

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "atc").write_text(ATC_STANDIN.format(py=sys.executable))
    (bindir / "atc").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("ATC_ARGV", str(tmp_path / "argv.json"))
    pb = frozen[0]
    cfg = _cfg(tmp_path, "aipp_op {\n aipp_mode: static\n input_format: YUV420SP_U8\n csc_switch: true\n}\n")
    out = str(tmp_path / "m_yuv")
    assert atc.main(["--model", pb, "--output", out, "--insert_op_conf", cfg]) == 0
    got = json.loads((tmp_path / "argv.json").read_text())
    assert got[got.index("--insert_op_conf") + 1] == cfg  # as typed
    t = Signature.load(card_beside(out + ".om")).input("images")
    assert (t.dtype, t.shape) == ("uint8", [1, H * 3 // 2, W])
    dyn = _cfg(tmp_path, "aipp_op {\n aipp_mode: dynamic\n max_src_image_size: 100\n}\n", "dyn.cfg")
    out = str(tmp_path / "m_dyn")
    assert atc.main(["--model", pb, "--output", out, "--insert_op_conf", dyn]) == 0
    assert Signature.load(card_beside(out + ".om")).input("images").dtype == "float32"
    assert "keeps the .pb's inputs" in capsys.readouterr().err
