"""tfdepth.progress: rate-limited progress lines and the end summary every long command prints."""

import io

import pytest

from tfdepth.progress import Progress, format_duration, track


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_lines_are_rate_limited_and_the_summary_has_count_time_and_rate():
    clock, out = Clock(), io.StringIO()
    progress = Progress("convert train", total=10, unit="sample", stream=out, interval_s=5.0, clock=clock)
    for _ in range(10):
        clock.now += 1.5  # one sample every 1.5 s: a line at most every 5 s
        progress.update()
    text = progress.close("10 written")
    lines = out.getvalue().splitlines()
    # t = 6 s (4 done) and t = 12 s (8 done) pass the 5 s interval; not every item prints
    assert lines[:2] == ["convert train: 4/10 samples (40 %, 0.7/s, ETA 0:00:09)",
                         "convert train: 8/10 samples (80 %, 0.7/s, ETA 0:00:03)"]
    assert lines[2] == text == "convert train: 10 samples in 15.0 s (0.7/s), 10 written"
    assert len(lines) == 3
    progress.close()  # a second close prints nothing
    assert len(out.getvalue().splitlines()) == 3


def test_unknown_total_disabled_and_failed_runs():
    clock, out = Clock(), io.StringIO()
    with Progress("predict", None, "image", stream=out, interval_s=0.0, clock=clock) as progress:
        clock.now += 2.0
        progress.update(2)
    assert out.getvalue().splitlines() == ["predict: 2 images (1.0/s)", "predict: 2 images in 2.0 s (1.0/s)"]

    quiet = io.StringIO()
    with Progress("x", 3, stream=quiet, enabled=False, interval_s=0.0) as progress:
        progress.update(3)
    assert quiet.getvalue() == ""

    failed = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress("x", 3, stream=failed, interval_s=1e9):
            raise RuntimeError("boom")
    assert failed.getvalue() == ""  # no summary claiming the task finished


def test_terminal_redraws_one_line_and_messages_do_not_break_it():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    clock, out = Clock(), Tty()
    progress = Progress("evaluate", 2, "file", stream=out, clock=clock)
    clock.now += 1.0
    progress.update()
    assert progress.redrawing and out.getvalue() == "\r\033[Kevaluate: 1/2 files (50 %, 1.0/s, ETA 0:00:01)"
    progress.write("FAILED b.png: unreadable")
    assert out.getvalue().endswith("\r\033[KFAILED b.png: unreadable\n") and not progress.redrawing
    clock.now += 1.0
    progress.update()  # the last item always shows on a terminal
    progress.close()
    assert out.getvalue().endswith("evaluate: 2/2 files (100 %, 1.0/s, ETA 0:00:00)\r\033[K"
                                   "evaluate: 2 files in 2.0 s (1.0/s)\n")


def test_track_and_durations():
    out = io.StringIO()
    assert list(track([1, 2, 3], "items", stream=out, interval_s=1e9)) == [1, 2, 3]
    assert out.getvalue().startswith("items: 3 items in ")
    assert format_duration(3725.4) == "1:02:05" and format_duration(-3) == "0:00:00"


def test_native_stderr_is_parked_but_python_stderr_still_shows(capfd):
    import os
    import sys

    from tfdepth.progress import native_stderr_parked

    with native_stderr_parked():
        os.write(2, b"I0000 converter chatter\n")  # what C++ code writes to fd 2
        print("progress line", file=sys.stderr, flush=True)
    with native_stderr_parked(enabled=False):
        os.write(2, b"shown when not parked\n")
    err = capfd.readouterr().err
    assert "converter chatter" not in err and "progress line" in err and "shown when not parked" in err
    with pytest.raises(RuntimeError):
        with native_stderr_parked():
            os.write(2, b"replayed on failure\n")
            raise RuntimeError("x")
    assert "replayed on failure" in capfd.readouterr().err
