"""Cutting one set of captures into train / val / test: by sequence where the names show sequences, seeded.

Neighbouring frames of one capture sequence are nearly the same picture: a frame in train and its
neighbour in val make the validation score optimistic. So samples are assigned a *sequence* from their
names (:func:`sequence_of`) and whole sequences go to one split; only when the names show fewer
sequences than the requested splits need are single samples assigned instead (said in the plan's
description).

The sequence of a sample (its path relative to its capture folder, without extension) is, in order:

1. its sub-folder (``kitchen/0001`` -> ``kitchen``), prefixed by the capture folder when several are
   combined (each capture folder is at least a sequence of its own);
2. else its name without the last number (``office_03_0001`` -> ``office_03_``) when that gives more
   than one sequence among the names;
3. else every sample is its own sequence (one folder of frames named ``rgb_00000`` ... cannot be told
   apart).

:func:`assign_splits` shuffles the sequences (or samples) with the seed (``numpy``
``default_rng((seed, 7))``) and fills test, then val, up to round(fraction x samples) each (at least one sample when the fraction is
> 0), the rest is train; train must keep at least one sample. TF-free.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from tfdepth.data.converters.errors import ConversionError

SPLIT_BY = ("auto", "sequence", "sample")
_LAST_NUMBER = re.compile(r"\d+(?!.*\d)")


def sequence_of(rel: str, folder: Optional[str] = None) -> str:
    """The sub-folder of ``rel`` (path without extension, relative to its capture folder), prefixed by
    ``folder`` when given; ``""`` (the capture folder itself) for a file at the top."""
    head = os.path.dirname(rel.replace("\\", "/"))
    return "/".join(p for p in (folder, head) if p)


def _name_prefix(rel: str) -> str:
    base = os.path.basename(rel)
    return _LAST_NUMBER.sub("", base, count=1)


def sequences_of(rels: Sequence[str], folders: Optional[Sequence[str]] = None) -> Optional[List[str]]:
    """The sequence of every sample (module doc, rules 1-2), or None when the names show no sequences
    (rule 3); ``folders``: each sample's capture folder label when several capture folders are combined."""
    folders = list(folders) if folders is not None else [None] * len(rels)
    seqs = [sequence_of(r, f) for r, f in zip(rels, folders)]
    if len(set(seqs)) > 1:
        return seqs
    by_name = [s + "|" + _name_prefix(r) for s, r in zip(seqs, rels)]
    if len(set(by_name)) > 1:
        return by_name
    return None


@dataclass
class SplitPlan:
    """``split`` name of every sample (input order) and how it was decided (``by``: sequence | sample)."""

    splits: List[str]
    by: str
    sequences: int

    def counts(self) -> Dict[str, int]:
        return {s: self.splits.count(s) for s in ("train", "val", "test") if s in self.splits}

    def describe(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in self.counts().items())
        if self.by == "sequence":
            how = f"whole sequences ({self.sequences} found in the folders / file names)"
        elif self.sequences:
            how = (f"single samples ({self.sequences} sequences found, too few to keep them whole: neighbouring "
                   "frames may fall into different splits)")
        else:
            how = "single samples (the names show no sequences: neighbouring frames may fall into different splits)"
        return f"split {len(self.splits)} samples by {how}: {counts}"


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for flag, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ConversionError(f"{flag} {value}: expected a fraction in [0, 1)")
    if val_fraction + test_fraction >= 1.0:
        raise ConversionError(f"--val-fraction {val_fraction:g} + --test-fraction {test_fraction:g} leave nothing to "
                              "train on (their sum must be < 1)")


def assign_splits(count: int, sequences: Optional[Sequence[str]], val_fraction: float, test_fraction: float,
                  seed: int = 0, by: str = "auto") -> SplitPlan:
    """Train / val / test for each of ``count`` samples whose sequence labels are ``sequences`` (None:
    the names show none; module doc).

    ``by``: ``sequence`` keeps sequences whole (an error when there are too few), ``sample`` assigns
    single samples, ``auto`` keeps sequences whole when there are enough of them."""
    check_fractions(val_fraction, test_fraction)
    if by not in SPLIT_BY:
        raise ConversionError(f"--split-by {by!r}: choose from {', '.join(SPLIT_BY)}")
    n = int(count)
    wanted = [(name, f) for name, f in (("test", test_fraction), ("val", val_fraction)) if f > 0]
    names = " + ".join(name for name, _ in wanted)
    if n < len(wanted) + 1:
        raise ConversionError(f"{n} sample(s) cannot make train + {names} (at least one sample each)")
    order = sorted(set(sequences)) if sequences is not None else []
    whole = len(order) >= len(wanted) + 1
    if by == "sequence" and not whole:
        raise ConversionError(f"--split-by sequence: the file names and folders show {len(order)} sequence(s), "
                              f"too few for train + {names} (--split-by sample assigns single samples)")
    use_sequences = by == "sequence" or (by == "auto" and whole)
    rng = np.random.default_rng((int(seed), 7))
    if use_sequences:
        groups = {s: [i for i, x in enumerate(sequences) if x == s] for s in order}
        units = [groups[order[i]] for i in rng.permutation(len(order))]
    else:
        units = [[int(i)] for i in rng.permutation(n)]
    splits = ["train"] * n
    position = 0
    for k, (name, fraction) in enumerate(wanted):
        target = max(1, int(round(fraction * n)))
        reserve = len(wanted) - k  # one unit at least for each split still to fill and for train
        taken = 0
        while taken < target and position < len(units) - reserve:
            for i in units[position]:
                splits[i] = name
            taken += len(units[position])
            position += 1
    return SplitPlan(splits, "sequence" if use_sequences else "sample", len(order))


__all__ = ["SPLIT_BY", "SplitPlan", "assign_splits", "check_fractions", "sequence_of", "sequences_of"]
