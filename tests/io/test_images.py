"""tfdepth.io.images: pictures read upright as RGB uint8 (EXIF, grey, alpha, 16-bit), unreadable files
named, the converters' stored-order decoding with pass-through bytes, and the one PNG encoder."""

import cv2
import numpy as np
import pytest

from helpers import ramp_rgb, write_rgb


# --------------------------------------------------------------------------------------------------
# Reading pictures
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    from PIL import Image, ImageOps

    from tfdepth.io.images import load_image

    stored = ramp_rgb(6, 10)
    stored[0, 0] = (255, 0, 0)  # a marked corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    Image.fromarray(stored).save(path, exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = load_image(str(path))
    assert got.shape == expected.shape == ((6, 10, 3) if orientation <= 4 else (10, 6, 3))
    np.testing.assert_array_equal(got, expected)


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    from PIL import Image

    from tfdepth.io.images import load_image

    upright = ramp_rgb(40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated 90 degrees counter-clockwise
    path = tmp_path / "phone.jpg"
    Image.fromarray(np.rot90(upright, k=1).copy()).save(path, exif=exif, quality=95)
    got = load_image(str(path))
    assert got.shape == (40, 64, 3)
    assert np.abs(got.astype(int) - upright.astype(int)).mean() < 3


def test_grey_rgba_and_16_bit_pictures(tmp_path):
    from tfdepth.io.images import load_image

    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    np.testing.assert_array_equal(load_image(str(tmp_path / "grey.png")), np.repeat(grey[..., None], 3, 2))

    rgb = ramp_rgb(6, 8)
    bgra = np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((6, 8, 1), 7, np.uint8)], -1)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    np.testing.assert_array_equal(load_image(str(tmp_path / "rgba.png")), rgb)

    rgb16 = np.random.default_rng(0).integers(0, 65536, (6, 8, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(load_image(str(tmp_path / "rgb16.png")),
                                  np.rint(rgb16 / 257.0).astype(np.uint8))

    grey16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000)
    cv2.imwrite(str(tmp_path / "grey16.png"), grey16)
    expected = np.rint(grey16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(load_image(str(tmp_path / "grey16.png")), np.repeat(expected[..., None], 3, 2))


def test_unreadable_files_are_named(tmp_path):
    from tfdepth.io.images import ImageReadError, iter_video_frames, load_image

    good = tmp_path / "good.png"
    write_rgb(good, ramp_rgb(8, 8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not a picture")
    for name, reason in [("truncated.png", "cannot decode"), ("empty.jpg", "empty file"),
                         ("text.jpg", "cannot decode"), ("missing.png", "cannot read file")]:
        with pytest.raises(ImageReadError, match=f"{name}: {reason}"):
            load_image(str(tmp_path / name))
    with pytest.raises(ImageReadError, match="text.jpg"):
        list(iter_video_frames(str(tmp_path / "text.jpg")))


# --------------------------------------------------------------------------------------------------
# The converters' decoding, encoding
# --------------------------------------------------------------------------------------------------


def test_decode_rgb_keeps_plain_bytes_and_ignores_exif(tmp_path):
    from PIL import Image

    from tfdepth.io.images import ImageReadError, decode_rgb, encode_jpeg, encode_png

    rgb = ramp_rgb(12, 20)
    png = encode_png(rgb)
    image = decode_rgb(png, "a.png")
    assert image.format == "png" and image.encoded == png and (image.height, image.width) == (12, 20)
    np.testing.assert_array_equal(image.rgb, rgb)  # lossless, RGB order
    jpeg = encode_jpeg(rgb, quality=95)
    image = decode_rgb(jpeg, "a.jpg")
    assert image.format == "jpeg" and image.encoded == jpeg
    assert np.abs(image.rgb.astype(int) - rgb.astype(int)).mean() < 3
    assert decode_rgb(png, "a.png", allow_passthrough=False).encoded is None
    # grey and 16-bit pictures are decoded but not passed through
    grey = decode_rgb(encode_png(rgb[..., 0]), "grey.png")
    assert grey.encoded is None and grey.rgb.shape == (12, 20, 3)
    # stored order: an EXIF-rotated picture keeps its stored grid (as TensorFlow's decoders do)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    Image.fromarray(rgb).save(path, exif=exif)
    np.testing.assert_array_equal(decode_rgb(path.read_bytes(), "rotated.png").rgb, rgb)
    with pytest.raises(ImageReadError, match=r"cut\.jpg: cannot decode image .*truncated"):
        decode_rgb(jpeg[: len(jpeg) // 2], "cut.jpg")


def test_one_png_encoder_round_trips(tmp_path):
    from tfdepth.io.images import encode_png, write_rgb

    rgb = ramp_rgb(9, 13)
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(encode_png(rgb), np.uint8), cv2.IMREAD_COLOR),
                                  cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    depth = np.arange(9 * 13, dtype=np.uint16).reshape(9, 13) * 500
    decoded = cv2.imdecode(np.frombuffer(encode_png(depth), np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, depth)
    write_rgb(str(tmp_path / "sub" / "x.png"), rgb)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "sub" / "x.png"))[..., ::-1], rgb)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["x.png"]  # no temporary left
