"""tfdepth.io.depth: depth file encodings -> metres (formulas on generated files, refusals by name, the
real samples), the files that name no encoding, and the one metres -> uint16 quantiser."""

import io

import cv2
import numpy as np
import pytest

from helpers import SHARED_DATA as REAL
from helpers import palette_png
from tfdepth.io import depth as depth_io
from tfdepth.io.depth import DepthFormatError, decode_depth, decode_nyu_densedepth
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/real_rgbd is absent")


def png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def pgm16(values: np.ndarray, byteorder: str = "<", comment: bool = False) -> bytes:
    h, w = values.shape
    header = b"P5\n" + (b"# kinect dump\n" if comment else b"") + f"{w} {h}\n65535\n".encode()
    return header + values.astype(np.dtype(np.uint16).newbyteorder(byteorder)).tobytes()


@pytest.fixture(scope="module")
def u16():
    rng = np.random.default_rng(0)
    v = rng.integers(0, 40000, size=(12, 16)).astype(np.uint16)
    v[0, :3] = 0
    return v


@pytest.mark.parametrize("name,divisor", [("mm16", 1000.0), ("kitti16", 256.0), ("tum16", 5000.0)])
def test_linear_16bit_presets(u16, name, divisor):
    depth = decode_depth(png(u16), name, "d.png")
    assert depth.dtype == np.float32 and depth.shape == u16.shape
    np.testing.assert_allclose(depth, u16 / divisor, rtol=1e-6, atol=0)
    assert (depth[0, :3] == 0).all()


