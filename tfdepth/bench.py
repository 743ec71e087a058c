"""``python -m tfdepth.bench --config FILE [--what train,input,infer,scaling] [--output bench.json]
[--repeats N] [--budget-s S] [--set k=v]``

Measures how fast the configured model trains and runs on this machine and writes one JSON file
(sections are written as soon as they finish, so a partial run keeps what it measured):

- ``train``: images/s of the real training step (``Trainer._train_step``: forward, loss, backward,
  finiteness check, optimiser update) on a batch held in memory, after warm-up (trace and first
  step, i.e. the compile time, reported separately). Variants: ``graph`` (``tf.function``, float32:
  the headline figure), ``graph_end_to_end`` (the same step fed by the real tf.data pipeline),
  ``xla`` (``train.jit_compile``), and mixed precision where the device supports it, timed in
  interleaved rounds so that they see the same machine load. Achieved
  GFLOP/s counts a training step as 3x the forward FLOPs (2 per multiply-add,
  :func:`tfdepth.models.flops.forward_flops`), and ``fraction_of_matmul`` relates it to this machine's
  own float32 ``tf.matmul`` rate (``machine.matmul``).
- ``input``: images/s the training tf.data pipeline (TFRecord shards -> decode -> resize ->
  augment -> batch) delivers with the model removed, and ``ratio_to_train`` = that / train images/s.
- ``infer``: latency per image (batch 1) and throughput (batch 8) of the Keras model, the exported
  SavedModel (``serving_default``) and the TFLite variants fp32 / float16 / dynamic / int8.
- ``scaling``: training-step and inference cost over image sizes (at batch 1) and batch sizes (at
  the smallest size), as rows of a table (also ``<output>_scaling.md``) and a log-log plot
  (``<output>_scaling.png``).

Every figure is ``{"median", "min", "max", "runs": [...]}`` over ``--repeats`` timed runs (a run
repeats the call until it lasts ``--min-run-s``); scalars beside them are the medians. Timings are
wall clock: on a shared machine they are as noisy as the machine (``machine.load_average_start`` /
``_end`` record the load). ``--budget-s`` bounds the whole command: each section gets a
share of the time left, optional measurements that would not fit are recorded as
``{"skipped": reason}``. The speed of an untrained (randomly initialised) model is measured; the
encoder's pretrained weights are not loaded (``model.encoder_weights`` is forced to ``none``).
See docs/benchmarks.md for how to read the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from tfdepth import cli

SECTIONS = ("train", "input", "infer", "scaling")
# Share of the remaining time budget a section gets when it starts (unused time flows to later ones).
SECTION_WEIGHTS = {"train": 3.5, "input": 0.8, "infer": 2.5, "scaling": 3.5}
DEFAULT_INPUT_BATCHES = 50  # per input-pipeline run (or the whole epoch when shorter)
TFLITE_QUANTIZE = ("none", "float16", "dynamic", "int8")
TFLITE_NAMES = {"none": "tflite_fp32", "float16": "tflite_float16", "dynamic": "tflite_dynamic",
                "int8": "tflite_int8"}
DEFAULT_SCALING_SIZES = (128, 256, 320, 480)
DEFAULT_SCALING_BATCHES = (1, 2, 4, 8, 16)
TRAIN_VARIANTS = ("xla", "mixed_float16", "mixed_bfloat16")  # besides "graph", which always runs
TRAIN_FLOPS_FACTOR = 3  # a training step = forward + backward (~2x forward) = 3x the forward FLOPs


class BenchError(ValueError):
    """Bad benchmark arguments; the message names the option."""


# --------------------------------------------------------------------------------------------------
# Statistics and timing
# --------------------------------------------------------------------------------------------------


def summarize(values: Sequence[float], digits: int = 6) -> dict:
    """``{"median", "min", "max", "runs"}`` of the per-run values (rounded to ``digits`` significant)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarize: no runs")

    def r(v):
        return float(f"{v:.{digits}g}")

    return {"median": r(statistics.median(values)), "min": r(min(values)), "max": r(max(values)),
            "runs": [r(v) for v in values]}


def scaled(stats: dict, factor: float) -> dict:
    """The same statistics multiplied by ``factor`` (> 0; e.g. images/s -> GFLOP/s)."""
    return summarize([v * factor for v in stats["runs"]])


def inverted(stats: dict, factor: float = 1.0) -> dict:
    """``factor / value`` per run (e.g. seconds per call -> calls per second)."""
    return summarize([factor / v for v in stats["runs"]])


class Budget:
    """The command's wall-clock budget; sections get a share of what is left when they start."""

    def __init__(self, total_s: float, sections: Sequence[str], start: Optional[float] = None):
        self.start = time.perf_counter() if start is None else start
        self.deadline = self.start + float(total_s)
        self.pending = list(sections)
        self.section_deadline = self.deadline

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def begin(self, section: str) -> float:
        """Start ``section``; returns its allowance in seconds (its share of the time left)."""
        weights = sum(SECTION_WEIGHTS[s] for s in self.pending)
        share = SECTION_WEIGHTS[section] / weights if weights else 1.0
        if section in self.pending:
            self.pending.remove(section)
        allowance = max(0.0, self.remaining()) * share
        self.section_deadline = time.perf_counter() + allowance
        return allowance

    def section_left(self) -> float:
        return self.section_deadline - time.perf_counter()

    def fits(self, predicted_s: float) -> bool:
        return predicted_s <= self.section_left()

    def skip_reason(self, predicted_s: float) -> str:
        return (f"time budget: predicted {predicted_s:.0f} s, {max(0.0, self.section_left()):.0f} s left of this "
                "section's share of --budget-s")


def timed_runs(call: Callable[[], object], repeats: int, min_run_s: float, budget: Optional[Budget] = None,
               warmup: int = 0) -> dict:
    """Time ``call`` (already traced / compiled) over ``repeats`` runs, after ``warmup`` untimed calls.

    One calibration call measures its duration; a run then repeats the call ``k`` times so that it
    lasts at least ``min_run_s``. When one call already takes that long, the calibration call is the
    first run. Returns ``{"seconds_per_call": stats, "calls_per_run": k, "cut_by_budget": bool}``;
    runs are cut short (never below one) when ``budget`` says the next would not fit.
    """
    for _ in range(warmup):
        call()
    t0 = time.perf_counter()
    call()
    first = time.perf_counter() - t0
    k = max(1, int(math.ceil(min_run_s / max(first, 1e-9))))
    runs: List[float] = [first] if k == 1 else []
    cut = False
    while len(runs) < repeats:
        if budget is not None and runs and not budget.fits(k * statistics.median(runs)):
            cut = True
            break
        t0 = time.perf_counter()
        for _ in range(k):
            call()
        runs.append((time.perf_counter() - t0) / k)
    return {"seconds_per_call": summarize(runs), "calls_per_run": k, "cut_by_budget": cut}


