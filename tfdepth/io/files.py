"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file in the same folder (``NAME.<pid>.<random>.tmp``, unique per
process and call, so several processes of one run may write the same file at once), which then
replaces the target with ``os.replace`` (atomic on POSIX and Windows within one file system). When
the write fails the temporary file is removed and the old file is left as it was. The folder is
created when missing.
"""

from __future__ import annotations

import glob
import json
import os
import re
import secrets
from typing import Any, List

__all__ = ["TEMP_SUFFIX_RE", "stale_temps", "temp_path", "write_bytes", "write_json", "write_text"]

# What :func:`temp_path` appends to a file name (for clean-up code that recognises leftovers).
TEMP_SUFFIX_RE = r"\.\d+\.[0-9a-f]{8}\.tmp"


def temp_path(path: str) -> str:
    """A temporary name beside ``path``, unique per process and call: ``path.<pid>.<8 hex>.tmp``."""
    return f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def stale_temps(path: str) -> List[str]:
    """Temporary files of ``path`` left behind by writers that were killed mid-write."""
    pattern = re.compile(re.escape(os.path.basename(path)) + TEMP_SUFFIX_RE + "$")
    return sorted(p for p in glob.glob(glob.escape(path) + ".*.tmp") if pattern.match(os.path.basename(p)))


def write_bytes(path: str, data: bytes, fsync: bool = False) -> str:
    """Write ``data`` to ``path`` atomically; ``fsync`` also flushes it to the disk before the rename
    (for files that must survive a power cut, e.g. a dataset manifest). Returns ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    return path


def write_text(path: str, text: str, fsync: bool = False) -> str:
    """Write ``text`` (UTF-8) to ``path`` atomically. Returns ``path``."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def write_json(path: str, obj: Any, indent: int = 1, fsync: bool = False, **dump_kwargs) -> str:
    """Write ``obj`` as JSON to ``path`` atomically (``json.dumps`` with ``indent`` and ``dump_kwargs``,
    e.g. ``allow_nan=False``, ``sort_keys=True``). The object is serialised before the file is touched,
    so an unserialisable object leaves the old file as it was. Returns ``path``."""
    return write_text(path, json.dumps(obj, indent=indent, **dump_kwargs), fsync=fsync)
