"""The loop's hooks: small objects called after every step and every epoch unit.

:class:`tfdepth.training.loop.Trainer` calls each hook's :meth:`Hook.on_epoch_begin`,
:meth:`Hook.on_step_end` and :meth:`Hook.on_epoch_end` in list order. The default list is
:class:`LoggingHook` (progress bar, TensorBoard train scalars), :class:`ImageSummaryHook`
(TensorBoard images), :class:`ValidationHook`, :class:`BestModelHook`, :class:`HistoryHook`
(``history.json`` records) and :class:`CheckpointHook` (saves last, so that a checkpoint holds what
the hooks before it recorded); a caller's extra hooks come after them. An epoch record is a dict the
hooks may add keys to (``images_per_s``, ``val``) before it is written to the history.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional

import tensorflow as tf

from tfdepth.training.checkpoint import RunCheckpoints
from tfdepth.training.errors import TrainingError
from tfdepth.training.logging import History, ProgressBar, write_image_summary, write_scalars
from tfdepth.training.plan import EpochUnit
from tfdepth.training.validation import Validator


@dataclasses.dataclass
class StepEnd:
    """What the hooks see after a step."""

    unit: EpochUnit
    index: int  # the step's index within the unit (0-based)
    global_step: int  # after the step
    lr: float
    values: Dict[str, float]  # loss and loss terms
    image: Any  # the batch the step trained on
    depth: Any
    iterator: Any  # the unit's data iterator (for mid-epoch checkpoints)
    log_step: bool  # a logging step: every train.log_every_steps and the last of the unit

    @property
    def done(self) -> int:
        """Steps of the unit done."""
        return self.index + 1

    @property
    def last_of_unit(self) -> bool:
        return self.index + 1 == self.unit.steps


@dataclasses.dataclass
class EpochEnd:
    """What the hooks see after an epoch unit; ``record`` becomes its entry in ``history.json``."""

    unit: EpochUnit
    record: Dict[str, Any]
    last_of_run: bool


class Hook:
    """Does nothing; subclasses override what they need."""

    def on_epoch_begin(self, unit: EpochUnit, first_step: int) -> None:
        pass

    def on_step_end(self, step: StepEnd) -> None:
        pass

    def on_epoch_end(self, epoch: EpochEnd) -> None:
        pass


class LoggingHook(Hook):
    """The console progress bar of each unit, TensorBoard ``train/`` scalars at logging steps, and the
    unit's images/s in its record."""

    def __init__(self, writer, batch_size: int, every: int, stream):
        self.writer, self.batch_size, self.every, self.stream = writer, batch_size, every, stream
        self.bar: Optional[ProgressBar] = None

    def on_epoch_begin(self, unit, first_step):
        self.bar = ProgressBar(unit.steps, unit.label, self.batch_size, self.every, self.stream)

    def on_step_end(self, step):
        self.bar.update(step.done, step.values, step.lr)
        if step.log_step:
            write_scalars(self.writer, step.global_step, {
                **step.values, "lr": step.lr, "images_per_s": self.bar.images_per_second(step.done)}, "train/")

    def on_epoch_end(self, epoch):
        epoch.record["images_per_s"] = self.bar.images_per_second(epoch.unit.steps)


class ImageSummaryHook(Hook):
    """TensorBoard ``rgb | prediction | ground truth`` panels every ``every`` global steps (0 = never)."""

    def __init__(self, writer, model, every: int, max_depth_m: float):
        self.writer, self.model, self.every, self.max_depth_m = writer, model, every, max_depth_m

    def on_step_end(self, step):
        if self.every and step.global_step % self.every == 0:
            pred = self.model(step.image, training=False)["depth"]
            write_image_summary(self.writer, step.global_step, step.image, pred, step.depth, self.max_depth_m)