def _timed(fn: Callable[[], object]):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------------


def _cpu_info() -> dict:
    info = {"cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["cpu_model"] = line.split(":", 1)[1].strip()
            break
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    info["cpu_features"] = sorted(f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
                                                            "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8"))
    return info


def _load_average() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    import keras
    import tensorflow as tf

    info = {"tensorflow": tf.__version__, "keras": keras.__version__, **_cpu_info(),
            "load_average_start": _load_average(),
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default (all cores)",
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default"}
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        info["device"] = "GPU"
        info["gpu"] = details.get("device_name", gpus[0].name)
        cc = details.get("compute_capability")
        info["gpu_compute_capability"] = list(cc) if cc else None
        info["gpu_count"] = len(gpus)
    else:
        info["device"] = "CPU"
    return info


class _RepeatedCalls:
    """A timed measurement: each run repeats ``self.call`` ``self.calls_per_run`` times and records
    the seconds per call in ``self.runs``."""

    def run_once(self) -> None:
        t0 = time.perf_counter()
        for _ in range(self.calls_per_run):
            self.call()
        self.runs.append((time.perf_counter() - t0) / self.calls_per_run)

    def _estimate_s(self, fallback_call_s: float) -> float:
        """Seconds one more run will take (median so far, else ``fallback_call_s`` per call)."""
        return self.calls_per_run * (statistics.median(self.runs) if self.runs else fallback_call_s)


class Matmul(_RepeatedCalls):
    """The float32 matrix-multiply yardstick: ``tf.matmul`` of two ``size`` x ``size`` matrices in a
    ``tf.function`` (2 size^3 FLOPs per product); a run repeats it for at least ``min_run_s``."""

    def __init__(self, size: int = 2048, min_run_s: float = 0.5):
        import tensorflow as tf

        self.size = int(size)
        a = tf.random.stateless_normal([size, size], seed=[1, 2])
        b = tf.random.stateless_normal([size, size], seed=[3, 4])

        @tf.function
        def product():
            return tf.reduce_sum(tf.matmul(a, b))  # the O(n^2) sum keeps the copy back to Python small

        self.call = lambda: product().numpy()
        _, self.first_call_s = _timed(self.call)
        _, one = _timed(self.call)
        self.calls_per_run = max(1, int(math.ceil(min_run_s / max(one, 1e-9))))
        self.runs: List[float] = []
        self.tensor_float_32 = bool(tf.config.experimental.tensor_float_32_execution_enabled())

    def estimate_s(self) -> float:
        return self._estimate_s(fallback_call_s=0.1)

    def result(self) -> dict:
        return {"gflops_per_s": inverted(summarize(self.runs), 2.0 * self.size ** 3 / 1e9), "size": self.size,
                "dtype": "float32", "calls_per_run": self.calls_per_run, "first_call_s": round(self.first_call_s, 4),
                "tensor_float_32": self.tensor_float_32}


def matmul_rate(size: int = 2048, repeats: int = 5, min_run_s: float = 0.5) -> dict:
    """This machine's float32 matrix-multiply rate (:class:`Matmul`), ``repeats`` runs, in GFLOP/s."""
    matmul = Matmul(size, min_run_s)
    for _ in range(repeats):
        matmul.run_once()
    return matmul.result()


# --------------------------------------------------------------------------------------------------
# Configs and models
# --------------------------------------------------------------------------------------------------


def bench_config(cfg, **train_changes):
    """A copy of ``cfg`` for benchmarking: random-initialised encoder, train settings replaced."""
    model = dataclasses.replace(cfg.model, encoder_weights="none")
    train = dataclasses.replace(cfg.train, **train_changes)
    return dataclasses.replace(cfg, model=model, train=train)


def with_input_size(cfg, size: Sequence[int]):
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_size=[int(size[0]), int(size[1])]))


def forward_gflops(model) -> Optional[float]:
    from tfdepth.models.flops import forward_flops

    try:
        return forward_flops(model) / 1e9
    except ValueError:
        return None


def mixed_precision_support(machine: dict) -> Dict[str, Optional[str]]:
    """Policy -> None (try it) or the reason it is skipped on this device."""
    if machine["device"] == "GPU":
        cc = machine.get("gpu_compute_capability") or [0, 0]
        cc = tuple(cc)
        return {
            "mixed_float16": None if cc >= (7, 0) else f"GPU compute capability {cc} < 7.0: no fast float16",
            "mixed_bfloat16": None if cc >= (8, 0) else f"GPU compute capability {cc} < 8.0: no bfloat16 units",
        }
    # bfloat16 runs on any CPU (oneDNN uses AVX512_BF16 / AMX where present, else converts): try it.
    return {
        "mixed_float16": "CPU: TensorFlow has no fast float16 kernels on CPU (float16 math is emulated); "
                         "mixed_float16 is for GPUs of compute capability >= 7.0",
        "mixed_bfloat16": None,
    }


class _QuietTrainer:
    """A :class:`tfdepth.training.loop.Trainer` in a scratch workdir (deleted on close)."""

    def __init__(self, cfg):
        from tfdepth.training.loop import Trainer

        self.workdir = tempfile.mkdtemp(prefix="tfdepth-bench-")
        self.trainer = Trainer(cfg, self.workdir, log_stream=io.StringIO())
        self.step = self.trainer._train_step

    def close(self):
        import keras

        writer = getattr(self.trainer, "writer", None)
        if writer is not None:
            writer.close()
        self.trainer = None
        self.step = None
        keras.mixed_precision.set_global_policy("float32")
        gc.collect()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _run_train_step(step, image, depth):
    loss, _, finite = step(image, depth)
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


# --------------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------------


