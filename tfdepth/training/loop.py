"""The training loop: a workdir's run over its epoch units, with hooks, resume and final metrics.

A run is the flat list of epoch units of :func:`tfdepth.training.plan.plan_units`; its position is
``(unit index, step within unit)``. Checkpoints store it with the model, optimiser, global step and
(mid-unit) the tf.data iterator, so a resumed run continues exactly where the checkpoint was taken.
The loop sets each step's learning rate, runs the :class:`~tfdepth.training.step.TrainStep` and
hands the results to its hooks (:mod:`tfdepth.training.hooks`: progress and TensorBoard, images,
validation, best model, history, checkpoints).

A fresh run with ``model.init_from`` first loads the trained model's matching weights
(:mod:`tfdepth.training.init_from`); a run that resumes its own checkpoint ignores it (and says so).

Files of a workdir: ``config.yaml``, ``checkpoints/`` (and ``checkpoints/best/``), ``history.json``,
``tensorboard/``, ``loss_curve.png``, ``metrics.json`` and (with ``model.init_from``) ``init_report.json``.
"""

from __future__ import annotations

import os
import sys
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from tfdepth.config import ExperimentConfig
from tfdepth.data import pipeline
from tfdepth.training.checkpoint import RunCheckpoints, WorkdirLock, check_or_save_config, move_previous_run
from tfdepth.training.hooks import (BestModelHook, CheckpointHook, EpochEnd, HistoryHook, Hook, ImageSummaryHook,
                                    LoggingHook, NonFiniteGuard, StepEnd, ValidationHook)
from tfdepth.training import init_from
from tfdepth.training.logging import History
from tfdepth.training.plan import plan_units
from tfdepth.training.step import TrainStep
from tfdepth.training.strategy import is_chief, make_strategy
from tfdepth.training.validation import Validator


