"""Shared command-line helpers: ``--config`` / ``--set`` parsing and error reporting."""

from __future__ import annotations

import argparse
import os
import sys

# Keep TensorFlow's C++ start-up chatter out of the user's terminal unless asked for.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required, help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.batch_size=4 (repeatable)")


from tfdepth.errors import ConfigError, UserError  # noqa: F401 -- re-exported for the commands


def run_main(main, argv=None) -> int:
    """Run ``main(argv)``; known user errors print one clear line and exit 2 instead of a traceback
    (set TFDEPTH_TRACEBACK=1 for the traceback)."""
    try:
        return main(argv) or 0
    except (ConfigError, UserError, FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        if os.environ.get("TFDEPTH_TRACEBACK"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
