"""Run a trained or exported model on pictures: one interface over checkpoints, SavedModels and TFLite.

    predictor = DepthPredictor.load("runs/demo")          # workdir / checkpoint dir / ckpt-N prefix
    predictor = DepthPredictor.load("export/depth")       # SavedModel (TF Serving DIR/N/ or DIR itself)
    predictor = DepthPredictor.load("export/depth_int8.tflite")
    depth_m = predictor.predict(rgb_uint8)                # float32 [H, W] metres at the picture's size

Every backend does the same thing as the exported ``serving_default`` signature
(:mod:`tfdepth.serving.signature`): resize the RGB picture to the model input (bilinear,
antialiased), / 255, run the model, resize the depth back to the picture's size (bilinear). TFLite
files run on the LiteRT interpreter (``ai_edge_litert``), or on ``tf.lite.Interpreter`` where LiteRT
is not installed.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np

from tfdepth.geometry import Intrinsics
from tfdepth.serving.errors import ModelLoadError
from tfdepth.serving.metadata import METADATA_RELPATH, build_metadata, read_metadata, resolve_saved_model_dir
from tfdepth.serving.signature import (OUTPUT_KEY, SERVING_SIGNATURE, make_depth_fn, preprocess_images, resize_depth,
                                       to_uint8)
from tfdepth.serving.tflite import TFLiteModel


class DepthPredictor:
    """Metric depth of RGB pictures from a checkpoint, a SavedModel or a TFLite file.

    Attributes: ``input_size`` (H, W) of the model; ``intrinsics`` (fx, fy, cx, cy at the model input
    size, from the training data's manifest) or None; ``metadata`` (the export metadata, if any);
    ``kind``: "checkpoint" | "saved_model" | "tflite".
    """

    def __init__(self, kind: str, input_size: Sequence[int], metadata: Optional[dict] = None):
        self.kind = kind
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.metadata = metadata
        self.intrinsics: Optional[Intrinsics] = None
        intr = (metadata or {}).get("intrinsics")
        if intr:
            base = Intrinsics(intr["fx"], intr["fy"], intr["cx"], intr["cy"])
            size = intr.get("size") or self.input_size
            self.intrinsics = base.scaled(size, self.input_size) if tuple(size) != self.input_size else base

    # ---- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str, num_threads: Optional[int] = None) -> "DepthPredictor":
        """A ``.tflite`` file, a SavedModel (``DIR`` with ``saved_model.pb`` or TF Serving's ``DIR/N/``,
        highest N), or a training workdir / checkpoint dir / ``ckpt-N`` prefix."""
        if path.endswith(".index") and os.path.isfile(path):  # ckpt-N.index given for the ckpt-N prefix
            path = path[: -len(".index")]
        if path.endswith(".tflite") or (os.path.isfile(path) and not os.path.exists(path + ".index")):
            return _TFLitePredictor(TFLiteModel(path, num_threads))
        saved_model_dir = resolve_saved_model_dir(path)
        if saved_model_dir is not None:
            return _SavedModelPredictor(saved_model_dir, read_metadata(os.path.join(saved_model_dir, METADATA_RELPATH)))
        try:
            return _KerasPredictor.from_checkpoint(path)
        except FileNotFoundError as e:
            raise ModelLoadError(f"{path}: not a .tflite file, a SavedModel directory or a checkpoint ({e})") from None

    # ---- prediction ----------------------------------------------------------------------------

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> depth float32 metres [H, W] (the picture's own size)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"predict expects an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"predict: empty image {rgb.shape}")
        return self._predict(rgb)

    def _predict(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def intrinsics_for(self, image_size: Sequence[int]) -> Optional[Intrinsics]:
        """The training camera's intrinsics for a picture of ``image_size`` (H, W), or None."""
        if self.intrinsics is None:
            return None
        return self.intrinsics.scaled(self.input_size, image_size)

    def describe(self) -> str:
        return f"{self.kind} model, input {self.input_size[0]}x{self.input_size[1]}"


class _KerasPredictor(DepthPredictor):
    def __init__(self, model, cfg, metadata):
        super().__init__("checkpoint", cfg.data.input_size, metadata)
        import tensorflow as tf

        self.model = model
        self.config = cfg
        self._fn = tf.function(make_depth_fn(model, self.input_size),
                               input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])

    @classmethod
    def from_checkpoint(cls, path: str) -> "_KerasPredictor":
        from tfdepth.training.checkpoint import load_trained_model

        model, cfg = load_trained_model(path)
        return cls(model, cfg, build_metadata(model, cfg, path))

    def _predict(self, rgb):
        return self._fn(rgb[None])[OUTPUT_KEY].numpy()[0, ..., 0]


class _SavedModelPredictor(DepthPredictor):
    def __init__(self, directory: str, metadata: Optional[dict]):
        import tensorflow as tf

        try:
            self.loaded = tf.saved_model.load(directory)
        except Exception as e:  # corrupt / incompatible SavedModel
            raise ModelLoadError(f"{directory}: cannot load SavedModel ({e})") from None
        if SERVING_SIGNATURE not in self.loaded.signatures:
            raise ModelLoadError(f"{directory}: SavedModel has no {SERVING_SIGNATURE!r} signature "
                                 f"(has {sorted(self.loaded.signatures)})")
        self._signature = self.loaded.signatures[SERVING_SIGNATURE]
        input_size = (metadata or {}).get("input", {}).get("size") or [0, 0]
        super().__init__("saved_model", input_size, metadata)
        self.directory = directory

    def _predict(self, rgb):
        import tensorflow as tf

        return self._signature(images=tf.constant(rgb[None]))[OUTPUT_KEY].numpy()[0, ..., 0]

    def describe(self) -> str:
        if self.input_size == (0, 0):
            return f"SavedModel {self.directory}"
        return f"SavedModel {self.directory}, input {self.input_size[0]}x{self.input_size[1]}"


class _TFLitePredictor(DepthPredictor):
    def __init__(self, runner: TFLiteModel):
        super().__init__("tflite", runner.input_size, runner.metadata)
        self.runner = runner

    def _predict(self, rgb):
        import tensorflow as tf

        image = preprocess_images(rgb[None], self.input_size)[0].numpy()  # float32 [H, W, 3] in [0, 1]
        if self.runner.input_dtype == np.uint8:
            image = to_uint8(image)
        depth = self.runner.run(image)
        return resize_depth(tf.constant(depth[None, ..., None]), rgb.shape[:2]).numpy()[0, ..., 0]

    def describe(self) -> str:
        q = (self.metadata or {}).get("quantization", "unknown quantisation")
        return (f"TFLite {self.runner.path} ({q}, {np.dtype(self.runner.input_dtype).name} input "
                f"{self.input_size[0]}x{self.input_size[1]}, {self.runner.backend})")
