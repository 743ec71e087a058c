"""Large photos in bounded memory (issue 19, goal 4): the working-resolution path of predict and the
point cloud's pixel stride (DepthPredictor.predict, tfdepth.serving.outputs, geometry)."""

import math

import cv2
import numpy as np
import pytest

from tfdepth.geometry import Intrinsics, read_ply
from tfdepth.serving.outputs import auto_ply_stride, parse_ply_stride, write_outputs
from tfdepth.serving.predictor import DepthPredictor, working_size


class _ServingLikePredictor(DepthPredictor):
    """Does what every backend does around its network (resize to the input with the serving
    signature's antialiased resize, depth back with its bilinear resize); the "network" is a smooth
    function of the picture (1 m + 4 m x the mean colour), so depth follows the picture's content.
    Records the size of every picture the network path is given."""

    def __init__(self, input_size, metadata=None):
        super().__init__("test", input_size, metadata)
        self.seen = []

    def direct(self, rgb, intrinsics=None):
        """The picture straight to the network path, never reduced (what predict did before)."""
        return self._predict_picture(rgb, intrinsics)

    def _predict(self, rgb):
        import tensorflow as tf

        from tfdepth.serving.signature import preprocess_images, resize_depth

        self.seen.append(rgb.shape[:2])
        image = preprocess_images(rgb[None], self.input_size)
        depth = 1.0 + 4.0 * tf.reduce_mean(image, axis=-1, keepdims=True)
        return resize_depth(depth, rgb.shape[:2]).numpy()[0, ..., 0]


def _photo(height, width):
    """A smooth picture with structure at the model's scale: colour ramps and a bright disc."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 128 + 100 * np.sin(xx / width * 2 * math.pi)
    g = 255 * yy / height
    b = np.where((xx - 0.6 * width) ** 2 + (yy - 0.4 * height) ** 2 < (0.2 * height) ** 2, 230.0, 40.0)
    return np.clip(np.stack([r, g, cv2.GaussianBlur(b, (0, 0), height / 60)], -1), 0, 255).astype(np.uint8)


def test_working_size_rule():
    # picture padded to the 2:3 input's aspect ratio (600x900), reduced to 3x the input's scale (48/600)
    assert working_size((600, 800), (16, 24)) == (48, 64)
    assert working_size((48, 72), (16, 24)) is None  # exactly 3x the input: as it is
    assert working_size((49, 73), (16, 24)) == (48, 71)  # padded to 49x74: scale min(48/49, 72/74)
    assert working_size((8000, 8000), (96, 128)) == (288, 288)  # padded to 8000x10667: 3 x 96 / 8000
    assert working_size((8000, 6000), (0, 0)) == (2048, 1536)  # any input size: the longest side <= 2048
    assert working_size((2048, 1000), (0, 0)) is None


def test_large_photo_is_predicted_at_the_working_resolution_like_the_direct_path():
    rgb = _photo(300, 400)
    predictor = _ServingLikePredictor((16, 24))
    direct = predictor.direct(rgb)
    assert predictor.seen == [(300, 450)]  # the direct path: the whole (padded) picture goes to the resize
    predictor.seen.clear()
    depth = predictor.predict(rgb)
    working = predictor.last_working_size
    assert working == (48, 64) and predictor.seen == [(48, 72)]  # the model path never sees the photo
    assert depth.shape == (300, 400) and depth.dtype == np.float32
    diff = np.abs(depth - direct)
    # depth spans ~1.5-4.6 m here; the two paths differ by the reduction filter (pixel area, then the
    # antialiased bilinear, vs the antialiased bilinear alone), the integer padding of the reduced
    # picture and a second bilinear upsampling: ~1.4 mm on average, < 1 cm inside, ~10 cm at the
    # border columns next to the padding
    assert np.ptp(direct) > 2.0
    assert float(diff.mean()) < 0.003, float(diff.mean())
    assert float(diff[:, 10:-10].max()) < 0.02 and float(diff.max()) < 0.15, float(diff.max())
    # a picture within 3x of the input goes the direct way, unchanged
    small = rgb[:30, :40].copy()
    same = predictor.predict(small)
    assert predictor.last_working_size is None and np.array_equal(same, predictor.direct(small))


def test_working_resolution_keeps_a_canonical_models_focal_scaling():
    """A canonical-camera model's depth scales with the focal length at the model input; the reduced
    picture gets its intrinsics scaled alike, so the metric depth stays that of the photo."""
    metadata = {"camera": {"mode": "canonical", "canonical_focal_px": 20.0}}
    rgb = _photo(240, 360)  # the 2:3 aspect ratio of the input: no padding
    for focal, expected_scale in ((300.0, 1.0), (600.0, 2.0)):  # 300 px here = 20 px at the 16x24 input
        intr = Intrinsics(focal, focal, 179.5, 119.5)
        predictor = _ServingLikePredictor((16, 24), metadata)
        direct = predictor.direct(rgb, intr)
        depth = predictor.predict(rgb, intr)
        assert predictor.last_working_size == (48, 72)
        unscaled = _ServingLikePredictor((16, 24)).direct(rgb)
        np.testing.assert_allclose(np.median(direct / unscaled), expected_scale, rtol=1e-5)
        np.testing.assert_allclose(np.median(depth / direct), 1.0, rtol=5e-3)


def test_ply_stride_point_count_and_back_projection(tmp_path):
    h, w, stride = 7, 10, 3
    yy, xx = np.mgrid[0:h, 0:w]
    depth = (1.0 + 0.1 * xx + 0.05 * yy).astype(np.float32)
    depth[3, 6] = 0.0  # invalid: a kept pixel (row 3, column 6) that must be dropped
    depth[1, 1] = 0.0  # invalid but not on the stride grid: no effect
    rgb = np.stack([xx * 20, yy * 30, xx + yy], -1).astype(np.uint8)
    intr = Intrinsics(8.0, 9.0, 4.5, 3.0)
    written = write_outputs(rgb, depth, str(tmp_path / "p"), ["ply"], intr, ply_stride=stride)
    points, colours = read_ply(written["ply"])
    rows, cols = [0, 3, 6], [0, 3, 6, 9]
    kept = [(v, u) for v in rows for u in cols if (v, u) != (3, 6)]
    assert len(points) == len(kept) == math.ceil(h / stride) * math.ceil(w / stride) - 1
    for (v, u), p, c in zip(kept, points, colours):
        z = float(depth[v, u])
        np.testing.assert_allclose(p, [(u - 4.5) * z / 8.0, (v - 3.0) * z / 9.0, z], rtol=1e-6)
        assert list(c) == list(rgb[v, u])
    # stride 1 is every valid pixel
    everything, _ = read_ply(write_outputs(rgb, depth, str(tmp_path / "q"), ["ply"], intr, ply_stride=1)["ply"])
    assert len(everything) == h * w - 2


def test_default_ply_stride_bounds_a_large_photo():
    assert auto_ply_stride((480, 640)) == 1 and auto_ply_stride((1414, 1414)) == 1
    assert auto_ply_stride((1415, 1415)) == 2
    stride = auto_ply_stride((8000, 8000))
    assert stride == 6 and math.ceil(8000 / stride) ** 2 == 1334 ** 2 <= 2_000_000 < 1600 ** 2
    assert parse_ply_stride("auto") is None and parse_ply_stride("4") == 4
    for bad in ("0", "-2", "two"):
        with pytest.raises(ValueError, match="--ply-stride"):
            parse_ply_stride(bad)