class TrainVariant(_RepeatedCalls):
    """One training configuration, built and warmed up: a Trainer in a scratch workdir, its step traced
    (``trace_s``), run once (``first_step_s``: graph optimisation / XLA compilation + one step) and once
    more untimed (memory and kernel caches), whose time sets the calls per timed run."""

    def __init__(self, name: str, cfg, image, depth, min_run_s: float):
        self.name, self.cfg, self.image, self.depth = name, cfg, image, depth
        self.batch = int(image.shape[0])
        self.qt, self.build_s = _timed(lambda: _QuietTrainer(cfg))
        self.step = self.qt.step
        try:
            _, self.trace_s = _timed(lambda: self.step.get_concrete_function(image, depth))
            (loss, finite), self.first_step_s = _timed(self.call)
            self.loss_finite = bool(finite) and math.isfinite(loss)
            _, self.second_step_s = _timed(self.call)
        except Exception:
            self.close()
            raise
        self.calls_per_run = max(1, int(math.ceil(min_run_s / max(self.second_step_s, 1e-9))))
        self.runs: List[float] = []

    def call(self):
        return _run_train_step(self.step, self.image, self.depth)

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
            "loss_finite": self.loss_finite, "tracing_count": int(self.step.experimental_get_tracing_count()),
            "forward_gflops_per_image": forward_gflops(self.qt.trainer.model),
        }

    def close(self) -> None:
        self.qt.close()


class EndToEnd:
    """The graph variant's step fed by the real pipeline (``next(iterator)`` + step, as ``Trainer.run``)."""

    def __init__(self, variant: TrainVariant):
        trainer = variant.qt.trainer
        self.variant = variant
        self.iterator = iter(trainer._dataset(trainer.units[0]))
        self.batches_left = trainer.units[0].steps
        _, self.first_step_s = _timed(self.call)  # fills the shuffle buffer / prefetch
        self.call()
        self.runs: List[float] = []

    def call(self):
        self.batches_left -= 1
        image, depth = next(self.iterator)
        return _run_train_step(self.variant.step, image, depth)

    def run_once(self) -> None:
        if self.batches_left <= 0:
            return
        _, seconds = _timed(self.call)
        self.runs.append(seconds)

    def estimate_s(self) -> float:
        return self.variant.estimate_s()

    def result(self, cut: bool) -> dict:
        seconds = summarize(self.runs)
        return {"images_per_s": inverted(seconds, self.variant.batch), "step_s": seconds,
                "first_step_s": round(self.first_step_s, 3), "cut_by_budget": cut}


def interleaved_rounds(measured: Sequence, repeats: int, budget: Optional[Budget]) -> bool:
    """``repeats`` rounds, each timing one run of every measurement in turn, so that every variant sees
    the same (possibly drifting) machine load. Returns True when the budget cut the rounds short (at
    least one round always runs)."""
    for r in range(repeats):
        if budget is not None and r > 0 and not budget.fits(sum(m.estimate_s() for m in measured) * 1.1):
            return True
        for m in measured:
            m.run_once()
    return False


def measure_train_variant(cfg, image, depth, repeats: int, min_run_s: float, budget: Optional[Budget]) -> dict:
    """Warm-up + timed runs of the training step of one config (used when only the input section runs)."""
    variant = TrainVariant("graph", cfg, image, depth, min_run_s)
    try:
        cut = interleaved_rounds([variant], repeats, budget)
        return variant.result(cut)
    finally:
        variant.close()


# Categories of TensorFlow ops in a profile of the training step, by op name (Keras layer scopes) and
# type: first match wins. "optimizer" is the update inside the step's tf.cond (finite gradients).
_PROFILE_CATEGORIES = (
    ("conv", lambda name, op: "Conv" in op or "MatMul" in op),
    ("batchnorm", lambda name, op: "BatchNorm" in op or bool(re.search(
        r"(_bn|/bn\d?|batch_norm|batchnorm|moments|downsample_1)(_\d+)?(/|$)", name))),
    ("finite_check", lambda name, op: op in ("IsFinite", "All")),
    ("optimizer", lambda name, op: bool(re.match(r"(cond|adam|adamw|sgd|loss_scale_optimizer)(_\d+)?/", name,
                                                 re.IGNORECASE)) or op.startswith("ResourceApply")),
    ("loss", lambda name, op: "loss" in name.lower()),
    ("other", lambda name, op: True),
)
_PROFILER_BOOKKEEPING = ("ThreadpoolListener::", "ExecutorState::")


