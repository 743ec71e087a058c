"""Checkpoints of a training run (the workdir's resume contract) and loading a trained model for inference.

A workdir holds ``config.yaml`` (the resolved config), ``checkpoints/`` (CheckpointManager, keep-N:
model, optimiser, global step, position, and the tf.data iterator state when saved mid-epoch) and
``checkpoints/best/`` (best validation metric: the model weights, global step and best value; the
optimiser state only with ``train.best_with_optimizer``). TensorFlow writes checkpoint files under
temporary names and renames them, and updates the ``checkpoint`` index last.

Fail loud, never lose work. A resume finds the checkpoints by listing ``ckpt-N.index`` in
``checkpoints/`` and tries them newest (highest number) first: a checkpoint whose files are
incomplete, whose data does not read back (truncated, checksum) or that fails to restore is named in
the log with the reason and skipped, and the newest one that restores is used. The skipped ones'
files are moved into ``checkpoints/damaged/`` (kept, never tried again) and the index is rewritten
(atomically) to name the one used, so later saves and keep-N pruning go on from there. A missing or
garbled index is the same case (a kill between a save's last rename and its index update leaves a
complete checkpoint the index does not name yet: it is used). A workdir whose checkpoint files are
all unreadable is refused (:class:`TrainingError` naming each, suggesting ``--restart``), never
trained over from step 0;
``--restart`` (:func:`move_previous_run`) moves the old run aside into ``previous-<time>/``.
``config.yaml`` is checked against any checkpoint files on disk; :class:`WorkdirLock` keeps a second
run out of a workdir in use.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import socket
import time
from typing import Dict, List, Optional, Sequence, TextIO, Tuple

import keras
import tensorflow as tf

from tfdepth.config import ExperimentConfig, load_config, save_config, to_dict
from tfdepth.io.files import write_text
from tfdepth.training.errors import TrainingError

CONFIG_NAME = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
# The CheckpointManager's index file (names the latest checkpoint) inside a checkpoint directory.
INDEX_NAME = "checkpoint"
# Held (flock) by the run training in a workdir.
LOCK_NAME = ".lock"
BEST_DIR = os.path.join(CHECKPOINT_DIR, "best")
# Inside a checkpoint directory: the files of checkpoints a resume skipped (newer than the one used).
DAMAGED_DIR = "damaged"
# The data iterator's entry in a mid-epoch checkpoint of a single-device run.
ITERATOR_KEY = "iterator/.ATTRIBUTES/ITERATOR_STATE"
# What --restart moves aside (into previous-<YYYYmmdd-HHMMSS>/): everything a run writes in its workdir.
RUN_FILES = (CHECKPOINT_DIR, "history.json", "metrics.json", CONFIG_NAME, "tensorboard", "loss_curve.png",
             "init_report.json")
# Config keys that may change between a run and its resumption (they do not change what is trained;
# model.init_from only acts on a fresh run: a resume restores the run's own checkpoint).
RESUME_SAFE_KEYS = ("eval.", "train.log_every_steps", "train.image_summary_every_steps",
                    "train.checkpoint_every_steps", "data.parallel_calls", "model.init_from", "model.init_strict")


def check_or_save_config(cfg: ExperimentConfig, workdir: str, safe_keys: Sequence[str] = RESUME_SAFE_KEYS) -> None:
    """Write ``cfg`` as the workdir's ``config.yaml``; refuse (:class:`TrainingError`) when the workdir
    holds checkpoint files (readable or not) of a run whose config differs in a key other than
    ``safe_keys``."""
    path = os.path.join(workdir, CONFIG_NAME)
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    has_checkpoints = (bool(list_checkpoints(checkpoint_dir))
                       or os.path.isfile(os.path.join(checkpoint_dir, INDEX_NAME)))
    if os.path.isfile(path):
        saved = to_dict(load_config(path))
        current = to_dict(cfg)
        diffs = sorted(k for k in _diff_keys(saved, current) if not k.startswith(tuple(safe_keys)))
        if diffs and has_checkpoints:
            raise TrainingError(
                f"{workdir} holds a run with a different config (keys differ: {', '.join(diffs)}); "
                "use the same config to resume, a new --workdir, or --restart to move the old run aside "
                f"(into {os.path.join(workdir, 'previous-<time>')}) and start afresh")
    save_config(cfg, path)


def list_checkpoints(directory: str) -> List[Tuple[int, str]]:
    """``(number, prefix)`` of every ``ckpt-N.index`` in ``directory`` (complete or not), by number."""
    found = []
    for index in glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index")):
        prefix = index[:-len(".index")]
        match = re.fullmatch(r"ckpt-(\d+)", os.path.basename(prefix))
        if match:
            found.append((int(match.group(1)), prefix))
    return sorted(found)


def complete_checkpoints(directory: str) -> List[str]:
    """Prefixes of the checkpoints in ``directory`` whose files are all there (``ckpt-N.index`` and
    every ``ckpt-N.data-*`` shard it names), by number."""
    return [prefix for _, prefix in list_checkpoints(directory) if not _missing_files(prefix)]


def _missing_files(prefix: str) -> List[str]:
    """The files of checkpoint ``prefix`` that are not on disk (the index and its data shards)."""
    if not os.path.isfile(prefix + ".index"):
        return [prefix + ".index"]
    shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    match = re.fullmatch(r".*\.data-\d+-of-(\d+)", shards[0]) if shards else None
    count = int(match.group(1)) if match else 1
    expected = [f"{prefix}.data-{i:05d}-of-{count:05d}" for i in range(count)]
    return [p for p in expected if not os.path.isfile(p)]


def _read_index(directory: str) -> Tuple[Optional[str], str]:
    """``(prefix the index names or None, why not)``: the reason is empty when the index names a
    checkpoint, else says that the index is missing or unreadable."""
    index = os.path.join(directory, INDEX_NAME)
    if not os.path.isfile(index):
        return None, f"{index} is missing"
    state = tf.train.get_checkpoint_state(directory)  # None when the index cannot be parsed
    if state is None or not state.model_checkpoint_path:
        return None, f'{index} is unreadable (expected a line model_checkpoint_path: "ckpt-N")'
    latest = state.model_checkpoint_path
    return (latest if os.path.isabs(latest) else os.path.join(directory, latest)), ""


def resume_candidates(directory: str) -> List[str]:
    """The checkpoints to try on resume, newest first: every ``ckpt-N.index`` on disk and the one the
    index names (even when its files are gone), by number, highest first."""
    named, _ = _read_index(directory)
    found = dict((prefix, number) for number, prefix in list_checkpoints(directory))
    if named and named not in found:
        match = re.fullmatch(r"ckpt-(\d+)", os.path.basename(named))
        found[named] = int(match.group(1)) if match else float("inf")
    return sorted(found, key=lambda prefix: found[prefix], reverse=True)


def checkpoint_problem(prefix: str) -> str:
    """Why checkpoint ``prefix`` cannot be resumed from ("" when it reads back): missing files, or a
    tensor that does not read back (truncated file, checksum mismatch). Every tensor is read, so a
    checkpoint that passes restores without a read error."""
    missing = _missing_files(prefix)
    if missing:
        return f"incomplete, missing {', '.join(missing)}"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype != tf.variant:  # the iterator state: not readable as an array, checked by the restore
                reader.get_tensor(name)
    except (tf.errors.OpError, IndexError, ValueError, RuntimeError) as e:
        return f"unreadable ({_first_line(e)}; its files: {_describe_files(prefix)})"
    return ""


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:300]}" if text else type(e).__name__


def rewrite_index(directory: str, latest: str) -> None:
    """Rewrite ``directory``'s index (atomically) to name ``latest`` as the latest checkpoint, with the
    complete checkpoints numbered below it as the older ones (so CheckpointManager's keep-N pruning
    goes on from there; newer ones skipped as damaged are left out of it and on disk)."""
    number = int(latest.rsplit("-", 1)[1])
    kept = [p for n, p in list_checkpoints(directory) if n < number and not _missing_files(p)] + [latest]
    stamps = [os.path.getmtime(p + ".index") for p in kept]
    state = tf.compat.v1.train.generate_checkpoint_state_proto(
        directory, os.path.basename(latest), all_model_checkpoint_paths=[os.path.basename(p) for p in kept],
        all_model_checkpoint_timestamps=stamps, last_preserved_timestamp=min(stamps) - 1.0)
    from google.protobuf import text_format

    write_text(os.path.join(directory, INDEX_NAME), text_format.MessageToString(state))


def set_aside(prefix: str) -> List[str]:
    """Move checkpoint ``prefix``'s files into ``damaged/`` beside it (kept, no longer a resume
    candidate); returns the new paths."""
    target = os.path.join(os.path.dirname(prefix), DAMAGED_DIR)
    os.makedirs(target, exist_ok=True)
    moved = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        new, n = os.path.join(target, os.path.basename(path)), 1
        while os.path.lexists(new):  # set aside before: keep that one too
            new, n = os.path.join(target, f"{os.path.basename(path)}.{n}"), n + 1
        os.replace(path, new)
        moved.append(new)
    return moved


def move_previous_run(workdir: str) -> Optional[str]:
    """``--restart``: move a previous run's files (:data:`RUN_FILES`) into ``workdir/previous-<YYYYmmdd-HHMMSS>/``
    (never deleted); returns that folder (None: nothing there)."""
    present = [name for name in RUN_FILES if os.path.lexists(os.path.join(workdir, name))]
    if not present:
        return None
    base = os.path.join(workdir, "previous-" + time.strftime("%Y%m%d-%H%M%S"))
    target, n = base, 1
    while os.path.lexists(target):
        target, n = f"{base}-{n}", n + 1
    os.makedirs(target)
    for name in present:
        os.rename(os.path.join(workdir, name), os.path.join(target, name))
    return target


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
    numbered by the global step; a mid-epoch checkpoint also holds the data iterator. The best one holds
    only the objects named in ``best_objects`` (default: all), e.g. the model without its optimiser."""

    def __init__(self, objects: Dict[str, object], save_dir: str, keep: int,
                 best_objects: Optional[Sequence[str]] = None):
        self.objects = dict(objects)
        self.keep = keep
        self.checkpoint = tf.train.Checkpoint(**self.objects)
        self.directory = os.path.join(save_dir, CHECKPOINT_DIR)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=keep)
        best = self.checkpoint if best_objects is None else tf.train.Checkpoint(
            **{k: self.objects[k] for k in best_objects})
        self.best_manager = tf.train.CheckpointManager(best, os.path.join(save_dir, BEST_DIR), max_to_keep=1)
        self.skipped: List[Tuple[str, str]] = []  # (prefix, why) of the checkpoints the resume skipped

    def restore_latest(self, log: Optional[TextIO] = None) -> Optional[str]:
        """Restore the objects from the newest checkpoint that restores; returns its prefix (None: no
        checkpoint files, a fresh run).

        Candidates (:func:`resume_candidates`) are first read back in full (:func:`checkpoint_problem`),
        so a damaged one is skipped before anything of it is assigned; each one skipped is one line in
        ``log`` and in :attr:`skipped`. When the one used is not what the index named (or the index is
        missing or garbled) the index is rewritten to name it. Files but nothing restorable: a
        :class:`TrainingError` naming each, suggesting ``--restart``.

        The restore goes through a root of its own: a restore leaves the checkpoint's objects that are
        not attached yet (the saved tf.data iterator) as deferred restorations on the root, and the
        saving root would later apply that old iterator state to whichever iterator is attached under
        the same name at the next mid-epoch save. The run's iterator is restored with
        :meth:`restore_iterator`.
        """
        directory = self.directory
        named, index_problem = _read_index(directory)
        candidates = resume_candidates(directory)
        if not candidates:
            if os.path.isfile(os.path.join(directory, INDEX_NAME)):  # an index, garbled, and no checkpoint
                raise TrainingError(f"{index_problem}, and {directory} holds no ckpt-N.index: nothing to resume "
                                    "from; use --restart to move the old run aside and start afresh")
            return None
        self.skipped = []
        for prefix in candidates:
            why = checkpoint_problem(prefix)
            if not why:
                try:
                    tf.train.Checkpoint(**self.objects).restore(prefix).expect_partial()
                except (tf.errors.OpError, IndexError, ValueError, AssertionError) as e:
                    why = f"restore failed ({_first_line(e)})"
            if why:
                self.skipped.append((prefix, why))
                if log is not None:
                    print(f"skipping checkpoint {prefix}: {why}", file=log)
                continue
            # Skipped ones newer than this one would be tried first again by the next resume (even
            # after this run has saved newer good ones below their number): set aside, not deleted.
            for skipped, _ in self.skipped:
                moved = set_aside(skipped)
                if moved and log is not None:
                    print(f"moved the files of {os.path.basename(skipped)} to {os.path.dirname(moved[0])}",
                          file=log)
            if index_problem or named != prefix:
                rewrite_index(directory, prefix)
                if log is not None:
                    why_index = (index_problem or
                                 f"{os.path.join(directory, INDEX_NAME)} named {os.path.basename(named)}")
                    print(f"{why_index}: rewritten to name {os.path.basename(prefix)}", file=log)
                # The manager read the old index: again, so that pruning and numbering go on from here.
                self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=self.keep)
            return prefix
        raise TrainingError(
            f"no checkpoint in {directory} can be resumed from: "
            + "; ".join(f"{os.path.basename(p)}: {why}" for p, why in self.skipped)
            + ". Nothing was trained over; to start afresh use --restart (moves the old run aside "
            "into previous-<time>/) or a new --workdir")

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
