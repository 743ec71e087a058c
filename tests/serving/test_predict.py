"""Prediction on files (tfdepth.predict, tfdepth.serving): the three model backends, outputs and their
sizes on real pictures, point clouds at metric positions (picture reading: tests/io/test_images.py)."""

import json
import math
import os

import cv2
import numpy as np
import pytest

import helpers as ds
from helpers import SHARED_DATA
from helpers import ramp_rgb, write_rgb


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return ds.workdir(tmp_path_factory.getbasetemp())


# --------------------------------------------------------------------------------------------------
# Predictors: checkpoint, SavedModel, TFLite agree
# --------------------------------------------------------------------------------------------------


def test_backends_agree_at_the_pictures_size(workdir, tmp_path_factory):
    import tensorflow as tf

    from tfdepth.serving.predictor import DepthPredictor

    base = tmp_path_factory.getbasetemp()
    rgb = np.random.default_rng(5).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    keras_predictor = DepthPredictor.load(str(workdir))
    reference = keras_predictor.predict(rgb)
    assert reference.shape == (37, 53) and reference.dtype == np.float32
    # The checkpoint backend is the serving computation on the picture padded to the input's aspect
    # ratio (square pixels, never stretched): check it against the model by hand.
    from tfdepth.serving.predictor import PAD_RGB

    padded = np.empty((53, 53, 3), np.uint8)
    padded[...] = PAD_RGB
    padded[8:45] = rgb  # (53 - 37) // 2 rows above
    x = tf.image.resize(tf.cast(padded[None], tf.float32), ds.INPUT_SIZE, antialias=True) / 255.0
    by_hand = tf.image.resize(keras_predictor.model(x)["depth"], (53, 53)).numpy()[0, 8:45, :, 0]
    np.testing.assert_allclose(reference, by_hand, atol=1e-5)

    saved = DepthPredictor.load(str(ds.saved_model(base)))
    np.testing.assert_allclose(saved.predict(rgb), reference, atol=1e-4)
    tflite_dir = ds.tflite(base)
    fp32 = DepthPredictor.load(str(tflite_dir / "depth_fp32.tflite"))
    assert fp32.kind == "tflite" and fp32.input_size == ds.INPUT_SIZE
    np.testing.assert_allclose(fp32.predict(rgb), reference, atol=1e-3)
    int8 = DepthPredictor.load(str(tflite_dir / "depth_int8.tflite"))
    assert int8.runner.input_dtype == np.uint8
    assert np.abs(int8.predict(rgb) - reference).mean() < 0.1
    for predictor in (keras_predictor, saved, fp32, int8):  # all carry the training camera
        assert predictor.intrinsics.as_list() == pytest.approx(keras_predictor.intrinsics.as_list())
    with pytest.raises(ValueError, match="RGB uint8"):
        fp32.predict(rgb.astype(np.float32))


def test_load_errors_name_the_path(tmp_path):
    from tfdepth.serving.errors import ModelLoadError
    from tfdepth.serving.predictor import DepthPredictor

    with pytest.raises(ModelLoadError, match="nowhere"):
        DepthPredictor.load(str(tmp_path / "nowhere"))
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelLoadError, match="junk.tflite"):
        DepthPredictor.load(str(tmp_path / "junk.tflite"))


# --------------------------------------------------------------------------------------------------
# The CLI on real pictures
# --------------------------------------------------------------------------------------------------


def _expected_intrinsics(image_size):
    """The training camera at the model input, mapped back to the picture padded to the input's (square)
    aspect ratio, then the padding removed: square pixels stay square, never stretched."""
    from tfdepth.geometry import Intrinsics

    at_input = Intrinsics(*ds.DATA_INTRINSICS).scaled(ds.DATA_SIZE, ds.INPUT_SIZE)
    side = max(image_size)  # ds.INPUT_SIZE is square
    top, left = (side - image_size[0]) // 2, (side - image_size[1]) // 2
    expected = at_input.scaled(ds.INPUT_SIZE, (side, side)).padded(-top, -left)
    assert expected.fx / expected.fy == pytest.approx(at_input.fx / at_input.fy)  # the training camera's shape
    return expected


