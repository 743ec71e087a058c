"""Intrinsics, back-projection and PLY point clouds (tfdepth.geometry): formulas and round trips."""

import math

import numpy as np
import pytest

from tfdepth.geometry import (
    DEFAULT_FOV_DEG,
    Intrinsics,
    backproject,
    center_crop_window,
    intrinsics_for_model_input,
    point_cloud,
    read_ply,
    write_ply,
)


def test_from_fov_matches_the_pinhole_formula():
    intr = Intrinsics.from_fov(90.0, (480, 640))
    # tan(45 deg) = 1: the focal length is half the width; principal point at the pixel-grid centre.
    assert intr.fx == pytest.approx(320.0) and intr.fy == pytest.approx(320.0)
    assert (intr.cx, intr.cy) == (319.5, 239.5)
    intr60 = Intrinsics.from_fov(DEFAULT_FOV_DEG, (100, 200))
    assert intr60.fx == pytest.approx(100.0 / math.tan(math.radians(30.0)))
    assert intr60.horizontal_fov_deg(200) == pytest.approx(DEFAULT_FOV_DEG)
    for bad in (0.0, 180.0, -5.0):
        with pytest.raises(ValueError, match="field of view"):
            Intrinsics.from_fov(bad, (10, 10))


def test_parse_and_validation():
    assert Intrinsics.parse("518.8579, 519.46961,325.58245,253.73617").as_list() == pytest.approx(
        [518.8579, 519.46961, 325.58245, 253.73617])
    with pytest.raises(ValueError, match="fx,fy,cx,cy"):
        Intrinsics.parse("1,2,3")
    with pytest.raises(ValueError, match="fx,fy,cx,cy"):
        Intrinsics.parse("a,b,c,d")
    with pytest.raises(ValueError, match="positive"):
        Intrinsics(0.0, 1.0, 0.0, 0.0)


def test_scaling_follows_half_pixel_centres():
    intr = Intrinsics(500.0, 400.0, 319.5, 239.5)
    half = intr.scaled((480, 640), (240, 320))
    assert half.as_list() == pytest.approx([250.0, 200.0, 159.5, 119.5])  # the centre stays the centre
    # A pixel centre u in the original maps to (u + 0.5) * s - 0.5; the ray through it must not change.
    s = 0.5
    for u, v in [(0.0, 0.0), (100.0, 50.0), (639.0, 479.0)]:
        u2, v2 = (u + 0.5) * s - 0.5, (v + 0.5) * s - 0.5
        assert (u2 - half.cx) / half.fx == pytest.approx((u - intr.cx) / intr.fx)
        assert (v2 - half.cy) / half.fy == pytest.approx((v - intr.cy) / intr.fy)
    back = half.scaled((240, 320), (480, 640))
    assert back.as_list() == pytest.approx(intr.as_list())


def test_model_input_intrinsics_for_both_resize_modes():
    intr = Intrinsics(50.0, 45.0, 31.5, 23.5)  # a 48x64 picture
    resized = intrinsics_for_model_input(intr, (48, 64), (64, 64), "resize")
    assert resized.as_list() == pytest.approx([50.0, 45.0 * 64 / 48, 31.5, (23.5 + 0.5) * 64 / 48 - 0.5])
    # center_crop: a 48x48 window starting at column 8, then 48 -> 64.
    assert center_crop_window((48, 64), 1.0) == (0, 8, 48, 48)
    cropped = intrinsics_for_model_input(intr, (48, 64), (64, 64), "center_crop")
    s = 64 / 48
    assert cropped.as_list() == pytest.approx([50.0 * s, 45.0 * s, (31.5 - 8 + 0.5) * s - 0.5, (23.5 + 0.5) * s - 0.5])
    with pytest.raises(ValueError, match="resize_mode"):
        intrinsics_for_model_input(intr, (48, 64), (64, 64), "pad")


