"""Intrinsics through the data pipeline (issue 16): every resize, crop, flip, zoom and rotation moves the
camera with the picture, so the augmented depth back-projected with the augmented intrinsics is still
the known plane (mirrored by the flip, turned about the optical axis by the rotation); canonical-camera
targets are depth * f_c / f with f the focal length at the network input (Metric3D)."""

import math

import numpy as np
import pytest

from helpers import write_tiny_dataset

# The plane n . X = D in the stored camera's frame (tilted: a wrong focal length or principal point
# changes its distance from the camera or its normal).
NORMAL = np.array([0.25, -0.35, 1.0]) / np.linalg.norm([0.25, -0.35, 1.0])
D = 3.0


def plane_depth(height, width, fx, fy, cx, cy):
    """z-depth [H, W] of the plane seen by the camera: z = D / (n . ((u - cx) / fx, (v - cy) / fy, 1))."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    return (D / (NORMAL[0] * (u - cx) / fx + NORMAL[1] * (v - cy) / fy + NORMAL[2])).astype(np.float32)


def residual(depth, intrinsics, normal, statistic=np.max):
    """``statistic`` (max) of |n . X - D| / D over the valid pixels back-projected with ``intrinsics``."""
    from tfdepth.geometry import Intrinsics, point_cloud

    points, _ = point_cloud(depth, Intrinsics(*[float(x) for x in intrinsics]))
    assert len(points) > 0.5 * depth.size  # most of the picture is still valid
    return float(statistic(np.abs(points.astype(np.float64) @ normal - D)) / D)


@pytest.mark.parametrize("mode,input_size", [("resize", (72, 96)), ("center_crop", (60, 120))])
def test_augmented_plane_back_projects_to_the_plane(mode, input_size):
    import tensorflow as tf

    from tfdepth.config import AugmentConfig
    from tfdepth.data import pipeline

    stored = (120, 160, 140.0, 140.0, 82.0, 57.5)  # H, W, fx = fy (the rotation is exact), off-centre principal point
    h, w, *k = stored
    depth = plane_depth(h, w, *k)[..., None]
    image = tf.zeros([h, w, 3])
    intr = pipeline.resize_intrinsics(tf.constant(k, tf.float32), (h, w), input_size, mode)
    image, depth_in = pipeline.resize_pair(image, tf.constant(depth), input_size, mode)
    # the resize alone: the plane, and the pipeline agrees with the NumPy geometry
    from tfdepth.geometry import Intrinsics, intrinsics_for_model_input

    expected = intrinsics_for_model_input(Intrinsics(*k), (h, w), input_size, mode)
    np.testing.assert_allclose(intr.numpy(), expected.as_list(), rtol=1e-5)
    assert residual(depth_in.numpy()[..., 0], intr.numpy(), NORMAL) < 0.005

    aug = AugmentConfig(hflip=1.0, scale_max=1.4, random_crop=True, rotation_deg=12.0)
    wrong = []
    for i in range(4):
        seed = tf.constant([7, i], tf.int64)
        _, out, out_intr, scale = pipeline.augment_sample(image, depth_in, intr, aug, seed)
        u = tf.random.stateless_uniform([pipeline._NUM_UNIFORMS], seed=seed).numpy()
        angle = math.radians(12.0) * (2.0 * u[pipeline._U_ROTATION] - 1.0)
        assert 1.0 <= float(scale) <= 1.4 and abs(angle) > 0
        # flip mirrors x; the rotation turns the scene by -angle about the optical axis
        nx, ny = -NORMAL[0], NORMAL[1]
        c, s = math.cos(angle), math.sin(angle)
        normal = np.array([c * nx + s * ny, -s * nx + c * ny, NORMAL[2]])
        np.testing.assert_allclose(out_intr.numpy()[:2], intr.numpy()[:2] * float(scale), rtol=1e-5)
        # nearest-neighbour depth sampling (resize, then warp) moves each depth by up to ~1 px along the
        # plane, ~0.55 % of the depth per pixel here; the typical pixel is much closer
        assert residual(out.numpy()[..., 0], out_intr.numpy(), normal) < 0.01
        assert residual(out.numpy()[..., 0], out_intr.numpy(), normal, np.median) < 0.002
        wrong.append(residual(out.numpy()[..., 0], intr.numpy(), normal, np.median))
    # the test can fail: the intrinsics before augmentation do not describe the augmented picture
    assert max(wrong) > 0.01


def test_flip_and_zoom_without_rotation_keep_non_square_pixels_exact():
    import tensorflow as tf

    from tfdepth.config import AugmentConfig
    from tfdepth.data import pipeline

    h, w, k = 40, 56, (50.0, 44.0, 30.0, 17.0)  # fx != fy: exact without rotation
    depth = tf.constant(plane_depth(h, w, *k)[..., None])
    aug = AugmentConfig(hflip=1.0, scale_max=1.3, random_crop=True)
    _, out, out_intr, scale = pipeline.augment_sample(tf.zeros([h, w, 3]), depth, tf.constant(k), aug,
                                                      tf.constant([1, 2], tf.int64))
    fx, fy, cx, cy = out_intr.numpy()
    assert (fx, fy) == pytest.approx((k[0] * float(scale), k[1] * float(scale)), rel=1e-6)
    assert residual(out.numpy()[..., 0], out_intr.numpy(), NORMAL * [-1, 1, 1]) < 0.01
    # unknown intrinsics (zeros) stay unknown
    _, _, unknown, _ = pipeline.augment_sample(tf.zeros([h, w, 3]), depth, tf.zeros([4]), aug,
                                               tf.constant([1, 2], tf.int64))
    assert not unknown.numpy().any()


def test_canonical_targets_scale_with_the_focal_length(tmp_path):
    """Training targets are depth * f_c / f at the network input (resize and zoom included); evaluation
    batches carry f; augment_pair keeps Eigen's depth / s."""
    from tfdepth.config import load_config
    from tfdepth.data import pipeline

    _, samples = write_tiny_dataset(tmp_path, num_train=4, num_val=2, height=32, width=48)
    # the tiny dataset's camera: fx = fy = 40 px at 32x48; resized to 16x24 -> f = 20 px at the input
    cfg = load_config(None, [*cfg_overrides(tmp_path), "model.camera=canonical", "model.canonical_focal_px=30"])
    f_c = pipeline.canonical_focal(cfg)
    assert f_c == 30.0
    plain = load_config(None, cfg_overrides(tmp_path))
    metric = np.concatenate([y.numpy() for _, y in pipeline.build_dataset(plain.data, "train", 4, training=True)])
    canon = np.concatenate([y.numpy() for _, y in pipeline.build_dataset(cfg.data, "train", 4, training=True,
                                                                          canonical_focal_px=f_c)])
    np.testing.assert_allclose(canon, metric * 30.0 / 20.0, rtol=1e-6)
    # with a zoom s the focal length is 20 s: the canonical target is depth * 30 / (20 s) (= Eigen's
    # depth / s times 30 / 20)
    zoom = ["data.augment.scale_max=1.5"]
    cfg_z = load_config(None, [*cfg_overrides(tmp_path), *zoom, "model.camera=canonical", "model.canonical_focal_px=30"])
    plain_z = load_config(None, [*cfg_overrides(tmp_path), *zoom])
    eigen = np.concatenate([y.numpy() for _, y in pipeline.build_dataset(plain_z.data, "train", 4, training=True)])
    canon_z = np.concatenate([y.numpy() for _, y in pipeline.build_dataset(cfg_z.data, "train", 4, training=True,
                                                                            canonical_focal_px=30.0)])
    np.testing.assert_allclose(canon_z, eigen * 30.0 / 20.0, rtol=1e-5)
    assert not np.allclose(canon_z, canon)  # the zoom did act
    images, depth, focal = next(iter(pipeline.build_eval_dataset(cfg.data, cfg.eval, "val", with_focal=True)))
    np.testing.assert_allclose(focal.numpy(), [20.0, 20.0], rtol=1e-6)
    np.testing.assert_allclose(depth.numpy()[0, ..., 0], samples["val"][0][1], rtol=1e-6)  # metric, native


def cfg_overrides(directory):
    return ["data.dataset=tfrecord", f"data.data_dir={directory}", "data.input_size=[16,24]", "data.augment.hflip=0.0"]
