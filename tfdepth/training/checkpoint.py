"""Checkpoints of a training run and loading a trained model for inference.

A workdir holds ``config.yaml`` (the resolved config), ``checkpoints/`` (CheckpointManager, keep-N:
model, optimiser, global step, position, and the tf.data iterator state when saved mid-epoch) and
``checkpoints/best/`` (best validation metric). TensorFlow writes checkpoint files under temporary
names and renames them, and updates the ``checkpoint`` index last, so a kill -9 during a save leaves
the previous checkpoint as the latest.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Tuple

import keras
import tensorflow as tf

from tfdepth.config import ExperimentConfig, load_config

CONFIG_NAME = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = os.path.join(CHECKPOINT_DIR, "best")


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a workdir, a checkpoint directory, or a prefix (``.../ckpt-12``)."""
    for directory in (os.path.join(path, CHECKPOINT_DIR), path):
        if os.path.isdir(directory):
            latest = tf.train.latest_checkpoint(directory)
            if latest:
                return latest
    if tf.io.gfile.exists(path + ".index"):
        return path
    raise FileNotFoundError(f"{path}: no checkpoint found (expected a workdir, a checkpoint dir or a ckpt-N prefix)")


def find_config_for(checkpoint_path: str) -> str:
    """The ``config.yaml`` of the workdir a checkpoint belongs to (searched upwards)."""
    directory = checkpoint_path if os.path.isdir(checkpoint_path) else os.path.dirname(checkpoint_path)
    for _ in range(4):
        candidate = os.path.join(directory, CONFIG_NAME)
        if os.path.isfile(candidate):
            return candidate
        directory = os.path.dirname(directory)
    raise FileNotFoundError(f"{checkpoint_path}: no {CONFIG_NAME} beside or above it; pass --config")


def load_trained_model(checkpoint: str, config: Optional[ExperimentConfig] = None
                       ) -> Tuple[keras.Model, ExperimentConfig]:
    """Build the model of ``config`` (default: the workdir's saved config) and restore its weights.

    The model is built in float32 for inference whatever precision it was trained in.
    """
    from tfdepth.models.build import build_model  # models are only needed here

    prefix = resolve_checkpoint(checkpoint)
    if config is None:
        config = load_config(find_config_for(checkpoint))
    keras.mixed_precision.set_global_policy("float32")
    # All weights come from the checkpoint: skip the encoder's initialisation download / file.
    model_cfg = dataclasses.replace(config.model, encoder_weights="none")
    model = build_model(model_cfg, config.data.input_size)
    status = tf.train.Checkpoint(model=model).restore(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
    return model, config