def profile_summary(profile_dir: str, steps: int, top: int = 15) -> dict:
    """Op time per step by category and op type from the newest ``*.xplane.pb`` under ``profile_dir``
    (the host plane's TensorFlow executor threads: on CPU, the time each op ran; summed over threads,
    so it can exceed wall time)."""
    import collections
    import glob

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(profile_dir, "plugins", "profile", "*", "*.xplane.pb")), key=os.path.getmtime)
    if not paths:
        raise FileNotFoundError(f"no *.xplane.pb under {profile_dir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    by_type, count, by_category = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                full = names.get(event.metadata_id, "")
                if not full or full.startswith(_PROFILER_BOOKKEEPING):
                    continue
                name, _, op = full.rpartition(":")
                name = name or op
                seconds = event.duration_ps / 1e12
                by_type[op] += seconds
                count[op] += 1
                category = next(c for c, match in _PROFILE_CATEGORIES if match(name, op))
                by_category[category] += seconds
    total = sum(by_type.values())
    if total <= 0:
        raise ValueError(f"{paths[-1]}: no TensorFlow op events on the host plane (a GPU run: use TensorBoard)")
    return {
        "xplane": os.path.abspath(paths[-1]), "steps": steps,
        "op_seconds_per_step": round(total / steps, 4),
        "by_category": {c: {"seconds_per_step": round(v / steps, 4), "fraction": round(v / total, 4)}
                        for c, v in by_category.most_common()},
        "top_op_types": [{"op": op, "seconds_per_step": round(v / steps, 4), "fraction": round(v / total, 4),
                          "calls_per_step": count[op] / steps} for op, v in by_type.most_common(top)],
    }


def graph_op_counts(concrete_function, kinds=("Cast", "Transpose", "IsFinite", "Conv2D", "Identity")) -> dict:
    """Op counts of a traced function's graph (before Grappler): casts and layout transposes written
    by the model or the step show up here."""
    ops = [op.type for op in concrete_function.graph.get_operations()]
    return {"total": len(ops), **{k: sum(1 for t in ops if t == k) for k in kinds}}


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
                results[name] = {"error": _short_error(e)}
                log(f"train: {name} failed: {results[name]['error']}")
        matmul = Matmul(matmul_size, min_run_s)
        measured: List = list(warmed.values()) + [matmul]
        unit = graph.qt.trainer.units[0]
        if unit.steps >= repeats + 2:
            e2e = EndToEnd(graph)
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
                results["graph"]["profile"] = {"error": _short_error(e)}
        results["graph"]["graph_ops"] = graph_op_counts(graph.step.get_concrete_function(image, depth))
        results["graph"]["tracing_count_after"] = int(graph.step.experimental_get_tracing_count())
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



# --------------------------------------------------------------------------------------------------
# input
# --------------------------------------------------------------------------------------------------


def bench_input(cfg, data_dir, manifest, repeats: int, budget: Budget, max_batches: Optional[int] = None) -> dict:
    """Images/s of the training pipeline with the model removed: each run iterates a fresh epoch
    (another seed, as training does) for up to ``max_batches`` batches; the first batch (shuffle buffer
    fill, parallel decode start-up) is timed separately."""
    from tfdepth.data import pipeline

    batch = cfg.train.batch_size
    split = cfg.data.train_split
    batches = pipeline.steps_per_epoch(manifest, split, batch)
    if batches == 0:
        raise BenchError(f"split {split!r} of {data_dir} has fewer samples than one batch ({batch})")
    if max_batches:
        batches = min(batches, int(max_batches))
    runs, first = [], []
    cut = False
    for r in range(repeats):
        if budget is not None and runs:
            per_run = statistics.median(first) + batch * (batches - 1) / statistics.median(runs)
            if not budget.fits(per_run):
                cut = True
                break
        ds = pipeline.build_dataset(cfg.data, split, batch, training=True, seed=1000 + r, data_dir=data_dir,
                                    manifest=manifest).take(batches)
        t0 = time.perf_counter()
        iterator = iter(ds)
        next(iterator)
        t1 = time.perf_counter()
        n = 0
        for _ in iterator:
            n += 1
        t2 = time.perf_counter()
        first.append(t1 - t0)
        if n == 0:  # a one-batch epoch: time the first batch
            runs.append(batch / (t1 - t0))
        else:
            runs.append(batch * n / (t2 - t1))
    stats = summarize(runs)
    return {"images_per_s": stats["median"], "pipeline_images_per_s": stats, "first_batch_s": summarize(first),
            "batches_per_run": batches, "batch_size": batch, "cut_by_budget": cut,
            "stored_image_size": manifest.get("image_size"), "input_size": list(cfg.data.input_size or []),
            "parallel_calls": "AUTOTUNE" if cfg.data.parallel_calls < 0 else cfg.data.parallel_calls,
            "augment": dataclasses.asdict(cfg.data.augment)}


# --------------------------------------------------------------------------------------------------
# infer
# --------------------------------------------------------------------------------------------------


def _latency_and_throughput(call1, call8, repeats, min_run_s, budget, batch=8) -> dict:
    t1 = timed_runs(call1, repeats, min_run_s, budget)
    t8 = timed_runs(call8, repeats, min_run_s, budget)
    return {"latency_ms": scaled(t1["seconds_per_call"], 1000.0),
            "batch1_images_per_s": inverted(t1["seconds_per_call"], 1.0),
            "images_per_s": inverted(t8["seconds_per_call"], batch),
            "cut_by_budget": t1["cut_by_budget"] or t8["cut_by_budget"]}


def _pair_cost(call1_s: float, call8_s: float, repeats: int, min_run_s: float) -> float:
    """Predicted seconds of :func:`_latency_and_throughput` (calibration + runs of both calls)."""
    return (repeats + 1) * (max(min_run_s, call1_s) + max(min_run_s, call8_s))


def _short_error(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:500]


def bench_infer(cfg, repeats: int, min_run_s: float, budget: Budget, tflite_variants: Sequence[str],
                tflite_threads: int = 2, calibration_images: int = 8, batch: int = 8, log=print) -> dict:
    import keras
    import tensorflow as tf

    from tfdepth.models.build import build_model

    keras.mixed_precision.set_global_policy("float32")
    cfg = bench_config(cfg)
    if not cfg.data.input_size:
        raise BenchError("data.input_size is empty: inference benchmarks need the fixed model input size")
    height, width = (int(s) for s in cfg.data.input_size)
    model = build_model(cfg.model, (height, width))
    rng = np.random.default_rng(0)
    x1 = rng.uniform(0, 1, (1, height, width, 3)).astype(np.float32)
    x8 = rng.uniform(0, 1, (batch, height, width, 3)).astype(np.float32)
    variants: Dict[str, dict] = {}

    # Keras model in a tf.function (one trace for every batch size).
    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
    def forward(images):
        return model(images, training=False)["depth"]

    log("infer: keras ...")
    (ref1, first1) = _timed(lambda: forward(tf.constant(x1)).numpy())
    _, first8 = _timed(lambda: forward(tf.constant(x8)).numpy())
    keras_result = _latency_and_throughput(lambda: forward(x1).numpy(), lambda: forward(x8).numpy(), repeats,
                                           min_run_s, budget, batch)
    keras_result.update({"first_call_s": {"batch1": round(first1, 3), f"batch{batch}": round(first8, 3)},
                         "input": "float32 [B, H, W, 3] in [0, 1]", "tracing_count": int(
                             forward.experimental_get_tracing_count())})
    variants["keras"] = keras_result
    log(f"infer: keras {keras_result['latency_ms']['median']:.3g} ms/image (batch 1), "
        f"{keras_result['images_per_s']['median']:.3g} images/s (batch {batch})")
    step_s = keras_result["latency_ms"]["median"] / 1000.0

    scratch = tempfile.mkdtemp(prefix="tfdepth-bench-infer-")
    try:
        # SavedModel: the serving_default signature (uint8 input; resize to the model input and back).
        # Export traces two signatures (~ the Keras first call each), then the same runs as Keras.
        predicted = 3.0 * first1 + 5.0 + _pair_cost(step_s * 1.2, step_s * batch * 1.2, repeats, min_run_s)
        if not budget.fits(predicted):
            variants["saved_model"] = {"skipped": budget.skip_reason(predicted)}
        else:
            log("infer: saved_model ...")
            try:
                variants["saved_model"] = _bench_saved_model(model, (height, width), scratch, x1, x8, ref1, repeats,
                                                             min_run_s, budget, batch)
            except Exception as e:  # export failure: report and keep going
                variants["saved_model"] = {"error": _short_error(e)}
        # TFLite variants from one staged SavedModel.
        variants.update(_bench_tflite(model, cfg, (height, width), x1, ref1, repeats, min_run_s, budget,
                                      tflite_variants, tflite_threads, calibration_images, batch, step_s,
                                      first1, log))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"input_size": [height, width], "batch": batch, "tflite_threads": tflite_threads,
            "model": f"{cfg.model.encoder}_{cfg.model.decoder}", "forward_gflops_per_image": forward_gflops(model),
            "latency_ms": keras_result["latency_ms"]["median"], "images_per_s": keras_result["images_per_s"]["median"],
            "variants": variants}


