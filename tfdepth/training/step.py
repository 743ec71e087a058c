"""The train step: model, loss, optimiser, precision policy and strategy of a run, built once from the config.

:class:`TrainStep` is what the loop (:mod:`tfdepth.training.loop`), the benchmark
(:mod:`tfdepth.bench`) and the tests drive: call it on a batch to run one optimisation step, ask it
for an epoch unit's batches (:meth:`TrainStep.build_dataset`, :meth:`TrainStep.distribute`), set the
learning rate between steps. A step is forward + loss + backward (under ``jit_compile`` with XLA),
gradients summed over replicas, coupled weight decay added (``weight_decay_mode: coupled``), a
finiteness check and the optimiser update, skipped when the loss or a gradient is not finite (with
``mixed_float16`` the loss-scale optimiser skips and adapts); with ``lr_multipliers`` each model
part's update is scaled by its factor (:mod:`tfdepth.training.optimizers`).
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import keras
import tensorflow as tf

from tfdepth.config import ExperimentConfig
from tfdepth.data import pipeline
from tfdepth.losses import build_loss
from tfdepth.models.build import build_model, model_parts
from tfdepth.sid import sid_bins
from tfdepth.training.optimizers import (apply_gradients, build_optimizer, coupled_decay_gradients, part_factors,
                                         set_learning_rate)
from tfdepth.training.plan import EpochUnit
from tfdepth.training.strategy import make_strategy

# A loss function: (model outputs, depth) -> (per-example loss [B], {term name: per-example term [B]}).
LossFn = Callable[[dict, tf.Tensor], Tuple[tf.Tensor, Dict[str, tf.Tensor]]]


class TrainStep:
    """One run's model, loss, optimiser, global step and data, and the compiled step over them.

    Building it (in this order): makes the strategy unless one is given (first: a multi-worker
    strategy must configure collectives before any other TensorFlow op), turns on op determinism
    (``train.deterministic``), seeds Python / NumPy / TensorFlow (``train.seed``), sets the Keras
    precision policy (``train.mixed_precision``), resolves the dataset (generating the synthetic
    one on first use) and builds model, optimiser and ``global_step`` in the strategy's scope.

    Public attributes: ``cfg``, ``strategy``, ``distributed``, ``model``, ``optimizer``,
    ``loss_fn``, ``global_step`` (int64 variable, incremented by every call), ``data_dir``,
    ``manifest`` and ``iterator_saveable`` (whether a mid-epoch checkpoint can hold the data iterator:
    not a distributed one, which cannot be saved, nor one over ``data.cache``, whose state would carry
    the decoded split; a resumed epoch then skips the batches already trained on).
    """

    def __init__(self, cfg: ExperimentConfig, strategy: Optional[tf.distribute.Strategy] = None):
        tcfg = cfg.train
        self.cfg = cfg
        self.strategy = strategy if strategy is not None else make_strategy(tcfg.strategy)
        self.distributed = tcfg.strategy != "default"
        self.iterator_saveable = not self.distributed and not cfg.data.cache
        self._cached = {}  # chunks -> pipeline.cached_samples (data.cache)
        if tcfg.deterministic:
            tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(tcfg.seed)
        keras.mixed_precision.set_global_policy(tcfg.mixed_precision)
        self.data_dir, self.manifest = pipeline.resolve_dataset(cfg.data)
        with self.strategy.scope():
            self.model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
            self.optimizer = build_optimizer(tcfg.optimizer, tcfg.phases[0].schedule.lr, tcfg.grad_accum_steps,
                                             tcfg.mixed_precision, variables=self.model.trainable_variables)
            self.optimizer.build(self.model.trainable_variables)
            self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.loss_fn: LossFn = build_loss(cfg.loss, max_depth_m=cfg.data.max_depth_m,
                                          sid_bins=sid_bins(cfg.model.decoder_args))
        self._function = self._compile()

    # ---------------------------------------------------------------------------------------------
    def __call__(self, image, depth) -> Tuple[tf.Tensor, Dict[str, tf.Tensor], tf.Tensor]:
        """One optimisation step on a global batch (a distributed batch under a strategy).

        Returns ``(loss, {term: value}, finite)``: the loss and its terms averaged over the global
        batch, and whether the update was applied (False: non-finite loss or gradients, skipped).
        """
        return self._function(image, depth)

    def set_learning_rate(self, lr: float) -> None:
        """The learning rate of the next steps."""
        set_learning_rate(self.optimizer, lr)

    def set_loss(self, loss_fn: LossFn) -> None:
        """Train on ``loss_fn`` from the next step on (the step is traced again)."""
        self.loss_fn = loss_fn
        self._function = self._compile()

    def concrete_function(self, image, depth):
        """The step traced for ``image`` / ``depth`` (tensors or ``tf.TensorSpec``s): its graph."""
        return self._function.get_concrete_function(image, depth)

    def tracing_count(self) -> int:
        """How often the step has been traced (1 after the first call when shapes stay the same)."""
        return int(self._function.experimental_get_tracing_count())

    # ---------------------------------------------------------------------------------------------
    def build_dataset(self, unit: EpochUnit, skip_steps: int = 0) -> tf.data.Dataset:
        """The unit's batches (shuffle and augmentation seeded by the unit), without its first
        ``skip_steps`` batches; sharded by element under a strategy."""
        seed = self.cfg.train.seed * 100003 + unit.index
        data, split = self.cfg.data, self.cfg.data.train_split
        cached = None
        if data.cache:
            key = None if unit.chunks is None else tuple(unit.chunks)
            if key not in self._cached:
                try:
                    self._cached[key] = pipeline.cached_samples(data, split, unit.chunks, self.data_dir, self.manifest)
                except tf.errors.DataLossError as e:  # name the damaged shard (TensorFlow's message does not)
                    raise pipeline.read_error(e, self.data_dir, self.manifest, split, unit.chunks) from None
            cached = self._cached[key]
        ds = pipeline.build_dataset(data, split, self.cfg.train.batch_size, training=True, chunks=unit.chunks,
                                    seed=seed, data_dir=self.data_dir, manifest=self.manifest,
                                    canonical_focal_px=pipeline.canonical_focal(self.cfg), cached=cached)
        ds = ds.take(unit.steps).skip(skip_steps)
        if self.distributed:
            # Shard by element: a chunk may hold fewer shard files than there are workers.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            ds = ds.with_options(options)
        return ds

    def distribute(self, ds: tf.data.Dataset):
        """``ds`` as the step takes it: the strategy's distributed dataset, or ``ds`` itself."""
        return self.strategy.experimental_distribute_dataset(ds) if self.distributed else ds

    # ---------------------------------------------------------------------------------------------
    def _compile(self):
        model, optimizer, strategy, loss_fn = self.model, self.optimizer, self.strategy, self.loss_fn
        global_step = self.global_step
        global_batch = self.cfg.train.batch_size
        variables = model.trainable_variables
        scale_loss = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        opt_cfg = self.cfg.train.optimizer
        multipliers = {k: v for k, v in opt_cfg.lr_multipliers.items() if v != 1.0}
        factors = part_factors(variables, model_parts(model), multipliers) if multipliers else None

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
            grads = coupled_decay_gradients(opt_cfg, grads, variables, optimizer.dynamic_scale if scale_loss else None)
            if scale_loss:  # LossScaleOptimizer unscales, skips non-finite steps and adapts the scale
                apply_gradients(optimizer, grads, variables, factors)
                finite = tf.math.is_finite(loss)
            else:
                finite = tf.math.is_finite(loss)
                for g in grads:
                    if g is not None:
                        finite = finite & tf.reduce_all(tf.math.is_finite(g))

                def apply():
                    apply_gradients(optimizer, grads, variables, factors)
                    return tf.constant(True)

                tf.cond(finite, apply, lambda: tf.constant(False))
            global_step.assign_add(1)
            return loss, terms, finite

        return train_step
