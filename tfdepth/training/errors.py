"""The user error of training: a run that cannot continue."""

from tfdepth.errors import UserError


class TrainingError(UserError):
    """Training cannot continue (config mismatch on resume, too many non-finite steps, ...)."""
