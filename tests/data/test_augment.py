"""Eigen et al. (NIPS 2014) augmentations of ``pipeline.augment_pair``: zoom (depth / s), random crop,
rotation, per-channel colour; checked against the sampling formulas of ``pipeline.warp_transform``."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import AugmentConfig, ConfigError, load_config
from tfdepth.data import pipeline

H, W = 12, 16


def augment_cfg(**sets):
    overrides = ["data.augment.hflip=0.0"] + [f"data.augment.{k}={v}" for k, v in sets.items()]
    return load_config(None, overrides).data.augment


def unique_depth(height=H, width=W):
    """Depth [h, w, 1] metres with a distinct value per pixel (1.000 + 0.01 * index) and every 7th pixel 0."""
    depth = 1.0 + 0.01 * np.arange(height * width, dtype=np.float64)
    depth[::7] = 0.0
    return depth.reshape(height, width, 1).astype(np.float32)


def random_image(seed=0, height=H, width=W):
    return np.random.default_rng(seed).uniform(0.05, 0.8, (height, width, 3)).astype(np.float32)


def source_pixels(height, width, scale, angle, crop_x, crop_y):
    """Nearest source (row, col) of every output pixel by the documented formula
    q = c + t + R(angle) (p - c) / scale, and a mask of pixels that are not within 1e-3 of a rounding tie."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    tx = (crop_x - 0.5) * width * (1 - 1 / scale)
    ty = (crop_y - 0.5) * height * (1 - 1 / scale)
    qx = cx + tx + (math.cos(angle) * (x - cx) - math.sin(angle) * (y - cy)) / scale
    qy = cy + ty + (math.sin(angle) * (x - cx) + math.cos(angle) * (y - cy)) / scale
    clear = (np.abs(np.abs(qx - np.floor(qx)) - 0.5) > 1e-3) & (np.abs(np.abs(qy - np.floor(qy)) - 0.5) > 1e-3)
    return np.round(qy).astype(int), np.round(qx).astype(int), clear


def original_augment(image, depth, aug, seed):
    """``augment_pair`` as it was before the Eigen options (hflip, brightness, channel permutation)."""
    u = tf.random.stateless_uniform([4], seed=seed)
    if aug.hflip > 0:
        flip = u[0] < aug.hflip
        image = tf.where(flip, tf.reverse(image, [1]), image)
        depth = tf.where(flip, tf.reverse(depth, [1]), depth)
    if aug.brightness > 0:
        image = tf.clip_by_value(image * (1.0 + aug.brightness * (2.0 * u[1] - 1.0)), 0.0, 1.0)
    if aug.channel_permutation > 0:
        permutations = tf.constant(pipeline._CHANNEL_PERMUTATIONS, tf.int32)
        index = tf.cast(tf.minimum(u[3] * 6.0, 5.0), tf.int32)
        perm = tf.where(u[2] < aug.channel_permutation, permutations[index], permutations[0])
        image = tf.gather(image, perm, axis=-1)
    return image, depth


def test_new_options_default_off_and_old_draws_unchanged():
    assert AugmentConfig() == AugmentConfig(scale_max=1.0, random_crop=False, rotation_deg=0.0, color_scale=0.0)
    image, depth = tf.constant(random_image()), tf.constant(unique_depth())
    # everything off: bit-for-bit the input
    out_image, out_depth = pipeline.augment_pair(image, depth, augment_cfg(), tf.constant([5, 1], tf.int64))
    np.testing.assert_array_equal(out_image.numpy(), image.numpy())
    np.testing.assert_array_equal(out_depth.numpy(), depth.numpy())
    # the original options draw the same uniforms as before (u[0..3]) -> identical outputs per seed
    old = [augment_cfg(hflip=0.5, brightness=0.3, channel_permutation=0.5), AugmentConfig()]
    flips = 0
    for aug in old:
        for i in range(12):
            seed = tf.constant([3, i], tf.int64)
            new_image, new_depth = pipeline.augment_pair(image, depth, aug, seed)
            ref_image, ref_depth = original_augment(image, depth, aug, seed)
            np.testing.assert_array_equal(new_image.numpy(), ref_image.numpy())
            np.testing.assert_array_equal(new_depth.numpy(), ref_depth.numpy())
            flips += int(not np.array_equal(new_depth.numpy(), depth.numpy()))
    assert 0 < flips < 24  # hflip 0.5 both flipped and kept some samples


