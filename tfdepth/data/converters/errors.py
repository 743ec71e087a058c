"""Errors of the dataset converters."""

from __future__ import annotations

from tfdepth.errors import UserError


class ConversionError(ValueError):
    """The conversion cannot proceed: bad input layout, a bad sample without ``--skip-bad``, a clash
    with an existing output. The message names the file / key and what was expected."""


class SampleError(ConversionError):
    """One sample is bad (unreadable, truncated, missing, sizes differ, depth out of range). Stops the
    conversion unless ``--skip-bad`` is given; then it is logged and counted in the manifest."""


class InputChangedError(ConversionError, UserError):
    """The input changed since the output was converted from it (files added, removed or modified);
    refused without ``--overwrite``. The command exits with status 2, like every refused operation."""


class ImplausibleDepthError(ConversionError, UserError):
    """The decoded depth does not look like a scene of the dataset's kind and another depth-encoding
    preset fits (a wrong ``--depth-encoding``); refused unless ``--no-depth-check``. Exit status 2."""
