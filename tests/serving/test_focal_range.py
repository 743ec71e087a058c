"""The trained focal range of a canonical-camera model (``model.focal_range_px``, docs/camera.md): a
picture whose focal length f at the model input lies outside [f_min, f_max] is resized by clip(f) / f
before the network and its depth scaled by clip(f) / f_c; inside the range nothing changes."""

import json

import numpy as np
import pytest

import helpers as ds
from helpers import ramp_rgb, write_rgb, write_tiny_dataset

F_C = 50.0
RANGE = (40.0, 60.0)  # pixels of the 32x48 model input
INPUT = (32, 48)


def _pixelwise(x):
    """A fixed-input "network" whose depth at a pixel is 2 + its red value (input size only)."""
    import tensorflow as tf

    assert tuple(x.shape[1:3]) == INPUT
    return 2.0 + tf.convert_to_tensor(x)[..., :1]


def test_focal_resize_scale_is_clip_over_f():
    from tfdepth.geometry import focal_resize_scale

    assert focal_resize_scale(50.0, RANGE) == 1.0
    assert focal_resize_scale(40.0, RANGE) == 1.0 and focal_resize_scale(60.0, RANGE) == 1.0
    assert focal_resize_scale(120.0, RANGE) == pytest.approx(0.5)
    assert focal_resize_scale(20.0, RANGE) == pytest.approx(2.0)
    assert focal_resize_scale(20.0, None) == 1.0
    with pytest.raises(ValueError, match="positive"):
        focal_resize_scale(0.0, RANGE)


def test_resizer_in_range_is_the_model_and_out_of_range_is_resized_and_scaled():
    import tensorflow as tf

    from tfdepth.evaluation.model_eval import FocalResizer

    calls = []

    def base(x):
        calls.append(int(x.shape[0]))
        return 7.0 + tf.zeros_like(x[..., :1])

    resizer = FocalResizer(RANGE, INPUT, base_fn=base, fixed_fn=_pixelwise)
    rgb = ramp_rgb(*INPUT).astype(np.float32)[None] / 255.0
    # inside the range: the base function on the whole batch, untouched
    out = resizer(np.concatenate([rgb, rgb]), [45.0, 60.0])
    assert calls == [2] and np.array_equal(out.numpy(), 7.0 * np.ones((2, *INPUT, 1), np.float32))
    assert resizer.records == []

    # a constant picture: depth (2 + c) everywhere, times the resize scale clip(f) / f
    const = np.full((1, *INPUT, 3), 0.25, np.float32)
    out = resizer(np.concatenate([const, const, const]), [120.0, 20.0, 50.0]).numpy()
    np.testing.assert_allclose(out[0], 2.25 * 0.5, rtol=1e-6)  # narrow lens: 16x24, padded to 32x48
    np.testing.assert_allclose(out[1], 2.25 * 2.0, rtol=1e-6)  # wide lens: 64x96, in 32x48 tiles
    np.testing.assert_allclose(out[2], 7.0)  # in range: the base function
    assert resizer.records == [{"from_px": 120.0, "to_px": 60.0, "scale": 0.5, "size": [16, 24]},
                               {"from_px": 20.0, "to_px": 40.0, "scale": 2.0, "size": [64, 96]}]
    assert resizer.summary() == {"range_px": [40.0, 60.0], "images": 5, "resized": 2, "from_px": [20.0, 120.0],
                                 "to_px": [40.0, 60.0], "scale": [0.5, 2.0]}

    # a ramp, by hand: resize by exactly s (antialiased), the network, resize back, times s
    for focal, size, s in ((120.0, (16, 24), 0.5), (20.0, (64, 96), 2.0)):
        got = resizer(rgb, [focal]).numpy()
        small = tf.clip_by_value(tf.image.resize(rgb, size, method="bilinear", antialias=True), 0, 1)
        want = tf.image.resize(2.0 + small[..., :1], INPUT, method="bilinear").numpy() * s
        np.testing.assert_allclose(got, want, rtol=1e-5)


