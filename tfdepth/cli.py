"""Shared command-line helpers: ``--config`` / ``--set`` parsing, ``--verbose``, error reporting.

Every command runs its ``main`` through :func:`run_main`, which

* accepts ``--verbose`` anywhere on the command line (and removes it before the command parses its
  arguments): without it, TensorFlow's C++ start-up chatter (oneDNN notice, "Could not find cuda
  drivers", absl's "All log messages before absl::InitializeLog()", cuInit errors) is kept out of
  the terminal: ``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 and file descriptor 2 is parked in a
  temporary file while ``tensorflow`` is first imported (replayed if the import fails). With
  ``--verbose`` everything shows. ``TF_ENABLE_ONEDNN_OPTS`` is never touched (it changes numerics);
* prints known user errors as one line ``error: ...`` and returns 2 (``TFDEPTH_TRACEBACK=1`` shows
  the traceback), and config warnings as ``warning: ...``.

Importing this module already arms the quiet start-up (unless ``--verbose`` is in ``sys.argv``),
because a command module may import TensorFlow before its ``main`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile
import warnings

from tfdepth.errors import ConfigError, UserError  # noqa: F401 -- re-exported for the commands

VERBOSE_FLAG = "--verbose"


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required, help="experiment YAML (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set train.batch_size=4 (repeatable)")
    add_verbose_arg(parser)


def add_verbose_arg(parser: argparse.ArgumentParser) -> None:
    """Documents ``--verbose`` in ``--help`` (run_main handles it before the parser sees it)."""
    parser.add_argument(VERBOSE_FLAG, action="store_true", help="show TensorFlow's start-up and C++ log messages")


# --------------------------------------------------------------------------------------------------
# Quiet TensorFlow start-up
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _fd2_parked():
    """Sends file descriptor 2 to a temporary file; replays it to stderr if the block raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                parked.seek(0)
                sys.stderr.write(parked.read().decode(errors="replace"))
                sys.stderr.flush()


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Meta-path hook: the first ``import tensorflow`` runs with fd 2 parked, then the hook leaves."""

    def __init__(self):
        self._inner = None

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        uninstall_quiet_import()
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        self._inner = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        try:
            with _fd2_parked():
                self._inner.exec_module(module)
        finally:
            module.__loader__ = self._inner
            if getattr(module, "__spec__", None) is not None:
                module.__spec__.loader = self._inner


_HOOK = _QuietTensorFlowImport()
_ENV_SET_HERE = False


def uninstall_quiet_import() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def set_verbose(verbose: bool) -> None:
    """Quiet (default) or verbose TensorFlow start-up; only matters before TensorFlow is imported."""
    global _ENV_SET_HERE
    if verbose:
        uninstall_quiet_import()
        if _ENV_SET_HERE and "tensorflow" not in sys.modules:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
            _ENV_SET_HERE = False
        return
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        _ENV_SET_HERE = True
    if "tensorflow" not in sys.modules and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


set_verbose(VERBOSE_FLAG in sys.argv[1:])


# --------------------------------------------------------------------------------------------------
# Running a command
# --------------------------------------------------------------------------------------------------


def _format_warning(message, category, filename, lineno, line=None, _default=warnings.formatwarning):
    from tfdepth.config_checks import ConfigWarning

    if issubclass(category, ConfigWarning):
        return f"warning: {message}\n"
    return _default(message, category, filename, lineno, line)


def run_main(main, argv=None) -> int:
    """Run ``main(argv)`` (``argv`` without ``--verbose``); known user errors print one clear line and
    return 2 instead of a traceback (set TFDEPTH_TRACEBACK=1 for the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = VERBOSE_FLAG in argv
    argv = [a for a in argv if a != VERBOSE_FLAG]
    set_verbose(verbose)
    warnings.formatwarning = _format_warning
    try:
        return main(argv) or 0
    except (ConfigError, UserError, FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        if os.environ.get("TFDEPTH_TRACEBACK"):
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {message}", file=sys.stderr)
        return 2