class Trainer:
    """Owns the train step, position, checkpoints and hooks of one workdir; :meth:`run` trains to the end.

    Public attributes: ``train_step`` (:class:`TrainStep`: model, optimiser, strategy, global step),
    ``units`` (the plan), ``position``, ``best_value``, ``history``, ``checkpoints``, ``validator``,
    ``hooks``, ``nonfinite`` (:class:`NonFiniteGuard`), ``is_chief``, ``lock`` (the workdir's
    :class:`~tfdepth.training.checkpoint.WorkdirLock`, held from construction until :meth:`run` ends:
    a second Trainer on the same workdir meanwhile raises ``TrainingError``). ``hooks`` given here run
    after the default ones. ``restart``: a previous run in the workdir is moved aside into
    ``previous-<time>/`` (never deleted) under the lock, then the run starts afresh.
    ``allow_fewer_chunks``: a ``chunks: each`` phase on fewer chunks than its ``min_chunks`` warns
    instead of raising (:func:`~tfdepth.training.plan.plan_units`).
    """

    def __init__(self, cfg: ExperimentConfig, workdir: str, log_stream=None, hooks: Sequence[Hook] = (),
                 restart: bool = False, allow_fewer_chunks: bool = False):
        self.cfg = cfg
        self.allow_fewer_chunks = allow_fewer_chunks
        self.workdir = workdir
        self.log = log_stream or sys.stderr
        tcfg = cfg.train
        # First: MultiWorkerMirroredStrategy must configure collectives before any other TF op runs.
        strategy = make_strategy(tcfg.strategy)
        os.makedirs(workdir, exist_ok=True)
        self.is_chief = is_chief(strategy)
        # Every worker of a multi-worker run saves (saving is collective); non-chief workers write to
        # a scratch directory of their own, the chief to the workdir.
        self.save_dir = workdir if self.is_chief else os.path.join(
            workdir, f".worker{strategy.cluster_resolver.task_id}")
        # One run per workdir: a second one is refused before it writes anything (released by run()).
        self.lock = WorkdirLock(self.save_dir)
        try:
            if restart:
                moved = move_previous_run(self.save_dir)
                print(f"--restart: previous run moved to {moved}" if moved else
                      f"--restart: nothing to move aside in {self.save_dir}", file=self.log)
            self._build(cfg, workdir, strategy, hooks)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, cfg: ExperimentConfig, workdir: str, strategy, hooks: Sequence[Hook]) -> None:
        tcfg = cfg.train
        check_or_save_config(cfg, workdir)
        self.train_step = step = TrainStep(cfg, strategy)
        self.units = plan_units(cfg, step.manifest, self.allow_fewer_chunks)
        with strategy.scope():
            # (unit index, step within unit) of the next step to run.
            self.position = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="position")
            self.best_value = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_value")
        self.checkpoints = RunCheckpoints(
            dict(model=step.model, optimizer=step.optimizer, global_step=step.global_step, position=self.position,
                 best_value=self.best_value), self.save_dir, tcfg.keep_checkpoints,
            best_objects=None if tcfg.best_with_optimizer else ("model", "global_step", "best_value"))
        self.history = History(os.path.join(self.save_dir, "history.json"))
        self.writer = tf.summary.create_file_writer(os.path.join(self.save_dir, "tensorboard"))
        self.validator = Validator(cfg, step.model, step.data_dir, step.manifest)
        checkpoint_hook = CheckpointHook(self.checkpoints, self.history, step.global_step, tcfg.checkpoint_every_steps,
                                         step.iterator_saveable)
        self.hooks = [
            LoggingHook(self.writer, tcfg.batch_size, tcfg.log_every_steps, self.log),
            ImageSummaryHook(self.writer, step.model, 0 if step.distributed else tcfg.image_summary_every_steps,
                             cfg.data.max_depth_m),
            ValidationHook(self.validator, tcfg.validate_every_epochs, cfg.eval.max_images, self.writer, self.log),
            BestModelHook(self.checkpoints, self.best_value, tcfg.best_metric),
            HistoryHook(self.history),
            checkpoint_hook,
            *hooks,
        ]
        self.nonfinite = NonFiniteGuard(tcfg.max_consecutive_nonfinite, checkpoint_hook.save, workdir, self.log)

    def _restore(self):
        """Restore the newest checkpoint that restores, if any (each one skipped is one log line);
        returns its prefix (None for a fresh run)."""
        latest = self.checkpoints.restore_latest(self.log)
        # history.json is saved before each checkpoint: drop what a run killed after the history save
        # (before its checkpoint) recorded beyond the checkpoint resumed from (everything, without one).
        self.history.truncate_to_step(int(self.train_step.global_step.numpy()) if latest else 0)
        if latest:
            unit, step = (int(v) for v in self.position.numpy())
            global_step = int(self.train_step.global_step.numpy())
            skipped = "".join(f" (skipped {os.path.basename(p)}: {why})" for p, why in self.checkpoints.skipped)
            print(f"resumed from {latest}: global step {global_step}, unit {unit} step {step}{skipped}",
                  file=self.log)
        return latest

    def _init_from(self, resume) -> None:
        """``model.init_from`` on a fresh run; a resumed one says that its own checkpoint wins."""
        spec = self.cfg.model.init_from
        if not spec:
            return
        if resume:
            print(f"model.init_from {spec} not applied: resuming this workdir's own checkpoint (a resume takes "
                  "priority; --restart moves the run aside to start again from init_from)", file=self.log)
            return
        init_from.initialize(self.train_step.model, spec, self.cfg.model.init_strict, self.save_dir, self.log,
                             self.cfg)

    def run(self) -> dict:
        """Train all remaining units, then evaluate; returns the final metrics dict (also metrics.json).
        Releases the workdir's lock when it returns or raises."""
        try:
            return self._run()
        finally:
            self.lock.release()

    def _run(self) -> dict:
        train_step, tcfg = self.train_step, self.cfg.train
        resume = self._restore()
        self._init_from(resume)
        start_unit, start_step = (int(v) for v in self.position.numpy())
        if start_unit >= len(self.units):
            print(f"training in {self.workdir} already finished ({len(self.units)} epoch units, "
                  f"global step {int(train_step.global_step.numpy())})", file=self.log)
        for unit in self.units[start_unit:]:
            first_step = start_step if unit.index == start_unit else 0
            # Mid-epoch resume restores the saved iterator state where the checkpoint has one; a
            # distributed iterator cannot be checkpointed, nor one over data.cache (see
            # TrainStep.iterator_saveable), so there the unit's seeded dataset skips
            # the batches already trained on (the same batches: the unit's shuffle and augmentation are
            # seeded; with data.deterministic the interleave order is fixed too).
            restore_iterator = bool(first_step) and train_step.iterator_saveable and RunCheckpoints.has_iterator(resume)
            ds = train_step.build_dataset(unit, skip_steps=0 if restore_iterator else first_step)
            iterator = iter(train_step.distribute(ds))
            if restore_iterator:
                RunCheckpoints.restore_iterator(iterator, resume)
            for hook in self.hooks:
                hook.on_epoch_begin(unit, first_step)
            start_global = int(train_step.global_step.numpy()) - first_step
            sums: Dict[str, float] = {}
            n = 0
            for index in range(first_step, unit.steps):
                lr = unit.learning_rate(index)
                train_step.set_learning_rate(lr)
                try:
                    image, depth = next(iterator)
                except tf.errors.DataLossError as e:  # name the damaged shard (TensorFlow's message does not)
                    raise pipeline.read_error(e, train_step.data_dir, train_step.manifest,
                                              self.cfg.data.train_split, unit.chunks) from None
                loss, terms, finite = train_step(image, depth)
                global_step = int(train_step.global_step.numpy())
                loss_value = float(loss)
                self.nonfinite.check(bool(finite), global_step, loss_value)
                values = {"loss": loss_value, **{k: float(v) for k, v in terms.items()}}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                self.position.assign([unit.index, index + 1])
                log_step = global_step % tcfg.log_every_steps == 0 or index + 1 == unit.steps
                end = StepEnd(unit, index, global_step, lr, values, image, depth, iterator, log_step)
                for hook in self.hooks:
                    hook.on_step_end(end)
            self.position.assign([unit.index + 1, 0])
            record = {"unit": unit.index, "phase": unit.phase_name, "phase_index": unit.phase_index,
                      "chunk": unit.chunk_label, "epoch": unit.epoch, "start_step": start_global,
                      "end_step": int(train_step.global_step.numpy()), "lr_first": unit.learning_rate(0),
                      "lr_last": unit.learning_rate(unit.steps - 1),
                      "train": {k: v / max(n, 1) for k, v in sums.items()}}
            end = EpochEnd(unit, record, last_of_run=unit.index == len(self.units) - 1)
            for hook in self.hooks:
                hook.on_epoch_end(end)
        self.writer.flush()
        if not self.is_chief:
            return {}
        self.history.plot(os.path.join(self.workdir, "loss_curve.png"))
        return self.validator.final_metrics(int(train_step.global_step.numpy()), self.workdir, self.log)