def test_sun16_bit_rotation(u16):
    # SUN stores each millimetre value m rotated left by 3 bits; the reader rotates right by 3.
    mm = (u16 // 2).astype(np.uint32)  # < 2**15
    stored = (((mm << 3) | (mm >> 13)) & 0xFFFF).astype(np.uint16)
    depth = decode_depth(png(stored), "sun16", "sun.png")
    np.testing.assert_allclose(depth, mm / 1000.0, rtol=1e-6, atol=0)
    # the documented formula on a hand value: stored 0x0009 -> (0x0009 >> 3) | (0x0009 << 13) = 0x2001
    assert depth_io.sun_unrotate(np.array([9], np.uint16))[0] == 0x2001


def test_png8_and_explicit_scale():
    v8 = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_allclose(decode_depth(png(v8), "png8-10m", "d8.png"), v8 / 255.0 * 10.0, rtol=1e-6)
    enc = depth_io.explicit_scale_encoding(200.0)
    np.testing.assert_allclose(decode_depth(png(v8), enc, "d8.png"), v8 / 200.0, rtol=1e-6)
    v16 = (np.arange(256, dtype=np.uint16) * 100).reshape(16, 16)
    np.testing.assert_allclose(decode_depth(png(v16), enc, "d16.png"), v16 / 200.0, rtol=1e-6)
    with pytest.raises(DepthFormatError, match="positive"):
        depth_io.explicit_scale_encoding(0.0)


def test_nyu_raw_formula_and_endianness():
    d = np.array([[0, 500, 1000, 1092], [1093, 2047, 800, 1040]], np.uint16)
    depth = decode_depth(pgm16(d, "<", comment=True), "nyu-raw", "raw.pgm")
    expected = np.where((d == 2047) | (1092.5 - d.astype(float) <= 0), 0.0, 351.3 / (1092.5 - d.astype(float)))
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    assert depth[1, 0] == 0 and depth[1, 1] == 0 and depth[0, 3] == pytest.approx(702.6, rel=1e-6)
    with pytest.raises(DepthFormatError, match=r"big.endian.*|exceed 2047"):
        decode_depth(pgm16(d, ">"), "nyu-raw", "raw_be.pgm")
    with pytest.raises(DepthFormatError, match="raw_cut.pgm: PGM is truncated"):
        decode_depth(pgm16(d, "<")[:-3], "nyu-raw", "raw_cut.pgm")
    with pytest.raises(DepthFormatError, match="not a binary PGM"):
        decode_depth(png(d), "nyu-raw", "raw.png")


def test_npy_metres():
    a = np.array([[1.5, np.nan], [np.inf, 0.25]], np.float32)
    buf = io.BytesIO()
    np.save(buf, a[..., None])
    depth = decode_depth(buf.getvalue(), "npy-m", "d.npy")
    np.testing.assert_array_equal(depth, [[1.5, 0.0], [0.0, 0.25]])
    buf = io.BytesIO()
    np.save(buf, np.ones((2, 2), np.uint16))
    with pytest.raises(DepthFormatError, match="d_int.npy: .npy depth is uint16; npy-m expects float"):
        decode_depth(buf.getvalue(), "npy-m", "d_int.npy")
    with pytest.raises(DepthFormatError, match="bad.npy: cannot read"):
        decode_depth(b"not numpy", "npy-m", "bad.npy")


def test_refusals_name_the_file(u16):
    with pytest.raises(DepthFormatError, match=r"d8\.png: 8-bit greyscale PNG.*expects 16-bit"):
        decode_depth(png(np.zeros((4, 4), np.uint8)), "mm16", "d8.png")
    with pytest.raises(DepthFormatError, match=r"d16\.png: 16-bit greyscale PNG.*expects 8-bit"):
        decode_depth(png(u16), "png8-10m", "d16.png")
    with pytest.raises(DepthFormatError, match=r"rgb\.png: 8-bit RGB PNG"):
        decode_depth(png(np.zeros((4, 4, 3), np.uint8)), "mm16", "rgb.png")
    with pytest.raises(DepthFormatError, match=r"pal\.png: 8-bit palette PNG"):
        decode_depth(palette_png(np.zeros((4, 4), np.uint8)), "png8-10m", "pal.png")
    data = png(u16)
    with pytest.raises(DepthFormatError, match=r"cut\.png: cannot decode image"):
        decode_depth(data[: len(data) // 2], "mm16", "cut.png")
    with pytest.raises(DepthFormatError, match=r"hdr\.png: PNG is truncated"):
        decode_depth(data[:20], "mm16", "hdr.png")
    with pytest.raises(DepthFormatError, match="empty"):
        decode_depth(b"", "tum16", "empty.png")
    with pytest.raises(DepthFormatError, match="unknown depth encoding 'mm32'"):
        decode_depth(data, "mm32", "x.png")


def test_nyu_densedepth_detection():
    v8 = np.array([[0, 1, 128, 255]], np.uint8)
    depth, kind = decode_nyu_densedepth(png(v8), "train/1.png")
    assert kind == "png8-10m"
    np.testing.assert_allclose(depth, v8 / 255.0 * 10.0, rtol=1e-6)
    v16 = np.array([[0, 713, 4000, 9999]], np.uint16)
    depth, kind = decode_nyu_densedepth(png(v16), "test/1_depth.png")
    assert kind == "mm16"
    np.testing.assert_allclose(depth, v16 / 1000.0, rtol=1e-6)
    refusals = {
        "palette": (palette_png(np.array([[0, 3], [9, 200]], np.uint8)), r"8-bit palette PNG"),
        "rgb": (png(np.zeros((2, 2, 3), np.uint8)), r"8-bit RGB PNG"),
        "rgb16": (png(np.zeros((2, 2, 3), np.uint16)), r"16-bit RGB PNG"),
        "grey_alpha": (png(np.zeros((2, 2, 4), np.uint8)), r"RGBA PNG"),
        "small16": (png(np.array([[0, 12, 200, 255]], np.uint16)), r"largest value is 255 <= 255: looks like 8-bit"),
        "x257": (png((np.array([[0, 12, 200, 255]], np.uint16) * 257).astype(np.uint16)), r"multiples of 257"),
        "jpeg": (cv2.imencode(".jpg", np.zeros((8, 8), np.uint8))[1].tobytes(), r"not a PNG"),
    }
    for name, (data, pattern) in refusals.items():
        with pytest.raises(DepthFormatError, match=rf"zip:{name}\.png: .*{pattern}"):
            decode_nyu_densedepth(data, f"zip:{name}.png")


def test_depth_quantisation_contract():
    d = np.array([[np.nan, np.inf, 1e-5, 0.0, 2.5, 65.535]])
    np.testing.assert_array_equal(depth_io.depth_to_uint16(d, 1000.0), [[0, 0, 1, 0, 2500, 65535]])
    with pytest.raises(DepthFormatError, match="x: depth 65.535 m exceeds 10.922 m"):
        depth_io.depth_to_uint16(d, 6000.0, "x")
    # saturating (the predict command's millimetre PNGs): beyond 65.535 m -> 65535, the rest as above
    np.testing.assert_array_equal(depth_io.depth_to_uint16(np.append(d, [[70.0]], 1), 1000.0, saturate=True),
                                  [[0, 0, 1, 0, 2500, 65535, 65535]])


def test_choose_store_scale():
    assert depth_io.choose_store_scale(10.0, 5000.0) == 5000.0
    assert depth_io.choose_store_scale(20.0, 5000.0) == 1000.0
    assert depth_io.choose_store_scale(90.0, 256.0) == 256.0
    assert depth_io.choose_store_scale(80.0) == 256.0


# ---------------------------------------------------------------------------------- real samples


@needs_real
def test_real_tum16():
    raw = cv2.imread(str(REAL / "formats/TUM_depth.png"), cv2.IMREAD_UNCHANGED)
    depth = depth_io.read_depth(str(REAL / "formats/TUM_depth.png"), "tum16")
    np.testing.assert_array_equal(depth, (raw.astype(np.float32) / np.float32(5000.0)))
    valid = depth[depth > 0]
    assert 0.5 < valid.mean() < 6 and valid.min() >= 0.3 and valid.max() <= 10.0
    assert 0.6 < valid.size / depth.size < 0.95


@needs_real
def test_real_sun16():
    raw = cv2.imread(str(REAL / "formats/SUN_depth.png"), cv2.IMREAD_UNCHANGED).astype(np.uint32)
    depth = depth_io.read_depth(str(REAL / "formats/SUN_depth.png"), "sun16")
    expected = (((raw >> 3) | (raw << 13)) & 0xFFFF).astype(np.float32) / np.float32(1000.0)
    np.testing.assert_array_equal(depth, expected)
    valid = depth[depth > 0]
    assert valid.min() >= 0.3 and valid.max() <= 10.0 and 1.0 < np.median(valid) < 6.0
    # Read as plain millimetres, the same file is implausible: the rotation matters.
    assert raw.max() / 1000.0 > 60.0


@needs_real
def test_real_nyu_raw_pgm():
    data = (REAL / "formats/NYU_depth.pgm").read_bytes()
    depth = decode_depth(data, "nyu-raw", "NYU_depth.pgm")
    # raw samples straight from the file bytes (header "P5 640 480 65535\n", little-endian payload)
    d = np.frombuffer(data[len(b"P5 640 480 65535\n"):], "<u2").reshape(480, 640).astype(np.float64)
    expected = np.where(d == 2047, 0.0, 351.3 / (1092.5 - d))
    assert (1092.5 - d[d != 2047] > 0).all()
    np.testing.assert_array_equal(depth, expected.astype(np.float32))
    valid = depth[depth > 0]
    assert valid.min() >= 0.5 and valid.max() <= 10.0 and 0.85 < valid.size / depth.size < 1.0
    # the standard big-endian reading gives values far beyond 11 bits: refused by the same reader
    with pytest.raises(DepthFormatError, match="exceed 2047"):
        swapped = np.frombuffer(data[17:], np.uint8).reshape(-1, 2)[:, ::-1].tobytes()
        decode_depth(data[:17] + swapped, "nyu-raw", "x")


@needs_real
@pytest.mark.parametrize("folder,encoding,divisor,max_m", [("nyu", "mm16", 1000.0, 10.0), ("kitti", "kitti16", 256.0, 90.0)])
def test_real_folder_depths(folder, encoding, divisor, max_m):
    for path in sorted((REAL / folder / "depth").glob("*.png")):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        depth = depth_io.read_depth(str(path), encoding)
        np.testing.assert_array_equal(depth, raw.astype(np.float32) / np.float32(divisor))
        valid = depth[depth > 0]
        assert valid.min() > 0.2 and valid.max() <= max_m


def test_depth_png16_written_and_read_back(tmp_path):
    """The predict command's millimetre PNG: saturating quantiser, 16-bit greyscale, read back as mm16."""
    from tfdepth.io.depth import depth_to_uint16, read_depth, write_depth_png16

    depth = np.array([[0.0, 1.2344, 1.2346, 70.0], [np.nan, -1.0, 0.0004, 5.0]], np.float32)
    mm = depth_to_uint16(depth, 1000.0, saturate=True)
    assert mm.tolist() == [[0, 1234, 1235, 65535], [0, 0, 1, 5000]]
    write_depth_png16(str(tmp_path / "d.png"), depth)
    raw = cv2.imread(str(tmp_path / "d.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.tolist() == mm.tolist()
    np.testing.assert_allclose(read_depth(str(tmp_path / "d.png"), "mm16"), mm / 1000.0)
    assert [p.name for p in tmp_path.iterdir()] == ["d.png"]  # written atomically, no temporary left


def test_scaled_depth_files_of_evaluate_and_the_measuring_page():
    """decode_scaled_depth: .npy metres (any numeric type), 16-bit PNG / scale, 8-bit only when allowed."""
    from tfdepth.io.depth import decode_scaled_depth

    buf = io.BytesIO()
    np.save(buf, np.array([[0, 2], [3, 4]], np.int32)[..., None])
    got = decode_scaled_depth(buf.getvalue(), "a.npy", scale=None)
    assert got.dtype == np.float64 and got.tolist() == [[0, 2], [3, 4]]
    mm = np.array([[0, 1500], [65535, 1]], np.uint16)
    np.testing.assert_array_equal(decode_scaled_depth(png(mm), "a.png", 1000.0), mm / 1000.0)
    eight = png(np.array([[0, 100]], np.uint8))
    assert decode_scaled_depth(eight, "e.png", 25.5, allow_8bit=True).tolist() == [[0.0, 100 / 25.5]]
    refusals = [
        (b"", None, "x.png: empty file"),
        (png(mm), None, "x.png: a depth PNG needs its scale, --gt-scale S"),
        (eight, 25.5, "x.png: 8-bit depth PNG refused"),
        (png(np.zeros((2, 2, 3), np.uint8)), 1000.0, "x.png: a depth PNG must have one channel"),
        (png(mm)[:60], 1000.0, "x.png: cannot decode depth PNG"),
        (b"hello", 1000.0, "x.png: not a depth depth file"),
    ]
    for data, scale, message in refusals:
        with pytest.raises(DepthFormatError, match=message):
            decode_scaled_depth(data, "x.png", scale)
