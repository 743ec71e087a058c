"""The worker pool of a conversion: load + check + encode samples in input order.

:class:`WorkerPool` runs :func:`work_ref` (random-access sources: load the sample, then check it) or
:func:`work_loaded` (streaming sources: check an already loaded sample) inline (``workers <= 1``) or in
a ``spawn`` process pool; results come back in input order, so the output does not depend on
``workers``. A sample that fails comes back as a :class:`~tfdepth.data.converters.checks.BadSample`.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from tfdepth.data.converters.checks import BadSample, WorkerOptions, process_sample
from tfdepth.data.converters.errors import SampleError
from tfdepth.data.converters.source import LoadedSample, SampleRef, Source
from tfdepth.io import depth as depth_io
from tfdepth.io.images import ImageReadError

_WORKER: Dict[str, Any] = {}


def _init_worker(source: Source, opts: WorkerOptions, single_thread: bool) -> None:
    if single_thread:
        import cv2

        cv2.setNumThreads(1)
    _WORKER["source"], _WORKER["opts"] = source, opts


def work_ref(ref: SampleRef):
    """Load and check one sample of a random-access source (in a worker)."""
    try:
        sample = _WORKER["source"].load(ref)
        return process_sample(sample, _WORKER["source"], _WORKER["opts"])
    except (SampleError, depth_io.DepthFormatError, ImageReadError) as e:
        return BadSample(ref.name, str(e))


def work_loaded(sample: LoadedSample):
    """Check one sample a streaming source loaded (in a worker)."""
    try:
        return process_sample(sample, _WORKER["source"], _WORKER["opts"])
    except (SampleError, depth_io.DepthFormatError, ImageReadError) as e:
        return BadSample(sample.name, str(e))


class WorkerPool:
    """Runs the worker functions inline (workers <= 1) or in a spawn pool, always in input order."""

    def __init__(self, source: Source, opts: WorkerOptions, workers: int):
        self.pool = None
        self.workers = max(1, int(workers))
        if self.workers > 1:
            ctx = mp.get_context("spawn")  # no fork of a process that has TensorFlow loaded
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(source, opts, True))
        else:
            _init_worker(source, opts, False)

    def imap(self, fn: Callable, items: Iterable, n: Optional[int] = None) -> Iterator:
        if self.pool is None:
            return map(fn, items)
        chunksize = max(1, min(8, (n or 64) // (self.workers * 8)))
        return self.pool.imap(fn, items, chunksize=chunksize)

    def imap_bounded(self, fn: Callable, items: Iterable, batch: int = 64) -> Iterator:
        """imap over a lazy iterable without reading it ahead unboundedly (streaming sources)."""
        if self.pool is None:
            yield from map(fn, items)
            return
        chunksize = max(1, batch // (self.workers * 4))
        buf: List = []
        pending = None  # one batch in flight while the next is read: reading and encoding overlap
        for item in items:
            buf.append(item)
            if len(buf) >= batch:
                submitted = self.pool.map_async(fn, buf, chunksize=chunksize)
                if pending is not None:
                    yield from pending.get()
                pending, buf = submitted, []
        submitted = self.pool.map_async(fn, buf, chunksize=1) if buf else None
        if pending is not None:
            yield from pending.get()
        if submitted is not None:
            yield from submitted.get()

    def close(self, ok: bool) -> None:
        if self.pool is not None:
            if ok:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()
            self.pool = None
        _WORKER.clear()
