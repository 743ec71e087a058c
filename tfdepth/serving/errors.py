"""The user errors of serving: a model that cannot be exported as asked, a path that is not a model."""

from tfdepth.errors import UserError


class ExportError(UserError, ValueError):
    """The model or its output location cannot be exported as asked; the message says why."""


class ModelLoadError(UserError, ValueError):
    """A model path is not a checkpoint, SavedModel or TFLite file; the message names it."""
