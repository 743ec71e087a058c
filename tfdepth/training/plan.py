"""The plan of a run: its phases unrolled into an ordered list of epoch units.

A phase with ``chunks: each`` contributes ``epochs`` units on chunk 0, then ``epochs`` on chunk 1,
...; a phase with ``chunks: all`` contributes ``epochs`` units over all training shards. The
position of a run is ``(unit index, step within unit)``. The learning rate of a step is the phase's
schedule at the step's index within its phase.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, List, Optional

from tfdepth.config import ExperimentConfig
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


def plan_units(cfg: ExperimentConfig, manifest: dict) -> List[EpochUnit]:
    """The ordered epoch units of the run, with step counts from the manifest's shard counts; warns
    (:class:`ConfigWarning`) about what load could not check without the dataset's size (a warm-up as
    long as its phase, validation less often than the run has epochs)."""
    tcfg = cfg.train
    split = cfg.data.train_split
    num_chunks = shards.num_chunks(manifest, split)
    units: List[EpochUnit] = []
    phase_steps: List[int] = []
    for p, phase in enumerate(tcfg.phases):
        if phase.chunks == "each":
            groups = [[c] for c in range(num_chunks)]
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
            for e in range(phase.epochs):
                phase_units.append(dict(chunks=group, epoch=e, steps=steps, offset=offset))
                offset += steps
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