@pytest.fixture(scope="module")
def ranged_workdir(tmp_path_factory):
    """A randomly initialised canonical-camera model with a trained focal range [40, 60] px."""
    import keras
    import tensorflow as tf

    from tfdepth.config import load_config, save_config
    from tfdepth.models.build import build_model

    root = tmp_path_factory.mktemp("focal_range")
    write_tiny_dataset(root / "data", num_train=2, num_val=2, height=32, width=48)
    cfg = load_config(str(ds.REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
        "data.dataset=tfrecord", f"data.data_dir={root / 'data'}", f"data.input_size=[{INPUT[0]},{INPUT[1]}]",
        "model.encoder=resnet18", "model.decoder_args.filters=[16,16,8,8,8]", "eval.protocol=none",
        "model.camera=canonical", f"model.canonical_focal_px={F_C}", f"model.focal_range_px=[{RANGE[0]},{RANGE[1]}]"])
    keras.utils.set_random_seed(5)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    tf.train.Checkpoint(model=model).save(str(root / "work" / "checkpoints" / "ckpt"))
    save_config(cfg, str(root / "work" / "config.yaml"))
    return root / "work"


def test_predictor_resizes_an_off_range_picture_into_the_trained_range(ranged_workdir, tmp_path):
    import dataclasses

    import tensorflow as tf

    from tfdepth.evaluation.model_eval import copy_weights
    from tfdepth.geometry import Intrinsics
    from tfdepth.models.build import build_model
    from tfdepth.predict import main
    from tfdepth.serving.predictor import DepthPredictor

    predictor = DepthPredictor.load(str(ranged_workdir))
    assert predictor.focal_range_px == RANGE
    rgb = ramp_rgb(*INPUT)  # the model's own size: no padding, no resize
    # inside the range: the same numbers as a predictor without range, twice the depth at 2F
    at_45 = predictor.predict(rgb, Intrinsics(45.0, 45.0, 23.5, 15.5))
    assert predictor.last_focal_resize is None
    predictor.focal_range_px = None
    np.testing.assert_array_equal(at_45, predictor.predict(rgb, Intrinsics(45.0, 45.0, 23.5, 15.5)))
    predictor.focal_range_px = RANGE
    at_22 = predictor.predict(rgb, Intrinsics(22.5, 22.5, 23.5, 15.5))  # below the range: resized by 40 / 22.5
    # 32 x 40 / 22.5 = 56.9 -> 57 rows, 85.3 -> 86 columns: rounded up, into the range
    assert predictor.last_focal_resize["size"] == [57, 86] and at_22.shape == INPUT
    assert predictor.last_focal_resize["to_px"] == pytest.approx(22.5 * (57 / 32 + 86 / 48) / 2)
    assert predictor.last_focal_resize["to_px"] >= RANGE[0]

    # f = 80 px: resized by 60 / 80 to 24x36; by hand: the model rebuilt at 32x64 (stride 32, weights by
    # path), the picture reflect-padded, the padding's output cut, resized back, times clip(f) / f_c
    depth = predictor.predict(rgb, Intrinsics(80.0, 80.0, 23.5, 15.5))
    assert predictor.last_focal_resize == {"from_px": 80.0, "to_px": 60.0, "scale": 0.75, "size": [24, 36]}
    net = build_model(dataclasses.replace(predictor.config.model, encoder_weights="none"), (32, 64),
                      predictor.config.data.max_depth_m)
    assert copy_weights(predictor.model, net) == []
    x = tf.image.resize(tf.cast(rgb[None], tf.float32) / 255.0, (24, 36), antialias=True)
    x = tf.pad(tf.clip_by_value(x, 0, 1), [[0, 0], [0, 8], [0, 28], [0, 0]], mode="REFLECT")
    out = net(x, training=False)["depth"]
    oh, ow = int(out.shape[1]), int(out.shape[2])
    raw = tf.image.resize(out[:, :oh * 24 // 32, :ow * 36 // 64], INPUT).numpy()[0, ..., 0]
    np.testing.assert_allclose(depth, raw * 60.0 / F_C, rtol=1e-4)
    depth = predictor.predict(rgb, Intrinsics(120.0, 120.0, 23.5, 15.5))  # 16x24: padded 16 rows of 16
    assert predictor.last_focal_resize["size"] == [16, 24] and np.isfinite(depth).all()

    # predict records what was done in predictions.json
    picture = tmp_path / "room.png"
    write_rgb(picture, rgb)
    assert main(["--model", str(ranged_workdir), "--input", str(picture), "--output", str(tmp_path / "o"),
                 "--save", "npy", "--quiet", "--focal-px", "80"]) == 0
    item = json.loads((tmp_path / "o" / "predictions.json").read_text())["items"][0]
    assert item["focal_resize"] == {"from_px": 80.0, "to_px": 60.0, "scale": 0.75, "size": [24, 36]}
    np.testing.assert_allclose(np.load(tmp_path / "o" / "room_depth_m.npy"), raw * 60.0 / F_C, rtol=1e-4)
    assert main(["--model", str(ranged_workdir), "--input", str(picture), "--output", str(tmp_path / "p"),
                 "--save", "npy", "--quiet", "--focal-px", "50"]) == 0
    assert "focal_resize" not in json.loads((tmp_path / "p" / "predictions.json").read_text())["items"][0]


def test_doubling_the_focal_length_inside_the_range_doubles_the_depth(ranged_workdir):
    from tfdepth.geometry import Intrinsics
    from tfdepth.serving.predictor import DepthPredictor

    predictor = DepthPredictor.load(str(ranged_workdir))
    predictor.focal_range_px = (30.0, 100.0)  # F and 2F both inside: 40 and 80 px at the input
    rgb = ramp_rgb(30, 40)  # padded to 30x45, resized to 32x48: f at the input = f * 48 / 45
    f = 40.0 * 45 / 48
    depth_f = predictor.predict(rgb, Intrinsics(f, f, 19.5, 14.5))
    depth_2f = predictor.predict(rgb, Intrinsics(2 * f, 2 * f, 19.5, 14.5))
    assert predictor.last_focal_resize is None
    assert np.max(np.abs(depth_2f / depth_f - 2.0)) / 2.0 < 1e-4


@pytest.mark.parametrize("value, message", [
    ("[60, 40]", "0 < f_min < f_max"), ("[0, 40]", "0 < f_min < f_max"), ("[40]", "0 < f_min < f_max"),
    ("[40, .nan]", "0 < f_min < f_max"), ("70", "a list")])
def test_focal_range_config_errors(value, message):
    from tfdepth.config import load_config
    from tfdepth.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model\.focal_range_px: expected .*" + message):
        load_config(str(ds.REPO_ROOT / "configs/synthetic_camera_fov.yaml"),
                    ["model.camera=canonical", f"model.focal_range_px={value}"])


def test_the_camera_fov_config_sets_the_trained_range():
    import math

    from tfdepth.config import load_config

    cfg = load_config(str(ds.REPO_ROOT / "configs/synthetic_camera_fov.yaml"))
    # 55-85 degrees at 128 px width: f = 64 / tan(hfov / 2), rounded outwards: the range holds them
    f_min, f_max = 64 / math.tan(math.radians(42.5)), 64 / math.tan(math.radians(27.5))
    assert cfg.model.focal_range_px[0] <= f_min < cfg.model.focal_range_px[0] + 0.1
    assert cfg.model.focal_range_px[1] - 0.1 < f_max <= cfg.model.focal_range_px[1]


def test_evaluate_model_scores_clip_f_over_f_c_times_the_network_depth():
    from tfdepth.evaluation.model_eval import FocalResizer, evaluate_model

    resizer = FocalResizer(RANGE, INPUT, base_fn=_pixelwise, fixed_fn=_pixelwise)
    images = np.full((3, *INPUT, 3), 0.5, np.float32)
    focal = np.array([120.0, 20.0, 50.0], np.float32)
    # metric depth = network depth (2.5) x clip(f) / f_c: 60, 40 and 50 px
    gt = np.stack([np.full((*INPUT, 1), 2.5 * c / F_C, np.float32) for c in (60.0, 40.0, 50.0)])
    for flip in (False, True):
        resizer.reset()
        result = evaluate_model(resizer, [(images, gt, focal)], "none", per_range=False, canonical_focal_px=F_C,
                                flip_average=flip)
        assert result["overall"]["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    wrong = np.stack([np.full((*INPUT, 1), 2.5 * c / F_C, np.float32) for c in (120.0, 20.0, 50.0)])
    result = evaluate_model(resizer, [(images, wrong, focal)], "none", per_range=False, canonical_focal_px=F_C)
    assert result["overall"]["abs_rel"] == pytest.approx((0.5 + 1.0 + 0.0) / 3, rel=1e-5)  # |60-120|/120, |40-20|/20


def test_evaluation_and_validation_resize_off_range_pictures(ranged_workdir):
    import dataclasses

    from tfdepth.data import pipeline
    from tfdepth.evaluation.model_eval import evaluate_trained_model
    from tfdepth.training.checkpoint import load_trained_model
    from tfdepth.training.validation import Validator

    model, cfg = load_trained_model(str(ranged_workdir))

    def with_range(rng):
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, focal_range_px=rng))

    # the tiny dataset's pictures have f = 40 px at the 32x48 input: inside [40, 60], nothing changes
    plain = evaluate_trained_model(model, with_range(None), split="val")
    inside = evaluate_trained_model(model, cfg, split="val")
    assert inside["overall"] == plain["overall"]
    assert inside["inference"]["focal_resize"] == {"range_px": [40.0, 60.0], "images": 2, "resized": 0}
    assert "focal_resize" not in plain["inference"]
    # [50, 60]: f = 40 is resized by 50 / 40 to 40x60, rebuilt at 64x64
    outside = evaluate_trained_model(model, with_range([50.0, 60.0]), split="val")
    assert outside["inference"]["focal_resize"] == {"range_px": [50.0, 60.0], "images": 2, "resized": 2,
                                                    "from_px": [40.0, 40.0], "to_px": [50.0, 50.0],
                                                    "scale": [1.25, 1.25]}
    assert [64, 64] in outside["inference"]["network_sizes"]
    assert outside["overall"]["abs_rel"] != plain["overall"]["abs_rel"]
    # training's validation goes through the same choice, twice in a row the same numbers
    data_dir, manifest = pipeline.resolve_dataset(cfg.data)
    validator = Validator(with_range([50.0, 60.0]), model, data_dir, manifest)
    for _ in range(2):
        result = validator.evaluate()
        assert result["overall"]["abs_rel"] == pytest.approx(outside["overall"]["abs_rel"], rel=1e-6)
        assert result["inference"]["focal_resize"]["resized"] == 2


def test_export_metadata_carries_the_range():
    from tfdepth.serving.predictor import DepthPredictor

    camera = {"mode": "canonical", "canonical_focal_px": 50, "focal_range_px": [40, 60]}
    assert DepthPredictor("saved_model", (64, 64), {"camera": camera}).focal_range_px == (40.0, 60.0)
    camera["mode"] = "none"  # the range belongs to a canonical model only
    assert DepthPredictor("saved_model", (64, 64), {"camera": camera}).focal_range_px is None


def test_a_fixed_input_savedmodel_pads_a_narrow_picture_and_tiles_a_wide_one(tmp_path_factory):
    import tensorflow as tf

    from tfdepth.geometry import Intrinsics
    from tfdepth.serving.predictor import DepthPredictor
    from tfdepth.serving.signature import to_uint8

    predictor = DepthPredictor.load(str(ds.saved_model(tmp_path_factory.getbasetemp())))
    assert predictor.input_size == (64, 64)
    predictor.canonical_focal_px, predictor.focal_range_px = F_C, RANGE  # as a canonical export's metadata
    rgb = ramp_rgb(64, 64)
    # f = 120 px: resized by 0.5 to 32x32, reflect-padded to the 64x64 input, the padding's depth cut
    depth = predictor.predict(rgb, Intrinsics(120.0, 120.0, 31.5, 31.5))
    assert predictor.last_focal_resize == {"from_px": 120.0, "to_px": 60.0, "scale": 0.5, "size": [32, 32]}
    x = tf.clip_by_value(tf.image.resize(tf.cast(rgb[None], tf.float32) / 255.0, (32, 32), antialias=True), 0, 1)
    x = tf.pad(x, [[0, 0], [0, 31], [0, 31], [0, 0]], mode="REFLECT")
    x = tf.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]], mode="REFLECT")  # the second reflection of 32 rows
    out = predictor._signature(images=tf.constant(to_uint8(x.numpy())))["depth"][:, :32, :32]
    want = tf.image.resize(out, (64, 64)).numpy()[0, ..., 0] * 0.5 * 120.0 / F_C
    np.testing.assert_allclose(depth, want, rtol=1e-5)
    # f = 20 px: resized by 2 to 128x128, nine overlapping 64x64 tiles
    depth = predictor.predict(rgb, Intrinsics(20.0, 20.0, 31.5, 31.5))
    assert predictor.last_focal_resize["size"] == [128, 128] and depth.shape == (64, 64)
    assert np.isfinite(depth).all() and depth.min() > 0
