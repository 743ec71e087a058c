"""Scoring a run's model during and after training: validation metrics and the final ``metrics.json``."""

from __future__ import annotations

import os
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from tfdepth.config import ExperimentConfig
from tfdepth.data import pipeline
from tfdepth.evaluation.model_eval import evaluate_model
from tfdepth.io.files import write_json

FINAL_KEYS = ("abs_rel", "rmse", "log10", "d1", "d2", "d3", "mae")


class Validator:
    """Scores ``model`` on the validation split of ``data_dir`` with the config's ``eval.*`` settings."""

    def __init__(self, cfg: ExperimentConfig, model: keras.Model, data_dir: str, manifest: dict):
        self.cfg = cfg
        self.model = model
        self.data_dir = data_dir
        self.manifest = manifest
        self._predict_fn = None  # built on first use

    def eval_dataset(self) -> tf.data.Dataset:
        return pipeline.build_eval_dataset(self.cfg.data, self.cfg.eval, self.cfg.data.val_split,
                                           data_dir=self.data_dir, manifest=self.manifest)

    def predict_fn(self):
        """The model's depth (float32 metres) in one ``tf.function`` for the whole run, with an unknown
        batch axis: no retrace per validation or for a smaller last batch."""
        if self._predict_fn is None:
            model = self.model
            size = self.cfg.data.input_size
            shape = [None, int(size[0]), int(size[1]), 3] if size else [None, None, None, 3]

            @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
            def predict(images):
                return tf.cast(model(images, training=False)["depth"], tf.float32)

            self._predict_fn = predict
        return self._predict_fn

    def evaluate(self, max_images: Optional[int] = None) -> dict:
        """The model's metrics on the validation split (``evaluate_model``'s result)."""
        ecfg = self.cfg.eval
        return evaluate_model(self.predict_fn(), self.eval_dataset(), ecfg.protocol, crop=ecfg.crop,
                              flip_average=ecfg.flip_average, max_images=max_images, pooled=ecfg.pooled,
                              with_ssim=ecfg.with_ssim)

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

    def final_metrics(self, global_step: int, workdir: str, log) -> dict:
        """Model vs the constant-median baseline on the validation split; writes ``workdir/metrics.json``
        and prints one line to ``log``."""
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
            "protocol": ecfg.protocol,
            "split": self.cfg.data.val_split,
            "global_step": int(global_step),
        }
        write_json(os.path.join(workdir, "metrics.json"), metrics)
        print("metrics (" + self.cfg.data.val_split + f", {metrics['images']} images): "
              + " ".join(f"{k} {metrics['model'][k]:.4f} (baseline {metrics['baseline'][k]:.4f})"
                         for k in FINAL_KEYS), file=log)
        return metrics