def test_center_crop_window_matches_the_pipeline():
    import tensorflow as tf

    from tfdepth.data.pipeline import resize_pair

    for size, target in [((48, 64), (64, 64)), ((375, 1242), (96, 128)), ((100, 60), (30, 40))]:
        top, left, h, w = center_crop_window(size, target[1] / target[0])
        # Mark the crop window in a ramp image: after the pipeline's crop + nearest resize, the values
        # seen must come from inside the window only, spanning it.
        index = np.arange(size[0] * size[1], dtype=np.float32).reshape(size[0], size[1], 1)
        image = tf.zeros(size + (3,), tf.float32)
        _, depth = resize_pair(image, tf.constant(index), target, "center_crop")
        rows = (depth.numpy()[..., 0] // size[1]).astype(int)
        cols = (depth.numpy()[..., 0] % size[1]).astype(int)
        assert rows.min() >= top and rows.max() < top + h and cols.min() >= left and cols.max() < left + w
        assert rows.max() - rows.min() >= h - math.ceil(h / target[0]) - 1
        assert cols.max() - cols.min() >= w - math.ceil(w / target[1]) - 1


def test_backprojection_of_a_plane_is_metric():
    depth_m = 2.5
    intr = Intrinsics(100.0, 80.0, 15.5, 9.0)
    points = backproject(np.full((20, 32), depth_m, np.float32), intr)
    assert points.shape == (20, 32, 3)
    v, u = 7, 30
    assert points[v, u] == pytest.approx([(u - 15.5) * depth_m / 100.0, (v - 9.0) * depth_m / 80.0, depth_m])
    assert np.all(points[..., 2] == np.float32(depth_m))
    # The principal point lies on the optical axis; x grows to the right, y downwards.
    assert points[9, 0, 0] < 0 < points[9, 31, 0]
    assert points[0, 15, 1] < 0 < points[19, 15, 1]


def test_point_cloud_drops_invalid_pixels_and_keeps_colours_aligned():
    depth = np.array([[1.0, 0.0, 2.0], [np.nan, 3.0, -1.0]], np.float32)
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3)
    intr = Intrinsics(1.0, 1.0, 1.0, 0.0)
    points, colors = point_cloud(depth, intr, rgb)
    assert points.shape == (3, 3) and colors.shape == (3, 3)
    assert points[:, 2].tolist() == [1.0, 2.0, 3.0]
    assert colors.tolist() == [rgb[0, 0].tolist(), rgb[0, 2].tolist(), rgb[1, 1].tolist()]
    assert points[1].tolist() == pytest.approx([(2 - 1) * 2.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="colour image"):
        point_cloud(depth, intr, rgb[:, :2])


@pytest.mark.parametrize("binary", [True, False])
def test_ply_round_trip(tmp_path, binary):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(50, 3)).astype(np.float32)
    colors = rng.integers(0, 256, (50, 3), dtype=np.uint8)
    path = str(tmp_path / "cloud.ply")
    write_ply(path, points, colors, binary=binary)
    header = open(path, "rb").read(400)
    assert b"element vertex 50" in header
    assert (b"binary_little_endian" in header) == binary
    read_points, read_colors = read_ply(path)
    np.testing.assert_allclose(read_points, points, rtol=1e-6 if not binary else 0, atol=1e-7)
    np.testing.assert_array_equal(read_colors, colors)
    if binary:  # header + 50 records of 3 float32 and 3 uchar
        body = open(path, "rb").read()
        assert len(body) - body.index(b"end_header\n") - len(b"end_header\n") == 50 * 15


def test_ply_without_colours_and_empty(tmp_path):
    path = str(tmp_path / "plain.ply")
    write_ply(path, np.zeros((0, 3), np.float32))
    points, colors = read_ply(path)
    assert points.shape == (0, 3) and colors is None
    with pytest.raises(ValueError, match="not a PLY"):
        (tmp_path / "x.ply").write_text("hello")
        read_ply(str(tmp_path / "x.ply"))
