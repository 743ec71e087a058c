"""The errors a user can act on. Commands print them as one line (no traceback, exit 2).

They live at the bottom of the package so that every layer (config, data, models, training,
serving) can raise them without importing the commands.
"""


class UserError(RuntimeError):
    """An error the user can act on: bad input, a missing file, a refused operation."""


class ConfigError(UserError, ValueError):
    """A configuration file or ``--set`` override is invalid; the message names the key, the value and
    what is allowed."""