def test_zoom_matches_resize_and_crop_and_divides_depth():
    image, depth = random_image(), np.full((H, W, 1), 3.0, np.float32)
    scale = 1.5  # (18, 24) zoomed size: the crop is a whole-pixel window
    zoomed = tf.image.resize(image, [18, 24], method="bilinear").numpy()
    for crop_x, crop_y, top, left in [(0.5, 0.5, 3, 4), (0.0, 0.0, 0, 0), (1.0, 1.0, 6, 8), (0.25, 1.0, 6, 2)]:
        out_image, out_depth = pipeline.warp_pair(image, depth, scale, 0.0, crop_x, crop_y)
        np.testing.assert_allclose(out_image.numpy(), zoomed[top:top + H, left:left + W], atol=2e-6)
        # a constant plane at 3 m is at 3 / s m everywhere (the window never leaves the image)
        np.testing.assert_array_equal(out_depth.numpy(), np.full((H, W, 1), np.float32(3.0) / np.float32(scale)))


def test_zoom_moves_pixels_by_formula_and_keeps_invalid_zero():
    depth = unique_depth()
    for scale, crop_x, crop_y in [(1.33, 0.5, 0.5), (1.37, 0.1, 0.8), (2.2, 1.0, 0.0)]:
        _, out = pipeline.warp_pair(random_image(), depth, scale, 0.0, crop_x, crop_y)
        out = out.numpy()[..., 0]
        rows, cols, clear = source_pixels(H, W, scale, 0.0, crop_x, crop_y)
        assert clear.mean() > 0.75 and rows.min() >= 0 and cols.max() < W  # the window stays in the image
        expected = depth[rows, cols, 0] / np.float32(scale)
        np.testing.assert_array_equal(out[clear], expected[clear])
        # nearest: every value is a stored depth / s or 0, never a blend; 0 exactly where the source is 0
        stored = set((depth[..., 0] / np.float32(scale)).ravel().tolist())
        assert set(out.ravel().tolist()) <= stored
        np.testing.assert_array_equal(out[clear] == 0, depth[rows, cols, 0][clear] == 0)
    # one marked pixel at (row 4, col 5) lands on exactly the output pixels whose formula source it is
    marked = np.zeros((H, W, 1), np.float32)
    marked[4, 5] = 2.0
    _, out = pipeline.warp_pair(np.zeros((H, W, 3), np.float32), marked, 1.8, 0.0)
    rows, cols, _ = source_pixels(H, W, 1.8, 0.0, 0.5, 0.5)
    hits = np.argwhere(out.numpy()[..., 0] > 0)
    np.testing.assert_array_equal(hits, np.argwhere((rows == 4) & (cols == 5)))
    assert len(hits) >= 2  # magnified: one stored pixel covers more than one output pixel
    np.testing.assert_array_equal(out.numpy()[hits[:, 0], hits[:, 1], 0], np.float32(2.0) / np.float32(1.8))


def test_rotation_maps_pixels_about_the_centre_and_zeros_corners():
    # a 90 degree turn of a 5x5 map is exact: the mark at (row 0, col 1) goes to (row 3, col 0)
    # (q = c + R(90)(p - c): p = (x 0, y 3) -> q = (2 - (3 - 2), 2 + (0 - 2)) = (x 1, y 0))
    square = np.zeros((5, 5, 1), np.float32)
    square[0, 1] = 4.0
    _, out = pipeline.warp_pair(np.zeros((5, 5, 3), np.float32), square, 1.0, math.pi / 2)
    np.testing.assert_array_equal(np.argwhere(out.numpy()[..., 0] > 0), [[3, 0]])
    assert out.numpy()[3, 0, 0] == 4.0

    depth, image = unique_depth(), random_image()
    angle = math.radians(20.0)
    out_image, out_depth = pipeline.warp_pair(image, depth, 1.0, angle)
    out_image, out_depth = out_image.numpy(), out_depth.numpy()[..., 0]
    rows, cols, clear = source_pixels(H, W, 1.0, angle, 0.5, 0.5)
    inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    expected = np.where(inside, depth[np.clip(rows, 0, H - 1), np.clip(cols, 0, W - 1), 0], 0.0)
    np.testing.assert_array_equal(out_depth[clear], expected[clear])
    for r, c in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:  # corners come from outside the image
        assert not inside[r, c] and out_depth[r, c] == 0.0 and (out_image[r, c] == 0.0).all()
    assert (out_image[clear & ~inside] == 0).all() and (out_image[clear & inside] > 0).all()
    # the image agrees with the rotation too: where the source point is a pixel centre (the centre
    # pixel of an odd-sized image) the bilinear sample is that pixel
    odd = random_image(1, 9, 11)
    out, _ = pipeline.warp_pair(odd, np.ones((9, 11, 1), np.float32), 1.0, angle)
    np.testing.assert_allclose(out.numpy()[4, 5], odd[4, 5], atol=1e-6)


