"""The deployment metadata: what a consumer needs to run an exported model, and where it is stored.

A SavedModel carries it as ``DIR/N/assets.extra/tfdepth.json`` (TF Serving ignores it); each TFLite
file has it as its JSON sidecar (specialised by :func:`tfdepth.serving.tflite.tflite_sidecar`).
It holds the input size, output units, and the intrinsics of the training data scaled to the model
input when the dataset manifest has them.
"""

from __future__ import annotations

import json
import os
from typing import List, Optional

from tfdepth.serving.signature import OUTPUT_KEY

METADATA_RELPATH = os.path.join("assets.extra", "tfdepth.json")
METADATA_FORMAT = "tfdepth-deploy"
METADATA_VERSION = 1


def training_intrinsics(cfg):
    """Intrinsics of the training data at the model input size (:class:`tfdepth.geometry.Intrinsics`),
    from the dataset manifest (``intrinsics`` at ``image_size``), or None when unknown."""
    from tfdepth.data import shards
    from tfdepth.geometry import Intrinsics, intrinsics_for_model_input

    try:
        manifest = shards.read_manifest(cfg.data.data_dir)
    except Exception:  # dataset not present here (exporting on another machine): unknown
        return None
    values, image_size = manifest.get("intrinsics"), manifest.get("image_size")
    if not values or not image_size:
        return None
    try:
        intrinsics = Intrinsics.from_sequence(values, f"{cfg.data.data_dir} manifest intrinsics")
        return intrinsics_for_model_input(intrinsics, image_size, cfg.data.input_size, cfg.data.resize_mode)
    except ValueError:
        return None


def model_output_size(model) -> List[int]:
    """(h, w) of the model's depth output (the decoder's size, e.g. half the input for DenseDepth)."""
    shape = model.output[OUTPUT_KEY].shape if isinstance(model.output, dict) else model.outputs[0].shape
    return [int(shape[1]), int(shape[2])]


def build_metadata(model, cfg, checkpoint: Optional[str] = None) -> dict:
    """What a consumer needs to run the model (the SavedModel's tfdepth.json / TFLite sidecar base)."""
    import tfdepth

    intrinsics = training_intrinsics(cfg)
    input_size = [int(s) for s in cfg.data.input_size]
    return {
        "format": METADATA_FORMAT,
        "format_version": METADATA_VERSION,
        "tfdepth_version": getattr(tfdepth, "__version__", "unknown"),
        "model": {"name": cfg.name, "encoder": cfg.model.encoder, "decoder": cfg.model.decoder,
                  "max_depth_m": float(cfg.data.max_depth_m), "checkpoint": checkpoint},
        "input": {"size": input_size, "layout": "NHWC", "channels": "RGB", "dtype": "uint8", "range": [0, 255],
                  "normalization": "x / 255 then ImageNet mean/std inside the model",
                  "resize": "any size, bilinear antialiased to input.size inside the graph"},
        "output": {"key": OUTPUT_KEY, "units": "metres", "dtype": "float32", "model_size": model_output_size(model),
                   "size": "same as the input image (bilinear)", "invalid": "none (every pixel is a prediction)"},
        "intrinsics": None if intrinsics is None else {
            "fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy,
            "size": input_size, "source": f"manifest of {cfg.data.data_dir} scaled to the model input"},
        "eval_protocol": cfg.eval.protocol,
        # docs/camera.md: a "canonical" model's depth is multiplied by f / canonical_focal_px (f: the
        # picture's focal length at the model input), so a consumer needs the picture's camera
        "camera": {"mode": getattr(cfg.model, "camera", "none"),
                   "canonical_focal_px": getattr(cfg.model, "canonical_focal_px", None),
                   # the trained focal range: a picture outside it is resized into it (DepthPredictor)
                   "focal_range_px": getattr(cfg.model, "focal_range_px", None)},
    }


def read_metadata(path: str) -> Optional[dict]:
    """The metadata JSON at ``path`` (a ``tfdepth.json`` or a TFLite sidecar), or None if absent."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def resolve_saved_model_dir(path: str) -> Optional[str]:
    """The SavedModel directory of ``path``: ``path`` itself if it holds ``saved_model.pb``, else the
    highest numeric version subdirectory that does (TF Serving layout); None if neither."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.isdir(path):
        return None
    versions = [int(n) for n in os.listdir(path)
                if n.isdigit() and os.path.isfile(os.path.join(path, n, "saved_model.pb"))]
    return os.path.join(path, str(max(versions))) if versions else None
