"""Scoring a run's model during and after training: validation metrics and the final ``metrics.json``."""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfdepth.config import ExperimentConfig
from tfdepth.data import pipeline
from tfdepth.evaluation.model_eval import evaluate_model, evaluation_inputs, inference_record
from tfdepth.evaluation.report import finite_or_none
from tfdepth.io.files import write_json
from tfdepth.training.checkpoint import BEST_DIR

FINAL_KEYS = ("abs_rel", "rmse", "log10", "d1", "d2", "d3", "mae")


class Validator:
    """Scores ``model`` on the validation split of ``data_dir`` with the config's ``eval.*`` settings.

    What is predicted and scored is :func:`tfdepth.evaluation.model_eval.evaluation_inputs`' choice,
    the same as ``python -m tfdepth.evaluate`` (a model trained on centre crops predicts whole frames,
    scored with the protocol's crop on the native ground truth)."""

    def __init__(self, cfg: ExperimentConfig, model: keras.Model, data_dir: str, manifest: dict):
        self.cfg = cfg
        self.model = model
        self.data_dir = data_dir
        self.manifest = manifest
        self._inputs = None  # (dataset, predict_fn, inference), built on first use

    def _evaluation_inputs(self):
        """Built once for the whole run: the ``tf.function`` has an unknown batch axis (no retrace per
        validation or for a smaller last batch); a tf.data dataset is read afresh by each pass."""
        if self._inputs is None:
            self._inputs = evaluation_inputs(self.model, self.cfg, self.cfg.data.val_split, data_dir=self.data_dir,
                                             manifest=self.manifest)
        return self._inputs

    def eval_dataset(self) -> tf.data.Dataset:
        return self._evaluation_inputs()[0]

    def predict_fn(self):
        """The model's depth (float32 metres), with the model's current weights."""
        _, predict, inference = self._evaluation_inputs()
        if inference.get("predictor") is not None:
            inference["predictor"].sync_weights()  # the full-frame copies follow training
        resizer = inference.get("focal_resize")  # a canonical model's focal range (docs/camera.md)
        if resizer is not None:
            resizer.frames.sync_weights()  # its rebuilt copies follow training too
            resizer.reset()
        return predict

    def evaluate(self, max_images: Optional[int] = None) -> dict:
        """The model's metrics on the validation split (``evaluate_model``'s result plus ``inference``)."""
        ecfg = self.cfg.eval
        result = evaluate_model(self.predict_fn(), self.eval_dataset(), ecfg.protocol, crop=ecfg.crop,
                                flip_average=ecfg.flip_average, max_images=max_images, pooled=ecfg.pooled,
                                with_ssim=ecfg.with_ssim, canonical_focal_px=pipeline.canonical_focal(self.cfg))
        result["inference"] = inference_record(self._evaluation_inputs()[2])
        return result

    def baseline_depth_m(self) -> float:
        """The training split's median valid depth (metres): the constant baseline's prediction."""
        stats = self.manifest.get("splits", {}).get(self.cfg.data.train_split, {}).get("depth_stats", {})
        if stats.get("median_m"):
            return float(stats["median_m"])
        # Manifest without statistics: measure on (up to) 200 training samples.
        values = []
        ds = pipeline.build_dataset(self.cfg.data, self.cfg.data.train_split, 8, training=False,
                                    data_dir=self.data_dir, manifest=self.manifest).take(25)
        for _, depth in ds:
            d = depth.numpy()
            values.append(d[d > 0])
        return float(np.median(np.concatenate(values)))

    def best_metrics(self, workdir: str, last_step: int, last: dict) -> Optional[dict]:
        """``{"model": metrics, "global_step", "checkpoint", "selected_by"}`` of ``checkpoints/best/``
        (evaluated like the last model, then the last weights are put back); the last model's metrics
        when best is the last step; None without a best checkpoint."""
        prefix = tf.train.latest_checkpoint(os.path.join(workdir, BEST_DIR))
        if prefix is None:
            return None
        step = int(prefix.rsplit("-", 1)[-1])
        record = {"global_step": step, "checkpoint": os.path.relpath(prefix, workdir),
                  "selected_by": f"validation {self.cfg.train.best_metric} (lower is better)"}
        if step == last_step:
            return {"model": last, **record}
        current = self.model.get_weights()
        try:
            tf.train.Checkpoint(model=self.model).restore(prefix).expect_partial()
            result = self.evaluate(max_images=self.cfg.eval.max_images)
        finally:
            self.model.set_weights(current)
            self.predict_fn()  # full-frame copies follow the restored last weights again
        return {"model": {k: result["overall"][k] for k in FINAL_KEYS}, **record}

    def final_metrics(self, global_step: int, workdir: str, log) -> dict:
        """Model vs the constant-median baseline on the validation split; writes ``workdir/metrics.json``
        (``model``: the last weights; ``best``: those of ``checkpoints/best/``, see :meth:`best_metrics`)
        and prints one line each to ``log``."""
        model_result = self.evaluate(max_images=self.cfg.eval.max_images)
        median = self.baseline_depth_m()

        def baseline(images):
            shape = tf.shape(images)
            return tf.fill([shape[0], shape[1], shape[2], 1], tf.constant(median, tf.float32))

        ecfg = self.cfg.eval
        base_result = evaluate_model(baseline, self.eval_dataset(), ecfg.protocol, crop=ecfg.crop,
                                     max_images=ecfg.max_images, pooled=ecfg.pooled)
        metrics = {
            "model": {k: model_result["overall"][k] for k in FINAL_KEYS},
            "baseline": {k: base_result["overall"][k] for k in FINAL_KEYS},
            "baseline_depth_m": median,
            "images": model_result["count"],
            "protocol": finite_or_none(model_result["protocol"]),  # strict JSON: no Infinity for `none`
            "inference": model_result["inference"],
            "split": self.cfg.data.val_split,
            "global_step": int(global_step),
        }
        best = self.best_metrics(workdir, int(global_step), metrics["model"])
        if best is not None:
            metrics["best"] = best
        write_json(os.path.join(workdir, "metrics.json"), metrics)
        print("metrics (" + self.cfg.data.val_split + f", {metrics['images']} images, last model, step {global_step}): "
              + " ".join(f"{k} {metrics['model'][k]:.4f} (baseline {metrics['baseline'][k]:.4f})"
                         for k in FINAL_KEYS), file=log)
        if best is not None and best["global_step"] != int(global_step):
            print(f"best model (step {best['global_step']}, {best['checkpoint']}): "
                  + " ".join(f"{k} {best['model'][k]:.4f}" for k in FINAL_KEYS), file=log)
        return metrics
