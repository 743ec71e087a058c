"""A depth model scored on a dataset with a protocol.

* :func:`evaluate_model` runs any ``predict_fn`` (a Keras model's call, a SavedModel signature, a
  constant baseline) over ``(images, depth)`` batches and scores it; the training loop's validation
  and final metrics use it too.
* :func:`evaluate_trained_model` scores a built model on a split of its experiment's dataset with the
  config's ``eval.*`` defaults (what ``python -m tfdepth.evaluate --checkpoint`` does once the
  command has loaded the weights), with progress on stderr and, for figures, :class:`StoredPhotos`:
  each row shows the stored photo and the record's name, not the network input.
* :func:`evaluation_inputs` is the one choice of what is predicted and scored (also for training's
  validation): a canonical-camera model with ``model.focal_range_px`` runs through a
  :class:`FocalResizer` (a picture of a focal length outside the trained range resized into it, the
  depth scaled to match; :class:`tfdepth.serving.predictor.DepthPredictor` uses the same class);
  with ``data.resize_mode: center_crop`` and ``eval.gt_resolution: native`` the WHOLE stored frame
  is predicted (:class:`FullFramePredictor`) and scored against the native ground truth
  with the protocol's crop defined on the full frame, as the published tables do (Eigen rows 45:471,
  cols 41:601 of 480x640 NYU; Garg rows 153:371, cols 44:1197 of a 375x1242 KITTI frame), not the
  centre crop the model was trained on.

This module knows nothing of training or checkpoints: the caller builds and restores the model.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from tfdepth.geometry import canonical_depth_scale, center_crop_window
from tfdepth.metrics import MetricAccumulator, get_protocol


def full_frame_size(frame_hw: Sequence[int], input_size: Sequence[int]) -> Tuple[int, int]:
    """(h, w) a stored ``frame_hw`` frame is resized to so that the network sees it at its training
    scale: training (``resize_mode: center_crop``) resized the largest centred window with the input's
    aspect ratio (``crop_h x crop_w``) to ``input_size``, so the frame is scaled by input / crop per axis,
    ``round(H * in_h / crop_h), round(W * in_w / crop_w)`` (its centre window maps onto ``input_size``)."""
    height, width = int(frame_hw[0]), int(frame_hw[1])
    in_h, in_w = int(input_size[0]), int(input_size[1])
    _, _, crop_h, crop_w = center_crop_window((height, width), in_w / in_h)
    return int(round(height * in_h / crop_h)), int(round(width * in_w / crop_w))


def copy_weights(source, target) -> list:
    """Copies every weight of ``source`` into the weight of ``target`` with the same path (layer names are
    explicit; the ORDER of a functional model's weights may differ between input sizes, e.g. when a
    resize is a no-op at one size). Returns the paths of ``target`` that have no weight of that path and
    shape in ``source`` (or of a source weight left unused); then nothing is copied."""
    by_path = {v.path: v for v in source.weights}
    problems = [v.path for v in target.weights
                if v.path not in by_path or tuple(by_path[v.path].shape) != tuple(v.shape)]
    if len(by_path) != len(source.weights) or len(target.weights) != len(source.weights):
        used = {v.path for v in target.weights}
        problems += [v.path for v in source.weights if v.path not in used] or ["(weight paths are not unique)"]
    if not problems:
        for v in target.weights:
            v.assign(by_path[v.path].numpy())
    return problems


def tile_starts(total: int, window: int, overlap: float = 0.5) -> list:
    """Start offsets of windows of ``window`` pixels covering ``total`` with at least ``overlap`` of a
    window shared by neighbours; the last window ends at ``total`` (one window when it fits)."""
    if total <= window:
        return [0]
    step = max(1, int(window * (1.0 - overlap)))
    return list(range(0, total - window, step)) + [total - window]


class FullFramePredictor:
    """``predict_fn`` over whole frames for a model trained on centre crops of them.

    ``__call__(images [B, H, W, 3] in [0, 1] at the stored size)`` resizes them bilinearly (antialiased,
    as the pipeline) to :func:`full_frame_size`, the frame at the network's training scale, and predicts
    it whole -> depth [B, h, w, 1] metres at that size (or the decoder's fraction of it);
    :func:`evaluate_model` resizes it to the ground truth.

    * ``rebuild`` (chosen by ``auto`` when the weights fit): the same architecture (``model_cfg``,
      ``max_depth_m``; ``encoder_weights`` none) is built at the frame's size, reflect-padded
      bottom/right to a multiple of ``stride`` (default: ``model_cfg.output_stride``), with the model's
      weights (:func:`copy_weights`, by path); the padding is dropped from its prediction. Every catalogue decoder is convolutional or
      resizes / pools to sizes fixed at build time (no Dense, no fixed Reshape; the tests check that the
      weights of each have the same shapes at two sizes). One model per padded size;
      :meth:`sync_weights` copies the model's current weights into them (training's validation).
    * ``tile`` (``auto``'s fallback for an architecture whose weights depend on the input size, e.g.
      keras-hub's DINOv2 position embeddings interpolated to the input grid for ``dpt``):
      windows of ``input_size`` with ``overlap`` (:func:`tile_starts`) run through the model itself,
      each prediction resized to its window, averaged where windows overlap.
    """

    def __init__(self, model, model_cfg, input_size: Sequence[int], max_depth_m: float, stride: Optional[int] = None,
                 mode: str = "auto", overlap: float = 0.5):
        if mode not in ("auto", "rebuild", "tile"):
            raise ValueError(f"FullFramePredictor: mode must be auto, rebuild or tile, got {mode!r}")
        self.model = model
        self.model_cfg = dataclasses.replace(model_cfg, encoder_weights="none")
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.max_depth_m = float(max_depth_m)
        self.stride = int(stride or model_cfg.output_stride)
        self.method = None if mode == "auto" else mode  # "rebuild" | "tile" once decided
        self.size_dependent_weights: list = []  # why ``auto`` tiles: the weights whose shapes differ
        self.overlap = float(overlap)
        self._nets: Dict[Tuple[int, int], Tuple[object, Callable]] = {}
        self._model_fn = None

    @property
    def network_sizes(self):
        """The sizes the network ran at so far, sorted (rebuilt models; ``input_size`` when tiling)."""
        return [self.input_size] if self.method == "tile" else sorted(self._nets)

    def sync_weights(self) -> None:
        """Copies the model's current weights into every rebuilt model."""
        for net, _ in self._nets.values():
            copy_weights(self.model, net)

    @staticmethod
    def _depth_fn(net, shape):
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
        def run(images):
            outputs = net(images, training=False)
            return tf.cast(outputs["depth"] if isinstance(outputs, dict) else outputs, tf.float32)

        return run

    def _network(self, size: Tuple[int, int]) -> Optional[Callable]:
        """The model rebuilt at ``size``, or None (and tiling from now on) when its weights do not fit."""
        if size not in self._nets:
            from tfdepth.models.build import build_model

            net = build_model(self.model_cfg, size, self.max_depth_m)
            self.size_dependent_weights = copy_weights(self.model, net)
            if self.size_dependent_weights:
                if self.method == "rebuild":
                    raise ValueError(f"FullFramePredictor: {self.model.name} has weights whose shapes depend on the "
                                     f"input size; it cannot be rebuilt at {size[0]}x{size[1]} (use mode tile)")
                self.method = "tile"
                return None
            self.method = "rebuild"
            self._nets[size] = (net, self._depth_fn(net, [None, size[0], size[1], 3]))
        return self._nets[size][1]

    def _tiled(self, x):
        import tensorflow as tf

        if self._model_fn is None:
            self._model_fn = self._depth_fn(self.model, [None, *self.input_size, 3])
        (win_h, win_w), (height, width) = self.input_size, (int(x.shape[1]), int(x.shape[2]))
        total = np.zeros((int(x.shape[0]), height, width, 1), np.float64)
        weight = np.zeros((1, height, width, 1), np.float64)
        for top in tile_starts(height, win_h, self.overlap):
            for left in tile_starts(width, win_w, self.overlap):
                depth = self._model_fn(x[:, top:top + win_h, left:left + win_w])
                if tuple(depth.shape[1:3]) != (win_h, win_w):
                    depth = tf.image.resize(depth, (win_h, win_w), method="bilinear")
                total[:, top:top + win_h, left:left + win_w] += depth.numpy()
                weight[:, top:top + win_h, left:left + win_w] += 1.0
        return tf.constant((total / weight).astype(np.float32))

    def __call__(self, images):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        height, width = int(images.shape[1]), int(images.shape[2])
        scaled = full_frame_size((height, width), self.input_size)
        x = images
        if scaled != (height, width):
            x = tf.clip_by_value(tf.image.resize(x, scaled, method="bilinear", antialias=True), 0.0, 1.0)
        padded = tuple(int(math.ceil(s / self.stride)) * self.stride for s in scaled)
        run = self._network(padded) if self.method != "tile" else None
        if run is None:
            return self._tiled(x)
        if padded != scaled:
            x = tf.pad(x, [[0, 0], [0, padded[0] - scaled[0]], [0, padded[1] - scaled[1]], [0, 0]], mode="REFLECT")
        depth = run(x)
        out_h, out_w = int(depth.shape[1]), int(depth.shape[2])
        keep_h, keep_w = int(round(scaled[0] * out_h / padded[0])), int(round(scaled[1] * out_w / padded[1]))
        return depth[:, :keep_h, :keep_w]


def _reflect_pad_to(x, height: int, width: int):
    """``x`` [B, h, w, C] reflect-padded bottom/right to (height, width) (repeated reflections where the
    padding exceeds the picture)."""
    import tensorflow as tf

    while int(x.shape[1]) < height or int(x.shape[2]) < width:
        h, w = int(x.shape[1]), int(x.shape[2])
        ph, pw = min(height - h, max(h - 1, 0)), min(width - w, max(w - 1, 0))
        if ph == 0 and pw == 0:  # a 1-pixel side cannot reflect: repeat its edge
            x = tf.pad(x, [[0, 0], [0, height - h], [0, width - w], [0, 0]], mode="SYMMETRIC")
            break
        x = tf.pad(x, [[0, 0], [0, ph], [0, pw], [0, 0]], mode="REFLECT")
    return x


class FocalResizer:
    """Keeps a canonical-camera model inside its trained focal range ``model.focal_range_px`` (docs/camera.md).

    ``__call__(images [B, H, W, 3] in [0, 1] at the model input size, focal [B] px at that size)`` ->
    depth [B, H, W, 1] in canonical units OF THE GIVEN PICTURE (multiply by f / f_c for metres, as for
    the model's own output). A picture whose focal length f lies inside [f_min, f_max] is predicted by
    ``base_fn`` (the model at its input size: the same numbers as without a range). One outside is
    resized by s = clip(f) / f (bilinear, antialiased; :func:`tfdepth.geometry.focal_resize_scale`) to
    h' x w' = H s x W s rounded towards the range (up when enlarging, down when shrinking), so the
    network sees the focal length f' = f (h'/H + w'/W) / 2 (= clip(f) up to the rounding of the
    size, never outside the range); the prediction D is resized back to H x W and multiplied
    by f' / f (metres: D f' / f_c, since metric depth does not change with the resize). How the network
    runs at the new size:

    * ``frames`` (a :class:`FullFramePredictor`, Keras models): the model rebuilt at the size
      reflect-padded to its output stride, weights copied by path;
    * else ``fixed_fn(x [1, in_h, in_w, 3]) -> depth [1, h, w, 1]`` (a SavedModel / TFLite model of fixed
      input, or a Keras model whose weights depend on the input size): a smaller picture (narrow lens) is
      reflect-padded bottom/right to the input size and the padding's prediction dropped; a larger one
      (wide lens) is cut into overlapping input-sized tiles (:func:`tile_starts`), predictions averaged.

    ``records``: one ``{"from_px", "to_px", "scale", "size"}`` per resized picture since the last
    :meth:`reset`; ``seen``: pictures seen."""

    needs_focal = True  # evaluate_model passes each batch's focal lengths

    def __init__(self, focal_range_px: Sequence[float], input_size: Sequence[int], base_fn: Optional[Callable] = None,
                 frames: Optional[FullFramePredictor] = None, fixed_fn: Optional[Callable] = None,
                 overlap: float = 0.5):
        if frames is None and fixed_fn is None:
            raise ValueError("FocalResizer: give frames (a rebuildable Keras model) or fixed_fn")
        self.focal_range_px = (float(focal_range_px[0]), float(focal_range_px[1]))
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.base_fn, self.frames, self.fixed_fn, self.overlap = base_fn, frames, fixed_fn, float(overlap)
        self.reset()

    def reset(self) -> None:
        self.records: list = []
        self.seen = 0

    def plan(self, focal_px: float) -> Optional[dict]:
        """``{"from_px", "to_px", "scale", "size": [h', w']}`` for a picture of focal ``focal_px`` at the
        input size, or None when it lies inside the range."""
        from tfdepth.geometry import focal_resize_scale

        s = focal_resize_scale(focal_px, self.focal_range_px)
        if s == 1.0:
            return None
        height, width = self.input_size
        # rounded towards the range (up for a wide lens, down for a narrow one; 1e-9 keeps exact sizes)
        grow = math.ceil if s > 1.0 else math.floor
        size = (max(1, int(grow(height * s - 1e-9 if s > 1.0 else height * s + 1e-9))),
                max(1, int(grow(width * s - 1e-9 if s > 1.0 else width * s + 1e-9))))
        to_px = float(focal_px) * (size[0] / height + size[1] / width) / 2.0
        return {"from_px": float(focal_px), "to_px": to_px, "scale": to_px / float(focal_px), "size": list(size)}

    def summary(self) -> dict:
        """The JSON record of what was done since :meth:`reset` (the ``focal_resize`` of a result)."""
        out = {"range_px": list(self.focal_range_px), "images": self.seen, "resized": len(self.records)}
        if self.records:
            for key in ("from_px", "to_px", "scale"):
                values = [r[key] for r in self.records]
                out[key] = [min(values), max(values)]
        return out

    def _fixed(self, x):
        import tensorflow as tf

        fn = self.fixed_fn
        if fn is None:  # a Keras model whose weights depend on the input size: the model itself
            fn = self.frames._model_fn = self.frames._model_fn or self.frames._depth_fn(
                self.frames.model, [None, *self.input_size, 3])
        (win_h, win_w), (height, width) = self.input_size, (int(x.shape[1]), int(x.shape[2]))
        x = _reflect_pad_to(x, max(height, win_h), max(width, win_w))
        full_h, full_w = int(x.shape[1]), int(x.shape[2])
        total = np.zeros((int(x.shape[0]), full_h, full_w, 1), np.float64)
        weight = np.zeros((1, full_h, full_w, 1), np.float64)
        for top in tile_starts(full_h, win_h, self.overlap):
            for left in tile_starts(full_w, win_w, self.overlap):
                depth = tf.convert_to_tensor(fn(x[:, top:top + win_h, left:left + win_w]), tf.float32)
                if tuple(depth.shape[1:3]) != (win_h, win_w):
                    depth = tf.image.resize(depth, (win_h, win_w), method="bilinear")
                total[:, top:top + win_h, left:left + win_w] += depth.numpy()
                weight[:, top:top + win_h, left:left + win_w] += 1.0
        return tf.constant((total / weight).astype(np.float32)[:, :height, :width])

    def _network_depth(self, x):
        """Depth [1, h', w' (or the decoder's fraction), 1] of the resized picture ``x`` [1, h', w', 3]."""
        if self.frames is None or self.frames.method == "tile":
            return self._fixed(x)
        size = (int(x.shape[1]), int(x.shape[2]))
        stride = self.frames.stride
        padded = tuple(int(math.ceil(v / stride)) * stride for v in size)
        run = self.frames._network(padded)
        if run is None:
            return self._fixed(x)
        depth = run(_reflect_pad_to(x, *padded))
        out_h, out_w = int(depth.shape[1]), int(depth.shape[2])
        return depth[:, :int(round(size[0] * out_h / padded[0])), :int(round(size[1] * out_w / padded[1]))]

    def predict_one(self, image, plan: dict):
        """One picture [1, H, W, 3] at the input size, resized by ``plan``: canonical depth [1, H, W, 1]
        of the given picture (the network's output times ``plan["scale"]``)."""
        import tensorflow as tf

        x = tf.clip_by_value(tf.image.resize(image, plan["size"], method="bilinear", antialias=True), 0.0, 1.0)
        depth = tf.cast(self._network_depth(x), tf.float32)
        depth = tf.image.resize(depth, (int(image.shape[1]), int(image.shape[2])), method="bilinear")
        return depth * tf.constant(plan["scale"], tf.float32)

    def __call__(self, images, focal):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, tf.float32)
        focal = np.asarray(focal, np.float64).reshape(-1)
        if self.base_fn is None:
            raise ValueError("FocalResizer: a batch needs base_fn (the model at its input size)")
        plans = [self.plan(f) for f in focal]
        self.seen += len(plans)
        if all(p is None for p in plans):
            return self.base_fn(images)
        if self.base_fn is not None and any(p is None for p in plans):
            base = tf.convert_to_tensor(self.base_fn(images), tf.float32)
            if tuple(base.shape[1:3]) != tuple(images.shape[1:3]):
                base = tf.image.resize(base, images.shape[1:3], method="bilinear")
        rows = []
        for b, plan in enumerate(plans):
            if plan is None:
                rows.append(base[b:b + 1])
            else:
                self.records.append(plan)
                rows.append(self.predict_one(images[b:b + 1], plan))
        return tf.concat(rows, axis=0)


