"""Checkpoints of a training run (the workdir's resume contract) and loading a trained model for inference.

A workdir holds ``config.yaml`` (the resolved config), ``checkpoints/`` (CheckpointManager, keep-N:
model, optimiser, global step, position, and the tf.data iterator state when saved mid-epoch) and
``checkpoints/best/`` (best validation metric). TensorFlow writes checkpoint files under temporary
names and renames them, and updates the ``checkpoint`` index last, so a kill -9 during a save leaves
the previous checkpoint as the latest.

Fail loud, never lose work: a checkpoint directory whose index is missing or unreadable while it
holds checkpoints, or whose latest checkpoint is incomplete or damaged, is refused with a
:class:`TrainingError` naming the file (and the complete checkpoints one could resume from) instead
of a traceback or a silent fresh start over the old run; ``config.yaml`` is checked against any
checkpoint files on disk; :class:`WorkdirLock` keeps a second run out of a workdir in use.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import socket
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import tensorflow as tf

from tfdepth.config import ExperimentConfig, load_config, save_config, to_dict
from tfdepth.training.errors import TrainingError

CONFIG_NAME = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
# The CheckpointManager's index file (names the latest checkpoint) inside a checkpoint directory.
INDEX_NAME = "checkpoint"
# Held (flock) by the run training in a workdir.
LOCK_NAME = ".lock"
BEST_DIR = os.path.join(CHECKPOINT_DIR, "best")
# The data iterator's entry in a mid-epoch checkpoint of a single-device run.
ITERATOR_KEY = "iterator/.ATTRIBUTES/ITERATOR_STATE"
# Config keys that may change between a run and its resumption (they do not change what is trained).
RESUME_SAFE_KEYS = ("eval.", "train.log_every_steps", "train.image_summary_every_steps",
                    "train.checkpoint_every_steps", "data.parallel_calls")


def check_or_save_config(cfg: ExperimentConfig, workdir: str, safe_keys: Sequence[str] = RESUME_SAFE_KEYS) -> None:
    """Write ``cfg`` as the workdir's ``config.yaml``; refuse (:class:`TrainingError`) when the workdir
    holds checkpoints of a run whose config differs in a key other than ``safe_keys``, and (before
    anything is written) when its checkpoint directory is broken (see :func:`latest_checkpoint`)."""
    path = os.path.join(workdir, CONFIG_NAME)
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    # Refuses a broken checkpoint index before anything is written (config.yaml included).
    has_checkpoints = latest_checkpoint(checkpoint_dir) is not None
    if os.path.isfile(path):
        saved = to_dict(load_config(path))
        current = to_dict(cfg)
        diffs = sorted(k for k in _diff_keys(saved, current) if not k.startswith(tuple(safe_keys)))
        if diffs and has_checkpoints:
            raise TrainingError(
                f"{workdir} holds a run with a different config (keys differ: {', '.join(diffs)}); "
                "use a new --workdir or the same config to resume")
    save_config(cfg, path)


def complete_checkpoints(directory: str) -> List[str]:
    """Prefixes of the checkpoints in ``directory`` whose files are all there (``ckpt-N.index`` and
    every ``ckpt-N.data-*`` shard it names), by number."""
    found = []
    for index in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")):
        prefix = index[:-len(".index")]
        match = re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix))
        if match and not _missing_files(prefix):
            found.append((int(match.group(1)), prefix))
    return [prefix for _, prefix in sorted(found)]


def _missing_files(prefix: str) -> List[str]:
    """The files of checkpoint ``prefix`` that are not on disk (the index and its data shards)."""
    if not os.path.isfile(prefix + ".index"):
        return [prefix + ".index"]
    shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    match = re.fullmatch(r".*\.data-\d+-of-(\d+)", shards[0]) if shards else None
    count = int(match.group(1)) if match else 1
    expected = [f"{prefix}.data-{i:05d}-of-{count:05d}" for i in range(count)]
    return [p for p in expected if not os.path.isfile(p)]


def _recovery_hint(directory: str, exclude: str = "") -> str:
    complete = [p for p in complete_checkpoints(directory) if p != exclude]
    if not complete:
        return "no complete checkpoint is left there: use a new --workdir"
    names = ", ".join(os.path.basename(p) for p in complete)
    newest = os.path.basename(complete[-1])
    return (f"complete checkpoints there: {names}; to resume from {newest}, write the line "
            f'model_checkpoint_path: "{newest}" into {os.path.join(directory, INDEX_NAME)}, or use a new --workdir')


def latest_checkpoint(directory: str) -> Optional[str]:
    """The prefix of the latest checkpoint in ``directory`` (None: no index and no checkpoint files).

    Unlike ``tf.train.latest_checkpoint`` (which answers None for an unreadable index, so that a run
    would start afresh over the old one) this raises :class:`TrainingError` when the directory holds
    checkpoint files but its index is missing or unreadable, or names a checkpoint whose files are not
    all there; the message names the file and the complete checkpoints left.
    """
    index = os.path.join(directory, INDEX_NAME)
    on_disk = glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index"))
    if not os.path.isfile(index):
        if on_disk:
            raise TrainingError(f"{index} is missing, but {directory} holds checkpoint files: the run cannot tell "
                                f"which one is its latest; {_recovery_hint(directory)}")
        return None
    state = tf.train.get_checkpoint_state(directory)  # None when the index cannot be parsed
    if state is None or not state.model_checkpoint_path:
        raise TrainingError(f"{index}: unreadable checkpoint index (expected a line "
                            f'model_checkpoint_path: "ckpt-N"); {_recovery_hint(directory)}')
    latest = state.model_checkpoint_path
    if not os.path.isabs(latest):
        latest = os.path.join(directory, latest)
    missing = _missing_files(latest)
    if missing:
        raise TrainingError(f"{latest}: the latest checkpoint named by {index} is incomplete (missing "
                            f"{', '.join(missing)}); {_recovery_hint(directory, exclude=latest)}")
    return latest


def _describe_files(prefix: str) -> str:
    paths = sorted(glob.glob(glob.escape(prefix) + ".*"))
    return ", ".join(f"{os.path.basename(p)} ({os.path.getsize(p)} bytes)" for p in paths)


class WorkdirLock:
    """An exclusive lock on a workdir (``flock`` on its ``.lock``) for the run training there: a second
    run in the same workdir raises :class:`TrainingError` instead of writing over the first one's
    checkpoints. The kernel drops the lock when its process dies (kill -9 included); :meth:`release`
    drops it earlier. Where ``fcntl`` is missing (Windows) nothing is locked."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, LOCK_NAME)
        self._fd: Optional[int] = None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        os.makedirs(directory, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise TrainingError(f"{directory} is in use by another training run ({holder}, holding {self.path}); "
                                "wait for it to end or use another --workdir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    def __del__(self):
        self.release()


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
        latest = latest_checkpoint(self.manager.directory)
        if latest:
            try:
                tf.train.Checkpoint(**self.objects).restore(latest).expect_partial()
            except (tf.errors.OpError, IndexError) as e:  # a damaged file (truncated, bit rot)
                raise TrainingError(
                    f"{latest}: damaged checkpoint, it cannot be read ({type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}; its files: {_describe_files(latest)}); "
                    f"{_recovery_hint(self.manager.directory, exclude=latest)}") from e
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
