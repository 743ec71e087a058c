"""Run a trained or exported model on pictures: one interface over checkpoints, SavedModels and TFLite.

    predictor = DepthPredictor.load("runs/demo")          # workdir / checkpoint dir / ckpt-N prefix
    predictor = DepthPredictor.load("export/depth")       # SavedModel (TF Serving DIR/N/ or DIR itself)
    predictor = DepthPredictor.load("export/depth_int8.tflite")
    depth_m = predictor.predict(rgb_uint8)                # float32 [H, W] metres at the picture's size

Pixels stay square: a picture whose aspect ratio differs from the model input's is first padded
(centred, with the ImageNet mean colour, as Metric3D does) to the input's aspect ratio
(:func:`pad_to_aspect`); then every backend does the same thing as the exported ``serving_default``
signature (:mod:`tfdepth.serving.signature`): resize to the model input (bilinear, antialiased),
/ 255, run the model, resize the depth back (bilinear); the padding is cut off again. A model trained
with a canonical camera (``model.camera: canonical``, docs/camera.md) predicts the depth the canonical
camera would see; :meth:`DepthPredictor.predict` multiplies it by f / f_c
(:func:`tfdepth.geometry.canonical_depth_scale`), f the picture's focal length at the model input
(:meth:`DepthPredictor.input_intrinsics`), so it needs the picture's intrinsics. With a trained focal
range (``model.focal_range_px``, ``camera.focal_range_px`` of the export metadata) a picture whose f lies
outside it is resized into the range first (:class:`tfdepth.evaluation.model_eval.FocalResizer`, as
evaluation does: a checkpoint is rebuilt at the new size; a SavedModel / TFLite model of fixed input
size gets a smaller picture padded, a larger one in overlapping tiles); what was done is
:attr:`DepthPredictor.last_focal_resize` (``predictions.json``: ``focal_resize``). TFLite files run on
the LiteRT interpreter (``ai_edge_litert``), or on ``tf.lite.Interpreter`` where LiteRT is not installed.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np

from tfdepth.geometry import Intrinsics, canonical_depth_scale
from tfdepth.serving.errors import ModelLoadError
from tfdepth.serving.metadata import METADATA_RELPATH, build_metadata, read_metadata, resolve_saved_model_dir
from tfdepth.serving.signature import (OUTPUT_KEY, SERVING_SIGNATURE, make_depth_fn, preprocess_images, resize_depth,
                                       to_uint8)
from tfdepth.serving.tflite import TFLiteModel

# The working resolution of a picture larger than the model input: WORKING_OVERSAMPLE x the scale the
# model input has (the predictor's own antialiased resize does the last step of at most this factor;
# 3 was the closest to the direct path of 2, 3, 4 and 5: tests/serving/test_large_photo.py).
WORKING_OVERSAMPLE = 3
# ... and, for a model that takes any input size (input_size unknown: Depth Anything from hf:, a
# SavedModel without metadata), the longest side a picture is reduced to.
WORKING_MAX_SIDE = 2048

# The padding colour of :func:`pad_to_aspect`: the ImageNet mean RGB (what the normalised input calls 0).
PAD_RGB = (124, 116, 104)


def padded_window(image_size: Sequence[int], input_size: Sequence[int]):
    """(h', w', top, left) of :func:`pad_to_aspect` for a picture of ``image_size`` (H, W)."""
    h, w = int(image_size[0]), int(image_size[1])
    in_h, in_w = int(input_size[0]), int(input_size[1])
    if in_h < 1 or in_w < 1:  # input size unknown (a SavedModel without metadata): nothing to match
        return h, w, 0, 0
    new_h, new_w = max(h, int(round(w * in_h / in_w))), max(w, int(round(h * in_w / in_h)))
    return new_h, new_w, (new_h - h) // 2, (new_w - w) // 2


def pad_to_aspect(rgb: np.ndarray, input_size: Sequence[int]):
    """``rgb`` [h, w, 3] padded (centred, :data:`PAD_RGB`) to the aspect ratio of ``input_size`` (H, W):
    returns (padded [h', w', 3], (top, left)) with h' = round(w H / W) rows or w' = round(h W / H)
    columns, whichever is larger than the picture; the picture itself is returned when it already has
    the aspect ratio (to the pixel)."""
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    new_h, new_w, top, left = padded_window((h, w), input_size)
    if (new_h, new_w) == (h, w):
        return rgb, (0, 0)
    padded = np.empty((new_h, new_w, 3), np.uint8)
    padded[...] = np.asarray(PAD_RGB, np.uint8)
    padded[top:top + h, left:left + w] = rgb
    return padded, (top, left)


def working_size(image_size: Sequence[int], input_size: Sequence[int], oversample: float = WORKING_OVERSAMPLE,
                 max_side: int = WORKING_MAX_SIDE) -> Optional[Tuple[int, int]]:
    """The (h, w) an (H, W) picture is reduced to before prediction (aspect ratio kept), or None when it
    goes to the model as it is: the picture padded to the input's aspect ratio (as the predictor pads
    it) is more than ``oversample`` x the model input ``input_size`` (H, W), or, when the input size is
    unknown ((0, 0)), the picture's longest side is more than ``max_side``."""
    h, w = int(image_size[0]), int(image_size[1])
    in_h, in_w = int(input_size[0]), int(input_size[1])
    if in_h > 0 and in_w > 0:
        new_h, new_w, _, _ = padded_window((h, w), (in_h, in_w))
        scale = min(oversample * in_h / new_h, oversample * in_w / new_w)
    else:
        scale = max_side / max(h, w)
    if scale >= 1.0:
        return None
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


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
        camera = (metadata or {}).get("camera") or {}
        # f_c of a canonical-camera model (docs/camera.md), else None
        self.canonical_focal_px: Optional[float] = (float(camera["canonical_focal_px"])
                                                    if camera.get("mode") == "canonical" else None)
        # the trained focal range of a canonical model (docs/camera.md), else None
        rng = camera.get("focal_range_px") if self.canonical_focal_px is not None else None
        self.focal_range_px = (float(rng[0]), float(rng[1])) if rng else None
        # {"from_px", "to_px", "scale", "size"} of the last picture resized into the focal range, else None
        self.last_focal_resize: Optional[dict] = None
        # (h, w) the last picture was reduced to before prediction (a large picture), else None
        self.last_working_size: Optional[tuple] = None
        self._resizer = None

    # ---- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str, num_threads: Optional[int] = None) -> "DepthPredictor":
        """A ``.tflite`` file, a SavedModel (``DIR`` with ``saved_model.pb`` or TF Serving's ``DIR/N/``,
        highest N), or a training workdir / checkpoint dir / ``ckpt-N`` prefix."""
        if path.startswith("hf:"):  # a transformers Depth Anything checkpoint, converted on load
            return _HFPredictor(path)
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

    def predict(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics] = None) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> depth float32 metres [H, W] (the picture's own size).

        ``intrinsics``: the picture's camera (pixels of ``rgb``); required by a canonical-camera model
        (its depth is proportional to the focal length), ignored otherwise.

        A picture larger than :func:`working_size` allows is first reduced with ``cv2.INTER_AREA`` (its
        intrinsics scaled alike), predicted, and the depth resized back with ``cv2.INTER_LINEAR``
        (half-pixel centres, as ``tf.image.resize``): one float32 depth map of the picture's size is the
        only picture-size array made (``last_working_size``: the reduced (h, w), or None)."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"predict expects an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
        if rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"predict: empty image {rgb.shape}")
        if self.canonical_focal_px is not None and intrinsics is None:
            raise ValueError("this model was trained with a canonical camera (model.camera: canonical): its depth "
                             "needs the picture's focal length (--focal-px, --fov or --intrinsics)")
        h, w = rgb.shape[:2]
        size = working_size((h, w), self.input_size)
        self.last_working_size = size
        if size is None:
            return self._predict_picture(rgb, intrinsics)
        import cv2

        small = cv2.resize(rgb, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        small_intrinsics = intrinsics.scaled((h, w), size) if intrinsics is not None else None
        depth = self._predict_picture(small, small_intrinsics)
        return np.ascontiguousarray(cv2.resize(depth, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)

    def _predict_picture(self, rgb: np.ndarray, intrinsics: Optional[Intrinsics]) -> np.ndarray:
        """:meth:`predict` of a picture at the size it goes to the model (padded to the input's aspect
        ratio, resized into the trained focal range where needed, scaled by the canonical camera)."""
        h, w = rgb.shape[:2]
        padded, (top, left) = pad_to_aspect(rgb, self.input_size)
        self.last_focal_resize = None
        plan = None
        if self.canonical_focal_px is not None:
            focal = self.input_intrinsics(intrinsics, (h, w)).focal_px
            if self.focal_range_px is not None and self.input_size[0] > 0:
                plan = self.focal_resizer().plan(focal)
        if plan is None:
            depth = self._predict(padded)[top:top + h, left:left + w]
        else:  # outside the trained focal range: resized into it (canonical depth of the given picture)
            self.last_focal_resize = plan
            image = preprocess_images(padded[None], self.input_size)
            depth = self.focal_resizer().predict_one(image, plan)
            depth = resize_depth(depth, padded.shape[:2]).numpy()[0, top:top + h, left:left + w, 0]
        if self.canonical_focal_px is not None:
            depth = depth * np.float32(canonical_depth_scale(focal, self.canonical_focal_px))
        return np.ascontiguousarray(depth, np.float32)

    def focal_resizer(self):
        """The :class:`~tfdepth.evaluation.model_eval.FocalResizer` of this model (built on first use)."""
        if self._resizer is None:
            from tfdepth.evaluation.model_eval import FocalResizer

            self._resizer = FocalResizer(self.focal_range_px, self.input_size, **self._resizer_networks())
        return self._resizer

    def _resizer_networks(self) -> dict:
        """How the network runs at another size: ``frames`` (a rebuildable Keras model) or ``fixed_fn``
        (float [1, in_h, in_w, 3] in [0, 1] at the input size -> depth [1, h, w, 1])."""
        raise NotImplementedError

    def input_intrinsics(self, intrinsics: Intrinsics, image_size: Sequence[int]) -> Intrinsics:
        """A picture's ``intrinsics`` (of ``image_size`` (H, W)) as the model sees it: padded to the input's
        aspect ratio (:func:`pad_to_aspect`), then resized to the input."""
        new_h, new_w, top, left = padded_window(image_size, self.input_size)
        if self.input_size[0] < 1:
            return intrinsics
        return intrinsics.padded(top, left).scaled((new_h, new_w), self.input_size)

    def _predict(self, rgb: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def intrinsics_for(self, image_size: Sequence[int]) -> Optional[Intrinsics]:
        """The training camera's intrinsics for a picture of ``image_size`` (H, W) (the camera the model
        assumes: its input camera mapped back through the resize and the padding, square pixels kept),
        or None when unknown."""
        if self.intrinsics is None:
            return None
        new_h, new_w, top, left = padded_window(image_size, self.input_size)
        return self.intrinsics.scaled(self.input_size, (new_h, new_w)).padded(-top, -left)

    def describe(self) -> str:
        camera = f", canonical camera f_c = {self.canonical_focal_px:g} px" if self.canonical_focal_px else ""
        if self.canonical_focal_px and self.focal_range_px:
            camera += f", trained focal range {self.focal_range_px[0]:g}-{self.focal_range_px[1]:g} px"
        return f"{self.kind} model, input {self.input_size[0]}x{self.input_size[1]}{camera}"


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

    def _resizer_networks(self):
        from tfdepth.evaluation.model_eval import FullFramePredictor

        return {"frames": FullFramePredictor(self.model, self.config.model, self.input_size,
                                             self.config.data.max_depth_m)}


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

    def _resizer_networks(self):
        import tensorflow as tf

        # the signature at exactly its input size (its in-graph resize is then the identity)
        return {"fixed_fn": lambda x: self._signature(images=tf.constant(to_uint8(x.numpy())))[OUTPUT_KEY]}

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

    def _resizer_networks(self):
        def fixed_fn(x):
            image = x.numpy()[0]
            depth = self.runner.run(to_uint8(image) if self.runner.input_dtype == np.uint8 else image)
            return depth[None, ..., None]

        return {"fixed_fn": fixed_fn}

    def describe(self) -> str:
        q = (self.metadata or {}).get("quantization", "unknown quantisation")
        return (f"TFLite {self.runner.path} ({q}, {np.dtype(self.runner.input_dtype).name} input "
                f"{self.input_size[0]}x{self.input_size[1]}, {self.runner.backend})")


class _HFPredictor(DepthPredictor):
    """``hf:DIR`` / ``hf:OWNER/NAME``: a transformers ``DepthAnythingForDepthEstimation`` checkpoint, converted
    (:mod:`tfdepth.models.hf_depth_anything`) and run as Depth Anything's processor does: each picture
    resized (bilinear, antialiased) keeping its aspect ratio to 518 on the short side, both sides
    multiples of 14, ImageNet mean / std; depth resized back to the picture. One converted model per
    input size (kept for the next picture of that size). ``input_size`` is (0, 0): it depends on the
    picture (no padding)."""

    def __init__(self, spec: str):
        from tfdepth.models.hf_depth_anything import read_hf_config, read_hf_state, resolve_hf_dir

        directory = resolve_hf_dir(spec)
        self.info = read_hf_config(directory, spec)
        self.state = read_hf_state(directory)
        self.info.torch_params = int(sum(v.size for v in self.state.values()))
        units = "metres" if self.info.depth_type == "metric" else "relative disparity (not metres)"
        metadata = {"model": {"name": spec, "encoder": "dinov2", "decoder": "dpt", "checkpoint": spec,
                              "depth_type": self.info.depth_type, "max_depth_m": self.info.max_depth},
                    "output": {"units": units}}
        super().__init__("hf", (0, 0), metadata)
        self.spec = spec
        self._fns = {}

    def _fn(self, size):
        if size not in self._fns:
            import tensorflow as tf

            from tfdepth.models.hf_depth_anything import assign_hf_state, build_depth_anything

            model = build_depth_anything(self.info, size)
            assign_hf_state(model, self.state, self.info, self.spec)
            self._fns[size] = tf.function(make_depth_fn(model, size),
                                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
        return self._fns[size]

    def _predict(self, rgb):
        from tfdepth.models.hf_depth_anything import preprocess_size

        size = preprocess_size(rgb.shape[0], rgb.shape[1], self.info.image_size, self.info.patch_size)
        return self._fn(size)(rgb[None])[OUTPUT_KEY].numpy()[0, ..., 0]

    def describe(self) -> str:
        return (f"Depth Anything {self.info.depth_type} ({self.spec}, max depth {self.info.max_depth:g} m, "
                f"{self.info.torch_params:,} parameters), input {self.info.image_size} on the short side, "
                f"multiples of {self.info.patch_size}")
