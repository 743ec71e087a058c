"""The custom training loop: phases / curriculum chunks, tf.distribute, mixed precision, XLA, resume.

A run is a flat list of *epoch units* derived from the phases (see :func:`plan_units`): a phase with
``chunks: each`` contributes ``epochs`` units on chunk 0, then ``epochs`` on chunk 1, ...; a phase with
``chunks: all`` contributes ``epochs`` units over all training shards. The position of a run is
``(unit index, step within unit)``; checkpoints store it with the model, optimiser, global step and
(mid-unit) the tf.data iterator, so a resumed run continues exactly where the checkpoint was taken.
The learning rate of a step is the phase's schedule at the step's index within its phase.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from tfdepth.errors import UserError
from tfdepth.config import ExperimentConfig, save_config, to_dict
from tfdepth.data import pipeline, shards
from tfdepth.training import checkpoint as ckpt_lib
from tfdepth.training.logging import History, ProgressBar, write_image_summary, write_scalars
from tfdepth.training.optimizers import build_optimizer, set_learning_rate
from tfdepth.training.schedules import build_schedule


# The data iterator's entry in a mid-epoch checkpoint of a single-device run.
ITERATOR_KEY = "iterator/.ATTRIBUTES/ITERATOR_STATE"
# Config keys that may change between a run and its resumption (they do not change what is trained).
RESUME_SAFE_KEYS = ("eval.", "train.log_every_steps", "train.image_summary_every_steps",
                    "train.checkpoint_every_steps", "data.parallel_calls")


class TrainingError(UserError):
    """Training cannot continue (config mismatch on resume, too many non-finite steps, ...)."""


@dataclasses.dataclass
class EpochUnit:
    index: int
    phase_index: int
    phase_name: str
    chunks: Optional[List[int]]  # None = all chunks
    chunk_label: str  # "all" or the chunk id
    epoch: int  # epoch within (phase, chunk), 0-based
    steps: int
    phase_step_offset: int  # index of this unit's first step within its phase
    phase_steps: int  # steps of the whole phase (schedule length)
    schedule: Callable[[int], float]


def plan_units(cfg: ExperimentConfig, manifest: dict) -> List[EpochUnit]:
    """The ordered epoch units of the run, with step counts from the manifest's shard counts."""
    tcfg = cfg.train
    split = cfg.data.train_split
    num_chunks = shards.num_chunks(manifest, split)
    units: List[EpochUnit] = []
    for p, phase in enumerate(tcfg.phases):
        if phase.chunks == "each":
            groups = [[c] for c in range(num_chunks)]
        elif phase.chunks == "all":
            groups = [None]
        else:
            raise ValueError(f"train.phases[{p}].chunks must be 'all' or 'each', got {phase.chunks!r}")
        phase_units = []
        offset = 0
        for group in groups:
            steps = pipeline.steps_per_epoch(manifest, split, tcfg.batch_size, group)
            if tcfg.steps_per_epoch:
                steps = min(steps, tcfg.steps_per_epoch)
            if steps == 0:
                raise ValueError(
                    f"phase {phase.name!r}: chunk {group} of split {split!r} has fewer samples than one batch "
                    f"({tcfg.batch_size})")
            for e in range(phase.epochs):
                phase_units.append(dict(chunks=group, epoch=e, steps=steps, offset=offset))
                offset += steps
        schedule = build_schedule(phase.schedule.name, phase.schedule.lr, offset, phase.schedule.args)
        for u in phase_units:
            units.append(EpochUnit(
                index=len(units), phase_index=p, phase_name=phase.name, chunks=u["chunks"],
                chunk_label="all" if u["chunks"] is None else str(u["chunks"][0]), epoch=u["epoch"],
                steps=u["steps"], phase_step_offset=u["offset"], phase_steps=offset, schedule=schedule))
    return units


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"train.strategy must be default, mirrored or multi_worker, got {name!r}")