def source_of(out_depth, depth, scale):
    """(row, col) of the stored pixel each valid output pixel of a ``unique_depth`` map came from."""
    height, width = depth.shape[:2]
    valid = out_depth > 0
    index = np.round((out_depth[valid] * scale - 1.0) / 0.01).astype(int)
    assert np.allclose(depth.ravel()[index], out_depth[valid] * scale, rtol=1e-5)
    return valid, index // width, index % width


def test_augment_pair_draws_zoom_crop_and_rotation_in_range():
    h, w = 48, 64
    depth, image = unique_depth(h, w), tf.constant(random_image(0, h, w))
    y, x = np.mgrid[0:h, 0:w]
    cx, cy = (w - 1) / 2, (h - 1) / 2

    def draws(aug, n=12):
        out = []
        for i in range(n):
            seed = tf.constant([4, i], tf.int64)
            _, plane = pipeline.augment_pair(image, tf.fill([h, w, 1], 6.0), aug, seed)
            scale = 6.0 / float(np.max(plane.numpy()))  # same seed: same geometry as the map below
            _, mapped = pipeline.augment_pair(image, tf.constant(depth), aug, seed)
            valid, rows, cols = source_of(mapped.numpy()[..., 0], depth, scale)
            # fit q - m = R(a) (p - c) / s by least squares; m is the source of the output centre
            px, py = x[valid] - cx, y[valid] - cy
            qx, qy = cols - cols.mean(), rows - rows.mean()
            px, py = px - px.mean(), py - py.mean()
            angle = math.atan2((px * qy - py * qx).sum(), (px * qx + py * qy).sum())
            fitted_scale = math.sqrt((px ** 2 + py ** 2).sum() / (qx ** 2 + qy ** 2).sum())
            assert abs(fitted_scale - scale) < 0.02 * scale
            out.append((scale, math.degrees(angle), rows.min(), cols.min(), rows.max(), cols.max()))
        return np.array(out)

    zoom = draws(augment_cfg(scale_max=1.5))
    assert (zoom[:, 0] >= 1.0).all() and (zoom[:, 0] <= 1.5 + 1e-6).all() and np.ptp(zoom[:, 0]) > 0.2
    assert (np.abs(zoom[:, 1]) < 0.3).all()  # no rotation asked for
    # centred crop: the window is symmetric in the stored image (to one pixel)
    np.testing.assert_allclose(zoom[:, 2] + zoom[:, 4], h - 1, atol=1.01)
    np.testing.assert_allclose(zoom[:, 3] + zoom[:, 5], w - 1, atol=1.01)
    # random crop: windows stay inside the image but move off centre
    moved = draws(augment_cfg(scale_max=1.5, random_crop="true"))
    assert (moved[:, 2] >= 0).all() and (moved[:, 3] >= 0).all() and (moved[:, 4] < h).all() and (moved[:, 5] < w).all()
    assert np.abs(moved[:, 3] + moved[:, 5] - (w - 1)).max() > 4  # horizontally
    assert np.abs(moved[:, 2] + moved[:, 4] - (h - 1)).max() > 3  # and vertically
    # rotation alone: angles within +-5 degrees, both signs, depth unscaled
    turned = draws(augment_cfg(rotation_deg=5.0))
    np.testing.assert_array_equal(turned[:, 0], 1.0)
    assert (np.abs(turned[:, 1]) <= 5.3).all() and turned[:, 1].min() < -1.5 and turned[:, 1].max() > 1.5


