"""Evaluation follows the published protocol on the full frame (issue 14 item 1).

A model trained on centre crops (``data.resize_mode: center_crop``) predicts the WHOLE stored frame at
its training scale, and the protocol's crop is the one defined on the full native frame: Garg rows
153:371, cols 44:1197 of 375x1242 KITTI; Eigen rows 45:471, cols 41:601 of 480x640 NYU. Every result
states ``protocol: {name, crop, crop_box, gt_size}``.
"""

import json

import numpy as np
import pytest

from helpers import REPO_ROOT, write_tiny_dataset
from tfdepth.metrics import MetricAccumulator, crop_box, get_protocol

KITTI_SHAPE, NYU_SHAPE = (375, 1242), (480, 640)
GARG_375x1242 = [153, 371, 44, 1197]  # the numbers (Monodepth/BTS int() truncation)
EIGEN_480x640 = [45, 471, 41, 601]


def test_protocol_crop_boxes_on_the_full_frames():
    h, w = KITTI_SHAPE
    garg = (int(0.40810811 * h), int(0.99189189 * h), int(0.03594771 * w), int(0.96405229 * w))
    assert crop_box(KITTI_SHAPE, get_protocol("kitti")) == garg == tuple(GARG_375x1242)
    assert crop_box(KITTI_SHAPE, get_protocol("kitti", "eigen")) == (
        int(0.3324324 * h), int(0.91351351 * h), int(0.0359477 * w), int(0.96405229 * w)) == (124, 342, 44, 1197)
    assert crop_box(KITTI_SHAPE, get_protocol("kitti", "kb")) == (375 - 352, 375, (1242 - 1216) // 2, 13 + 1216)
    assert crop_box(NYU_SHAPE, get_protocol("nyu")) == tuple(EIGEN_480x640)
    assert crop_box(NYU_SHAPE, get_protocol("nyu", "none")) == (0, 480, 0, 640)

    # the result's record: one size -> its box; two sizes -> a box per size, none at the top
    acc = MetricAccumulator(get_protocol("kitti"))
    assert acc.result()["protocol"]["crop_box"] is None and acc.result()["protocol"]["gt_size"] is None
    acc.update(np.full(KITTI_SHAPE, 5.0), np.full(KITTI_SHAPE, 4.0))
    record = acc.result()["protocol"]
    assert (record["name"], record["crop"], record["crop_box"], record["gt_size"]) == ("kitti", "garg", GARG_375x1242,
                                                                                       [375, 1242])
    assert record["max_depth_m"] == 80.0 and acc.result()["pixels"] == (371 - 153) * (1197 - 44)
    acc.update(np.full((370, 1226), 5.0), np.full((370, 1226), 4.0))
    record = acc.result()["protocol"]
    assert record["crop_box"] is None and record["gt_size"] is None
    assert record["sizes"] == [{"gt_size": [370, 1226], "crop_box": [151, 366, 44, 1181], "images": 1},
                               {"gt_size": [375, 1242], "crop_box": GARG_375x1242, "images": 1}]


def _unet_cfg(data_dir, input_size, *extra):
    from tfdepth.config import load_config

    return load_config(None, ["data.dataset=tfrecord", f"data.data_dir={data_dir}",
                              f"data.input_size=[{input_size[0]}, {input_size[1]}]", "data.resize_mode=center_crop",
                              "model.encoder=resnet18", "model.encoder_weights=none", "model.decoder=unet_transpose",
                              *extra])


def test_full_frame_prediction_equals_predicting_the_frame_at_that_scale(tmp_path):
    import tensorflow as tf

    from tfdepth.evaluation.model_eval import FullFramePredictor, copy_weights, full_frame_size
    from tfdepth.models.build import build_model

    cfg = _unet_cfg(tmp_path, (32, 32))
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    # 48x96 frames trained as their centred 48x48 window resized to 32x32: the frame at the same
    # scale is 32x64 (a multiple of the stride 32, no padding)
    assert full_frame_size((48, 96), (32, 32)) == (32, 64)
    frames = tf.random.stateless_uniform([2, 48, 96, 3], seed=[1, 2])
    predictor = FullFramePredictor(model, cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    full = predictor(frames).numpy()
    direct = build_model(cfg.model, (32, 64), cfg.data.max_depth_m)
    assert copy_weights(model, direct) == []
    scaled = tf.image.resize(frames, (32, 64), method="bilinear", antialias=True)
    expected = direct(scaled, training=False)["depth"].numpy()
    assert full.shape == (2, 32, 64, 1) and predictor.network_sizes == [(32, 64)]
    np.testing.assert_allclose(full, expected, rtol=1e-5, atol=1e-5)
    # 48x80 -> 32x53, reflect-padded to 32x64 on the right and cropped back; new weights follow sync_weights
    assert full_frame_size((48, 80), (32, 32)) == (32, 53)
    odd = tf.random.stateless_uniform([1, 48, 80, 3], seed=[3, 4])
    padded = tf.pad(tf.image.resize(odd, (32, 53), antialias=True), [[0, 0], [0, 0], [0, 11], [0, 0]], mode="REFLECT")
    expected_odd = direct(padded, training=False)["depth"].numpy()[:, :, :53]
    np.testing.assert_allclose(predictor(odd).numpy(), expected_odd, rtol=1e-5, atol=1e-5)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    predictor.sync_weights()
    assert copy_weights(model, direct) == []
    changed = predictor(odd).numpy()
    np.testing.assert_allclose(changed, direct(padded, training=False)["depth"].numpy()[:, :, :53], rtol=1e-5, atol=1e-5)
    assert not np.allclose(changed, expected_odd)


def test_every_cnn_decoder_is_rebuilt_at_the_frame_size_not_tiled(tmp_path):
    """Full-frame prediction rebuilds the architecture at the frame's size when no weight's shape depends
    on the input size (a Dense or fixed Reshape would): every decoder over a ResNet must be rebuilt; a
    ViT decoder (``dpt``) may fall back to tiling, naming the weights that forced it."""
    import tensorflow as tf

    from tfdepth.evaluation.model_eval import FullFramePredictor, copy_weights
    from tfdepth.models.build import build_model
    from tfdepth.registries import DECODERS, ENCODERS

    for decoder in DECODERS.names():
        encoder = "resnet18"
        if DECODERS.meta(decoder).get("encoders"):  # e.g. dpt reads ViT tokens: its smallest encoder
            encoder = [e for e in DECODERS.meta(decoder)["encoders"] if "tiny" in e][0]
        patch = ENCODERS.meta(encoder).get("patch_size")
        stride = patch or 32
        height = 8 * patch if patch else 32  # the DPT neck needs more than 4 x 4 tokens
        cfg = _unet_cfg(tmp_path, (height, height), f"model.decoder={decoder}", f"model.encoder={encoder}",
                        f"model.output_stride={stride}")
        model = build_model(cfg.model, (height, height), 10.0)
        wider = build_model(cfg.model, (height, height + 2 * stride), 10.0)
        problems = copy_weights(model, wider)
        if patch and problems:
            continue  # tiled (test_tiled_prediction_averages_overlapping_windows); the predictor names them
        assert problems == [], decoder
        trained = {v.path: v.numpy() for v in model.weights}  # copied by path: the order may differ by size
        for v in wider.weights:
            np.testing.assert_array_equal(v.numpy(), trained[v.path], err_msg=f"{decoder} {v.path}")

    # a half-resolution decoder: the padding is dropped at its output's scale
    cfg = _unet_cfg(tmp_path, (32, 32), "model.decoder=densedepth")
    model = build_model(cfg.model, (32, 32), 10.0)
    predictor = FullFramePredictor(model, cfg.model, (32, 32), 10.0)
    depth = predictor(tf.random.stateless_uniform([1, 32, 70, 3], seed=[5, 6]))  # padded to 32x96 -> 16x48 out
    assert predictor.method == "rebuild" and predictor.network_sizes == [(32, 96)]
    assert tuple(depth.shape) == (1, 16, 35, 1)


def test_tiled_prediction_averages_overlapping_windows(tmp_path):
    import tensorflow as tf

    from tfdepth.evaluation.model_eval import FullFramePredictor, tile_starts
    from tfdepth.models.build import build_model

    assert tile_starts(32, 32) == [0] and tile_starts(64, 32) == [0, 16, 32] and tile_starts(70, 32) == [0, 16, 32, 38]
    cfg = _unet_cfg(tmp_path, (32, 32))
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    frames = tf.random.stateless_uniform([1, 48, 96, 3], seed=[7, 8])  # at the training scale: 32x64
    tiled = FullFramePredictor(model, cfg.model, cfg.data.input_size, cfg.data.max_depth_m, mode="tile")
    depth = tiled(frames).numpy()
    assert depth.shape == (1, 32, 64, 1) and tiled.network_sizes == [(32, 32)]
    scaled = tf.image.resize(frames, (32, 64), antialias=True)
    windows = [model(scaled[:, :, left:left + 32], training=False)["depth"].numpy() for left in (0, 16, 32)]
    np.testing.assert_allclose(depth[:, :, :16], windows[0][:, :, :16], rtol=1e-5, atol=1e-5)  # one window
    np.testing.assert_allclose(depth[:, :, 16:32], (windows[0][:, :, 16:] + windows[1][:, :, :16]) / 2, rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(depth[:, :, 48:], windows[2][:, :, 16:], rtol=1e-5, atol=1e-5)


def _valid_in_box(gts, box, max_depth):
    top, bottom, left, right = box
    return sum(int(((g[top:bottom, left:right] > 1e-3) & (g[top:bottom, left:right] < max_depth)).sum()) for g in gts)


def test_kitti_shaped_sid_recipe_scores_the_full_frame_with_the_garg_box(tmp_path, capsys):
    import tensorflow as tf

    from tfdepth.config import load_config, save_config
    from tfdepth.evaluate import main
    from tfdepth.models.build import build_model

    data_dir = tmp_path / "kitti"
    _, samples = write_tiny_dataset(data_dir, num_train=0, num_val=2, height=375, width=1242)
    # the SID recipe at a tiny input size (its 420:800 aspect ratio), ResNet-18 for speed
    cfg = load_config(str(REPO_ROOT / "configs/kitti_deeplabv2_sid_resnet101.yaml"),
                      ["data.dataset=tfrecord", f"data.data_dir={data_dir}", "data.input_size=[42, 80]",
                       "model.encoder=resnet18", "model.encoder_weights=none", "eval.batch_size=2"])
    assert cfg.data.resize_mode == "center_crop" and cfg.eval.protocol == "kitti"
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    save_config(cfg, str(workdir / "config.yaml"))
    tf.train.Checkpoint(model=model).save(str(workdir / "checkpoints" / "ckpt"))

    out = tmp_path / "kitti.json"
    assert main(["--checkpoint", str(workdir), "--output", str(out)]) == 0
    assert "crop garg rows 153:371 cols 44:1197 of 375x1242" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["protocol"]["name"] == "kitti" and result["protocol"]["crop"] == "garg"
    assert result["protocol"]["crop_box"] == GARG_375x1242 and result["protocol"]["gt_size"] == [375, 1242]
    # the full frame's Garg window, not ~58 % of its width as inside a 375x714 centre crop
    assert result["pixels"] == _valid_in_box([g for _, g in samples["val"]], GARG_375x1242, 80.0)
    # 375x1242 seen at 42/375: 42x139, padded to the output stride 8
    assert result["inference"] == {"frame": "full", "method": "rebuild", "network_sizes": [[48, 144]], "stride": 8}


def test_nyu_shaped_model_scores_the_full_frame_with_the_eigen_box(tmp_path):
    import tensorflow as tf

    from tfdepth.evaluation.model_eval import FullFramePredictor, evaluate_trained_model
    from tfdepth.models.build import build_model
    from tfdepth.training.validation import Validator

    data_dir = tmp_path / "nyu"
    manifest, samples = write_tiny_dataset(data_dir, num_train=1, num_val=2, height=480, width=640)
    cfg = _unet_cfg(data_dir, (32, 32), "eval.protocol=nyu", "eval.batch_size=2", "data.max_depth_m=10")
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    result = evaluate_trained_model(model, cfg)
    protocol = result["protocol"]
    assert (protocol["name"], protocol["crop"], protocol["crop_box"], protocol["gt_size"]) == (
        "nyu", "eigen", EIGEN_480x640, [480, 640])
    gts = [g for _, g in samples["val"]]
    assert result["pixels"] == _valid_in_box(gts, EIGEN_480x640, 10.0)
    assert result["inference"]["network_sizes"] == [[32, 64]]  # 480x640 at 32/480 = 32x43, padded to 32

    # training's final metrics.json goes the same way and says so
    validator = Validator(cfg, model, str(data_dir), manifest)
    with open(tmp_path / "log.txt", "w") as log:
        metrics = validator.final_metrics(0, str(tmp_path), log)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["protocol"]["crop_box"] == EIGEN_480x640 and saved["protocol"]["gt_size"] == [480, 640]
    assert metrics["model"]["abs_rel"] == pytest.approx(result["overall"]["abs_rel"], rel=1e-6)

    # the numbers: the full-frame prediction, resized bilinearly to 480x640, scored in the Eigen window
    predictor = validator.predict_fn()
    assert isinstance(predictor, FullFramePredictor)
    images = np.stack([rgb for rgb, _ in samples["val"]]).astype(np.float32) / 255.0
    pred = tf.image.resize(predictor(images), NYU_SHAPE, method="bilinear").numpy()[..., 0].astype(np.float64)
    rel = []
    for p, g in zip(pred, gts):
        top, bottom, left, right = EIGEN_480x640
        p, g = p[top:bottom, left:right], g[top:bottom, left:right].astype(np.float64)
        valid = (g > 1e-3) & (g < 10)
        rel.append(np.mean(np.abs(np.clip(p[valid], 1e-3, 10) - g[valid]) / g[valid]))
    assert result["overall"]["abs_rel"] == pytest.approx(np.mean(rel), rel=1e-4)

    # eval.gt_resolution: input keeps scoring the centre crop at the input size, as documented
    cfg.eval.gt_resolution = "input"
    at_input = evaluate_trained_model(model, cfg)
    assert at_input["protocol"]["gt_size"] == [32, 32] and at_input["inference"]["frame"] == "center_crop"


def test_file_mode_states_the_protocol_block(tmp_path):
    from tfdepth.evaluate import main

    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    rng = np.random.default_rng(0)
    gt = rng.uniform(2, 70, KITTI_SHAPE).astype(np.float32)
    gt[rng.random(KITTI_SHAPE) < 0.8] = 0
    np.save(gt_dir / "a.npy", gt)
    np.save(pred_dir / "a.npy", gt * 1.1)
    out = tmp_path / "files.json"
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--protocol", "kitti", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["protocol"]["crop_box"] == GARG_375x1242 and result["protocol"]["gt_size"] == [375, 1242]
    assert result["pixels"] == _valid_in_box([gt], GARG_375x1242, 80.0)