def uses_full_frame(cfg) -> bool:
    """True when evaluation predicts the whole stored frame: a model trained on centre crops
    (``data.resize_mode: center_crop`` with an ``input_size``) scored on native ground truth."""
    return cfg.data.resize_mode == "center_crop" and bool(cfg.data.input_size) and cfg.eval.gt_resolution == "native"


def evaluation_inputs(model, cfg, split: str, data_dir: Optional[str] = None, manifest: Optional[dict] = None):
    """``(dataset, predict_fn, inference)``: what :func:`evaluate_model` runs for ``model`` on ``split``.

    * centre-cropped training, native ground truth (:func:`uses_full_frame`): stored frames and their
      native ground truth, batched by ``eval.batch_size`` when the dataset has one image size (else 1),
      predicted whole by a :class:`FullFramePredictor`;
    * otherwise :func:`tfdepth.data.pipeline.build_eval_dataset` (images at the input size; ground
      truth native, or at the input size with ``eval.gt_resolution: input``, centre-cropped like the
      image under ``center_crop``) and the model itself in one ``tf.function``.

    ``inference`` describes it for the result: ``frame`` ("full" | "resized" | "center_crop") and, for a
    :class:`FullFramePredictor`, the predictor itself under ``predictor`` (see :func:`inference_record`).
    """
    import tensorflow as tf

    from tfdepth.data import pipeline

    if data_dir is None or manifest is None:
        data_dir, manifest = pipeline.resolve_dataset(cfg.data)
    canonical = pipeline.canonical_focal(cfg)
    if uses_full_frame(cfg) and canonical is not None:
        from tfdepth.errors import UserError

        raise UserError("model.camera: canonical is not supported with full-frame evaluation (data.resize_mode: "
                        "center_crop and eval.gt_resolution: native) yet; set eval.gt_resolution: input")
    if uses_full_frame(cfg):
        native = dataclasses.replace(cfg.data, input_size=[])
        batch = cfg.eval.batch_size if manifest.get("image_size") else 1
        dataset = pipeline.build_dataset(native, split, batch, training=False, data_dir=data_dir, manifest=manifest)
        predictor = FullFramePredictor(model, cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
        return dataset, predictor, {"frame": "full", "predictor": predictor}
    dataset = pipeline.build_eval_dataset(cfg.data, cfg.eval, split, data_dir=data_dir, manifest=manifest,
                                          with_focal=canonical is not None)
    size = cfg.data.input_size
    shape = [None, int(size[0]), int(size[1]), 3] if size else [None, None, None, 3]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def predict(images):
        outputs = model(images, training=False)
        return tf.cast(outputs["depth"] if isinstance(outputs, dict) else outputs, tf.float32)

    frame = "center_crop" if cfg.data.resize_mode == "center_crop" and size else "resized"
    inference = {"frame": frame, "network_sizes": [list(map(int, size))] if size else None}
    focal_range = getattr(cfg.model, "focal_range_px", None)
    if canonical is not None and focal_range is not None and size:
        frames = FullFramePredictor(model, cfg.model, size, cfg.data.max_depth_m)
        resizer = FocalResizer(focal_range, size, base_fn=predict, frames=frames)
        inference["focal_resize"] = resizer
        return dataset, resizer, inference
    return dataset, predict, inference


def inference_record(inference: dict) -> dict:
    """The JSON-safe ``inference`` block of a result: ``frame`` and ``network_sizes`` ([h, w] the
    network ran at; with a full frame the padded sizes it was rebuilt at)."""
    predictor = inference.get("predictor")
    if predictor is None:
        record = dict(inference)
        resizer = record.pop("focal_resize", None)
        if resizer is not None:
            record["focal_resize"] = resizer.summary()
            if resizer.frames is not None and resizer.frames.network_sizes:
                record["network_sizes"] = sorted({tuple(s) for s in record["network_sizes"] or []}
                                                 | set(resizer.frames.network_sizes))
                record["network_sizes"] = [list(s) for s in record["network_sizes"]]
        return record
    return {"frame": inference["frame"], "method": predictor.method,
            "network_sizes": [list(s) for s in predictor.network_sizes], "stride": predictor.stride}


def evaluate_model(
    predict_fn: Callable,
    dataset: Iterable,
    protocol,
    flip_average: bool = False,
    max_images: Optional[int] = None,
    with_ssim: bool = False,
    per_range: bool = True,
    pooled: bool = False,
    crop: Optional[str] = None,
    on_sample: Optional[Callable] = None,
    canonical_focal_px: Optional[float] = None,
    align: Optional[str] = None,
    align_space: str = "depth",
    progress=None,
) -> Dict[str, object]:
    """Runs ``predict_fn`` over ``dataset`` and scores it; returns ``MetricAccumulator.result()``.

    ``align="scale_shift"``: each prediction is first aligned to its ground truth by least squares
    (:mod:`tfdepth.evaluation.align`; ``align_space`` "disparity" for a relative model's output).

    ``canonical_focal_px`` (a canonical-camera model, docs/camera.md): the batches carry each image's
    focal length at the model input as a third element and the prediction is multiplied by
    :func:`tfdepth.geometry.canonical_depth_scale` (f / f_c) before it is scored.

    ``predict_fn(images [B, H, W, 3] float32 in [0, 1]) -> depth [B, h, w, 1]`` metres (a tensor or
    array); ``dataset`` yields ``(images, depth [B, H, W, 1] metres)`` batches as
    ``tfdepth.data.pipeline.build_dataset`` does. ``protocol``: a :class:`tfdepth.metrics.Protocol`
    or its name (``crop`` overrides the name's default crop).

    * A prediction of another size than the ground truth is resized to it BILINEARLY
      (``tf.image.resize``, no antialiasing): the model's output is a continuous field, and the
      ground truth must stay untouched for comparability with the published tables.
    * ``flip_average``: depth = (f(x) + flip(f(flip(x)))) / 2 with horizontal flips, before resizing.
    * ``max_images``: stop after this many images (a partial last batch is cut).
    * ``on_sample(image [H, W, 3], pred_m [H, W], gt_m [H, W])``, when given, is called for every
      scored image (NumPy arrays; e.g. a :class:`tfdepth.evaluation.report.PlotCollector`).
    * ``progress``: a :class:`tfdepth.progress.Progress` counting the scored images (the caller closes it).
    """
    import tensorflow as tf  # only this function needs TensorFlow

    if isinstance(protocol, str):
        protocol = get_protocol(protocol, crop)
    elif crop is not None:
        protocol = protocol.with_crop(crop)
    acc = MetricAccumulator(protocol, per_range=per_range, pooled=pooled, with_ssim=with_ssim)
    seen = 0
    for batch in dataset:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("evaluate_model: the dataset must yield (images, depth) batches")
        images = tf.convert_to_tensor(batch[0], tf.float32)
        gt = np.asarray(batch[1], dtype=np.float64)
        if gt.ndim == 3:
            gt = gt[..., None]
        if images.shape.rank != 4 or gt.ndim != 4:
            raise ValueError(f"evaluate_model: expected images [B,H,W,3] and depth [B,H,W,1], got "
                             f"{tuple(images.shape)} and {gt.shape}")
        if getattr(predict_fn, "needs_focal", False):  # a FocalResizer: the batch's focal lengths too
            if len(batch) < 3:
                raise ValueError("evaluate_model: a focal-range predictor needs (images, depth, focal) batches")
            run = lambda x: predict_fn(x, np.asarray(batch[2]))  # noqa: E731
        else:
            run = predict_fn
        pred = tf.cast(tf.convert_to_tensor(run(images)), tf.float32)
        if flip_average:
            flipped = tf.cast(tf.convert_to_tensor(run(tf.reverse(images, axis=[2]))), tf.float32)
            pred = 0.5 * (pred + tf.reverse(flipped, axis=[2]))
        if pred.shape.rank == 3:
            pred = pred[..., None]
        if canonical_focal_px is not None:
            if len(batch) < 3:
                raise ValueError("evaluate_model: a canonical-camera model needs (images, depth, focal) batches")
            focal = tf.reshape(tf.cast(batch[2], tf.float32), [-1, 1, 1, 1])
            pred = pred * canonical_depth_scale(focal, canonical_focal_px)
        if tuple(pred.shape[1:3]) != gt.shape[1:3]:
            pred = tf.image.resize(pred, gt.shape[1:3], method="bilinear")
        pred_np = pred.numpy().astype(np.float64)
        if pred_np.shape[0] != gt.shape[0]:
            raise ValueError(f"evaluate_model: {pred_np.shape[0]} predictions for a batch of {gt.shape[0]}")
        images_np = images.numpy() if on_sample is not None else None
        for b in range(gt.shape[0]):
            if max_images is not None and seen >= max_images:
                break
            if align and align != "none":
                from tfdepth.evaluation.align import align_to_protocol

                pred_np[b, ..., 0] = align_to_protocol(pred_np[b, ..., 0], gt[b, ..., 0], protocol, align_space)
            acc.update(pred_np[b, ..., 0], gt[b, ..., 0])
            if on_sample is not None:
                on_sample(images_np[b], pred_np[b, ..., 0], gt[b, ..., 0])
            seen += 1
            if progress is not None:
                progress.update()
        if max_images is not None and seen >= max_images:
            break
    return acc.result()


def evaluate_trained_model(
    model,
    cfg,
    protocol_name: Optional[str] = None,
    crop: Optional[str] = None,
    split: Optional[str] = None,
    flip_average: Optional[bool] = None,
    max_images: Optional[int] = None,
    pooled: bool = False,
    with_ssim: bool = False,
    plots: Optional[str] = None,
    checkpoint: Optional[str] = None,
    align: Optional[str] = None,
    progress: bool = False,
) -> Dict[str, object]:
    """A built, restored model on ``split`` of its experiment's dataset (default: ``cfg.data.val_split``);
    the protocol, flip averaging and the number of images default to ``cfg.eval.*``.

    What is predicted and scored is :func:`evaluation_inputs`' choice (the whole frame for a model
    trained on centre crops). Returns :func:`evaluate_model`'s result plus ``inference``
    (:func:`inference_record`), ``split``, ``flip_average``, ``checkpoint`` (the
    caller's label of where the weights came from) and, with ``plots`` (a folder), ``plots``: the
    paths of the figures written there (:class:`tfdepth.evaluation.report.PlotCollector`; the
    qualitative rows show the stored photo (:class:`StoredPhotos`), not the network input).
    ``progress``: report the images scored on stderr (:class:`tfdepth.progress.Progress`).
    """
    from tfdepth.data import pipeline, shards
    from tfdepth.evaluation.report import PlotCollector
    from tfdepth.progress import Progress

    protocol = get_protocol(protocol_name or cfg.eval.protocol, crop)
    split = split or cfg.data.val_split
    flip = cfg.eval.flip_average if flip_average is None else flip_average
    limit = max_images if max_images is not None else cfg.eval.max_images
    data_dir, manifest = pipeline.resolve_dataset(cfg.data)
    dataset, predict, inference = evaluation_inputs(model, cfg, split, data_dir, manifest)
    on_sample = None
    if plots:
        collector = PlotCollector(protocol, label=split)
        on_sample = StoredPhotos(collector, pipeline.first_records(data_dir, manifest, split, collector.limit),
                                 inference["frame"], cfg.data.input_size)
    total = shards.split_count(manifest, split)
    reporter = Progress(f"evaluate {split}", min(total, limit) if limit else total, "image", enabled=progress)
    with reporter:
        result = evaluate_model(predict, dataset, protocol, flip_average=flip, max_images=limit, with_ssim=with_ssim,
                                pooled=pooled, on_sample=on_sample, canonical_focal_px=pipeline.canonical_focal(cfg),
                                align=align, align_space=output_space(cfg), progress=reporter)
    if align and align != "none":
        result["align"] = {"mode": align, "space": output_space(cfg)}
    result["inference"] = inference_record(inference)
    result["split"] = split
    result["flip_average"] = bool(flip)
    result["checkpoint"] = checkpoint
    if on_sample is not None:
        result["plots"] = on_sample.collector.write(plots)
    return result


class StoredPhotos:
    """The ``on_sample`` of model mode with figures: hands ``collector`` (a
    :class:`tfdepth.evaluation.report.PlotCollector`) the STORED photo of each of the first scored images
    instead of the network input (``records``: :func:`tfdepth.data.pipeline.first_records` of the
    split, in the order scored), cropped as the ground truth is for ``frame`` "center_crop"
    (``input_size``'s aspect), and the record's ``source/name`` (records without one: the collector's
    ``split #index``). Later images feed only the error-by-depth figure."""

    def __init__(self, collector, records: list, frame: str, input_size: Sequence[int]):
        self.collector, self.records = collector, list(records)
        self.frame, self.input_size = frame, input_size

    def photo(self, rgb: np.ndarray) -> np.ndarray:
        if self.frame == "center_crop" and self.input_size:
            aspect = int(self.input_size[1]) / int(self.input_size[0])
            top, left, crop_h, crop_w = center_crop_window(rgb.shape[:2], aspect)
            return rgb[top:top + crop_h, left:left + crop_w]
        return rgb

    def __call__(self, image, pred_m, gt_m) -> None:
        index = self.collector.seen
        if index < len(self.records):
            record = self.records[index]
            self.collector(self.photo(record["rgb"]), pred_m, gt_m, name=record["name"])
        else:
            self.collector(None, pred_m, gt_m)


def output_space(cfg) -> str:
    """"disparity" for a relative model (``decoder_args.depth_type: relative``), else "depth"."""
    return "disparity" if cfg.model.decoder_args.get("depth_type") == "relative" else "depth"


__all__ = ["FocalResizer", "FullFramePredictor", "StoredPhotos", "evaluate_model", "evaluate_trained_model",
           "evaluation_inputs",
           "full_frame_size", "copy_weights", "inference_record", "tile_starts", "uses_full_frame"]
