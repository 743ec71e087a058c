"""The ``train`` section: images/s of the real training step (:class:`tfdepth.training.step.TrainStep`).

Variants ``graph`` (``tf.function``, float32: the headline figure), ``graph_end_to_end`` (the same
step fed by the real tf.data pipeline), ``xla`` (``train.jit_compile``) and mixed precision where the
device supports it; all are built and warmed up first, then timed in interleaved rounds together with
the matmul yardstick, so that they see the same machine load. Achieved GFLOP/s counts a training step
as 3x the forward FLOPs (2 per multiply-add, :func:`tfdepth.models.flops.forward_flops`).
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
from typing import Dict, List, Optional, Sequence

from tfdepth.bench import BenchError
from tfdepth.bench.machine import mixed_precision_support
from tfdepth.bench.matmul import Matmul
from tfdepth.bench.profile import graph_op_counts, profile_summary
from tfdepth.bench.timing import (Budget, RepeatedCalls, interleaved_rounds, inverted, scaled, short_error,
                                  summarize, timed)

TRAIN_VARIANTS = ("xla", "mixed_float16", "mixed_bfloat16")  # besides "graph", which always runs
TRAIN_FLOPS_FACTOR = 3  # a training step = forward + backward (~2x forward) = 3x the forward FLOPs


def bench_config(cfg, **train_changes):
    """A copy of ``cfg`` for benchmarking: random-initialised encoder, train settings replaced."""
    model = dataclasses.replace(cfg.model, encoder_weights="none")
    train = dataclasses.replace(cfg.train, **train_changes)
    return dataclasses.replace(cfg, model=model, train=train)


def forward_gflops(model) -> Optional[float]:
    from tfdepth.models.flops import forward_flops

    try:
        return forward_flops(model) / 1e9
    except ValueError:
        return None


def build_train_step(cfg):
    """A :class:`TrainStep` of ``cfg`` (sets the config's precision policy; :func:`release` resets it)."""
    from tfdepth.training.step import TrainStep

    return TrainStep(cfg)


def release() -> None:
    """After a train step is dropped: float32 policy again, memory collected."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    gc.collect()


def run_train_step(train_step, image, depth):
    """One step; ``(loss, finite)`` as Python values (waits for the step to finish)."""
    loss, _, finite = train_step(image, depth)
    return float(loss), bool(finite)


def one_train_batch(cfg, data_dir, manifest):
    """One training batch (image, depth) of the configured pipeline, kept in memory."""
    from tfdepth.data import pipeline

    ds = pipeline.build_dataset(cfg.data, cfg.data.train_split, cfg.train.batch_size, training=True, seed=0,
                                data_dir=data_dir, manifest=manifest)
    for image, depth in ds.take(1):
        return image, depth
    raise BenchError(f"split {cfg.data.train_split!r} of {data_dir} has fewer samples than one batch "
                     f"({cfg.train.batch_size})")


class TrainVariant(RepeatedCalls):
    """One training configuration, built and warmed up: a :class:`TrainStep`, traced (``trace_s``), run
    once (``first_step_s``: graph optimisation / XLA compilation + one step) and once more untimed
    (memory and kernel caches), whose time sets the calls per timed run."""

    def __init__(self, name: str, cfg, image, depth, min_run_s: float):
        self.name, self.cfg, self.image, self.depth = name, cfg, image, depth
        self.batch = int(image.shape[0])
        self.train_step, self.build_s = timed(lambda: build_train_step(cfg))
        try:
            _, self.trace_s = timed(lambda: self.train_step.concrete_function(image, depth))
            (loss, finite), self.first_step_s = timed(self.call)
            self.loss_finite = bool(finite) and math.isfinite(loss)
            _, self.second_step_s = timed(self.call)
        except Exception:
            self.close()
            raise
        self.calls_per_run = max(1, int(math.ceil(min_run_s / max(self.second_step_s, 1e-9))))
        self.runs: List[float] = []

    def call(self):
        return run_train_step(self.train_step, self.image, self.depth)

    def estimate_s(self) -> float:
        return self._estimate_s(fallback_call_s=self.second_step_s)

    def result(self, cut: bool) -> dict:
        seconds = summarize(self.runs)
        return {
            "images_per_s": inverted(seconds, self.batch), "step_s": seconds,
            "build_s": round(self.build_s, 3), "trace_s": round(self.trace_s, 3),
            "first_step_s": round(self.first_step_s, 3),
            "compile_s": round(self.trace_s + max(0.0, self.first_step_s - seconds["median"]), 3),
            "steps_per_run": self.calls_per_run, "cut_by_budget": cut, "batch_size": self.batch,
            "jit_compile": bool(self.cfg.train.jit_compile), "mixed_precision": self.cfg.train.mixed_precision,
            "loss_finite": self.loss_finite, "tracing_count": self.train_step.tracing_count(),
            "forward_gflops_per_image": forward_gflops(self.train_step.model),
        }

    def close(self) -> None:
        self.train_step = None
        release()


def first_unit(train_step):
    """The first epoch unit of the train step's run (the batches an end-to-end measurement takes)."""
    from tfdepth.training.plan import plan_units

    # speed does not depend on the curriculum's chunk count: a recipe's min_chunks only warns here
    return plan_units(train_step.cfg, train_step.manifest, allow_fewer_chunks=True)[0]


class EndToEnd:
    """The graph variant's step fed by the real pipeline (``next(iterator)`` + step, as the training loop)."""

    def __init__(self, variant: TrainVariant, unit):
        self.variant = variant
        self.iterator = iter(variant.train_step.build_dataset(unit))
        self.batches_left = unit.steps
        _, self.first_step_s = timed(self.call)  # fills the shuffle buffer / prefetch
        self.call()
        self.runs: List[float] = []

    def call(self):
        self.batches_left -= 1
        image, depth = next(self.iterator)
        return run_train_step(self.variant.train_step, image, depth)

    def run_once(self) -> None:
        if self.batches_left <= 0:
            return
        _, seconds = timed(self.call)
        self.runs.append(seconds)

    def estimate_s(self) -> float:
        return self.variant.estimate_s()

    def result(self, cut: bool) -> dict:
        seconds = summarize(self.runs)
        return {"images_per_s": inverted(seconds, self.variant.batch), "step_s": seconds,
                "first_step_s": round(self.first_step_s, 3), "cut_by_budget": cut}


def measure_train_variant(cfg, image, depth, repeats: int, min_run_s: float, budget: Optional[Budget]) -> dict:
    """Warm-up + timed runs of the training step of one config (used when only the input section runs)."""
    variant = TrainVariant("graph", cfg, image, depth, min_run_s)
    try:
        cut = interleaved_rounds([variant], repeats, budget)
        return variant.result(cut)
    finally:
        variant.close()


def bench_train(cfg, machine: dict, matmul_size: int, repeats: int, min_run_s: float, budget: Budget,
                data, profile_dir: Optional[str] = None, extra_variants: Sequence[str] = TRAIN_VARIANTS,
                log=print) -> dict:
    """Images/s of the training step: ``graph`` (float32, no XLA) always, with ``graph_end_to_end``
    beside it; ``extra_variants`` of xla, mixed_float16, mixed_bfloat16 where the device supports them
    and the section's time allows. All variants are built and warmed up first, then timed in
    interleaved rounds, together with the matmul yardstick (so ``fraction_of_matmul`` compares rates
    measured under the same machine load)."""
    import tensorflow as tf

    image, depth = data
    results: Dict[str, dict] = {}
    warmed: Dict[str, TrainVariant] = {}
    e2e: Optional[EndToEnd] = None
    try:
        log(f"train: graph mode, float32, batch {cfg.train.batch_size}: trace + warm-up ...")
        graph = warmed["graph"] = TrainVariant("graph", bench_config(cfg, jit_compile=False, mixed_precision="float32"),
                                               image, depth, min_run_s)
        log(f"train: graph trace {graph.trace_s:.1f} s, first step {graph.first_step_s:.1f} s, "
            f"second {graph.second_step_s:.2f} s")
        warm_s = graph.build_s + graph.trace_s + graph.first_step_s
        step_s = graph.second_step_s * graph.calls_per_run
        plans = [("xla", dict(jit_compile=True, mixed_precision="float32"), None)]
        plans += [(p, dict(jit_compile=False, mixed_precision=p), reason)
                  for p, reason in mixed_precision_support(machine).items()]
        # Time for the rounds of graph, end-to-end and matmul comes first.
        reserve = repeats * (2 * step_s + 2 * min_run_s) * 1.1 + 10.0
        for name, changes, reason in plans:
            if name not in extra_variants:
                results[name] = {"skipped": "not requested (--train-variants)"}
                continue
            if reason:
                results[name] = {"skipped": reason}
                continue
            # XLA compiles forward + backward (~1.5x the graph warm-up); a variant's step may be slower.
            predicted = warm_s * (1.5 if name == "xla" else 1.1) + (repeats + 1) * step_s * 1.5
            if not budget.fits(predicted + reserve):
                results[name] = {"skipped": budget.skip_reason(predicted + reserve)}
                log(f"train: {name} skipped ({results[name]['skipped']})")
                continue
            log(f"train: {name}: trace + warm-up ...")
            try:
                variant = warmed[name] = TrainVariant(name, bench_config(cfg, **changes), image, depth, min_run_s)
                reserve += repeats * variant.estimate_s() * 1.1
                log(f"train: {name} trace {variant.trace_s:.1f} s, first step {variant.first_step_s:.1f} s, "
                    f"second {variant.second_step_s:.2f} s")
            except Exception as e:  # a variant the device cannot run: report it, keep the others
                results[name] = {"error": short_error(e)}
                log(f"train: {name} failed: {results[name]['error']}")
        matmul = Matmul(matmul_size, min_run_s)
        measured: List = list(warmed.values()) + [matmul]
        unit = first_unit(graph.train_step)
        if unit.steps >= repeats + 2:
            e2e = EndToEnd(graph, unit)
            measured.append(e2e)
        else:
            results["graph_end_to_end"] = {"skipped": f"an epoch has {unit.steps} batches, {repeats + 2} needed"}
        log(f"train: {repeats} interleaved rounds of {', '.join(warmed)}{' + end-to-end' if e2e else ''} "
            "+ matmul ...")
        cut = interleaved_rounds(measured, repeats, budget)
        for name, variant in warmed.items():
            results[name] = variant.result(cut)
        if e2e is not None and e2e.runs:
            results["graph_end_to_end"] = e2e.result(cut or len(e2e.runs) < repeats)
            results["graph_end_to_end"]["ratio_to_graph"] = round(
                results["graph_end_to_end"]["images_per_s"]["median"] / results["graph"]["images_per_s"]["median"], 4)
        if profile_dir:
            os.makedirs(profile_dir, exist_ok=True)
            steps = 2
            tf.profiler.experimental.start(profile_dir)
            for _ in range(steps):
                graph.call()
            tf.profiler.experimental.stop()
            results["graph"]["profile_dir"] = os.path.abspath(profile_dir)
            try:
                results["graph"]["profile"] = profile_summary(profile_dir, steps)
            except Exception as e:  # the trace is still there for TensorBoard
                results["graph"]["profile"] = {"error": short_error(e)}
        results["graph"]["graph_ops"] = graph_op_counts(graph.train_step.concrete_function(image, depth))
        results["graph"]["tracing_count_after"] = graph.train_step.tracing_count()
    finally:
        for variant in warmed.values():
            variant.close()

    graph_result = results["graph"]
    for name, variant in warmed.items():
        log(f"train: {name} {results[name]['images_per_s']['median']:.3g} images/s")
    matmul_result = matmul.result()
    peak = matmul_result["gflops_per_s"]["median"]
    fwd = graph_result.get("forward_gflops_per_image")
    for v in results.values():
        if "images_per_s" in v and fwd:
            v["gflops_per_s"] = scaled(v["images_per_s"], TRAIN_FLOPS_FACTOR * fwd)
            v["fraction_of_matmul"] = round(v["gflops_per_s"]["median"] / peak, 4)
    order = ["graph", "graph_end_to_end", "xla", "mixed_float16", "mixed_bfloat16"]
    variants = {k: results[k] for k in order if k in results}
    return {
        "images_per_s": graph_result["images_per_s"]["median"],
        "gflops_per_s": graph_result.get("gflops_per_s", {}).get("median"),
        "fraction_of_matmul": graph_result.get("fraction_of_matmul"),
        "matmul_gflops_per_s": peak,
        "matmul": matmul_result,
        "forward_gflops_per_image": fwd,
        "train_flops_factor": TRAIN_FLOPS_FACTOR,
        "batch_size": int(image.shape[0]),
        "input_size": [int(image.shape[1]), int(image.shape[2])],
        "model": f"{cfg.model.encoder}_{cfg.model.decoder}",
        "retraced": graph_result["tracing_count_after"] > 1,
        "measurement": "variants built and warmed up first, then timed in interleaved rounds (one run of each "
                       "per round, and of the matmul yardstick) on one training batch held in memory; "
                       "graph_end_to_end takes its batches from the pipeline",
        "variants": variants,
    }
