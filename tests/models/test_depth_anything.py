"""Depth Anything V2 in tfdepth: DINOv2 encoder + DPT decoder (keras-hub layers), the Hugging Face converter
against transformers' PyTorch model, keras-hub backbone weights, parameter counts, config checks."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tfdepth.config import ExperimentConfig, ModelConfig, from_dict, to_dict
from tfdepth.errors import ConfigError, UserError

from helpers import max_rel_err, tiny_depth_anything, torch_depth

HAS_REF = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
needs_ref = pytest.mark.skipif(not HAS_REF, reason="needs torch + transformers (pip install 'tfdepth[ref]')")


def _cfg(encoder="dinov2_tiny", decoder="dpt", input_size=(126, 168), max_depth=20.0, **decoder_args):
    data = to_dict(ExperimentConfig())
    data["data"].update(input_size=list(input_size), max_depth_m=max_depth)
    data["model"].update(encoder=encoder, decoder=decoder, output_stride=32 if encoder.startswith("resnet") else 14,
                         decoder_args=decoder_args)
    return from_dict(ExperimentConfig, data)


@pytest.fixture(scope="module")
def hf_metric(tmp_path_factory):
    if not HAS_REF:
        pytest.skip("needs torch + transformers (pip install 'tfdepth[ref]')")
    directory = tmp_path_factory.mktemp("da_metric")
    return directory, tiny_depth_anything(directory, "metric", 20)


@needs_ref
def test_torch_bicubic_rule_matches_torch():
    import torch

    from tfdepth.models.hf_depth_anything import interpolate_position_embeddings

    rng = np.random.default_rng(0)
    pos = rng.normal(size=(1, 1 + 6 * 6, 5)).astype(np.float32)
    for grid in ((9, 12), (4, 3), (6, 6)):
        patches = torch.from_numpy(pos[0, 1:].reshape(1, 6, 6, 5)).permute(0, 3, 1, 2)
        ref = torch.nn.functional.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
        ref = ref.permute(0, 2, 3, 1).reshape(1, -1, 5).numpy()
        got = interpolate_position_embeddings(pos, grid)
        np.testing.assert_array_equal(got[:, :1], pos[:, :1])
        np.testing.assert_allclose(got[:, 1:], ref, rtol=0, atol=1e-5)


@needs_ref
def test_hf_checkpoint_equals_pytorch_at_518(hf_metric):
    from tfdepth.models.hf_depth_anything import build_hf_model

    directory, torch_model = hf_metric
    model, info = build_hf_model(f"hf:{directory}", (518, 518))
    image = np.random.default_rng(1).uniform(0, 1, (1, 518, 518, 3)).astype(np.float32)
    ref = torch_depth(torch_model, image)
    got = model(image)["depth"].numpy()[..., 0]
    assert ref.std() > 0.5, "the reference depth must vary for the comparison to mean anything"
    assert max_rel_err(got, ref) < 1e-4
    assert (info.depth_type, info.max_depth) == ("metric", 20.0)
    assert info.torch_params == sum(p.numel() for p in torch_model.parameters())


@needs_ref
def test_init_from_hf_into_a_config_model_non_square(hf_metric):
    """model.init_from: hf:DIR fills the run's dinov2_tiny + dpt model; at 126x168 the position embeddings
    are interpolated as transformers does, so the depth is the PyTorch model's."""
    from tfdepth.models.hf_depth_anything import init_from_hf

    directory, torch_model = hf_metric
    model = init_from_hf(str(directory), _cfg(input_size=(126, 168)))
    image = np.random.default_rng(2).uniform(0, 1, (2, 126, 168, 3)).astype(np.float32)
    assert max_rel_err(model(image)["depth"].numpy()[..., 0], torch_depth(torch_model, image)) < 1e-4
    with pytest.raises(UserError, match="max_depth 20"):
        init_from_hf(str(directory), _cfg(max_depth=10.0))


@needs_ref
def test_relative_checkpoint_is_relu_disparity(tmp_path):
    from tfdepth.models.hf_depth_anything import build_hf_model

    torch_model = tiny_depth_anything(tmp_path, "relative", 3, seed=1)  # max_depth folded into the head
    model, info = build_hf_model(f"hf:{tmp_path}", (98, 140))
    image = np.random.default_rng(3).uniform(0, 1, (1, 98, 140, 3)).astype(np.float32)
    ref = torch_depth(torch_model, image)
    assert info.depth_type == "relative" and ref.std() > 0.1
    assert max_rel_err(model(image)["depth"].numpy()[..., 0], ref) < 1e-4