def _bench_saved_model(model, size, scratch, x1, x8, ref1, repeats, min_run_s, budget, batch) -> dict:
    import tensorflow as tf

    from tfdepth.export import OUTPUT_KEY, SERVING_SIGNATURE, export_saved_model

    (version_dir, export_s) = _timed(lambda: export_saved_model(model, size, os.path.join(scratch, "saved_model"),
                                                                version=1, metadata=None))
    (loaded, load_s) = _timed(lambda: tf.saved_model.load(version_dir))
    signature = loaded.signatures[SERVING_SIGNATURE]
    u1 = tf.constant(np.clip(np.rint(x1 * 255), 0, 255).astype(np.uint8))
    u8 = tf.constant(np.clip(np.rint(x8 * 255), 0, 255).astype(np.uint8))
    out1, first1 = _timed(lambda: signature(images=u1)[OUTPUT_KEY].numpy())
    _, first8 = _timed(lambda: signature(images=u8)[OUTPUT_KEY].numpy())
    result = _latency_and_throughput(lambda: signature(images=u1)[OUTPUT_KEY].numpy(),
                                     lambda: signature(images=u8)[OUTPUT_KEY].numpy(), repeats, min_run_s, budget,
                                     batch)
    result.update({"export_s": round(export_s, 3), "load_s": round(load_s, 3),
                   "first_call_s": {"batch1": round(first1, 3), f"batch{batch}": round(first8, 3)},
                   "signature": SERVING_SIGNATURE,
                   "input": "uint8 [B, H, W, 3] at the model input size (the signature resizes in the graph: "
                            "antialiased resize in, bilinear resize of the depth out, both to the same size here)",
                   "output_shape": list(out1.shape)})
    return result


def _calibration_images(cfg, count: int, size) -> tuple:
    try:
        from tfdepth.export import representative_images

        images = representative_images(cfg, count)
        if images:
            return images, f"{len(images)} images of split {cfg.data.val_split!r}"
    except Exception as e:  # no validation split here: random pixels calibrate the speed test just as well
        reason = _short_error(e)
    else:
        reason = "validation split empty"
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8) for _ in range(count)]
    return images, f"{count} random images ({reason})"


def _tflite_call(interpreter, image):
    detail_in = interpreter.get_input_details()[0]
    detail_out = interpreter.get_output_details()[0]
    index_in, index_out = detail_in["index"], detail_out["index"]

    def call():
        interpreter.set_tensor(index_in, image)
        interpreter.invoke()
        return interpreter.get_tensor(index_out)

    return call


def _bench_tflite(model, cfg, size, x1, ref1, repeats, min_run_s, budget, variants, threads, calibration_images,
                  batch, keras_step_s, keras_first_s, log) -> Dict[str, dict]:
    results: Dict[str, dict] = {}
    if not variants:
        return results
    try:
        from tfdepth.export import TFLiteExporter
        from tfdepth.inference import make_tflite_interpreter
    except ImportError as e:
        return {TFLITE_NAMES[q]: {"error": f"export helpers unavailable ({e})"} for q in variants}
    with TFLiteExporter(model, size) as exporter:
        calibration = None
        convert_estimate = 4.0 * keras_first_s + 5.0  # staging (two traces) + conversion; then as measured
        for q in variants:
            name = TFLITE_NAMES[q]
            # Conversion (+ calibration) + the runs (TFLite on CPU: about the Keras speed, float16 slower).
            predicted = (convert_estimate + (calibration_images * keras_step_s * 3 if q == "int8" else 0.0)
                         + _pair_cost(keras_step_s * 1.5, keras_step_s * batch * 1.5, repeats, min_run_s))
            if not budget.fits(predicted):
                results[name] = {"skipped": budget.skip_reason(predicted)}
                log(f"infer: {name} skipped ({results[name]['skipped']})")
                continue
            log(f"infer: {name} ...")
            try:
                calibration_note = None
                if q == "int8":
                    if calibration is None:
                        calibration = _calibration_images(cfg, calibration_images, size)
                    images, calibration_note = calibration
                else:
                    images = None
                flatbuffer, convert_s = _timed(lambda: exporter.convert(q, images))
                convert_estimate = convert_s * 1.2
                interpreter = make_tflite_interpreter(model_content=flatbuffer, num_threads=threads)
                detail = interpreter.get_input_details()[0]
                dtype = np.dtype(detail["dtype"])
                image1 = (np.clip(np.rint(x1 * 255), 0, 255).astype(np.uint8) if dtype == np.uint8
                          else x1.astype(dtype))
                call1 = _tflite_call(interpreter, image1)
                out1 = call1()
                diff = float(np.max(np.abs(out1.astype(np.float64).reshape(ref1.shape) - ref1)))
                call8, mode = _tflite_batch_call(make_tflite_interpreter, flatbuffer, threads, image1, batch)
                call8()
                result = _latency_and_throughput(call1, call8, repeats, min_run_s, budget, batch)
                result.update({
                    "convert_s": round(convert_s, 3), "file_size_bytes": len(flatbuffer),
                    "quantize": q, "input_dtype": dtype.name, "threads": threads, "batch_mode": mode,
                    "interpreter": getattr(interpreter, "tfdepth_backend", "unknown"),
                    "max_abs_diff_from_keras_m": float(f"{diff:.6g}"),
                })
                if calibration_note:
                    result["calibration"] = calibration_note
                results[name] = result
                log(f"infer: {name} {result['latency_ms']['median']:.3g} ms/image, "
                    f"{result['images_per_s']['median']:.3g} images/s (convert {convert_s:.1f} s)")
            except Exception as e:  # one variant failing must not lose the others
                results[name] = {"error": _short_error(e)}
                log(f"infer: {name} failed: {results[name]['error']}")
    return results


def _tflite_batch_call(make_interpreter, flatbuffer, threads, image1, batch):
    """``batch`` images per call: the input resized to [batch, H, W, 3] when the model allows it,
    else ``batch`` sequential batch-1 invocations."""
    image = np.repeat(image1, batch, axis=0)
    try:
        interpreter = make_interpreter(model_content=flatbuffer, num_threads=threads)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, list(image.shape), strict=False)
        interpreter.allocate_tensors()
        call = _tflite_call(interpreter, image)
        out = call()
        if out.shape[0] != batch:
            raise ValueError(f"output batch {out.shape[0]}")
        return call, "resized_input"
    except Exception:  # fixed-shape graph: sequential invocations
        interpreter = make_interpreter(model_content=flatbuffer, num_threads=threads)
        one = _tflite_call(interpreter, image1)

        def sequential():
            for _ in range(batch):
                out = one()
            return out

        return sequential, "sequential"


