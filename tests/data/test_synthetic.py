"""The embedded procedural RGB-D generator: analytic geometry, intrinsics, determinism, dataset files."""

import dataclasses
import math
import os

import numpy as np
import pytest

from tfdepth.config import SyntheticConfig
from tfdepth.data import synthetic
from tfdepth.data.synthetic import (Box, Camera, Cylinder, Material, Plane, Scene, Sphere, ensure_synthetic_dataset,
                                    render, render_scene, sample_seed, write_synthetic_dataset)

# A small camera whose principal point sits on a pixel centre (row 24, column 32).
H, W, F, CX, CY = 49, 65, 50.0, 32.0, 24.0
CY_I, CX_I = int(CY), int(CX)


def _rays(cam: Camera):
    """Camera-frame ray components (xc, yc) of every pixel, float64 [H, W]; the ray is (xc, yc, 1)."""
    v, u = np.mgrid[0:cam.height_px, 0:cam.width_px].astype(np.float64)
    return (u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy


# --------------------------------------------------------------------------------------------------
# Geometry against formulas
# --------------------------------------------------------------------------------------------------


def test_wall_straight_ahead_gives_its_distance_as_z_depth():
    distance = 3.0
    cam = Camera.kinect(48, 64, position=(0.3, 1.2, -0.5), yaw=0.0, pitch=0.0)
    out = render(cam, Scene(planes=[Plane((0.0, 0.0, 1.0), -0.5 + distance)]))
    depth = out["depth_m"]
    assert depth.shape == (48, 64) and depth.dtype == np.float32
    assert (depth > 0).all()  # every ray of a forward camera meets a wall ahead of it
    np.testing.assert_allclose(depth, distance, atol=1e-4)  # z-depth, not ray length (corners are ~20 % longer)
    # a yawed camera (looking along +x) in front of the wall x = 4
    cam = Camera.kinect(48, 64, position=(1.0, 1.5, 2.0), yaw=math.pi / 2, pitch=0.0)
    depth = render(cam, Scene(planes=[Plane((-1.0, 0.0, 0.0), -4.0)]))["depth_m"]
    np.testing.assert_allclose(depth, 3.0, atol=1e-4)


def test_pitched_camera_over_floor_matches_analytic_depth():
    height_m, pitch, yaw = 1.4, math.radians(12.0), 0.7
    cam = Camera.kinect(48, 64, position=(2.0, height_m, 1.0), yaw=yaw, pitch=pitch)
    depth = render(cam, Scene(planes=[Plane((0.0, 1.0, 0.0), 0.0)]))["depth_m"].astype(np.float64)
    _, yc = _rays(cam)
    # A point at z-depth Z on the ray (xc, yc, 1) lies Z * (sin(pitch) + yc * cos(pitch)) below the camera.
    denom = math.sin(pitch) + yc * math.cos(pitch)
    hits = denom > 0
    assert 0.3 < hits.mean() < 1.0  # horizon inside the image
    np.testing.assert_array_equal(depth > 0, hits)
    expected = np.where(hits, height_m / np.where(hits, denom, 1.0), 0.0)
    near = hits & (expected < 20.0)
    assert near.sum() > 0.3 * depth.size
    np.testing.assert_allclose(depth[near], expected[near], atol=1e-4)
    np.testing.assert_allclose(depth[hits], expected[hits], rtol=1e-5)


def test_sphere_box_and_cylinder_depths_match_formulas():
    cam = Camera(H, W, F, F, CX, CY, position=(0.0, 0.0, 0.0), yaw=0.0, pitch=0.0)
    xc, yc = _rays(cam)
    back_m = 9.0
    wall = Plane((0.0, 0.0, -1.0), -back_m)

    # Sphere of radius 1 centred 5 m ahead: smaller root of |t d - c|^2 = r^2 with d = (xc, yc, 1).
    depth = render(cam, Scene(planes=[wall], spheres=[Sphere((0.0, 0.0, 5.0), 1.0)]))["depth_m"].astype(np.float64)
    a = xc ** 2 + yc ** 2 + 1.0
    b = 5.0  # d . c
    disc = b * b - a * (25.0 - 1.0)
    on_sphere = disc > 1e-6
    expected = np.where(on_sphere, (b - np.sqrt(np.maximum(disc, 0.0))) / a, back_m)
    assert depth[CY_I, CX_I] == pytest.approx(4.0, abs=1e-4)
    assert 0.05 < on_sphere.mean() < 0.5
    clear = np.abs(disc) > 1e-3  # leave out silhouette pixels (float32 vs float64 at the tangent)
    np.testing.assert_allclose(depth[clear], expected[clear], atol=1e-4)

    # Box whose front face (z = 3) spans x, y in [-0.5, 0.5]: pixels inside its projection read 3 m.
    depth = render(cam, Scene(planes=[wall], boxes=[Box((-0.5, -0.5, 3.0), (0.5, 0.5, 4.0))]))["depth_m"]
    in_face = (np.abs(xc * 3.0) < 0.5 - 1e-3) & (np.abs(yc * 3.0) < 0.5 - 1e-3)
    # the camera is on the box axis, so its side faces are hidden and the front face is the silhouette
    outside = (np.abs(xc * 3.0) > 0.5 + 1e-3) | (np.abs(yc * 3.0) > 0.5 + 1e-3)
    assert in_face.sum() > 50
    np.testing.assert_allclose(depth[in_face], 3.0, atol=1e-4)
    np.testing.assert_allclose(depth[outside], back_m, atol=1e-4)

    # Vertical cylinder (radius 0.6, axis at x = 0.4, z = 4, 0.3 m above to 0.5 m below the camera
    # centre, y up in the world = -yc): smaller root of (t xc - 0.4)^2 + (t - 4)^2 = 0.36.
    cyl = Cylinder(0.4, 4.0, 0.6, -0.5, 0.3)
    depth = render(cam, Scene(planes=[wall], cylinders=[cyl]))["depth_m"].astype(np.float64)
    a = xc ** 2 + 1.0
    b = 0.4 * xc + 4.0
    disc = b * b - a * (0.16 + 16.0 - 0.36)
    t_side = (b - np.sqrt(np.maximum(disc, 0.0))) / a
    y_world = -yc * t_side
    on_side = (disc > 1e-3) & (y_world > -0.5 + 1e-3) & (y_world < 0.3 - 1e-3)
    assert on_side.sum() > 50
    np.testing.assert_allclose(depth[on_side], t_side[on_side], atol=1e-4)



def test_shading_follows_point_light_falloff():
    """Plain white wall, light at the camera: the principal pixel gets 255 * power / (1 + D^2)."""
    cam = Camera(H, W, F, F, CX, CY)
    white = Material(color=(1.0, 1.0, 1.0))
    for distance, power in ((3.0, 5.0), (2.0, 2.0), (4.0, 12.0)):
        scene = Scene(planes=[Plane((0.0, 0.0, -1.0), -distance, white)], light_position=(0.0, 0.0, 0.0),
                      light_power=power, ambient=0.0)
        rgb = render(cam, scene)["rgb"]
        expected = 255.0 * power / (1.0 + distance ** 2)
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        np.testing.assert_allclose(rgb[CY_I, CX_I].astype(float), min(expected, 255.0), atol=1.01)
        # off-axis pixels are farther from the light and lit at a slant: darker
        assert rgb[0, 0, 0] < rgb[CY_I, CX_I, 0]


def test_grazing_far_and_near_surfaces_are_invalid():
    cam = Camera.kinect(48, 64, position=(0.0, 1.0, 0.0), pitch=math.radians(5.0))
    scene = Scene(planes=[Plane((0.0, 1.0, 0.0), 0.0)])
    depth = render(cam, scene)["depth_m"]
    limited = render(cam, scene, max_valid_depth_m=6.0, min_valid_depth_m=2.0, grazing_limit_deg=80.0)["depth_m"]
    xc, yc = _rays(cam)
    # floor: angle between ray and the normal is 90 deg - elevation of the ray below the horizon
    down = cam.rotation() @ np.stack([xc.ravel(), yc.ravel(), np.ones(xc.size)])
    cos_to_normal = np.abs(down[1]) / np.linalg.norm(down, axis=0)
    d = depth.ravel()
    keep = (d > 0) & (d <= 6.0) & (d >= 2.0) & (cos_to_normal >= math.cos(math.radians(80)))
    np.testing.assert_array_equal(limited.ravel() > 0, keep)
    assert 0 < keep.sum() < (depth > 0).sum()


# --------------------------------------------------------------------------------------------------
# Random scenes
# --------------------------------------------------------------------------------------------------


def test_intrinsics_scale_with_image_size():
    fx, fy, cx, cy = render_scene(0, 240, 320)["intrinsics"]
    assert fx == pytest.approx(518.8579 / 2) and fy == pytest.approx(519.4696 / 2)
    assert cx == pytest.approx(325.5824 / 2) and cy == pytest.approx(253.7362 / 2)
    fx, fy, cx, cy = render_scene(0, 48, 64)["intrinsics"]
    assert fx == pytest.approx(518.8579 / 10) and cy == pytest.approx(253.7362 / 10)
    # the NYU toolbox's camera_params (fx_rgb, fy_rgb, cx_rgb, cy_rgb), the one constant in tfdepth.geometry
    assert synthetic.kinect_intrinsics(480, 640) == pytest.approx((518.857901, 519.469611, 325.582449, 253.736166),
                                                                  rel=1e-9)


def test_render_scene_is_deterministic_by_seed():
    a, b, c = render_scene(7, 48, 64), render_scene(7, 48, 64), render_scene(8, 48, 64)
    assert a["rgb"].dtype == np.uint8 and a["rgb"].shape == (48, 64, 3)
    assert a["depth_m"].dtype == np.float32 and a["depth_m"].shape == (48, 64)
    np.testing.assert_array_equal(a["rgb"], b["rgb"])
    np.testing.assert_array_equal(a["depth_m"], b["depth_m"])
    assert not np.array_equal(a["rgb"], c["rgb"])
    assert not np.array_equal(a["depth_m"], c["depth_m"])


def test_random_scene_depth_range_and_invalid_fraction():
    mins, maxs, invalid = [], [], []
    for seed in range(12):
        out = render_scene(seed, 48, 64)
        depth, rgb = out["depth_m"], out["rgb"]
        valid = depth > 0
        assert np.isfinite(depth).all()
        assert depth[valid].min() >= synthetic.MIN_VALID_DEPTH_M and depth.max() <= synthetic.MAX_VALID_DEPTH_M
        invalid.append(1.0 - valid.mean())
        mins.append(depth[valid].min())
        maxs.append(depth[valid].max())
        assert rgb.std() > 5.0  # textured, shaded image, not a flat fill
    invalid = np.array(invalid)
    assert (invalid > 0).all() and (invalid < 0.3).all()  # dropout blobs everywhere, but not most of the image
    assert min(mins) < 2.0 and max(maxs) > 6.0  # indoor range: near furniture and far walls


def test_rgb_carries_depth_information():
    """Over many scenes, image brightness statistics differ between near and far pixels (haze, falloff)."""
    near, far = [], []
    for seed in range(20):
        out = render_scene(100 + seed, 48, 64)
        depth = out["depth_m"]
        grey = out["rgb"].astype(np.float32).mean(axis=2)
        valid = depth > 0
        near.append(grey[valid & (depth < 2.5)])
        far.append(grey[valid & (depth > 5.0)])
    near, far = np.concatenate(near), np.concatenate(far)
    assert near.size > 500 and far.size > 500
    # far pixels are pulled towards the haze colour: less contrast than near ones
    assert far.std() < near.std()


def test_sample_seeds_never_collide_between_splits():
    train = {sample_seed(5, "train", i) for i in range(1000)}
    val = {sample_seed(5, "val", i) for i in range(1000)}
    assert len(train) == 1000 and not train & val
    assert sample_seed(6, "train", 0) not in train | val
    with pytest.raises(ValueError, match="split"):
        sample_seed(0, "test", 0)


# --------------------------------------------------------------------------------------------------
# Dataset files
# --------------------------------------------------------------------------------------------------

SMALL = SyntheticConfig(num_train=6, num_val=2, height=48, width=64, seed=3, records_per_shard=2, chunks=2)


def _read_split(data_dir, manifest, split):
    import tensorflow as tf

    from tfdepth.data.records import decode_example_numpy
    from tfdepth.data.shards import shard_paths

    dataset = tf.data.TFRecordDataset(shard_paths(data_dir, manifest, split))
    return [decode_example_numpy(raw) for raw in dataset.as_numpy_iterator()]


def test_written_dataset_reads_back_as_rendered(tmp_path):
    manifest = write_synthetic_dataset(SMALL, str(tmp_path), num_workers=1)
    assert manifest["name"] == "synthetic" and manifest["depth_scale"] == 1000.0
    assert manifest["image_size"] == [48, 64] and manifest["depth_range_m"] == [0.0, 10.0]
    assert manifest["splits"]["train"]["count"] == 6 and manifest["splits"]["train"]["chunks"] == 2
    assert manifest["splits"]["val"]["count"] == 2 and manifest["splits"]["val"]["chunks"] == 1
    train_shards = [s for s in manifest["shards"] if s["split"] == "train"]
    assert [s["count"] for s in train_shards] == [2, 2, 2]
    chunks = [s["chunk"] for s in train_shards]
    assert chunks == sorted(chunks) and set(chunks) == {0, 1}
    assert all(s["chunk"] == 0 for s in manifest["shards"] if s["split"] == "val")
    assert manifest["source"]["seed"] == 3 and manifest["source"]["generator_version"] == synthetic.GENERATOR_VERSION
    assert manifest["bad_samples"] == {"count": 0, "files": []}
    stats = manifest["splits"]["train"]["depth_stats"]
    assert 0.4 <= stats["min_m"] < stats["mean_m"] < stats["max_m"] <= 9.5

    from tfdepth.data.shards import read_manifest

    assert read_manifest(str(tmp_path)) == manifest
    for split, count in (("train", 6), ("val", 2)):
        decoded = _read_split(str(tmp_path), manifest, split)
        assert len(decoded) == count
        for i, sample in enumerate(decoded):
            ref = render_scene(sample_seed(3, split, i), 48, 64)
            np.testing.assert_array_equal(sample["rgb"], ref["rgb"])
            np.testing.assert_array_equal(sample["depth_m"] > 0, ref["depth_m"] > 0)
            np.testing.assert_allclose(sample["depth_m"], ref["depth_m"], atol=0.5e-3 + 1e-6)
            np.testing.assert_allclose(sample["intrinsics"], ref["intrinsics"], rtol=1e-6)


def test_worker_processes_write_identical_files(tmp_path):
    cfg = dataclasses.replace(SMALL, num_train=5, num_val=3)
    one, two = tmp_path / "one", tmp_path / "two"
    m1 = write_synthetic_dataset(cfg, str(one), num_workers=1)
    m2 = write_synthetic_dataset(cfg, str(two), num_workers=2)
    assert m1 == m2
    for shard in m1["shards"]:
        assert (one / shard["path"]).read_bytes() == (two / shard["path"]).read_bytes()


def test_random_field_of_view_per_sample_is_recorded(tmp_path):
    """data.synthetic.hfov_deg draws each sample's horizontal field of view; records (written by one or
    two render processes) carry it as fx = fy = (W / 2) / tan(hfov / 2), centred principal point; the
    default (None) keeps the Kinect camera and the manifest description of earlier datasets."""
    from tfdepth.data.synthetic.scene import kinect_intrinsics, sample_intrinsics

    assert "hfov_deg" not in synthetic.source_description(SMALL)  # cached Kinect datasets stay valid
    assert sample_intrinsics(5, 48, 64) == kinect_intrinsics(48, 64)
    cfg = dataclasses.replace(SMALL, num_train=5, num_val=3, hfov_deg=[45.0, 100.0])
    one, two = tmp_path / "one", tmp_path / "two"
    manifest = write_synthetic_dataset(cfg, str(one), num_workers=1)
    assert manifest == write_synthetic_dataset(cfg, str(two), num_workers=2)
    assert manifest["source"]["hfov_deg"] == [45.0, 100.0] and manifest["intrinsics"] is None  # they differ
    fovs = []
    for split, count in (("train", 5), ("val", 3)):
        for i, sample in enumerate(_read_split(str(one), manifest, split)):
            fx, fy, cx, cy = (float(v) for v in sample["intrinsics"])
            fov = math.degrees(2 * math.atan(32.0 / fx))
            assert fx == pytest.approx(fy) and (cx, cy) == (31.5, 23.5) and 45.0 <= fov <= 100.0
            assert (fx, fy, cx, cy) == pytest.approx(sample_intrinsics(sample_seed(3, split, i), 48, 64,
                                                                       [45.0, 100.0]), rel=1e-6)
            ref = render_scene(sample_seed(3, split, i), 48, 64, [45.0, 100.0])
            np.testing.assert_allclose(sample["depth_m"], ref["depth_m"], atol=0.5e-3 + 1e-6)
            fovs.append(fov)
    assert max(fovs) - min(fovs) > 10.0
    # a fixed field of view: a wall straight ahead spans exactly the field of view's width
    wall = Scene(planes=[Plane((0.0, 0.0, -1.0), -4.0, Material())])
    k = sample_intrinsics(0, 48, 64, [70.0, 70.0])
    out = render(Camera(48, 64, *k), wall)
    x_edge = (63 - k[2]) * 4.0 / k[0]  # the last pixel centre's x at 4 m
    assert x_edge == pytest.approx(4.0 * math.tan(math.radians(35.0)) * 63 / 64, rel=1e-6)
    np.testing.assert_allclose(out["depth_m"], 4.0, rtol=1e-5)


def test_haze_off_renders_the_same_room_without_distance_haze(tmp_path):
    """data.synthetic.haze: false keeps every random draw (same room, same depth) but sets haze_per_m
    to 0: a floor of one albedo lit by ambient light only then has one colour at every distance, while
    the hazy room's floor turns towards the haze colour with distance. The default keeps the manifest
    description (the cache) of earlier datasets; false is recorded and written alike by 1 or 2 workers."""
    from tfdepth.data.synthetic.scene import random_scene

    cam, hazy = random_scene(11, 48, 64, [70.0, 70.0])
    cam2, clear = random_scene(11, 48, 64, [70.0, 70.0], haze=False)
    assert hazy.haze_per_m > 0.009 and clear.haze_per_m == 0.0
    assert cam2 == cam and dataclasses.replace(clear, haze_per_m=hazy.haze_per_m, noise_tile=None) == \
        dataclasses.replace(hazy, noise_tile=None)
    grey = Material(color=(0.5, 0.5, 0.5))
    colours = {}
    for name, scene in (("hazy", hazy), ("clear", clear)):
        flat = dataclasses.replace(scene, planes=[Plane((0.0, 1.0, 0.0), 0.0, grey)], boxes=[], cylinders=[],
                                   spheres=[], light_power=0.0, ambient=1.0)
        out = render(cam, flat)
        floor = out["depth_m"] > 0
        colours[name] = (out["rgb"][..., 0][floor].astype(float), out["depth_m"][floor])
    rgb, depth = colours["clear"]
    assert np.ptp(depth) > 3.0 and np.all(rgb == rgb[0]) and abs(rgb[0] - 127.5) <= 1.0
    rgb, depth = colours["hazy"]
    near, far = rgb[depth < np.percentile(depth, 10)].mean(), rgb[depth > np.percentile(depth, 90)].mean()
    haze_red = 255.0 * hazy.haze_color[0]
    assert abs(far - haze_red) < abs(near - haze_red) - 3.0  # farther = closer to the haze colour
    hazy_sample = render_scene(11, 48, 64, [70.0, 70.0])
    clear_sample = render_scene(11, 48, 64, [70.0, 70.0], haze=False)
    np.testing.assert_array_equal(clear_sample["depth_m"], hazy_sample["depth_m"])
    assert np.abs(clear_sample["rgb"].astype(int) - hazy_sample["rgb"].astype(int)).mean() > 1.0

    assert "haze" not in synthetic.source_description(SMALL)  # the default dataset's cache stays valid
    cfg = dataclasses.replace(SMALL, num_train=4, num_val=0, chunks=1, haze=False)
    assert synthetic.source_description(cfg)["haze"] is False
    one, two = tmp_path / "one", tmp_path / "two"
    manifest = write_synthetic_dataset(cfg, str(one), num_workers=1)
    assert manifest == write_synthetic_dataset(cfg, str(two), num_workers=2)
    sample = next(iter(_read_split(str(one), manifest, "train")))
    expected = render_scene(sample_seed(3, "train", 0), 48, 64, haze=False)["rgb"]
    np.testing.assert_array_equal(sample["rgb"], expected)


def _mtimes(directory):
    return {name: os.stat(os.path.join(directory, name)).st_mtime_ns for name in os.listdir(directory)}


def test_ensure_caches_and_regenerates(tmp_path, caplog):
    out = str(tmp_path / "synthetic")
    first = ensure_synthetic_dataset(SMALL, out, num_workers=1)
    before = _mtimes(out)
    assert "manifest.json" in before and len(before) == 1 + len(first["shards"])
    again = ensure_synthetic_dataset(SMALL, out, num_workers=1)
    assert again == first and _mtimes(out) == before  # cached: nothing rewritten

    # other settings: regenerated, old shards of the previous layout gone
    changed = dataclasses.replace(SMALL, seed=4, records_per_shard=3)
    third = ensure_synthetic_dataset(changed, out, num_workers=1)
    assert third["source"]["seed"] == 4 and third["source"]["records_per_shard"] == 3
    assert sorted(n for n in os.listdir(out) if n.endswith(".tfrecord")) == sorted(s["path"] for s in third["shards"])

    # interrupted write (no manifest, a leftover temp shard): cleaned and rewritten; foreign files kept
    os.remove(os.path.join(out, "manifest.json"))
    (tmp_path / "synthetic" / "train-00007.tfrecord.tmp").write_bytes(b"partial")
    (tmp_path / "synthetic" / "notes.txt").write_text("not ours")
    fourth = ensure_synthetic_dataset(changed, out, num_workers=1)
    names = set(os.listdir(out))
    assert "train-00007.tfrecord.tmp" not in names and "notes.txt" in names and "manifest.json" in names
    assert fourth == third


def test_ensure_refuses_to_overwrite_another_dataset(tmp_path):
    from tfdepth.data.shards import write_manifest

    write_manifest(str(tmp_path), {"name": "nyu", "depth_scale": 1000.0, "shards": [], "source": {"format": "mat"}})
    (tmp_path / "train-00000.tfrecord").write_bytes(b"someone else's data")
    with pytest.raises(ValueError, match="refusing"):
        ensure_synthetic_dataset(SMALL, str(tmp_path), num_workers=1)
    assert (tmp_path / "train-00000.tfrecord").read_bytes() == b"someone else's data"


def test_bad_primitives_are_named():
    with pytest.raises(ValueError, match="Box"):
        Box((0.0, 0.0, 1.0), (1.0, 1.0, 0.5))
    with pytest.raises(ValueError, match="Plane.normal"):
        Plane((0.0, 0.0, 0.0), 1.0)
    with pytest.raises(ValueError, match="Material.pattern"):
        Material(pattern="zigzag")


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="chunks=5"):
        write_synthetic_dataset(dataclasses.replace(SMALL, chunks=5), "unused-dir-never-created")
    with pytest.raises(ValueError, match="num_train"):
        write_synthetic_dataset(dataclasses.replace(SMALL, num_train=0), "unused-dir-never-created")
    assert not os.path.exists("unused-dir-never-created")