def test_bad_checkpoints_fail_loud(tmp_path):
    from tfdepth.models.hf_depth_anything import build_hf_model, read_hf_config

    with pytest.raises(UserError, match="config.json and model.safetensors"):
        build_hf_model(f"hf:{tmp_path}")
    (tmp_path / "config.json").write_text('{"model_type": "dpt"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError, match="model_type 'dpt'"):
        read_hf_config(str(tmp_path))


def test_keras_hub_backbone_weights_give_keras_hub_depth():
    """keras-hub's DepthAnythingBackbone (what its presets load) copied into tfdepth's model: the same
    relative depth (ReLU of the backbone's output)."""
    import keras_hub

    from tfdepth.models.build import build_model
    from tfdepth.models.hf_depth_anything import copy_keras_hub_backbone

    size = 518  # keras-hub and tfdepth then both use the 37x37 table as it is (no interpolation)
    encoder = keras_hub.models.DINOV2Backbone(
        patch_size=14, num_layers=4, hidden_dim=32, num_heads=2, intermediate_dim=128, image_shape=(size, size, 3),
        position_embedding_shape=(size, size), apply_layernorm=True)
    backbone = keras_hub.models.DepthAnythingBackbone(
        image_encoder=encoder, reassemble_factors=[4, 2, 1, 0.5], neck_hidden_dims=[8, 16, 32, 32],
        fusion_hidden_dim=16, head_hidden_dim=8, head_in_index=-1,
        feature_keys=["stage1", "stage2", "stage3", "stage4"])
    rng = np.random.default_rng(4)
    for v in backbone.weights:  # away from the initialisation (zero biases, unit scales)
        v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))
    # as keras-hub's preset loading does: the table in use is the stored one (interpolated to the input)
    encoder.embeddings.interpolated_position_embeddings.assign(encoder.embeddings.position_embeddings)
    cfg = _cfg(input_size=(size, size), depth_type="relative")
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    copy_keras_hub_backbone(model, backbone)
    image = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    normalised = (image - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    ref = np.maximum(backbone(normalised).numpy()[..., 0], 0.0)
    got = model(image)["depth"].numpy()[..., 0]
    assert ref.std() > 0
    assert max_rel_err(got, ref) < 1e-4


def test_tiny_model_shapes_range_and_freeze():
    from tfdepth.models.build import build_model

    cfg = _cfg(input_size=(98, 126), max_depth=20.0)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    depth = model(np.random.default_rng(5).uniform(0, 1, (2, 98, 126, 3)).astype(np.float32))["depth"].numpy()
    assert depth.shape == (2, 98, 126, 1) and depth.dtype == np.float32
    assert 0 < depth.min() and depth.max() < 20.0  # 20 * sigmoid
    frozen = build_model(ModelConfig(encoder="dinov2_tiny", decoder="dpt", output_stride=14, freeze="all"),
                         (98, 126), 20.0)
    encoder = frozen.get_layer("dinov2_tiny_encoder")
    assert encoder.trainable_weights == [] and frozen.trainable_weights
    # the FLOP counter cannot see inside keras-hub's transformer blocks: it refuses instead of counting 0
    from tfdepth.models.flops import forward_flops

    with pytest.raises(ValueError, match="computes in sublayers"):
        forward_flops(model)


def test_vit_small_metric_parameter_count_equals_keras_hub_preset():
    """dinov2_small + dpt at 518x518: keras-hub's depth_anything_v2_small count (which includes the
    interpolated position-embedding table, 1370 x 384 = 526,080 more than transformers' count)."""
    from keras_hub.src.models.depth_anything.depth_anything_presets import backbone_presets

    from tfdepth.models.build import build_model

    cfg = _cfg(encoder="dinov2_small", input_size=(518, 518))
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    assert model.count_params() == backbone_presets["depth_anything_v2_small"]["metadata"]["params"]


@pytest.mark.parametrize("change, match", [
    (dict(input_size=(100, 126)), "data.input_size.*multiples of 14"),
    (dict(decoder="unet_transpose"), "model.decoder.*dpt"),
    (dict(encoder="resnet34"), "model.encoder"),
    (dict(depth_type="inverse"), "depth_type"),
])
def test_config_checks(change, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**change)


def test_tensorflow_checkpoint_round_trip_restores_every_weight(tmp_path):
    """tfdepth's checkpoints are tf.train.Checkpoint: keras-hub's lists of blocks must be in them."""
    import tensorflow as tf

    from tfdepth.models.build import build_model

    cfg = _cfg(input_size=(84, 112))
    first = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    rng = np.random.default_rng(6)
    for v in first.weights:
        v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))
    tf.train.Checkpoint(model=first).write(str(tmp_path / "ckpt"))
    second = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    tf.train.Checkpoint(model=second).restore(str(tmp_path / "ckpt")).expect_partial()
    differing = [a.path for a, b in zip(first.weights, second.weights) if not np.array_equal(a.numpy(), b.numpy())]
    assert differing == []
