"""The plan of a run: its phases unrolled into an ordered list of epoch units.

A phase with ``chunks: each`` contributes ``epochs`` units on chunk 0, then ``epochs`` on chunk 1,
...; a phase with ``chunks: all`` contributes ``epochs`` units over all training shards. An epoch unit
is one pass over its data, capped at ``train.steps_per_epoch`` batches.

A phase given in ``steps`` runs exactly that many optimizer steps (per chunk with ``chunks: each``),
cycling the data: as many units of one pass (or ``train.steps_per_epoch`` batches) as it takes, the
last one cut short, each unit a freshly seeded pass (so resume stays exact). E.g. 100k steps over
7,800 batches a pass are 12 units of 7,800 and one of 6,400.

The position of a run is ``(unit index, step within unit)``. The learning rate of a step is the
phase's schedule at the step's index within its phase; the schedule's length is the phase's true
step count, so a decay ends (``schedule(phase_steps)``) exactly where the phase does.

A ``chunks: each`` phase with ``min_chunks`` (its paper's chunk count) refuses a dataset of fewer
chunks before anything is trained (:class:`ConfigError` naming both counts and the ``convert --chunks``
command), a warning instead with ``allow_fewer_chunks`` (``train --allow-fewer-chunks``).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, List, Optional

from tfdepth.config import ExperimentConfig, PhaseConfig
from tfdepth.config_checks import ConfigWarning, plan_warnings
from tfdepth.data import pipeline, shards
from tfdepth.errors import ConfigError
from tfdepth.training.schedules import build_schedule


@dataclasses.dataclass
class EpochUnit:
    index: int
    phase_index: int
    phase_name: str
    num_phases: int  # phases of the run
    chunks: Optional[List[int]]  # None = all chunks
    chunk_label: str  # "all" or the chunk id
    epoch: int  # epoch within (phase, chunk), 0-based
    steps: int
    phase_step_offset: int  # index of this unit's first step within its phase
    phase_steps: int  # steps of the whole phase (schedule length)
    schedule: Callable[[int], float]

    @property
    def label(self) -> str:
        """``[phase i/n chunk c epoch e]``: how progress lines and messages name the unit."""
        return (f"[{self.phase_name} {self.phase_index + 1}/{self.num_phases} chunk {self.chunk_label} "
                f"epoch {self.epoch + 1}]")

    def learning_rate(self, step: int) -> float:
        """The learning rate of step ``step`` (0-based, within this unit)."""
        return self.schedule(self.phase_step_offset + step)


def plan_units(cfg: ExperimentConfig, manifest: dict, allow_fewer_chunks: bool = False) -> List[EpochUnit]:
    """The ordered epoch units of the run, with step counts from the manifest's shard counts; warns
    (:class:`ConfigWarning`) about what load could not check without the dataset's size (a warm-up as
    long as its phase, validation less often than the run has epochs). A ``chunks: each`` phase on
    fewer chunks than its ``min_chunks`` raises :class:`ConfigError` (a warning with
    ``allow_fewer_chunks``)."""
    tcfg = cfg.train
    split = cfg.data.train_split
    num_chunks = shards.num_chunks(manifest, split)
    units: List[EpochUnit] = []
    phase_steps: List[int] = []
    for p, phase in enumerate(tcfg.phases):
        if phase.chunks == "each":
            groups = [[c] for c in range(num_chunks)]
            _check_chunks(cfg, p, num_chunks, allow_fewer_chunks)
        elif phase.chunks == "all":
            groups = [None]
        else:
            raise ConfigError(f"train.phases[{p}].chunks must be 'all' or 'each', got {phase.chunks!r}")
        phase_units = []
        offset = 0
        for group in groups:
            steps = pipeline.steps_per_epoch(manifest, split, tcfg.batch_size, group)
            if tcfg.steps_per_epoch:
                steps = min(steps, tcfg.steps_per_epoch)
            if steps == 0:
                raise ConfigError(
                    f"phase {phase.name!r}: chunk {group} of split {split!r} has fewer samples than one batch "
                    f"({tcfg.batch_size})")
            for e, length in enumerate(_unit_lengths(phase, steps)):
                phase_units.append(dict(chunks=group, epoch=e, steps=length, offset=offset))
                offset += length
        phase_steps.append(offset)
        schedule = build_schedule(phase.schedule.name, phase.schedule.lr, offset, phase.schedule.args)
        for u in phase_units:
            units.append(EpochUnit(
                index=len(units), phase_index=p, phase_name=phase.name, num_phases=len(tcfg.phases),
                chunks=u["chunks"], chunk_label="all" if u["chunks"] is None else str(u["chunks"][0]),
                epoch=u["epoch"], steps=u["steps"], phase_step_offset=u["offset"], phase_steps=offset,
                schedule=schedule))
    for message in plan_warnings(cfg, phase_steps, len(units)):
        warnings.warn(message, ConfigWarning, stacklevel=2)
    return units


def _unit_lengths(phase: PhaseConfig, unit_steps: int) -> List[int]:
    """Step counts of one chunk group's units: ``epochs`` units of ``unit_steps``, or exactly
    ``phase.steps`` steps in units of ``unit_steps``, the last one cut short."""
    if phase.steps is None:
        return [unit_steps] * phase.epochs
    full, rest = divmod(phase.steps, unit_steps)
    return [unit_steps] * full + ([rest] if rest else [])


def _check_chunks(cfg: ExperimentConfig, p: int, num_chunks: int, allow_fewer: bool) -> None:
    """A ``chunks: each`` phase on fewer chunks than its paper's (``min_chunks``): ConfigError, or a
    warning when allowed."""
    phase = cfg.train.phases[p]
    if phase.min_chunks is None or num_chunks >= phase.min_chunks:
        return
    data = cfg.data
    if data.dataset == "synthetic":
        fix = f"generate it in {phase.min_chunks} (--set data.synthetic.chunks={phase.min_chunks})"
    else:
        fix = (f"convert it in {phase.min_chunks} (python -m tfdepth.convert FORMAT --input SOURCE "
               f"--output {data.data_dir} --chunks {phase.min_chunks})")
    message = (f"train.phases[{p}] {phase.name!r} trains chunks: each in turn, but the dataset {data.data_dir} has "
               f"{num_chunks} chunk(s) in split {data.train_split!r} and the recipe's paper uses "
               f"{phase.min_chunks} (train.phases[{p}].min_chunks: {phase.min_chunks})")
    if not allow_fewer:
        raise ConfigError(f"{message}: {fix}, or pass --allow-fewer-chunks to train on {num_chunks}")
    warnings.warn(f"{message}; training on {num_chunks} (--allow-fewer-chunks)", ConfigWarning, stacklevel=3)
