"""Camera-aware prediction (issue 16): a canonical-camera model's depth is proportional to the focal
length it is told (--focal-px, --fov, EXIF, a stated default field of view), pictures are padded to
the model's aspect ratio (never stretched), and predictions.json records the intrinsics used."""

import json

import numpy as np
import pytest

import helpers as ds
from helpers import ramp_rgb, write_rgb, write_tiny_dataset

F_C = 40.0  # the canonical focal length (pixels of the 32x48 model input)
INPUT = (32, 48)


@pytest.fixture(scope="module")
def canonical_workdir(tmp_path_factory):
    """config.yaml + a checkpoint of a randomly initialised canonical-camera model (the scaling does not
    care whether the weights are any good)."""
    import keras
    import tensorflow as tf

    from tfdepth.config import load_config, save_config
    from tfdepth.models.build import build_model

    root = tmp_path_factory.mktemp("canonical")
    write_tiny_dataset(root / "data", num_train=2, num_val=2, height=32, width=48)
    cfg = load_config(str(ds.REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
        "data.dataset=tfrecord", f"data.data_dir={root / 'data'}", f"data.input_size=[{INPUT[0]},{INPUT[1]}]",
        "model.encoder=resnet18", "model.decoder_args.filters=[16,16,8,8,8]", "eval.protocol=none",
        "model.camera=canonical", f"model.canonical_focal_px={F_C}"])
    keras.utils.set_random_seed(4)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    tf.train.Checkpoint(model=model).save(str(root / "work" / "checkpoints" / "ckpt"))
    save_config(cfg, str(root / "work" / "config.yaml"))
    return root / "work"


def _predict(workdir, picture, out, *camera):
    from tfdepth.predict import main

    assert main(["--model", str(workdir), "--input", str(picture), "--output", str(out), "--save", "npy",
                 "--quiet", *camera]) == 0
    item = json.loads((out / "predictions.json").read_text())["items"][0]
    return np.load(out / f"{picture.stem}_depth_m.npy"), item


def test_twice_the_focal_length_is_twice_the_depth(canonical_workdir, tmp_path):
    import tensorflow as tf

    from tfdepth.serving.predictor import PAD_RGB, DepthPredictor

    rgb = ramp_rgb(30, 40)  # 4:3, the model 3:2: padded left and right, not stretched
    picture = tmp_path / "room.png"
    write_rgb(picture, rgb)
    depth_f, item_f = _predict(canonical_workdir, picture, tmp_path / "f", "--focal-px", "50")
    depth_2f, item_2f = _predict(canonical_workdir, picture, tmp_path / "2f", "--focal-px", "100")
    assert depth_f.shape == (30, 40)
    assert np.max(np.abs(depth_2f / depth_f - 2.0)) / 2.0 < 1e-4
    assert item_f["intrinsics"] == pytest.approx([50.0, 50.0, 19.5, 14.5])
    assert item_2f["intrinsics"] == pytest.approx([100.0, 100.0, 19.5, 14.5])
    assert item_f["intrinsics_source"] == "--focal-px"
    # f at the model input: the 30x40 picture padded to 30x45 (3:2), resized to 32x48: f = 50 * 48 / 45
    assert item_f["focal_px_at_model_input"] == pytest.approx(50.0 * 48 / 45)

    # by hand: pad with the ImageNet mean colour, resize, run the model, resize back, cut, * f / f_c
    predictor = DepthPredictor.load(str(canonical_workdir))
    assert predictor.canonical_focal_px == F_C
    padded = np.empty((30, 45, 3), np.uint8)
    padded[...] = PAD_RGB
    padded[:, 2:42] = rgb
    x = tf.image.resize(tf.cast(padded[None], tf.float32), INPUT, antialias=True) / 255.0
    raw = tf.image.resize(predictor.model(x)["depth"], (30, 45)).numpy()[0, :, 2:42, 0]
    np.testing.assert_allclose(depth_f, raw * (50.0 * 48 / 45) / F_C, rtol=1e-5)


def test_the_camera_comes_from_fov_exif_or_a_stated_default(canonical_workdir, tmp_path, capsys):
    import math

    from PIL import Image

    from tfdepth.geometry import DEFAULT_FOV_DEG

    rgb = ramp_rgb(24, 36)
    plain = tmp_path / "plain.png"
    write_rgb(plain, rgb)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm: 28 mm
    tagged = tmp_path / "tagged.jpg"
    Image.fromarray(rgb).save(tagged, exif=exif, quality=100)

    depth_exif, item = _predict(canonical_workdir, tagged, tmp_path / "exif")
    focal = 28.0 / 36.0 * 36  # f35 / 36 mm x the picture's long side (36 px)
    assert item["intrinsics"] == pytest.approx([focal, focal, 17.5, 11.5])
    assert item["intrinsics_source"] == "exif FocalLengthIn35mmFilm 28 mm"

    depth_default, item = _predict(canonical_workdir, plain, tmp_path / "default")
    assert "assuming a 60 degree horizontal field of view" in capsys.readouterr().out
    assert item["intrinsics_source"] == f"default {DEFAULT_FOV_DEG:g} deg fov"  # never the training camera
    default_focal = 18.0 / math.tan(math.radians(DEFAULT_FOV_DEG / 2))
    assert item["intrinsics"][0] == pytest.approx(default_focal)

    depth_fov, item = _predict(canonical_workdir, plain, tmp_path / "fov", "--fov", "90")
    assert item["intrinsics"][0] == pytest.approx(18.0)  # (W / 2) / tan(45 deg)
    np.testing.assert_allclose(depth_fov / depth_default, 18.0 / default_focal, rtol=1e-4)
    # the EXIF picture is the same ramp (JPEG at quality 100): its depth follows its own focal length
    assert np.median(depth_exif / depth_default) == pytest.approx(focal / default_focal, rel=0.05)


def test_a_canonical_model_refuses_a_picture_without_camera(canonical_workdir):
    from tfdepth.serving.predictor import DepthPredictor

    predictor = DepthPredictor.load(str(canonical_workdir))
    with pytest.raises(ValueError, match="canonical camera"):
        predictor.predict(ramp_rgb(8, 8))


def test_padding_window_keeps_the_aspect_ratio():
    from tfdepth.geometry import Intrinsics
    from tfdepth.serving.predictor import DepthPredictor, pad_to_aspect

    padded, (top, left) = pad_to_aspect(ramp_rgb(10, 40), (32, 48))
    assert padded.shape[:2] == (27, 40) and (top, left) == (8, 0)  # 40 * 32 / 48 = 26.7 -> 27 rows
    same, offset = pad_to_aspect(ramp_rgb(16, 24), (32, 48))
    assert same.shape[:2] == (16, 24) and offset == (0, 0)
    predictor = DepthPredictor("test", (32, 48), metadata={
        "intrinsics": {"fx": 40.0, "fy": 40.0, "cx": 23.5, "cy": 15.5, "size": [32, 48]}})
    # the training camera on a 10x40 picture: square pixels (fx = fy), the padding's 8 rows removed
    k = predictor.intrinsics_for((10, 40))
    assert k.as_list() == pytest.approx(Intrinsics(40, 40, 23.5, 15.5).scaled((32, 48), (27, 40)).padded(-8, 0)
                                        .as_list())
    assert k.fx == pytest.approx(k.fy, rel=0.02)
