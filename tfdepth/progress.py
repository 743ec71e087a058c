"""The one progress report of every long-running command: rate-limited lines on stderr and an end summary.

    with Progress("convert train", total=len(refs), unit="sample") as progress:
        for ref in refs:
            ...
            progress.update()
    # -> "convert train: 120/400 samples (30 %, 4.1/s, ETA 0:01:08)" at most every few seconds,
    #    "convert train: 400 samples in 97.3 s (4.1/s)" at the end

On a terminal the line is redrawn in place (``\\r``) at most every :data:`TTY_INTERVAL_S`; elsewhere
(logs, pipes, CI) a new line is printed at most every ``interval_s`` (default :data:`LOG_INTERVAL_S`)
and when the last item is done, so a log never fills with progress. :meth:`Progress.close` prints the
summary line (count, time, rate and any ``extra`` text) unless ``summary=False``; ``enabled=False``
prints nothing at all. :meth:`Progress.write` prints a message without breaking a redrawn line.

:func:`native_stderr_parked` keeps C++ log lines (the TFLite converter's) out of the terminal while a
long task shows its own progress. Only the standard library; ``clock`` and ``stream`` are injectable
for tests.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

__all__ = ["LOG_INTERVAL_S", "Progress", "TTY_INTERVAL_S", "format_duration", "native_logs_quiet",
           "native_stderr_parked", "track"]

LOG_INTERVAL_S = 5.0  # seconds between progress lines in a log
TTY_INTERVAL_S = 0.2  # seconds between redraws on a terminal

T = TypeVar("T")


def format_duration(seconds: float) -> str:
    """``H:MM:SS``."""
    seconds = int(max(seconds, 0) + 0.5)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _plural(unit: str, n: int) -> str:
    return unit if n == 1 or not unit else (unit + "es" if unit.endswith("s") else unit + "s")


class Progress:
    """Counts done items of a task named ``desc`` (``total`` when known) and reports them on ``stream``."""

    def __init__(self, desc: str, total: Optional[int] = None, unit: str = "item", stream=None,
                 enabled: bool = True, interval_s: Optional[float] = None, clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.unit = desc, (int(total) if total is not None else None), unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = (TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S) if interval_s is None else float(interval_s)
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._last_shown = self.start
        self._line_open = False  # a redrawn terminal line without its newline yet
        self._closed = False

    # ---------------------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.clock() - self.start

    def rate(self) -> float:
        """Items per second so far."""
        return self.done / max(self.elapsed(), 1e-9)

    def line(self) -> str:
        """``desc: done/total units (pct, rate/s, ETA h:mm:ss)`` (without total: ``desc: done units (rate/s)``)."""
        rate = self.rate()
        if self.total:
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            return (f"{self.desc}: {self.done}/{self.total} {_plural(self.unit, self.total)} "
                    f"({100.0 * self.done / self.total:.0f} %, {rate:.1f}/s, ETA {format_duration(eta)})")
        return f"{self.desc}: {self.done} {_plural(self.unit, self.done)} ({rate:.1f}/s)"

    def summary(self, extra: str = "") -> str:
        """``desc: N units in 12.3 s (4.5/s)`` plus ``, extra``."""
        text = (f"{self.desc}: {self.done} {_plural(self.unit, self.done)} in {self.elapsed():.1f} s "
                f"({self.rate():.1f}/s)")
        return text + (f", {extra}" if extra else "")

    @property
    def redrawing(self) -> bool:
        """A progress line is drawn on the terminal without its newline yet."""
        return self._line_open

    # ---------------------------------------------------------------------------------------------
    def _emit(self, text: str, redraw: bool) -> None:
        if redraw and self.tty:
            self.stream.write("\r\033[K" + text)
            self._line_open = True
        else:
            if self._line_open:
                self.stream.write("\r\033[K")
                self._line_open = False
            self.stream.write(text + "\n")
        self.stream.flush()

    def update(self, n: int = 1) -> None:
        """``n`` more items done; shows the progress line when ``interval_s`` has passed (and at the last item)."""
        self.done += int(n)
        if not self.enabled:
            return
        now = self.clock()
        last = self.total is not None and self.done >= self.total
        if now - self._last_shown >= self.interval_s or (last and self.tty):
            self._last_shown = now
            self._emit(self.line(), redraw=True)

    def write(self, message: str) -> None:
        """A message line (e.g. a failed file) that does not break the redrawn progress line."""
        if self._line_open:
            self.stream.write("\r\033[K")
            self._line_open = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def close(self, extra: str = "", summary: bool = True) -> str:
        """Ends the progress line and prints :meth:`summary` (with ``extra``) unless ``summary`` is False;
        returns the summary text. A second call does nothing."""
        text = self.summary(extra)
        if self._closed:
            return text
        self._closed = True
        if self._line_open:
            self.stream.write("\r\033[K")
            self._line_open = False
        if self.enabled and summary:
            self.stream.write(text + "\n")
        self.stream.flush()
        return text

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(summary=exc_type is None)


@contextlib.contextmanager
def native_stderr_parked(enabled: bool = True):
    """Keeps what C/C++ code writes to file descriptor 2 (TensorFlow's and the TFLite converter's log
    lines) out of the terminal while the block runs, replaying it if the block raises; Python's own
    ``sys.stderr`` (progress lines, warnings) keeps going to the terminal. ``enabled=False`` does nothing."""
    try:
        if not enabled:
            raise OSError
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # disabled, or no usable fd 2 (embedded interpreters)
        yield
        return
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as parked:
        os.dup2(parked.fileno(), 2)
        if getattr(python_stderr, "fileno", None) is not None and _is_fd2(python_stderr):
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, errors="replace")
        ok = False
        try:
            yield
            ok = True
        finally:
            if sys.stderr is not python_stderr:
                sys.stderr.close()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                parked.seek(0)
                python_stderr.write(parked.read().decode(errors="replace"))
                python_stderr.flush()


def _is_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


def native_logs_quiet() -> bool:
    """Whether TensorFlow's C++ log lines are to be kept quiet: ``TF_CPP_MIN_LOG_LEVEL`` set above 0 (as
    the commands set it unless ``--verbose`` is given, :mod:`tfdepth.cli`)."""
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() not in ("", "0")


def track(iterable: Iterable[T], desc: str, total: Optional[int] = None, unit: str = "item", **kwargs) -> Iterator[T]:
    """Yields the items of ``iterable`` counting each with a :class:`Progress` (``total`` defaults to
    ``len(iterable)`` where it has one); the summary is printed when the iteration ends."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(desc, total, unit, **kwargs) as progress:
        for item in iterable:
            yield item
            progress.update()