class Trainer:
    """Owns model, optimiser, data and checkpoints of one workdir; :meth:`run` trains to the end."""

    def __init__(self, cfg: ExperimentConfig, workdir: str, log_stream=None):
        self.cfg = cfg
        self.workdir = workdir
        self.log = log_stream or sys.stderr
        tcfg = cfg.train
        # First: MultiWorkerMirroredStrategy must configure collectives before any other TF op runs.
        self.strategy = make_strategy(tcfg.strategy)
        self.distributed = tcfg.strategy != "default"
        os.makedirs(workdir, exist_ok=True)
        self._check_or_save_config()

        if tcfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(tcfg.seed)
        keras.mixed_precision.set_global_policy(tcfg.mixed_precision)

        self.is_chief = _is_chief(self.strategy)
        # Every worker of a multi-worker run saves (saving is collective); non-chief workers write to
        # a scratch directory of their own, the chief to the workdir.
        self.save_dir = workdir if self.is_chief else os.path.join(
            workdir, f".worker{self.strategy.cluster_resolver.task_id}")
        self.data_dir, self.manifest = pipeline.resolve_dataset(cfg.data)
        self.units = plan_units(cfg, self.manifest)

        from tfdepth.losses import build_loss
        from tfdepth.models.build import build_model

        with self.strategy.scope():
            self.model = build_model(cfg.model, cfg.data.input_size)
            self.optimizer = build_optimizer(tcfg.optimizer, tcfg.phases[0].schedule.lr, tcfg.grad_accum_steps,
                                             tcfg.mixed_precision)
            self.optimizer.build(self.model.trainable_variables)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            # (unit index, step within unit) of the next step to run.
            self.position = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="position")
            self.best_value = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_value")
        self.loss_fn = build_loss(cfg.loss)
        self.checkpoint = tf.train.Checkpoint(**self._checkpointed())
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(self.save_dir, ckpt_lib.CHECKPOINT_DIR),
                                                  max_to_keep=tcfg.keep_checkpoints)
        self.best_manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(self.save_dir, ckpt_lib.BEST_DIR),
                                                       max_to_keep=1)
        self.history = History(os.path.join(self.save_dir, "history.json"))
        self.writer = tf.summary.create_file_writer(os.path.join(self.save_dir, "tensorboard"))
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self._train_step = self._make_train_step()
        self._predict_fn = None  # built by evaluate() on first use

    # ---------------------------------------------------------------------------------------------
    def _check_or_save_config(self) -> None:
        path = os.path.join(self.workdir, ckpt_lib.CONFIG_NAME)
        if os.path.isfile(path):
            from tfdepth.config import load_config

            saved = to_dict(load_config(path))
            current = to_dict(self.cfg)
            diffs = sorted(k for k in _diff_keys(saved, current) if not k.startswith(RESUME_SAFE_KEYS))
            if diffs and tf.train.latest_checkpoint(os.path.join(self.workdir, ckpt_lib.CHECKPOINT_DIR)):
                raise TrainingError(
                    f"{self.workdir} holds a run with a different config (keys differ: {', '.join(diffs)}); "
                    "use a new --workdir or the same config to resume")
        save_config(self.cfg, path)

    def _make_train_step(self):
        model, optimizer, strategy, loss_fn = self.model, self.optimizer, self.strategy, self.loss_fn
        global_batch = self.cfg.train.batch_size
        variables = model.trainable_variables
        scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)

        def forward_backward(image, depth):
            with tf.GradientTape() as tape:
                outputs = model(image, training=True)
                per_example, terms = loss_fn(outputs, depth)
                loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                scaled = optimizer.scale_loss(loss) if scale_loss else loss
            grads = tape.gradient(scaled, variables)
            terms = {k: tf.nn.compute_average_loss(v, global_batch_size=global_batch) for k, v in terms.items()}
            return loss, terms, grads

        if self.cfg.train.jit_compile:
            # XLA for forward + backward; gradients are applied outside the compiled function, which
            # avoids the known MirroredStrategy + jit_compile + LossScaleOptimizer failures.
            forward_backward = tf.function(forward_backward, jit_compile=True)

        @tf.function
        def train_step(image, depth):
            # Per-replica forward/backward; gradients are summed across replicas (each replica's loss
            # is already divided by the global batch) and applied once in cross-replica context, where
            # the skip of a non-finite step is plain control flow (no merge_call inside a cond).
            loss, terms, grads = strategy.run(forward_backward, args=(image, depth))
            reduce = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            loss = reduce(loss)
            terms = {k: reduce(v) for k, v in terms.items()}
            grads = [None if g is None else reduce(g) for g in grads]
            if scale_loss:  # LossScaleOptimizer unscales, skips non-finite steps and adapts the scale
                optimizer.apply(grads, variables)
                finite = tf.math.is_finite(loss)
            else:
                finite = tf.math.is_finite(loss)
                for g in grads:
                    if g is not None:
                        finite = finite & tf.reduce_all(tf.math.is_finite(g))

                def apply():
                    optimizer.apply(grads, variables)
                    return tf.constant(True)

                tf.cond(finite, apply, lambda: tf.constant(False))
            self.global_step.assign_add(1)
            return loss, terms, finite

        return train_step

    # ---------------------------------------------------------------------------------------------
    def _dataset(self, unit: EpochUnit, skip_steps: int = 0) -> tf.data.Dataset:
        """The unit's batches (seeded by the unit), without its first ``skip_steps`` batches."""
        seed = self.cfg.train.seed * 100003 + unit.index
        ds = pipeline.build_dataset(self.cfg.data, self.cfg.data.train_split, self.cfg.train.batch_size, training=True,
                                    chunks=unit.chunks, seed=seed, data_dir=self.data_dir, manifest=self.manifest)
        ds = ds.take(unit.steps).skip(skip_steps)
        if self.distributed:
            # Shard by element: a chunk may hold fewer shard files than there are workers.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds = ds.with_options(options)
        return ds

    def _checkpointed(self) -> dict:
        """The objects every checkpoint holds (mid-epoch checkpoints add the data iterator)."""
        return dict(model=self.model, optimizer=self.optimizer, global_step=self.global_step,
                    position=self.position, best_value=self.best_value)

    def _restore(self) -> None:
        latest = self.manager.latest_checkpoint
        if not latest:
            return
        # Restore through a root of its own: a restore leaves the checkpoint's objects that are not
        # attached yet (the saved tf.data iterator) as deferred restorations on the root, and
        # ``self.checkpoint`` would later apply that old iterator state to whichever iterator is
        # attached under the same name at the next mid-epoch save. The run's own iterator is restored
        # explicitly in :meth:`run`.
        tf.train.Checkpoint(**self._checkpointed()).restore(latest).expect_partial()
        unit, step = (int(v) for v in self.position.numpy())
        self.history.truncate_to_step(int(self.global_step.numpy()))
        print(f"resumed from {latest}: global step {int(self.global_step.numpy())}, unit {unit} step {step}",
              file=self.log)
        self._resume_checkpoint = latest

    def _save(self, iterator=None) -> str:
        """Checkpoint (numbered by global step) and history; a mid-epoch save also holds ``iterator``."""
        if iterator is not None:
            self.checkpoint.iterator = iterator
        try:
            path = self.manager.save(checkpoint_number=int(self.global_step.numpy()))
        finally:
            if iterator is not None:
                del self.checkpoint.iterator
        self.history.save()
        return path

    def run(self) -> dict:
        """Train all remaining units, then evaluate; returns the final metrics dict (also metrics.json)."""
        self._resume_checkpoint = None
        self._restore()
        start_unit, start_step = (int(v) for v in self.position.numpy())
        if start_unit >= len(self.units):
            print(f"training in {self.workdir} already finished ({len(self.units)} epoch units, "
                  f"global step {int(self.global_step.numpy())})", file=self.log)
        tcfg = self.cfg.train
        ckpt_every = tcfg.checkpoint_every_steps
        for unit in self.units[start_unit:]:
            first_step = start_step if unit.index == start_unit else 0
            # Mid-epoch resume restores the saved iterator state where the checkpoint has one; a
            # distributed iterator cannot be checkpointed, so there the unit's seeded dataset skips
            # the batches already trained on (the same batches: the unit's shuffle and augmentation are
            # seeded; with data.deterministic the interleave order is fixed too).
            restore_iterator = bool(first_step) and not self.distributed and ITERATOR_KEY in {
                name for name, _ in tf.train.list_variables(self._resume_checkpoint)}
            ds = self._dataset(unit, skip_steps=0 if restore_iterator else first_step)
            iterator = iter(self.strategy.experimental_distribute_dataset(ds) if self.distributed else ds)
            if restore_iterator:
                tf.train.Checkpoint(iterator=iterator).restore(self._resume_checkpoint).expect_partial()
            label = (f"[{unit.phase_name} {unit.phase_index + 1}/{len(tcfg.phases)} chunk {unit.chunk_label} "
                     f"epoch {unit.epoch + 1}]")
            bar = ProgressBar(unit.steps, label, tcfg.batch_size, tcfg.log_every_steps, self.log)
            start_global = int(self.global_step.numpy()) - first_step
            sums: Dict[str, float] = {}
            n = 0
            for step in range(first_step, unit.steps):
                lr = unit.schedule(unit.phase_step_offset + step)
                set_learning_rate(self.optimizer, lr)
                image, depth = next(iterator)
                loss, terms, finite = self._train_step(image, depth)
                gstep = int(self.global_step.numpy())
                loss_value = float(loss)
                self._track_nonfinite(bool(finite), gstep, loss_value)
                values = {"loss": loss_value, **{k: float(v) for k, v in terms.items()}}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                self.position.assign([unit.index, step + 1])
                bar.update(step + 1, values, lr)
                if gstep % tcfg.log_every_steps == 0 or step + 1 == unit.steps:
                    self.history.log_step({"step": gstep, "lr": lr, "phase": unit.phase_name,
                                           "chunk": unit.chunk_label, **values})
                    write_scalars(self.writer, gstep, {**values, "lr": lr,
                                                       "images_per_s": bar.images_per_second(step + 1)}, "train/")
                summary_every = tcfg.image_summary_every_steps
                if not self.distributed and summary_every and gstep % summary_every == 0:
                    pred = self.model(image, training=False)["depth"]
                    write_image_summary(self.writer, gstep, image, pred, depth, self.cfg.data.max_depth_m)
                if ckpt_every and gstep % ckpt_every == 0 and step + 1 < unit.steps:
                    self._save(None if self.distributed else iterator)
            self.position.assign([unit.index + 1, 0])
            record = {"unit": unit.index, "phase": unit.phase_name, "phase_index": unit.phase_index,
                      "chunk": unit.chunk_label, "epoch": unit.epoch, "start_step": start_global,
                      "end_step": int(self.global_step.numpy()), "lr_first": unit.schedule(unit.phase_step_offset),
                      "lr_last": unit.schedule(unit.phase_step_offset + unit.steps - 1),
                      "train": {k: v / max(n, 1) for k, v in sums.items()},
                      "images_per_s": bar.images_per_second(unit.steps)}
            is_last = unit.index == len(self.units) - 1
            if tcfg.validate_every_epochs and ((unit.index + 1) % tcfg.validate_every_epochs == 0 or is_last):
                val = self.evaluate(max_images=self.cfg.eval.max_images)["overall"]
                record["val"] = val
                write_scalars(self.writer, record["end_step"], val, "val/")
                print(f"{label} validation: " + " ".join(f"{k} {v:.4f}" for k, v in val.items()
                                                         if k in ("abs_rel", "rmse", "d1", "mae")), file=self.log)
                value = val.get(tcfg.best_metric)
                if value is not None and value < float(self.best_value.numpy()):
                    self.best_value.assign(value)
                    self.best_manager.save(checkpoint_number=record["end_step"])
            self.history.log_epoch(record)
            self._save()
        self.writer.flush()
        if not self.is_chief:
            return {}
        self.history.plot(os.path.join(self.workdir, "loss_curve.png"))
        return self.final_metrics()

    def _track_nonfinite(self, finite: bool, step: int, loss: float) -> None:
        if finite:
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        print(f"step {step}: non-finite loss or gradients ({loss}); step skipped "
              f"({self.nonfinite_in_a_row} in a row, {self.nonfinite_total} in total)", file=self.log)
        if self.nonfinite_in_a_row >= self.cfg.train.max_consecutive_nonfinite:
            self._save()
            raise TrainingError(
                f"{self.nonfinite_in_a_row} consecutive non-finite steps (train.max_consecutive_nonfinite="
                f"{self.cfg.train.max_consecutive_nonfinite}); last checkpoint saved in {self.workdir}. Lower the "
                "learning rate, check the data for bad depth values, or use float32")

    # ---------------------------------------------------------------------------------------------
    def _eval_dataset(self) -> tf.data.Dataset:
        return pipeline.build_eval_dataset(self.cfg.data, self.cfg.eval, self.cfg.data.val_split,
                                           data_dir=self.data_dir, manifest=self.manifest)

    def evaluate(self, max_images: Optional[int] = None) -> dict:
        from tfdepth.metrics import evaluate_model

        if self._predict_fn is None:
            # One function for the whole run with an unknown batch axis: no retrace per validation or
            # for a smaller last batch.
            model = self.model
            size = self.cfg.data.input_size
            shape = [None, int(size[0]), int(size[1]), 3] if size else [None, None, None, 3]

            @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
            def predict(images):
                return tf.cast(model(images, training=False)["depth"], tf.float32)

            self._predict_fn = predict
        ecfg = self.cfg.eval
        return evaluate_model(self._predict_fn, self._eval_dataset(), ecfg.protocol, crop=ecfg.crop,
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

    def final_metrics(self) -> dict:
        """Model vs the constant-median baseline on the validation split; writes ``metrics.json``."""
        from tfdepth.metrics import evaluate_model

        model_result = self.evaluate(max_images=self.cfg.eval.max_images)
        median = self.baseline_depth_m()

        def baseline(images):
            shape = tf.shape(images)
            return tf.fill([shape[0], shape[1], shape[2], 1], tf.constant(median, tf.float32))

        ecfg = self.cfg.eval
        base_result = evaluate_model(baseline, self._eval_dataset(), ecfg.protocol, crop=ecfg.crop,
                                     max_images=ecfg.max_images, pooled=ecfg.pooled)
        keys = ("abs_rel", "rmse", "log10", "d1", "d2", "d3", "mae")
        metrics = {
            "model": {k: model_result["overall"][k] for k in keys},
            "baseline": {k: base_result["overall"][k] for k in keys},
            "baseline_depth_m": median,
            "images": model_result["count"],
            "protocol": self.cfg.eval.protocol,
            "split": self.cfg.data.val_split,
            "global_step": int(self.global_step.numpy()),
        }
        path = os.path.join(self.workdir, "metrics.json")
        with open(path + ".tmp", "w") as f:
            json.dump(metrics, f, indent=1)
        os.replace(path + ".tmp", path)
        print("metrics (" + self.cfg.data.val_split + f", {metrics['images']} images): "
              + " ".join(f"{k} {metrics['model'][k]:.4f} (baseline {metrics['baseline'][k]:.4f})" for k in keys),
              file=self.log)
        return metrics


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def _diff_keys(a, b, prefix: str = "") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
        return out
    return [] if a == b else [prefix]