# --------------------------------------------------------------------------------------------------
# scaling
# --------------------------------------------------------------------------------------------------


def scaling_points(sizes: Sequence[int], batches: Sequence[int], grid: str) -> List[tuple]:
    """(size, batch) points: ``cross`` = every size at batch 1 + every batch at the smallest size;
    ``full`` = every combination. Ordered by size, then batch."""
    sizes, batches = sorted(set(int(s) for s in sizes)), sorted(set(int(b) for b in batches))
    if grid == "full":
        points = [(s, b) for s in sizes for b in batches]
    elif grid == "cross":
        points = sorted({(s, batches[0]) for s in sizes} | {(sizes[0], b) for b in batches})
    else:
        raise BenchError(f"--scaling-grid must be cross or full, got {grid!r}")
    return points


def bench_scaling(cfg, repeats: int, min_run_s: float, budget: Budget, sizes, batches, grid: str,
                  output_stem: str, seconds_per_train_gflop: Optional[float] = None,
                  warm_s: Optional[float] = None, log=print) -> dict:
    """Train and inference cost over ``scaling_points``. ``seconds_per_train_gflop`` and ``warm_s``
    (building a Trainer + trace + first step) come from the train section when it ran; they predict
    what fits in the time budget (points that do not are listed with ``skipped``)."""
    import keras
    import tensorflow as tf

    points = scaling_points(sizes, batches, grid)
    rows: List[dict] = []
    rate = seconds_per_train_gflop  # seconds per GFLOP of a training step, learned as we go
    base = bench_config(cfg, jit_compile=False, mixed_precision="float32",
                        batch_size=max(b for _, b in points))
    for size in sorted({s for s, _ in points}):
        size_points = [b for s, b in points if s == size]
        if warm_s and not budget.fits(warm_s):
            for b in size_points:
                rows.append({"size": [size, size], "batch": b, "skipped": budget.skip_reason(warm_s)})
            log(f"scaling: {size}x{size} skipped ({budget.skip_reason(warm_s)})")
            continue
        qt = None
        try:
            t_size = time.perf_counter()
            qt = _QuietTrainer(with_input_size(base, (size, size)))
            model = qt.trainer.model
            gflops = forward_gflops(model)

            @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            def forward(images):
                return model(images, training=False)["depth"]

            # One trace per size (batch axis unknown): later calls of any batch size reuse it.
            step = qt.step
            _, trace_s = _timed(lambda: step.get_concrete_function(
                tf.TensorSpec([None, size, size, 3], tf.float32), tf.TensorSpec([None, size, size, 1], tf.float32)))
            _, infer_trace_s = _timed(lambda: forward.get_concrete_function())
            size_warm_s = time.perf_counter() - t_size
            for b in size_points:
                row = {"size": [size, size], "batch": b, "forward_gflops_per_image": gflops}
                step_gflop = TRAIN_FLOPS_FACTOR * gflops * b if gflops else None
                if rate and step_gflop:
                    # trace + warm-up + calibration + runs of train, then the same for inference (~1/3).
                    predicted = rate * step_gflop * (repeats + 3) * 1.4 + 5.0
                    if not budget.fits(predicted):
                        row["skipped"] = budget.skip_reason(predicted)
                        rows.append(row)
                        log(f"scaling: {size}x{size} batch {b} skipped ({row['skipped']})")
                        continue
                gen = tf.random.Generator.from_seed(size * 100 + b)
                image = gen.uniform([b, size, size, 3])
                depth = gen.uniform([b, size, size, 1], 0.5, 0.9 * cfg.data.max_depth_m)
                _, first_s = _timed(lambda: _run_train_step(step, image, depth))
                if b == size_points[0]:
                    warm_s = size_warm_s + first_s  # what the next size will need before its first point
                train = timed_runs(lambda: _run_train_step(step, image, depth), repeats, min_run_s, budget,
                                   warmup=1)
                _, first_infer_s = _timed(lambda: forward(image).numpy())
                infer = timed_runs(lambda: forward(image).numpy(), repeats, min_run_s, budget)
                row.update({
                    "train_step_s": train["seconds_per_call"],
                    "train_images_per_s": inverted(train["seconds_per_call"], b),
                    "train_first_step_s": round(first_s, 3),
                    "infer_batch_s": infer["seconds_per_call"],
                    "infer_images_per_s": inverted(infer["seconds_per_call"], b),
                    "infer_first_call_s": round(first_infer_s, 3),
                    "train_trace_s": round(trace_s, 3), "infer_trace_s": round(infer_trace_s, 3),
                    "train_tracing_count": int(step.experimental_get_tracing_count()),
                    "infer_tracing_count": int(forward.experimental_get_tracing_count()),
                    "cut_by_budget": train["cut_by_budget"] or infer["cut_by_budget"],
                })
                if step_gflop:
                    row["train_gflops_per_s"] = round(step_gflop / train["seconds_per_call"]["median"], 4)
                    row["infer_gflops_per_s"] = round(gflops * b / infer["seconds_per_call"]["median"], 4)
                    rate = train["seconds_per_call"]["median"] / step_gflop
                rows.append(row)
                log(f"scaling: {size}x{size} batch {b}: train {row['train_step_s']['median']:.3g} s/step, "
                    f"infer {row['infer_batch_s']['median']:.3g} s/batch")
        except Exception as e:  # e.g. out of memory at a large size: report, keep the table
            for b in size_points:
                if not any(r["size"][0] == size and r["batch"] == b for r in rows):
                    rows.append({"size": [size, size], "batch": b, "error": _short_error(e)})
            log(f"scaling: {size}x{size} failed: {_short_error(e)}")
        finally:
            if qt is not None:
                qt.close()
            keras.backend.clear_session()
    table = scaling_table(rows)
    result = {"grid": grid, "sizes": sorted({s for s, _ in points}), "batches": sorted({b for _, b in points}),
              "mode": "graph, float32 (train: the Trainer's step; infer: model(images, training=False)); one trace "
                      "per size with the batch axis unknown (train_trace_s / infer_trace_s), so *_first_*_s is the "
                      "first run of a batch size (graph optimisation + kernel set-up)",
              "rows": rows, "table": table.splitlines()}
    table_path = output_stem + "_scaling.md"
    with open(table_path, "w") as f:
        f.write(table + "\n")
    result["table_file"] = os.path.abspath(table_path)
    try:
        result["plot"] = os.path.abspath(plot_scaling(rows, output_stem + "_scaling.png"))
    except Exception as e:  # plotting must not lose the measurements
        result["plot_error"] = _short_error(e)
    return result


