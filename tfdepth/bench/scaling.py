"""The ``scaling`` section: training-step and inference cost over image sizes and batch sizes, as rows of
a table (``<output>_scaling.md``) and a log-log plot (``<output>_scaling.png``).

``pixel_scaling`` (:func:`pixel_scaling`) answers "does the cost grow with the pixels, not worse?": for
every size measured at the smallest batch, the time ratio to the smallest size (train step and
inference) over the pixel ratio, and whether it is within :data:`PIXEL_RATIO_LIMIT` (1.1x) of it.
A ratio below 1 means the cost grows slower than the pixels (a fixed part per call, e.g. the
optimiser's update of every weight, which does not depend on the image size)."""

from __future__ import annotations

import dataclasses
import os
import time
from typing import List, Optional, Sequence

import numpy as np

from tfdepth.bench import BenchError
from tfdepth.bench.timing import Budget, inverted, short_error, timed, timed_runs
from tfdepth.bench.train import TRAIN_FLOPS_FACTOR, bench_config, build_train_step, forward_gflops, release, \
    run_train_step

DEFAULT_SCALING_SIZES = (128, 256, 320, 512)  # 128^2 -> 512^2: 16x the pixels
PIXEL_RATIO_LIMIT = 1.1  # time ratio / pixel ratio allowed ("cost grows with pixels, not worse")
DEFAULT_SCALING_BATCHES = (1, 2, 4, 8, 16)


