"""The ``input`` section: images/s the training tf.data pipeline (TFRecord shards -> decode -> resize ->
augment -> batch) delivers with the model removed."""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Optional

from tfdepth.bench import BenchError
from tfdepth.bench.timing import Budget, summarize

DEFAULT_INPUT_BATCHES = 50  # per input-pipeline run (or the whole epoch when shorter)


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
