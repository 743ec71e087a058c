"""Errors of the dataset converters."""

from __future__ import annotations


class ConversionError(ValueError):
    """The conversion cannot proceed: bad input layout, a bad sample without ``--skip-bad``, a clash
    with an existing output. The message names the file / key and what was expected."""


class SampleError(ConversionError):
    """One sample is bad (unreadable, truncated, missing, sizes differ, depth out of range). Stops the
    conversion unless ``--skip-bad`` is given; then it is logged and counted in the manifest."""
