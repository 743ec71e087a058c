"""Depth Anything V2 checkpoints in serving: ``DepthPredictor.load("hf:DIR")`` and ``tfdepth.predict --model
hf:DIR`` give the PyTorch model's depth; a dinov2_tiny + dpt model exports to TFLite with builtin ops."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from helpers import SHARED_DATA, max_rel_err, tiny_depth_anything, torch_depth

HAS_REF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
pytestmark = pytest.mark.skipif(not HAS_REF, reason="needs torch + transformers (pip install 'tfdepth[ref]')")


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("da_serving")
    return directory, tiny_depth_anything(directory, "metric", 20, seed=3)


def test_predictor_hf_equals_pytorch_at_518(hf_dir):
    from tfdepth.serving.predictor import DepthPredictor

    directory, torch_model = hf_dir
    predictor = DepthPredictor.load(f"hf:{directory}")
    rgb = np.random.default_rng(0).integers(0, 256, (518, 518, 3), dtype=np.uint8)
    ref = torch_depth(torch_model, rgb[None].astype(np.float32) / 255.0)[0]
    depth = predictor.predict(rgb)
    assert depth.shape == (518, 518) and ref.std() > 0.5
    assert max_rel_err(depth, ref) < 1e-4
    assert "metric" in predictor.describe() and predictor.metadata["model"]["max_depth_m"] == 20


def test_predictor_input_size_follows_the_picture(hf_dir):
    from tfdepth.models.hf_depth_anything import preprocess_size
    from tfdepth.serving.predictor import DepthPredictor

    # transformers' DPT resize (keep_aspect_ratio, ensure_multiple_of=14, 518): 480x640 -> 518x686
    assert preprocess_size(480, 640) == (518, 686) and preprocess_size(1000, 500) == (1036, 518)
    predictor = DepthPredictor.load(f"hf:{hf_dir[0]}")
    rgb = np.random.default_rng(1).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    assert predictor.predict(rgb).shape == (30, 45)
    assert list(predictor._fns) == [preprocess_size(30, 45)]


def test_predict_command_on_real_pictures(hf_dir, tmp_path):
    from tfdepth.predict import main

    wild = SHARED_DATA / "wild"
    if not wild.is_dir():
        pytest.skip(f"{wild} not present")
    assert main(["--model", f"hf:{hf_dir[0]}", "--input", str(wild), "--output", str(tmp_path), "--quiet",
                 "--save", "npy"]) == 0
    outputs = sorted(tmp_path.glob("*_depth_m.npy"))
    assert len(outputs) == len(list(wild.glob("*.jpg")))
    depth = np.load(outputs[0])
    assert np.isfinite(depth).all() and 0 < depth.min() and depth.max() < 20


def test_tiny_depth_anything_tflite_builtin_ops():
    """fp32 and float16 TFLite (builtin ops, the export command's converter) of a dinov2_tiny + dpt model."""
    import tensorflow as tf

    from tfdepth.config import ExperimentConfig, from_dict, to_dict
    from tfdepth.models.build import build_model
    from tfdepth.serving.tflite import TFLiteExporter

    data = to_dict(ExperimentConfig())
    data["data"].update(input_size=[84, 112], max_depth_m=10.0)
    data["model"].update(encoder="dinov2_tiny", decoder="dpt", output_stride=14)
    cfg = from_dict(ExperimentConfig, data)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    image = np.random.default_rng(2).uniform(0, 1, (1, 84, 112, 3)).astype(np.float32)
    expected = model(image)["depth"].numpy()
    with TFLiteExporter(model, cfg.data.input_size) as exporter:
        for quantize, tolerance in (("none", 1e-4), ("float16", 2e-2)):
            interpreter = tf.lite.Interpreter(model_content=exporter.convert(quantize))
            interpreter.allocate_tensors()
            interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
            interpreter.invoke()
            got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
            assert max_rel_err(got, expected) < tolerance, quantize