def scaling_table(rows: Sequence[dict]) -> str:
    lines = ["| size | batch | fwd GFLOP/image | train s/step | train images/s | infer s/batch | infer images/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['size'][0]}x{r['size'][1]} | {r['batch']} | "
        head += f"{r['forward_gflops_per_image']:.3g} | " if r.get("forward_gflops_per_image") else "- | "
        if "train_step_s" not in r:
            lines.append(head + f"{r.get('skipped') or r.get('error')} | | | |")
            continue
        lines.append(head + " | ".join([
            _fmt_stat(r["train_step_s"]), f"{r['train_images_per_s']['median']:.3g}",
            _fmt_stat(r["infer_batch_s"]), f"{r['infer_images_per_s']['median']:.3g}"]) + " |")
    return "\n".join(lines)


def _fmt_stat(stats: dict) -> str:
    return f"{stats['median']:.3g} ({stats['min']:.3g}-{stats['max']:.3g})"


def plot_scaling(rows: Sequence[dict], path: str) -> str:
    """Log-log plot: seconds per call vs pixels per image (batch 1) and vs batch size (smallest size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if "train_step_s" in r]
    if not done:
        raise ValueError("no measured scaling points to plot")
    min_batch = min(r["batch"] for r in done)
    min_size = min(r["size"][0] for r in done)
    by_size = sorted((r for r in done if r["batch"] == min_batch), key=lambda r: r["size"][0])
    by_batch = sorted((r for r in done if r["size"][0] == min_size), key=lambda r: r["batch"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, subset, xkey, xlabel, title in (
            (axes[0], by_size, lambda r: r["size"][0] * r["size"][1], "image size (x axis: pixels per image)",
             f"batch {min_batch}: cost vs image size"),
            (axes[1], by_batch, lambda r: r["batch"], "batch size", f"{min_size}x{min_size}: cost vs batch size")):
        if not subset:
            ax.set_visible(False)
            continue
        x = np.array([xkey(r) for r in subset], dtype=float)
        labels = [f"{r['size'][0]}x{r['size'][1]}" if ax is axes[0] else str(r["batch"]) for r in subset]
        for key, label, marker in (("train_step_s", "train step", "o"), ("infer_batch_s", "inference", "s")):
            med = np.array([r[key]["median"] for r in subset])
            lo = np.array([r[key]["min"] for r in subset])
            hi = np.array([r[key]["max"] for r in subset])
            ax.errorbar(x, med, yerr=[med - lo, hi - med], marker=marker, capsize=3, label=f"{label} (median, min-max)")
            ax.plot(x, med[0] * x / x[0], ":", color="grey", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(labels)
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per call")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, title="dotted: linear in x", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------------
# Command
# --------------------------------------------------------------------------------------------------


def _parse_list(text: str, option: str, allowed: Optional[Sequence[str]] = None) -> List[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if allowed is not None:
        for item in items:
            if item not in allowed:
                raise BenchError(f"{option}: {item!r} is not one of {', '.join(allowed)}")
    return items


def _parse_ints(text: str, option: str) -> List[int]:
    try:
        values = [int(t) for t in _parse_list(text, option)]
    except ValueError:
        raise BenchError(f"{option}: expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise BenchError(f"{option}: expected comma-separated positive integers, got {text!r}")
    return values


def _write_json(path: str, data: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def main(argv=None) -> int:
    start = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m tfdepth.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_config_args(parser)
    parser.add_argument("--what", default=",".join(SECTIONS), help="sections, comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--output", default="bench.json", help="JSON file (default bench.json); the scaling table "
                        "and plot go beside it as <stem>_scaling.md / .png")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (default 5)")
    parser.add_argument("--min-run-s", type=float, default=0.5,
                        help="a run repeats a call until it lasts this long (default 0.5 s)")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="wall-clock budget of the whole command (default 540 s); optional measurements that "
                             "would not fit are skipped and say so")
    parser.add_argument("--matmul-size", type=int, default=2048, help="matrix size of the matmul reference")
    parser.add_argument("--train-variants", default=",".join(TRAIN_VARIANTS),
                        help="training variants besides graph mode (default xla,mixed_float16,mixed_bfloat16; "
                             "'' = graph mode only)")
    parser.add_argument("--tflite", default=",".join(TFLITE_QUANTIZE),
                        help="TFLite variants to convert and time (default none,float16,dynamic,int8; '' = none)")
    parser.add_argument("--tflite-threads", type=int, default=2, help="TFLite interpreter threads (default 2)")
    parser.add_argument("--calibration-images", type=int, default=8, help="int8 calibration images (default 8)")
    parser.add_argument("--input-batches", type=int, default=DEFAULT_INPUT_BATCHES,
                        help=f"batches per input-pipeline run (default {DEFAULT_INPUT_BATCHES}, or one epoch when "
                             "shorter; 0 = one epoch)")
    parser.add_argument("--scaling-sizes", default=",".join(map(str, DEFAULT_SCALING_SIZES)),
                        help="square image sizes (default 128,256,320,480)")
    parser.add_argument("--scaling-batches", default=",".join(map(str, DEFAULT_SCALING_BATCHES)),
                        help="batch sizes (default 1,2,4,8,16)")
    parser.add_argument("--scaling-grid", default="cross", choices=("cross", "full"),
                        help="cross: sizes at the smallest batch + batches at the smallest size (default); "
                             "full: every combination")
    parser.add_argument("--profile-dir", help="also write a tf.profiler trace of two graph-mode training steps "
                                              "here (open with TensorBoard's profile plugin)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)

    what = _parse_list(args.what, "--what", SECTIONS)
    if not what:
        raise BenchError(f"--what: name at least one of {', '.join(SECTIONS)}")
    if args.repeats < 1:
        raise BenchError(f"--repeats must be >= 1, got {args.repeats}")
    if args.tflite_threads < 1:
        raise BenchError(f"--tflite-threads must be >= 1, got {args.tflite_threads}")
    tflite = _parse_list(args.tflite, "--tflite", TFLITE_QUANTIZE)
    train_variants = _parse_list(args.train_variants, "--train-variants", TRAIN_VARIANTS)
    sizes = _parse_ints(args.scaling_sizes, "--scaling-sizes")
    batches = _parse_ints(args.scaling_batches, "--scaling-batches")
    output_stem = os.path.splitext(args.output)[0]

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[bench {time.perf_counter() - start:6.1f} s] {message}", file=sys.stderr, flush=True)

    from tfdepth.config import load_config

    cfg = load_config(args.config, args.overrides)
    log("importing TensorFlow ...")
    import keras

    from tfdepth.data import pipeline

    budget = Budget(args.budget_s, [s for s in SECTIONS if s in what], start=start)
    report: Dict[str, object] = {
        "config": os.path.abspath(args.config), "overrides": list(args.overrides), "name": cfg.name,
        "sections": [s for s in SECTIONS if s in what], "repeats": args.repeats, "min_run_s": args.min_run_s,
        "budget_s": args.budget_s,
    }
    keras.mixed_precision.set_global_policy("float32")
    report["machine"] = machine = machine_info()
    t0 = time.perf_counter()
    data_dir, manifest = pipeline.resolve_dataset(cfg.data)
    report["dataset_ready_s"] = round(time.perf_counter() - t0, 3)
    log(f"dataset {data_dir} ready; measuring the float32 matmul rate ({args.matmul_size}^2) ...")
    matmul = matmul_rate(args.matmul_size, repeats=max(args.repeats, 3), min_run_s=args.min_run_s)
    machine["matmul"] = matmul
    log(f"matmul {matmul['gflops_per_s']['median']:.4g} GFLOP/s")
    _write_json(args.output, report)

    section_s: Dict[str, float] = {}
    train_images_per_s = None
    seconds_per_train_gflop = None
    warm_s = None  # building a Trainer + trace + first step, from the train section
    if "train" in what:
        t0 = time.perf_counter()
        budget.begin("train")
        batch = one_train_batch(cfg, data_dir, manifest)
        report["train"] = train = bench_train(cfg, machine, args.matmul_size, args.repeats, args.min_run_s, budget,
                                              batch, args.profile_dir, train_variants, log)
        train_images_per_s = train["images_per_s"]
        graph = train["variants"]["graph"]
        warm_s = graph["build_s"] + graph["trace_s"] + graph["first_step_s"]
        if train.get("forward_gflops_per_image"):
            seconds_per_train_gflop = 1.0 / (train_images_per_s * TRAIN_FLOPS_FACTOR
                                             * train["forward_gflops_per_image"])
        section_s["train"] = time.perf_counter() - t0
        _write_json(args.output, report)
    if "input" in what:
        t0 = time.perf_counter()
        budget.begin("input")
        log("input: iterating the training pipeline without the model ...")
        report["input"] = inp = bench_input(cfg, data_dir, manifest, args.repeats, budget, args.input_batches)
        if train_images_per_s is None:
            log("input: measuring the graph-mode training step for ratio_to_train ...")
            image, depth = one_train_batch(cfg, data_dir, manifest)
            quick = measure_train_variant(bench_config(cfg, jit_compile=False, mixed_precision="float32"), image,
                                          depth, args.repeats, args.min_run_s, None)
            train_images_per_s = quick["images_per_s"]["median"]
            inp["train_images_per_s_source"] = "measured by the input section (train section not run)"
        else:
            inp["train_images_per_s_source"] = "train.images_per_s"
        inp["train_images_per_s"] = train_images_per_s
        inp["ratio_to_train"] = round(inp["images_per_s"] / train_images_per_s, 3)
        inp["meets_5x"] = inp["ratio_to_train"] >= 5.0
        if not inp["meets_5x"]:
            inp["hint"] = ("the pipeline may limit training: raise data.parallel_calls (-1 = AUTOTUNE), store the "
                           "shards nearer data.input_size (decoding large PNGs dominates), or use JPEG images")
            log(f"input: WARNING: {inp['hint']}")
        log(f"input: {inp['images_per_s']:.4g} images/s = {inp['ratio_to_train']:.3g}x the training step")
        section_s["input"] = time.perf_counter() - t0
        _write_json(args.output, report)
    if "infer" in what:
        t0 = time.perf_counter()
        budget.begin("infer")
        report["infer"] = bench_infer(cfg, args.repeats, args.min_run_s, budget, tflite, args.tflite_threads,
                                      args.calibration_images, log=log)
        section_s["infer"] = time.perf_counter() - t0
        _write_json(args.output, report)
    if "scaling" in what:
        t0 = time.perf_counter()
        budget.begin("scaling")
        report["scaling"] = bench_scaling(cfg, args.repeats, args.min_run_s, budget, sizes, batches,
                                          args.scaling_grid, output_stem, seconds_per_train_gflop, warm_s, log)
        section_s["scaling"] = time.perf_counter() - t0
        _write_json(args.output, report)
    machine["load_average_end"] = _load_average()
    report["section_s"] = {k: round(v, 2) for k, v in section_s.items()}
    report["total_s"] = round(time.perf_counter() - start, 2)
    _write_json(args.output, report)
    log(f"wrote {args.output} in {report['total_s']:.0f} s")
    print(summary_text(report))
    return 0


def summary_text(report: dict) -> str:
    lines = []
    if "train" in report:
        t = report["train"]
        gf = f"{t['gflops_per_s']:.3g} GFLOP/s" if t.get("gflops_per_s") else "GFLOP/s n/a"
        frac = f" = {t['fraction_of_matmul']:.1%} of matmul" if t.get("fraction_of_matmul") else ""
        lines.append(f"train  {t['images_per_s']:.4g} images/s (graph, float32, batch {t['batch_size']}), {gf}{frac}")
        for name, v in t["variants"].items():
            if name == "graph":
                continue
            if "images_per_s" in v:
                lines.append(f"       {name}: {v['images_per_s']['median']:.4g} images/s")
            else:
                lines.append(f"       {name}: {v.get('skipped') or v.get('error')}")
    if "input" in report:
        i = report["input"]
        lines.append(f"input  {i['images_per_s']:.4g} images/s, {i['ratio_to_train']:.3g}x the training step")
    if "infer" in report:
        for name, v in report["infer"]["variants"].items():
            if "latency_ms" in v:
                lines.append(f"infer  {name}: {v['latency_ms']['median']:.4g} ms/image (batch 1), "
                             f"{v['images_per_s']['median']:.4g} images/s (batch {report['infer']['batch']})")
            else:
                lines.append(f"infer  {name}: {v.get('skipped') or v.get('error')}")
    if "scaling" in report:
        lines.extend(report["scaling"]["table"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