def with_input_size(cfg, size: Sequence[int]):
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, input_size=[int(size[0]), int(size[1])]))


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
    (building a train step + trace + first step) come from the train section when it ran; they predict
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
        step = None
        try:
            t_size = time.perf_counter()
            step = build_train_step(with_input_size(base, (size, size)))
            model = step.model
            gflops = forward_gflops(model)

            @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
            def forward(images):
                return model(images, training=False)["depth"]

            # One trace per size (batch axis unknown): later calls of any batch size reuse it.
            _, trace_s = timed(lambda: step.concrete_function(
                tf.TensorSpec([None, size, size, 3], tf.float32), tf.TensorSpec([None, size, size, 1], tf.float32)))
            _, infer_trace_s = timed(lambda: forward.get_concrete_function())
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
                _, first_s = timed(lambda: run_train_step(step, image, depth))
                if b == size_points[0]:
                    warm_s = size_warm_s + first_s  # what the next size will need before its first point
                train = timed_runs(lambda: run_train_step(step, image, depth), repeats, min_run_s, budget,
                                   warmup=1)
                _, first_infer_s = timed(lambda: forward(image).numpy())
                infer = timed_runs(lambda: forward(image).numpy(), repeats, min_run_s, budget)
                row.update({
                    "train_step_s": train["seconds_per_call"],
                    "train_images_per_s": inverted(train["seconds_per_call"], b),
                    "train_first_step_s": round(first_s, 3),
                    "infer_batch_s": infer["seconds_per_call"],
                    "infer_images_per_s": inverted(infer["seconds_per_call"], b),
                    "infer_first_call_s": round(first_infer_s, 3),
                    "train_trace_s": round(trace_s, 3), "infer_trace_s": round(infer_trace_s, 3),
                    "train_tracing_count": step.tracing_count(),
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
                    rows.append({"size": [size, size], "batch": b, "error": short_error(e)})
            log(f"scaling: {size}x{size} failed: {short_error(e)}")
        finally:
            if step is not None:
                step = None
                release()
            keras.backend.clear_session()
    table = scaling_table(rows)
    per_pixel = pixel_scaling(rows)
    if len(per_pixel["sizes"]) >= 2:
        table += "\n\n" + pixel_scaling_table(per_pixel)
        for r in per_pixel["sizes"][1:]:
            log(f"scaling: {r['size'][0]}x{r['size'][1]} = {r['pixel_ratio']:.3g}x the pixels: train "
                f"{r['train_time_ratio']:.3g}x the time ({r['train_ratio_over_pixels']:.2f} of the pixel ratio), "
                f"infer {r['infer_time_ratio']:.3g}x ({r['infer_ratio_over_pixels']:.2f})"
                + ("" if r["within_limit"] else f"  NOT within {PIXEL_RATIO_LIMIT}x"))
    result = {"grid": grid, "sizes": sorted({s for s, _ in points}), "batches": sorted({b for _, b in points}),
              "mode": "graph, float32 (train: the TrainStep; infer: model(images, training=False)); one trace "
                      "per size with the batch axis unknown (train_trace_s / infer_trace_s), so *_first_*_s is the "
                      "first run of a batch size (graph optimisation + kernel set-up)",
              "rows": rows, "pixel_scaling": per_pixel, "table": table.splitlines()}
    table_path = output_stem + "_scaling.md"
    with open(table_path, "w") as f:
        f.write(table + "\n")
    result["table_file"] = os.path.abspath(table_path)
    try:
        result["plot"] = os.path.abspath(plot_scaling(rows, output_stem + "_scaling.png"))
    except Exception as e:  # plotting must not lose the measurements
        result["plot_error"] = short_error(e)
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


def pixel_scaling(rows: Sequence[dict], limit: float = PIXEL_RATIO_LIMIT) -> dict:
    """Time ratio vs pixel ratio over the sizes measured at the smallest batch, relative to the smallest
    size: per size ``pixel_ratio``, ``train_time_ratio`` / ``infer_time_ratio`` (medians),
    ``*_ratio_over_pixels`` (time ratio / pixel ratio: 1 = exactly linear in the pixels) and
    ``within_limit`` (both <= ``limit``); ``within_limit`` at the top: every size is. Sizes that were
    skipped or failed are left out (``sizes`` is empty when fewer than one size was measured)."""
    done = [r for r in rows if "train_step_s" in r and "infer_batch_s" in r]
    result = {"limit": limit, "batch": None, "base_size": None, "sizes": [], "within_limit": None}
    if not done:
        return result
    batch = min(r["batch"] for r in done)
    at_batch = sorted((r for r in done if r["batch"] == batch), key=lambda r: r["size"][0] * r["size"][1])
    base = at_batch[0]
    pixels0 = base["size"][0] * base["size"][1]
    train0, infer0 = base["train_step_s"]["median"], base["infer_batch_s"]["median"]
    out = []
    for r in at_batch:
        pixel_ratio = r["size"][0] * r["size"][1] / pixels0
        train_ratio = r["train_step_s"]["median"] / train0
        infer_ratio = r["infer_batch_s"]["median"] / infer0
        entry = {"size": list(r["size"]), "pixel_ratio": round(pixel_ratio, 4),
                 "train_time_ratio": round(train_ratio, 4), "infer_time_ratio": round(infer_ratio, 4),
                 "train_ratio_over_pixels": round(train_ratio / pixel_ratio, 4),
                 "infer_ratio_over_pixels": round(infer_ratio / pixel_ratio, 4)}
        entry["within_limit"] = bool(train_ratio <= limit * pixel_ratio and infer_ratio <= limit * pixel_ratio)
        out.append(entry)
    result.update({"batch": batch, "base_size": list(base["size"]), "sizes": out,
                   "within_limit": all(e["within_limit"] for e in out)})
    return result


def pixel_scaling_table(per_pixel: dict) -> str:
    """Markdown table of :func:`pixel_scaling`."""
    b, base, limit = per_pixel["batch"], per_pixel["base_size"], per_pixel["limit"]
    lines = [f"| size (batch {b}) | pixels vs {base[0]}x{base[1]} | train time ratio | / pixels | "
             f"infer time ratio | / pixels | within {limit:g}x |",
             "|---|---|---|---|---|---|---|"]
    for e in per_pixel["sizes"]:
        lines.append(f"| {e['size'][0]}x{e['size'][1]} | {e['pixel_ratio']:.3g} | {e['train_time_ratio']:.3g} | "
                     f"{e['train_ratio_over_pixels']:.2f} | {e['infer_time_ratio']:.3g} | "
                     f"{e['infer_ratio_over_pixels']:.2f} | {'yes' if e['within_limit'] else 'NO'} |")
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