class ValidationHook(Hook):
    """Validation metrics every ``every_epochs`` units and after the last (0 = never): into the record
    (``val``), TensorBoard ``val/`` scalars and one console line."""

    def __init__(self, validator: Validator, every_epochs: int, max_images: Optional[int], writer, stream):
        self.validator, self.every, self.max_images = validator, every_epochs, max_images
        self.writer, self.stream = writer, stream

    def on_epoch_end(self, epoch):
        if not self.every or not ((epoch.unit.index + 1) % self.every == 0 or epoch.last_of_run):
            return
        val = self.validator.evaluate(max_images=self.max_images)["overall"]
        epoch.record["val"] = val
        write_scalars(self.writer, epoch.record["end_step"], val, "val/")
        print(f"{epoch.unit.label} validation: " + " ".join(
            f"{k} {v:.4f}" for k, v in val.items() if k in ("abs_rel", "rmse", "d1", "mae")), file=self.stream)


class BestModelHook(Hook):
    """Saves ``checkpoints/best/`` when a validation improves ``metric`` (lower is better); the best
    value so far is the checkpointed variable ``best_value``. What ``best/`` holds (the model without
    the optimiser state by default) is :class:`RunCheckpoints`' ``best_objects``."""

    def __init__(self, checkpoints: RunCheckpoints, best_value: tf.Variable, metric: str):
        self.checkpoints, self.best_value, self.metric = checkpoints, best_value, metric

    def on_epoch_end(self, epoch):
        value = epoch.record.get("val", {}).get(self.metric)
        if value is not None and value < float(self.best_value.numpy()):
            self.best_value.assign(value)
            self.checkpoints.save_best(epoch.record["end_step"])


class HistoryHook(Hook):
    """``history.json`` records: one per logging step (loss, terms, lr, phase, chunk), one per unit."""

    def __init__(self, history: History):
        self.history = history

    def on_step_end(self, step):
        if step.log_step:
            self.history.log_step({"step": step.global_step, "lr": step.lr, "phase": step.unit.phase_name,
                                   "chunk": step.unit.chunk_label, **step.values})

    def on_epoch_end(self, epoch):
        self.history.log_epoch(epoch.record)


class CheckpointHook(Hook):
    """A checkpoint (with ``history.json``) after every unit and every ``every`` global steps within a
    unit (0 = never); a mid-epoch one holds the data iterator when ``save_iterator`` (not under a
    strategy: a distributed iterator cannot be saved; nor over ``data.cache``: its state would hold the
    decoded split; a resumed unit skips the batches done instead)."""

    def __init__(self, checkpoints: RunCheckpoints, history: History, global_step: tf.Variable, every: int,
                 save_iterator: bool):
        self.checkpoints, self.history, self.global_step = checkpoints, history, global_step
        self.every, self.save_iterator = every, save_iterator

    def save(self, iterator=None) -> str:
        """History, then the checkpoint (numbered by global step); with ``iterator``, a mid-epoch save.

        History first: a run killed between the two leaves records beyond the previous checkpoint,
        which the resumed run drops (it truncates the history to its checkpoint's step), never a
        checkpoint whose steps the history lacks."""
        self.history.save()
        return self.checkpoints.save(int(self.global_step.numpy()), iterator)

    def on_step_end(self, step):
        if self.every and step.global_step % self.every == 0 and not step.last_of_unit:
            self.save(step.iterator if self.save_iterator else None)

    def on_epoch_end(self, epoch):
        self.save()


class NonFiniteGuard:
    """Counts skipped (non-finite) steps; after ``max_consecutive`` in a row saves and raises
    :class:`TrainingError`. The loop calls :meth:`check` right after each step."""

    def __init__(self, max_consecutive: int, save: Callable[[], object], workdir: str, stream):
        self.max_consecutive, self.save, self.workdir, self.stream = max_consecutive, save, workdir, stream
        self.in_a_row = 0
        self.total = 0

    def check(self, finite: bool, step: int, loss: float) -> None:
        if finite:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.total += 1
        print(f"step {step}: non-finite loss or gradients ({loss}); step skipped "
              f"({self.in_a_row} in a row, {self.total} in total)", file=self.stream)
        if self.in_a_row >= self.max_consecutive:
            self.save()
            raise TrainingError(
                f"{self.in_a_row} consecutive non-finite steps (train.max_consecutive_nonfinite="
                f"{self.max_consecutive}); last checkpoint saved in {self.workdir}. Lower the "
                "learning rate, check the data for bad depth values, or use float32")
