"""Training and scoring the zoo's recipes, one workdir each under the output directory.

``DIR/<recipe>/`` is an ordinary training workdir (``python -m tfdepth.train`` could resume it);
``DIR/<recipe>/zoo_entry.json`` is written once the recipe is trained and scored, and marks it
finished: a later run skips it (after checking that its config is still the one asked for). A recipe
interrupted mid-training resumes through the trainer's exact resume; ``zoo_timing.json`` carries the
training seconds of the parts already run. ``DIR/zoo.json`` and ``DIR/zoo.md`` are rewritten from
every finished entry after each recipe.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import List, Optional, Sequence

from tfdepth.config import ExperimentConfig
from tfdepth.io.files import write_json
from tfdepth.training.hooks import Hook
from tfdepth.zoo import catalogue, report

ENTRY_FILE = report.ENTRY_FILE

TIMING_FILE = "zoo_timing.json"
METRIC_KEYS = ("abs_rel", "rmse", "d1", "log10", "mae")


class TimingHook(Hook):
    """Seconds spent in the training steps (from a unit's start to its last step: validation and
    checkpoints at the unit's end excluded; the first step's tracing included), persisted after each
    unit so that a resumed run adds to them."""

    def __init__(self, path: str, batch_size: int):
        self.path, self.batch_size = path, batch_size
        self.state = {"train_seconds": 0.0, "steps": 0}
        if os.path.isfile(path):
            with open(path) as f:
                self.state.update(json.load(f))
        self._start: Optional[float] = None
        self._steps = 0

    def on_epoch_begin(self, unit, first_step):
        self._start, self._steps = time.perf_counter(), 0

    def on_step_end(self, step):
        self._steps += 1
        if step.last_of_unit:
            self.state["train_seconds"] += time.perf_counter() - self._start
            self.state["steps"] += self._steps

    def on_epoch_end(self, epoch):
        write_json(self.path, self.state)


def machine() -> dict:
    from tfdepth.bench.machine import cpu_info, load_average

    cpu, load = cpu_info(), load_average()
    return {"cpu": cpu.get("cpu_model") or platform.processor(), "cores": cpu["cpu_count"],
            "load_average_1m": load[0] if load else None, "python": platform.python_version()}


def model_stats(model) -> dict:
    from tfdepth.models.flops import forward_gflops_or_none

    return {"params": int(model.count_params()),
            "trainable_params": int(sum(int(v.numpy().size) for v in model.trainable_variables)),
            "forward_gflops": forward_gflops_or_none(model)}


def train_recipe(recipe: catalogue.Recipe, cfg: ExperimentConfig, workdir: str, scale: str,
                 overrides: Sequence[str], paper: Optional[dict], log=None) -> dict:
    """Train (or resume) and score one recipe in ``workdir``; writes and returns its zoo entry."""
    log = log or sys.stderr
    import keras

    from tfdepth.training.loop import Trainer

    keras.utils.clear_session()
    timing = TimingHook(os.path.join(workdir, TIMING_FILE), cfg.train.batch_size)
    os.makedirs(workdir, exist_ok=True)
    start = time.perf_counter()
    trainer = Trainer(cfg, workdir, log_stream=log, hooks=[timing])
    metrics = trainer.run()
    wall = time.perf_counter() - start
    steps = int(trainer.train_step.global_step.numpy())
    seconds = timing.state["train_seconds"]
    images = steps * cfg.train.batch_size
    entry = {
        "recipe": recipe.name,
        "config": recipe.config,
        "scale": scale,
        "overrides": list(overrides),
        "scaled": recipe.scaled if scale == "cpu" else "",
        "workdir": os.path.basename(workdir),
        "input_size": [int(s) for s in cfg.data.input_size],
        "batch_size": cfg.train.batch_size,
        **model_stats(trainer.train_step.model),
        "steps": steps,
        "images": images,
        "train_seconds": round(seconds, 1),
        "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
        "wall_seconds_this_run": round(wall, 1),
        "protocol": cfg.eval.protocol,
        "val_images": metrics.get("images"),
        "model": {k: metrics["model"][k] for k in METRIC_KEYS},
        "baseline": {k: metrics["baseline"][k] for k in METRIC_KEYS},
        "baseline_depth_m": metrics.get("baseline_depth_m"),
        "abs_rel_ratio": metrics["model"]["abs_rel"] / metrics["baseline"]["abs_rel"],
        "paper": paper,
        "machine": machine(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json(os.path.join(workdir, ENTRY_FILE), entry)
    return entry


def finished_entry(workdir: str) -> Optional[dict]:
    path = os.path.join(workdir, ENTRY_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def run_zoo(recipes: List[catalogue.Recipe], scale: str, output: str, extra: Sequence[str] = (),
            data_dir: Optional[str] = None, log=None) -> dict:
    """Every recipe of ``recipes`` at ``scale`` into ``output``; returns the zoo.json dict."""
    log = log or sys.stderr
    common, catalogue_recipes = catalogue.load_recipes()
    papers = catalogue.load_papers()
    data_dir = data_dir or os.path.join(output, "data")
    # Resolve every config first: a mistake in any of them stops the run before anything trains.
    plans = []
    for recipe in recipes:
        overrides = catalogue.overrides_for(recipe, scale, common, data_dir, extra)
        plans.append((recipe, overrides, catalogue.resolve_config(recipe, overrides)))
    if scale == "paper":
        missing = [line for recipe, _, cfg in plans for line in catalogue.paper_missing(recipe, cfg)]
        if missing:
            for line in missing:
                print(f"missing: {line}", file=log)
            from tfdepth.errors import UserError

            raise UserError(f"--scale paper: {len(missing)} missing thing(s) listed above; nothing was trained")
    os.makedirs(output, exist_ok=True)
    report.check_scale(output, scale)
    from tfdepth.training.checkpoint import check_or_save_config

    for index, (recipe, overrides, cfg) in enumerate(plans):
        workdir = os.path.join(output, recipe.name)
        done = finished_entry(workdir)
        if done is not None:
            check_or_save_config(cfg, workdir)  # the finished run must be the one asked for
            print(f"zoo [{index + 1}/{len(plans)}] {recipe.name}: finished earlier (AbsRel "
                  f"{done['model']['abs_rel']:.4f}, baseline {done['baseline']['abs_rel']:.4f}); not retrained",
                  file=log)
            continue
        print(f"zoo [{index + 1}/{len(plans)}] {recipe.name}: {recipe.config} at --scale {scale}", file=log)
        entry = train_recipe(recipe, cfg, workdir, scale, overrides, catalogue.paper_row(papers, recipe), log)
        print(f"zoo [{index + 1}/{len(plans)}] {recipe.name}: AbsRel {entry['model']['abs_rel']:.4f} vs baseline "
              f"{entry['baseline']['abs_rel']:.4f} ({entry['abs_rel_ratio']:.2f}x) in {entry['train_seconds']:.0f} s "
              f"of training", file=log)
        report.write(output, scale, list(catalogue_recipes), machine())
    return report.write(output, scale, list(catalogue_recipes), machine())
