"""The benchmark report: runs the chosen sections in order under the time budget and writes the JSON
after each one (a partial run keeps what it measured), and the short text summary."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Dict, Optional, Sequence

from tfdepth.bench.compare_torch import bench_compare_torch
from tfdepth.bench.infer import TFLITE_QUANTIZE, bench_infer
from tfdepth.bench.input_pipeline import DEFAULT_INPUT_BATCHES, bench_input
from tfdepth.bench.machine import load_average, machine_info
from tfdepth.bench.matmul import matmul_rate
from tfdepth.bench.scaling import DEFAULT_SCALING_BATCHES, DEFAULT_SCALING_SIZES, bench_scaling
from tfdepth.bench.timing import Budget
from tfdepth.bench.train import (TRAIN_FLOPS_FACTOR, TRAIN_VARIANTS, bench_config, bench_train,
                                 measure_train_variant, one_train_batch)
from tfdepth.io.files import write_json

SECTIONS = ("train", "input", "infer", "scaling")
TORCH_SECTION = "torch"  # only with --compare-torch (needs PyTorch)


@dataclasses.dataclass
class BenchOptions:
    """What to measure and how (the command's options, already checked)."""

    what: Sequence[str] = SECTIONS
    output: str = "bench.json"
    repeats: int = 5
    min_run_s: float = 0.5
    budget_s: float = 540.0
    matmul_size: int = 2048
    train_variants: Sequence[str] = TRAIN_VARIANTS
    tflite: Sequence[str] = TFLITE_QUANTIZE
    tflite_threads: int = 2
    calibration_images: int = 8
    input_batches: int = DEFAULT_INPUT_BATCHES
    scaling_sizes: Sequence[int] = DEFAULT_SCALING_SIZES
    scaling_batches: Sequence[int] = DEFAULT_SCALING_BATCHES
    scaling_grid: str = "cross"
    profile_dir: Optional[str] = None
    compare_torch: bool = False


def run_bench(cfg, config_path: str, overrides: Sequence[str], opts: BenchOptions, log: Callable[[str], None],
              start: Optional[float] = None) -> dict:
    """Measure the sections of ``opts.what`` for ``cfg``; writes and returns the report. ``start``
    (``time.perf_counter()``) is when the command started: the budget counts from there."""
    start = time.perf_counter() if start is None else start
    log("importing TensorFlow ...")
    import keras

    from tfdepth.data import pipeline

    what = list(opts.what) + ([TORCH_SECTION] if opts.compare_torch else [])
    sections = [s for s in SECTIONS + (TORCH_SECTION,) if s in what]
    budget = Budget(opts.budget_s, sections, start=start)
    report: Dict[str, object] = {
        "config": os.path.abspath(config_path), "overrides": list(overrides), "name": cfg.name,
        "sections": sections, "repeats": opts.repeats, "min_run_s": opts.min_run_s,
        "budget_s": opts.budget_s,
    }
    keras.mixed_precision.set_global_policy("float32")
    report["machine"] = machine = machine_info()
    t0 = time.perf_counter()
    data_dir, manifest = pipeline.resolve_dataset(cfg.data)
    report["dataset_ready_s"] = round(time.perf_counter() - t0, 3)
    log(f"dataset {data_dir} ready; measuring the float32 matmul rate ({opts.matmul_size}^2) ...")
    matmul = matmul_rate(opts.matmul_size, repeats=max(opts.repeats, 3), min_run_s=opts.min_run_s)
    machine["matmul"] = matmul
    log(f"matmul {matmul['gflops_per_s']['median']:.4g} GFLOP/s")
    write_json(opts.output, report)

    section_s: Dict[str, float] = {}
    train_images_per_s = None
    seconds_per_train_gflop = None
    warm_s = None  # building a train step + trace + first step, from the train section
    if "train" in what:
        t0 = time.perf_counter()
        budget.begin("train")
        batch = one_train_batch(cfg, data_dir, manifest)
        report["train"] = train = bench_train(cfg, machine, opts.matmul_size, opts.repeats, opts.min_run_s, budget,
                                              batch, opts.profile_dir, opts.train_variants, log)
        train_images_per_s = train["images_per_s"]
        graph = train["variants"]["graph"]
        warm_s = graph["build_s"] + graph["trace_s"] + graph["first_step_s"]
        if train.get("forward_gflops_per_image"):
            seconds_per_train_gflop = 1.0 / (train_images_per_s * TRAIN_FLOPS_FACTOR
                                             * train["forward_gflops_per_image"])
        section_s["train"] = time.perf_counter() - t0
        write_json(opts.output, report)
    if "input" in what:
        t0 = time.perf_counter()
        budget.begin("input")
        log("input: iterating the training pipeline without the model ...")
        report["input"] = inp = bench_input(cfg, data_dir, manifest, opts.repeats, budget, opts.input_batches)
        if train_images_per_s is None:
            log("input: measuring the graph-mode training step for ratio_to_train ...")
            image, depth = one_train_batch(cfg, data_dir, manifest)
            quick = measure_train_variant(bench_config(cfg, jit_compile=False, mixed_precision="float32"), image,
                                          depth, opts.repeats, opts.min_run_s, None)
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
        write_json(opts.output, report)
    if "infer" in what:
        t0 = time.perf_counter()
        budget.begin("infer")
        report["infer"] = bench_infer(cfg, opts.repeats, opts.min_run_s, budget, opts.tflite, opts.tflite_threads,
                                      opts.calibration_images, log=log)
        section_s["infer"] = time.perf_counter() - t0
        write_json(opts.output, report)
    if "scaling" in what:
        t0 = time.perf_counter()
        budget.begin("scaling")
        report["scaling"] = bench_scaling(cfg, opts.repeats, opts.min_run_s, budget, opts.scaling_sizes,
                                          opts.scaling_batches, opts.scaling_grid, os.path.splitext(opts.output)[0],
                                          seconds_per_train_gflop, warm_s, log)
        section_s["scaling"] = time.perf_counter() - t0
        write_json(opts.output, report)
    if TORCH_SECTION in what:
        t0 = time.perf_counter()
        budget.begin(TORCH_SECTION)
        report[TORCH_SECTION] = bench_compare_torch(cfg, opts.repeats, opts.min_run_s, budget,
                                                    one_train_batch(cfg, data_dir, manifest), log)
        section_s[TORCH_SECTION] = time.perf_counter() - t0
        write_json(opts.output, report)
    machine["load_average_end"] = load_average()
    report["section_s"] = {k: round(v, 2) for k, v in section_s.items()}
    report["total_s"] = round(time.perf_counter() - start, 2)
    write_json(opts.output, report)
    log(f"wrote {opts.output} in {report['total_s']:.0f} s")
    return report


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
    if TORCH_SECTION in report:
        c = report[TORCH_SECTION]
        lines.append(f"torch  tfdepth {c['tfdepth']['images_per_s']['median']:.4g} images/s vs PyTorch eager twin "
                     f"{c['torch']['images_per_s']['median']:.4g} images/s (batch {c['batch_size']}, "
                     f"{c['input_size'][0]}x{c['input_size'][1]}): {c['ratio']:.3f}x")
    return "\n".join(lines)
