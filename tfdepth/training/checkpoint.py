"""Checkpoints of a training run (the workdir's resume contract) and loading a trained model for inference.

A workdir holds ``config.yaml`` (the resolved config), ``checkpoints/`` (CheckpointManager, keep-N:
model, optimiser, global step, position, and the tf.data iterator state when saved mid-epoch) and
``checkpoints/best/`` (best validation metric). TensorFlow writes checkpoint files under temporary
names and renames them, and updates the ``checkpoint`` index last, so a kill -9 during a save leaves
the previous checkpoint as the latest.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from tfdepth.config import ExperimentConfig, load_config, save_config, to_dict
from tfdepth.training.errors import TrainingError

CONFIG_NAME = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = os.path.join(CHECKPOINT_DIR, "best")
# The data iterator's entry in a mid-epoch checkpoint of a single-device run.
ITERATOR_KEY = "iterator/.ATTRIBUTES/ITERATOR_STATE"
# Config keys that may change between a run and its resumption (they do not change what is trained).
RESUME_SAFE_KEYS = ("eval.", "train.log_every_steps", "train.image_summary_every_steps",
                    "train.checkpoint_every_steps", "data.parallel_calls")


def check_or_save_config(cfg: ExperimentConfig, workdir: str, safe_keys: Sequence[str] = RESUME_SAFE_KEYS) -> None:
    """Write ``cfg`` as the workdir's ``config.yaml``; refuse (:class:`TrainingError`) when the workdir
    holds checkpoints of a run whose config differs in a key other than ``safe_keys``."""
    path = os.path.join(workdir, CONFIG_NAME)
    if os.path.isfile(path):
        saved = to_dict(load_config(path))
        current = to_dict(cfg)
        diffs = sorted(k for k in _diff_keys(saved, current) if not k.startswith(tuple(safe_keys)))
        if diffs and tf.train.latest_checkpoint(os.path.join(workdir, CHECKPOINT_DIR)):
            raise TrainingError(
                f"{workdir} holds a run with a different config (keys differ: {', '.join(diffs)}); "
                "use a new --workdir or the same config to resume")
    save_config(cfg, path)


def _diff_keys(a, b, prefix: str = "") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [prefix]


class RunCheckpoints:
    """The checkpoints of one run in ``save_dir``: the last ``keep`` in ``checkpoints/`` and the best in
    ``checkpoints/best/``, each holding ``objects`` (name -> trackable: model, optimiser, step, ...),
    numbered by the global step; a mid-epoch checkpoint also holds the data iterator."""

    def __init__(self, objects: Dict[str, object], save_dir: str, keep: int):
        self.objects = dict(objects)
        self.checkpoint = tf.train.Checkpoint(**self.objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(save_dir, CHECKPOINT_DIR),
                                                  max_to_keep=keep)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(save_dir, BEST_DIR),
                                                       max_to_keep=1)

    def restore_latest(self) -> Optional[str]:
        """Restore the objects from the latest checkpoint; returns its prefix (None: nothing to restore).

        The restore goes through a root of its own: a restore leaves the checkpoint's objects that are
        not attached yet (the saved tf.data iterator) as deferred restorations on the root, and the
        saving root would later apply that old iterator state to whichever iterator is attached under
        the same name at the next mid-epoch save. The run's iterator is restored with
        :meth:`restore_iterator`.
        """
        latest = self.manager.latest_checkpoint
        if latest:
            tf.train.Checkpoint(**self.objects).restore(latest).expect_partial()
        return latest

    @staticmethod
    def has_iterator(prefix: str) -> bool:
        """Whether the checkpoint ``prefix`` holds a data iterator's state (a mid-epoch save)."""
        return ITERATOR_KEY in {name for name, _ in tf.train.list_variables(prefix)}

    @staticmethod
    def restore_iterator(iterator, prefix: str) -> None:
        """Set ``iterator`` to the state saved in the checkpoint ``prefix``."""
        tf.train.Checkpoint(iterator=iterator).restore(prefix).expect_partial()

    def save(self, number: int, iterator=None) -> str:
        """Checkpoint numbered ``number``; a mid-epoch save also holds ``iterator``."""
        if iterator is not None:
            self.checkpoint.iterator = iterator
        try:
            return self.manager.save(checkpoint_number=number)
        finally:
            if iterator is not None:
                del self.checkpoint.iterator

    def save_best(self, number: int) -> str:
        """The checkpoint of the best model so far (replaces the previous best)."""
        return self.best_manager.save(checkpoint_number=number)


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
    model = build_model(model_cfg, config.data.input_size, config.data.max_depth_m)
    status = tf.train.Checkpoint(model=model).restore(prefix)
    status.expect_partial()
    status.assert_existing_objects_matched()
    return model, config
