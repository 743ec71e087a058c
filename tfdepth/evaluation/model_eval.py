"""A depth model scored on a dataset with a protocol.

* :func:`evaluate_model` runs any ``predict_fn`` (a Keras model's call, a SavedModel signature, a
  constant baseline) over ``(images, depth)`` batches and scores it; the training loop's validation
  and final metrics use it too.
* :func:`evaluate_trained_model` scores a built model on a split of its experiment's dataset with the
  config's ``eval.*`` defaults (what ``python -m tfdepth.evaluate --checkpoint`` does once the
  command has loaded the weights).

This module knows nothing of training or checkpoints: the caller builds and restores the model.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Optional

import numpy as np

from tfdepth.metrics import MetricAccumulator, get_protocol


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
) -> Dict[str, object]:
    """Runs ``predict_fn`` over ``dataset`` and scores it; returns ``MetricAccumulator.result()``.

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
        pred = tf.cast(tf.convert_to_tensor(predict_fn(images)), tf.float32)
        if flip_average:
            flipped = tf.cast(tf.convert_to_tensor(predict_fn(tf.reverse(images, axis=[2]))), tf.float32)
            pred = 0.5 * (pred + tf.reverse(flipped, axis=[2]))
        if pred.shape.rank == 3:
            pred = pred[..., None]
        if tuple(pred.shape[1:3]) != gt.shape[1:3]:
            pred = tf.image.resize(pred, gt.shape[1:3], method="bilinear")
        pred_np = pred.numpy().astype(np.float64)
        if pred_np.shape[0] != gt.shape[0]:
            raise ValueError(f"evaluate_model: {pred_np.shape[0]} predictions for a batch of {gt.shape[0]}")
        images_np = images.numpy() if on_sample is not None else None
        for b in range(gt.shape[0]):
            if max_images is not None and seen >= max_images:
                break
            acc.update(pred_np[b, ..., 0], gt[b, ..., 0])
            if on_sample is not None:
                on_sample(images_np[b], pred_np[b, ..., 0], gt[b, ..., 0])
            seen += 1
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
) -> Dict[str, object]:
    """A built, restored model on ``split`` of its experiment's dataset (default: ``cfg.data.val_split``);
    the protocol, flip averaging and the number of images default to ``cfg.eval.*``.

    Returns :func:`evaluate_model`'s result plus ``split``, ``flip_average``, ``checkpoint`` (the
    caller's label of where the weights came from) and, with ``plots`` (a folder), ``plots``: the
    paths of the figures written there (:class:`tfdepth.evaluation.report.PlotCollector`).
    """
    import tensorflow as tf

    from tfdepth.data.pipeline import build_eval_dataset
    from tfdepth.evaluation.report import PlotCollector

    protocol = get_protocol(protocol_name or cfg.eval.protocol, crop)
    split = split or cfg.data.val_split
    flip = cfg.eval.flip_average if flip_average is None else flip_average
    limit = max_images if max_images is not None else cfg.eval.max_images
    dataset = build_eval_dataset(cfg.data, cfg.eval, split)

    @tf.function
    def predict(images):
        outputs = model(images, training=False)
        depth = outputs["depth"] if isinstance(outputs, dict) else outputs
        return tf.cast(depth, tf.float32)

    collector = PlotCollector(protocol) if plots else None
    result = evaluate_model(predict, dataset, protocol, flip_average=flip, max_images=limit, with_ssim=with_ssim,
                            pooled=pooled, on_sample=collector)
    result["split"] = split
    result["flip_average"] = bool(flip)
    result["checkpoint"] = checkpoint
    if collector is not None:
        result["plots"] = collector.write(plots)
    return result


__all__ = ["evaluate_model", "evaluate_trained_model"]
