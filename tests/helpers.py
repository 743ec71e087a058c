"""The tests' one shared helper module: tiny datasets and the built-once deployment artefacts.

Importable from every test folder (``pythonpath = tests`` in setup.cfg): ``from helpers import ...``.

Deployment artefacts (the export, predict and measure tests): a tiny "trained" workdir (ResNet-18 U-Net at 64x64, ~14 M parameters: big enough that an int8 file is
about a quarter of the fp32 one) over a tiny dataset of 48x64 pictures whose manifest carries camera
intrinsics, its SavedModel and its TFLite files. Everything lives under pytest's session base
temporary directory and is built at most once per session, whichever test file asks first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "real_rgbd"


def write_tiny_dataset(directory, num_train=8, num_val=4, height=32, width=48, records_per_shard=4, chunks=1,
                       seed=0):
    """A dataset of random RGB and smooth depth (1..5 m, a few zeros) in the record schema, written by
    the one dataset writer (:class:`tfdepth.data.writer.DatasetWriter`) like every other dataset.

    Returns (manifest, {split: [(rgb uint8, depth_m float32), ...]}).
    """
    from tfdepth.data.writer import DatasetWriter

    rng = np.random.default_rng(seed)
    samples = {}
    dataset = DatasetWriter(str(directory), name="tiny", depth_scale=1000.0, max_depth_m=10.0, shuffle_seed=seed,
                            source={"generator": "tests/helpers.py write_tiny_dataset", "seed": seed})
    with dataset:
        for split, n in (("train", num_train), ("val", num_val)):
            samples[split] = []
            if n == 0:
                continue
            writer = dataset.split(split, chunks=chunks if split == "train" else 1, max_records=records_per_shard)
            for i in range(n):
                rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                yy, xx = np.mgrid[0:height, 0:width]
                depth = (1.0 + 4.0 * (yy / height) * rng.uniform(0.5, 1.0) + 0.2 * xx / width).astype(np.float32)
                depth[rng.random((height, width)) < 0.05] = 0.0
                depth = np.round(depth * 1000) / 1000  # exactly representable at depth_scale 1000
                writer.add(rgb, depth, (40.0, 40.0, width / 2, height / 2), name=f"tiny {split}[{i}]")
                samples[split].append((rgb, depth.astype(np.float32)))
            dataset.finish_split(writer)
    manifest = dataset.commit()
    return manifest, samples


INPUT_SIZE = (64, 64)
DATA_SIZE = (48, 64)  # stored pictures; resized to INPUT_SIZE by the pipeline
DATA_INTRINSICS = (50.0, 45.0, 31.5, 23.5)  # fx, fy, cx, cy in pixels of the 48x64 pictures
NUM_VAL = 4


def _marker(path: Path) -> Path:
    return path.parent / f".{path.name}.complete"  # beside, not inside: the outputs stay as written


def _done(path: Path) -> bool:
    return _marker(path).is_file()


def _mark(path: Path) -> None:
    _marker(path).write_text("ok")


def workdir(base: Path) -> Path:
    """``base/deploy/workdir``: config.yaml + checkpoints/ckpt-1 of a randomly initialised model
    (deployment does not care whether the weights are any good, only that they round-trip)."""
    root = base / "deploy"
    work = root / "workdir"
    if _done(work):
        return work
    import keras
    import tensorflow as tf

    from tfdepth.config import load_config, save_config
    from tfdepth.data import shards
    from tfdepth.models.build import build_model

    data_dir = root / "data"
    write_tiny_dataset(data_dir, num_train=2, num_val=NUM_VAL, height=DATA_SIZE[0], width=DATA_SIZE[1])
    manifest = shards.read_manifest(str(data_dir))
    manifest["intrinsics"] = list(DATA_INTRINSICS)
    shards.write_manifest(str(data_dir), manifest)

    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"), [
        "data.dataset=tfrecord", f"data.data_dir={data_dir}", f"data.input_size=[{INPUT_SIZE[0]},{INPUT_SIZE[1]}]",
        "model.encoder=resnet18", "eval.protocol=none",
    ])
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(3)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    tf.train.Checkpoint(model=model).save(str(work / "checkpoints" / "ckpt"))
    save_config(cfg, str(work / "config.yaml"))
    _mark(work)
    return work


def saved_model(base: Path) -> Path:
    """``base/deploy/saved_model`` (TF Serving layout, version 1) written by the export CLI."""
    out = base / "deploy" / "saved_model"
    if _done(out):
        return out
    from tfdepth import export

    assert export.main(["--checkpoint", str(workdir(base)), "--output", str(out), "--format", "saved_model"]) == 0
    _mark(out)
    return out


def tflite(base: Path) -> Path:
    """``base/deploy/tflite``: fp32, float16 and int8 files (+ sidecars, reports, all_reports.json)
    written by one run of the export CLI (one staged SavedModel shared by the three conversions)."""
    out = base / "deploy" / "tflite"
    if _done(out):
        return out
    from tfdepth import export

    assert export.main(["--checkpoint", str(workdir(base)), "--output", str(out), "--format", "tflite",
                        "--quantize", "none,float16,int8", "--calibration-images", str(NUM_VAL),
                        "--report", str(out / "all_reports.json")]) == 0
    _mark(out)
    return out


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


__all__ = ["INPUT_SIZE", "DATA_SIZE", "DATA_INTRINSICS", "NUM_VAL", "workdir", "saved_model", "tflite", "read_json"]


def palette_png(indices) -> bytes:
    """An 8-bit palette PNG (colour type 3) of uint8 ``indices`` (H, W), written by hand (OpenCV cannot
    write palettes); the palette maps index i to grey (i, i, i)."""
    import struct
    import zlib

    import numpy as np

    h, w = indices.shape

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + indices[y].astype(np.uint8).tobytes() for y in range(h))
    palette = bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", palette) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def write_rgb(path, rgb) -> None:
    """Write an RGB uint8 picture with OpenCV (BGR on disk)."""
    import cv2

    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def ramp_rgb(height, width):
    """An RGB uint8 picture whose every pixel differs from its neighbours (orientation tests)."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), (xx + yy) % 256],
                    -1).astype(np.uint8)


# Depth Anything V2 (tests/models/test_depth_anything.py, tests/serving/test_depth_anything_serving.py)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def tiny_depth_anything(directory, depth_type="metric", max_depth=20, seed=0):
    """A random transformers ``DepthAnythingForDepthEstimation`` (DINOv2 32 wide, 4 blocks, patch 14,
    position embeddings at 518; neck (8, 16, 32, 32), fusion 16, head 8 = tfdepth's dinov2_tiny + dpt
    defaults) saved as config.json + model.safetensors in ``directory``; weights drawn with std
    1 / sqrt(fan-in) so that the depth varies over the picture. Returns the torch model (eval mode)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(seed)
    backbone = Dinov2Config(image_size=518, patch_size=14, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=depth_type,
                                 max_depth=max_depth)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            one = ("norm" in name and name.endswith("weight")) or "lambda1" in name
            p.copy_(torch.randn_like(p) * (p[0].numel() ** -0.5 if p.ndim > 1 else 0.1) + (1.0 if one else 0.0))
    model.save_pretrained(str(directory))
    return model


def torch_depth(model, images01):
    """The transformers model's depth [B, H, W] of float RGB [B, H, W, 3] in [0, 1] (ImageNet mean / std)."""
    import torch

    x = (np.asarray(images01, np.float32) - IMAGENET_MEAN) / IMAGENET_STD
    with torch.no_grad():
        return model(pixel_values=torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).predicted_depth.numpy()


def max_rel_err(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())