def _check_outputs(out_dir, stem, size, intrinsics=None, check_points=True):
    """All four outputs of one picture exist with the picture's size; the PLY is the back-projection."""
    from tfdepth.geometry import read_ply

    height, width = size
    mm = cv2.imread(str(out_dir / f"{stem}_depth_mm.png"), cv2.IMREAD_UNCHANGED)
    assert mm is not None and mm.dtype == np.uint16 and mm.shape == (height, width), stem
    colour = cv2.imread(str(out_dir / f"{stem}_depth_color.png"), cv2.IMREAD_COLOR)
    assert colour.shape[0] == height and colour.shape[1] > width, stem
    depth = np.load(out_dir / f"{stem}_depth_m.npy")
    assert depth.shape == (height, width) and depth.dtype == np.float32
    assert np.abs(mm / 1000.0 - depth).max() <= 0.0005 + 1e-6
    points, colours = read_ply(str(out_dir / f"{stem}_points.ply"))
    valid = np.isfinite(depth) & (depth > 0)
    assert points.shape == (int(valid.sum()), 3) and colours.shape == points.shape
    if check_points and intrinsics is not None:
        rows, cols = np.nonzero(valid)
        z = depth[valid]
        np.testing.assert_allclose(points[:, 2], z, rtol=1e-6)
        np.testing.assert_allclose(points[:, 0], (cols - intrinsics.cx) * z / intrinsics.fx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(points[:, 1], (rows - intrinsics.cy) * z / intrinsics.fy, rtol=1e-5, atol=1e-5)
    return depth


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared/data/real_rgbd not present")
def test_predict_cli_on_real_pictures(workdir, tmp_path, capsys):
    from tfdepth.io.images import load_image
    from tfdepth.predict import main

    inputs = [SHARED_DATA / "nyu" / "rgb", SHARED_DATA / "kitti" / "rgb", SHARED_DATA / "wild"]
    pictures = sorted(p for d in inputs for p in d.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    assert len(pictures) == 9
    out = tmp_path / "out"
    assert main(["--model", str(workdir), "--input", *map(str, inputs), "--output", str(out), "--quiet"]) == 0
    log = capsys.readouterr().out
    assert "else the training data camera (its aspect ratio kept)" in log and "done: 9 image(s)" in log
    summary = json.loads((out / "predictions.json").read_text())
    by_input = {item["input"]: item for item in summary["items"]}
    for picture in pictures:
        height, width = load_image(str(picture)).shape[:2]
        item = by_input[str(picture)]
        assert item["size"] == [height, width]
        intrinsics = _expected_intrinsics((height, width))
        assert item["intrinsics"] == pytest.approx(intrinsics.as_list())
        assert item["intrinsics_source"] == "training camera"  # none of these pictures has an EXIF focal length
        depth = _check_outputs(out, picture.stem, (height, width), intrinsics)
        assert 0 < depth.min() and depth.max() <= 10.0  # the model's output range (sigmoid * 10 m)
    assert {(p.stem, load_image(str(p)).shape[:2]) for p in pictures} >= {
        ("rgb_00000", (480, 640)), ("0000000005", (375, 1242))}


def test_predict_cli_odd_inputs_failures_and_exported_models(workdir, tmp_path, tmp_path_factory, capsys):
    from PIL import Image

    from tfdepth.predict import main

    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "wide.png", ramp_rgb(20, 90))
    cv2.imwrite(str(folder / "grey.jpg"), np.full((33, 21), 128, np.uint8))
    cv2.imwrite(str(folder / "rgba.png"), np.full((16, 16, 4), 200, np.uint8))
    cv2.imwrite(str(folder / "deep.png"), np.full((12, 30, 3), 40000, np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.fromarray(ramp_rgb(30, 18)).save(folder / "turned.jpg", exif=exif)  # upright: 18 x 30
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code = main(["--model", str(workdir), "--input", str(folder), str(tmp_path / "absent.png"), "--output",
                 str(out), "--fov", "70", "--quiet"])
    assert code == 1  # some inputs failed, the others were written
    captured = capsys.readouterr()
    assert "broken.jpg: cannot decode image" in captured.err and "absent.png" in captured.err
    assert "skipping 1 file(s)" in captured.out
    from tfdepth.geometry import Intrinsics

    for stem, size in [("wide", (20, 90)), ("grey", (33, 21)), ("rgba", (16, 16)), ("deep", (12, 30)),
                       ("turned", (18, 30))]:
        _check_outputs(out, stem, size, Intrinsics.from_fov(70.0, size))
    items = json.loads((out / "predictions.json").read_text())["items"]
    errors = {os.path.basename(i["input"]): i["error"] for i in items if "error" in i}
    assert set(errors) == {"broken.jpg", "absent.png"}

    # The same picture through the SavedModel and the int8 TFLite file, only two outputs asked for.
    base = tmp_path_factory.getbasetemp()
    for model_path in (ds.saved_model(base), ds.tflite(base) / "depth_int8.tflite"):
        out2 = tmp_path / f"out_{model_path.name}"
        assert main(["--model", str(model_path), "--input", str(folder / "wide.png"), "--output", str(out2),
                     "--save", "npy,png16", "--quiet"]) == 0
        assert sorted(os.listdir(out2)) == ["predictions.json", "wide_depth_m.npy", "wide_depth_mm.png"]
        assert np.load(out2 / "wide_depth_m.npy").shape == (20, 90)


def test_predict_cli_video(workdir, tmp_path, capsys):
    from tfdepth.predict import main

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (56, 40))
    assert writer.isOpened()
    for i in range(6):
        writer.write(np.full((40, 56, 3), i * 40, np.uint8))
    writer.release()
    out = tmp_path / "out"
    assert main(["--model", str(workdir), "--input", str(path), "--output", str(out), "--video-every", "2"]) == 0
    frames = sorted(os.listdir(out / "clip"))
    assert frames == [f"clip_{i:06d}{s}" for i in (0, 2, 4) for s in
                      ("_depth_color.png", "_depth_m.npy", "_depth_mm.png", "_points.ply")]
    _check_outputs(out / "clip", "clip_000002", (40, 56), _expected_intrinsics((40, 56)))
    assert "done: 0 image(s), 3 video frame(s)" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------------
# Point clouds of a plane at a known distance
# --------------------------------------------------------------------------------------------------


PLANE_M = 3.25


@pytest.fixture
def plane_predictor(monkeypatch):
    """DepthPredictor.load returns a model that sees a fronto-parallel plane PLANE_M metres away."""
    from tfdepth.serving.predictor import DepthPredictor

    class PlanePredictor(DepthPredictor):
        def _predict(self, rgb):
            return np.full(rgb.shape[:2], PLANE_M, np.float32)

    def load(cls, path, num_threads=None):
        return PlanePredictor("plane", (8, 8), metadata=None)

    monkeypatch.setattr(DepthPredictor, "load", classmethod(load))


@pytest.mark.parametrize("ascii_ply", [False, True])
def test_plane_point_cloud_is_metric(plane_predictor, tmp_path, ascii_ply, capsys):
    from tfdepth.geometry import read_ply
    from tfdepth.predict import main

    rgb = ramp_rgb(24, 40)
    write_rgb(tmp_path / "plane.png", rgb)
    fx, fy, cx, cy = 30.0, 35.0, 18.0, 11.5
    argv = ["--model", "m", "--input", str(tmp_path / "plane.png"), "--output", str(tmp_path / "out"),
            "--intrinsics", f"{fx},{fy},{cx},{cy}", "--quiet"] + (["--ply-ascii"] if ascii_ply else [])
    assert main(argv) == 0
    points, colours = read_ply(str(tmp_path / "out" / "plane_points.ply"))
    assert points.shape == (24 * 40, 3)
    np.testing.assert_array_equal(points[:, 2], np.float32(PLANE_M))
    rows, cols = np.divmod(np.arange(24 * 40), 40)  # row-major pixel order
    np.testing.assert_allclose(points[:, 0], (cols - cx) * PLANE_M / fx, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(points[:, 1], (rows - cy) * PLANE_M / fy, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(colours, rgb.reshape(-1, 3))
    # The plane's extent: the corner pixels see a 39 px x 23 px wide window at 3.25 m.
    assert points[:, 0].max() - points[:, 0].min() == pytest.approx(39 * PLANE_M / fx, rel=1e-6)
    assert points[:, 1].max() - points[:, 1].min() == pytest.approx(23 * PLANE_M / fy, rel=1e-6)
    mm = cv2.imread(str(tmp_path / "out" / "plane_depth_mm.png"), cv2.IMREAD_UNCHANGED)
    assert np.all(mm == 3250)


def test_plane_with_guessed_field_of_view(plane_predictor, tmp_path, capsys):
    from tfdepth.geometry import DEFAULT_FOV_DEG, read_ply
    from tfdepth.predict import main

    write_rgb(tmp_path / "plane.png", ramp_rgb(30, 40))
    assert main(["--model", "m", "--input", str(tmp_path / "plane.png"), "--output", str(tmp_path / "out"),
                 "--save", "ply", "--quiet"]) == 0
    assert f"assuming a {DEFAULT_FOV_DEG:g} degree horizontal field of view" in capsys.readouterr().out
    points, _ = read_ply(str(tmp_path / "out" / "plane_points.ply"))
    # The leftmost and rightmost pixel centres span (W - 1) / W of the field of view's width at 3.25 m.
    width_m = 2 * PLANE_M * math.tan(math.radians(DEFAULT_FOV_DEG / 2))
    assert points[:, 0].max() - points[:, 0].min() == pytest.approx(width_m * 39 / 40, rel=1e-5)
    assert points[:, 0].min() == pytest.approx(-points[:, 0].max(), rel=1e-5)  # centred
    with pytest.raises(SystemExit):
        main(["--model", "m", "--input", "x", "--output", "y", "--fov", "60", "--intrinsics", "1,1,1,1"])