def test_color_scale_is_per_channel_within_bounds():
    aug = augment_cfg(color_scale=0.2)
    image = tf.constant(random_image())  # <= 0.8: x 1.2 never clips
    depth = tf.constant(unique_depth())
    factors = []
    for i in range(20):
        out, out_depth = pipeline.augment_pair(image, depth, aug, tf.constant([2, i], tf.int64))
        ratio = out.numpy() / image.numpy()
        c = ratio[0, 0]
        np.testing.assert_allclose(ratio, np.broadcast_to(c, ratio.shape), rtol=1e-5)  # one factor per channel
        assert ((0.8 - 1e-6 <= c) & (c <= 1.2 + 1e-6)).all()
        np.testing.assert_array_equal(out_depth.numpy(), depth.numpy())
        factors.append(c)
    factors = np.array(factors)
    assert (np.ptp(factors, axis=1) > 0.01).mean() > 0.8  # channels get different factors
    assert factors.min() < 0.9 and factors.max() > 1.1
    # bright pixels clip to 1
    out, _ = pipeline.augment_pair(tf.ones([4, 4, 3]), tf.ones([4, 4, 1]), aug, tf.constant([2, 0], tf.int64))
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(np.minimum(factors[0], 1.0), (4, 4, 3)), rtol=1e-5)


def test_seeds_decide_the_output():
    aug = augment_cfg(hflip=0.5, scale_max=1.5, random_crop="true", rotation_deg=5.0, color_scale=0.2)
    image, depth = tf.constant(random_image()), tf.constant(unique_depth())
    a = pipeline.augment_pair(image, depth, aug, tf.constant([1, 7], tf.int64))
    b = pipeline.augment_pair(image, depth, aug, tf.constant([1, 7], tf.int64))
    c = pipeline.augment_pair(image, depth, aug, tf.constant([1, 8], tf.int64))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert not np.array_equal(a[0].numpy(), c[0].numpy()) and not np.array_equal(a[1].numpy(), c[1].numpy())


def test_config_checks_and_recipe_values():
    for bad, key in [("scale_max=0.5", "scale_max"), ("rotation_deg=-1", "rotation_deg"),
                     ("color_scale=1.5", "color_scale"), ("random_crop=true", "random_crop")]:
        with pytest.raises(ConfigError, match=f"data.augment.{key}"):
            load_config(None, [f"data.augment.{bad}"])
    with pytest.raises(ConfigError, match="random_crop"):
        load_config(None, ["data.augment.random_crop=1"])  # strict type
    with pytest.raises(ConfigError, match="unknown key data.augment.scale;.*scale_max"):
        load_config(None, ["data.augment.scale=1.5"])
    nyu = load_config("configs/nyu_deeplabv3plus_resnet50.yaml").data.augment
    assert (nyu.hflip, nyu.scale_max, nyu.random_crop, nyu.rotation_deg, nyu.color_scale) == (0.5, 1.5, True, 5.0, 0.2)
    kitti = load_config("configs/kitti_deeplabv2_sid_resnet101.yaml").data.augment
    assert (kitti.hflip, kitti.scale_max, kitti.random_crop, kitti.rotation_deg, kitti.color_scale) == (
        0.5, 1.2, True, 0.0, 0.2)


def test_training_pipeline_with_eigen_augmentation(tiny_dataset):
    directory, _, samples = tiny_dataset
    sets = ["data.dataset=tfrecord", f"data.data_dir={directory}", "data.input_size=[32, 48]",
            "data.shuffle_buffer=1", "data.deterministic=true", "data.augment.scale_max=1.5",
            "data.augment.random_crop=true", "data.augment.rotation_deg=5", "data.augment.color_scale=0.2"]
    cfg = load_config(None, sets).data

    def run():
        return [(x.numpy(), y.numpy()) for x, y in pipeline.build_dataset(cfg, "train", 4, training=True, seed=1)]

    first, second = run(), run()
    assert len(first) == 2
    stored_max = max(float(d.max()) for _, d in samples["train"])
    for (image, depth), (image2, depth2) in zip(first, second):
        assert image.dtype == np.float32 and image.shape == (4, 32, 48, 3)
        assert depth.dtype == np.float32 and depth.shape == (4, 32, 48, 1)
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert np.isfinite(depth).all() and depth.min() >= 0.0 and depth.max() <= stored_max
        assert (depth == 0).any() and (depth > 0).mean() > 0.7
        np.testing.assert_array_equal(image, image2)
        np.testing.assert_array_equal(depth, depth2)
    # augmented: no training depth map equals a stored one (each is zoomed by s > 1 almost surely)
    stored = [d for _, d in samples["train"]]
    for depth in np.concatenate([y for _, y in first]):
        assert not any(np.array_equal(depth[..., 0], s) or np.array_equal(depth[..., 0], s[:, ::-1]) for s in stored)
