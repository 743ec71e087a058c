"""Writing the synthetic dataset: the render worker pool, :func:`write_synthetic_dataset` and the cache
(:func:`ensure_synthetic_dataset`).

The samples of :class:`~tfdepth.data.synthetic.source.SyntheticSource` are rendered (in this process or
in child interpreters) and written in sample order, train then val, by the one dataset writer
(:class:`tfdepth.data.writer.DatasetWriter`): ``cfg.records_per_shard`` records per shard, train shards
grouped into ``cfg.chunks`` chunks, depth statistics, ``manifest.json`` last. TensorFlow is only
imported when a record is written, so the render workers stay light.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from tfdepth.data.converters.source import SampleRef
from tfdepth.data.shards import DepthStats
from tfdepth.data.synthetic.render import render_scene
from tfdepth.data.synthetic.source import GENERATOR_VERSION, SPLITS, SyntheticSource, source_description
from tfdepth.data.writer import STATS_BINS, DatasetWriter, EncodedSample
from tfdepth.io.depth import depth_to_uint16
from tfdepth.io.files import TEMP_SUFFIX_RE
from tfdepth.io.images import encode_png
from tfdepth.progress import Progress

log = logging.getLogger(__name__)


def _check_config(cfg) -> None:
    problems = []
    if cfg.num_train < 1:
        problems.append(f"num_train={cfg.num_train} (need >= 1)")
    if cfg.num_val < 0:
        problems.append(f"num_val={cfg.num_val} (need >= 0)")
    if cfg.height < 8 or cfg.width < 8:
        problems.append(f"height x width = {cfg.height}x{cfg.width} (need >= 8x8)")
    if cfg.seed < 0:
        problems.append(f"seed={cfg.seed} (need >= 0)")
    if cfg.records_per_shard < 1:
        problems.append(f"records_per_shard={cfg.records_per_shard} (need >= 1)")
    if cfg.chunks < 1:
        problems.append(f"chunks={cfg.chunks} (need >= 1)")
    elif -(-cfg.num_train // max(cfg.records_per_shard, 1)) < cfg.chunks:
        problems.append(f"chunks={cfg.chunks} needs at least that many train shards, but num_train={cfg.num_train} "
                        f"at records_per_shard={cfg.records_per_shard} gives "
                        f"{-(-cfg.num_train // max(cfg.records_per_shard, 1))}")
    if problems:
        raise ValueError("data.synthetic: invalid settings: " + "; ".join(problems))


def _jobs(source: SyntheticSource) -> List[SampleRef]:
    """Every sample, in the order records are written: train, then val."""
    return [ref for split in source.split_names() for ref in source.refs(split)]


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_num_workers(total: int) -> int:
    """Render processes :func:`write_synthetic_dataset` starts by default: one per usable CPU core (at
    most 8) when there are two or more and at least 64 samples, else 1 (rendering in this process)."""
    cpus = _usable_cpus()
    return min(cpus, 8) if cpus >= 2 and total >= 64 else 1


def _encode_sample(rgb: np.ndarray, depth_m: np.ndarray, depth_scale: float, max_depth_m: float, name: str):
    """(RGB PNG bytes, uint16 depth PNG bytes, the sample's DepthStats): what
    :meth:`SplitWriter.add` computes from the arrays, done in a render worker (no TensorFlow needed)."""
    stats = DepthStats(max_depth_m=max_depth_m, bins=STATS_BINS)
    stats.update(depth_m)
    return encode_png(rgb), encode_png(depth_to_uint16(depth_m, depth_scale, name)), stats


class _RenderWorkers:
    """Renders and encodes samples in ``num_workers`` child interpreters (running :func:`_worker_main`);
    worker k renders jobs k, k + K, ... and streams the encoded sample (RGB PNG, depth PNG, depth
    statistics) back; iteration yields them strictly in job order, so the output does not depend on the
    number of workers. One reader thread per worker drains its pipe into a bounded queue, so the workers
    keep rendering while this process is busy (importing TensorFlow for the first record).

    Separate interpreters (not fork) keep TensorFlow's threads out of the children and need no
    ``if __name__ == "__main__"`` guard in the caller's script.
    """

    QUEUE_SAMPLES = 64  # encoded samples (~90 KB each at 240x320) buffered per worker

    def __init__(self, base_seed: int, num_train: int, num_val: int, height: int, width: int, num_workers: int,
                 hfov_deg=None, haze: bool = True):
        import queue
        import subprocess
        import sys
        import threading

        self.num_jobs = num_train + num_val
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.procs, self.queues, self.threads = [], [], []
        self._stop = threading.Event()
        try:
            for k in range(num_workers):
                cmd = [sys.executable, "-c", "import sys; from tfdepth.data.synthetic.generate import _worker_main; "
                       "_worker_main(sys.argv[1:])", str(base_seed), str(num_train), str(num_val), str(height),
                       str(width), str(k), str(num_workers),
                       "none" if hfov_deg is None else ",".join(repr(float(v)) for v in hfov_deg),
                       "haze" if haze else "nohaze"]
                self.procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env))
            for k, proc in enumerate(self.procs):
                q = queue.Queue(self.QUEUE_SAMPLES)
                count = len(range(k, self.num_jobs, num_workers))
                thread = threading.Thread(target=self._drain, args=(proc, q, count), daemon=True,
                                          name=f"synthetic-render-reader-{k}")
                thread.start()
                self.queues.append(q)
                self.threads.append(thread)
        except BaseException:
            self.close()
            raise

    def _drain(self, proc, q, count: int) -> None:
        """Reader thread: unpickles ``count`` encoded samples from ``proc`` into ``q`` (None when it stops early)."""
        import pickle
        import queue

        items = []
        try:
            for _ in range(count):
                items.append(pickle.load(proc.stdout))
                while items and not self._stop.is_set():
                    try:
                        q.put(items[0], timeout=0.2)
                        items.pop(0)
                    except queue.Full:
                        pass
                if self._stop.is_set():
                    return
        except Exception:  # EOF or a cut-off stream: the worker died; __iter__ reports it
            while not self._stop.is_set():
                try:
                    q.put(None, timeout=0.2)
                    return
                except queue.Full:
                    pass

    def __iter__(self):
        for j in range(self.num_jobs):
            k = j % len(self.procs)
            item = self.queues[k].get()
            if item is None:
                proc = self.procs[k]
                code = proc.wait()
                raise RuntimeError(f"synthetic render worker {k} (pid {proc.pid}) stopped at job {j} "
                                   f"with exit code {code}; see its error output above")
            yield item

    def close(self) -> None:
        self._stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for thread in self.threads:
            thread.join(timeout=5.0)
        for proc in self.procs:
            if proc.stdout is not None:
                proc.stdout.close()


def _worker_main(args: Sequence[str]) -> None:
    """Child side of :class:`_RenderWorkers`: render and encode every ``step``-th job from ``start``,
    pickled (RGB PNG, depth PNG, DepthStats) to stdout.

    Arguments: base_seed num_train num_val height width start step hfov ("none" or "min,max" degrees)
    haze ("haze" or "nohaze").
    """
    import pickle
    import sys

    base_seed, num_train, num_val, height, width, start, step = (int(a) for a in args[:7])
    hfov_deg = None if args[7] == "none" else [float(v) for v in args[7].split(",")]
    haze = args[8] == "haze"
    cv2.setNumThreads(1)
    # Keep the data stream to ourselves: anything else written to stdout (fd 1) goes to stderr.
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    from tfdepth.config import SyntheticConfig

    source = SyntheticSource(SyntheticConfig(num_train=num_train, num_val=num_val, height=height, width=width,
                                             seed=base_seed, hfov_deg=hfov_deg, haze=haze))
    for ref in _jobs(source)[start::step]:
        sample = render_scene(ref.key, height, width, hfov_deg, haze)
        encoded = _encode_sample(sample["rgb"], sample["depth_m"], source.store_scale, source.max_depth_m, ref.name)
        pickle.dump(encoded, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
    out.close()


def write_synthetic_dataset(cfg, output_dir: str, num_workers: Optional[int] = None) -> dict:
    """Render ``cfg.num_train`` train and ``cfg.num_val`` val samples into TFRecord shards + manifest.

    ``cfg`` is a :class:`tfdepth.config.SyntheticConfig`. Sample ``i`` of a split is
    ``render_scene(sample_seed(cfg.seed, split, i))``; records are written in sample order, so the
    files are the same for any ``num_workers`` (default :func:`default_num_workers`: one render process
    per CPU core, each also encoding its PNGs, or rendering in this process for small datasets).
    Progress (samples/s, ETA) is printed on stderr. Returns the manifest (also written, last, to
    ``output_dir/manifest.json``).
    """
    _check_config(cfg)
    total = cfg.num_train + cfg.num_val
    if num_workers is None:
        num_workers = default_num_workers(total)
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    start = time.time()
    log.info("synthetic: rendering %d train + %d val samples at %dx%d (HxW) into %s with %d process(es)",
             cfg.num_train, cfg.num_val, cfg.height, cfg.width, output_dir, num_workers)
    source = SyntheticSource(cfg)
    jobs = _jobs(source)
    workers = None
    if num_workers > 1:
        workers = _RenderWorkers(cfg.seed, cfg.num_train, cfg.num_val, cfg.height, cfg.width, num_workers,
                                 getattr(cfg, "hfov_deg", None), bool(getattr(cfg, "haze", True)))
        encoded = iter(workers)
    else:
        arrays = ((s.rgb.rgb, s.depth_m) for s in map(source.load, jobs))
    import tensorflow  # noqa: F401  (the shards need it; imported while the workers render, before the progress
    #                     clock starts, so the first rate and ETA are the rendering's)
    dataset = DatasetWriter(output_dir, name="synthetic", depth_scale=source.store_scale,
                            max_depth_m=source.max_depth_m, shuffle_seed=cfg.seed, source=source.describe())
    progress = Progress(f"synthetic dataset ({cfg.height}x{cfg.width}, {num_workers} process(es))", total, "sample")
    progress.write(f"synthetic: generating {cfg.num_train} train + {cfg.num_val} val samples at "
                   f"{cfg.height}x{cfg.width} into {output_dir} (once; reused while the settings are the same)")
    try:
        with dataset:
            for split in source.split_names():
                writer = dataset.split(split, chunks=cfg.chunks if split == "train" else 1,
                                       max_records=cfg.records_per_shard)
                for ref in source.refs(split):
                    intrinsics = source.sample_intrinsics(ref)
                    if workers is None:
                        rgb, depth_m = next(arrays)
                        writer.add(rgb, depth_m, intrinsics, name=ref.name)
                    else:
                        rgb_png, depth_png, stats = next(encoded)
                        writer.add_encoded(EncodedSample(ref.name, rgb_png, "png", cfg.height, cfg.width, depth_png,
                                                         intrinsics, stats))
                    progress.update()
                dataset.finish_split(writer)
    finally:
        if workers is not None:
            workers.close()
    manifest = dataset.commit()
    progress.close(f"{cfg.num_train} train + {cfg.num_val} val in {len(manifest['shards'])} shards -> {output_dir}")
    log.info("synthetic: wrote %d samples in %d shards to %s in %.1f s", total, len(manifest["shards"]), output_dir,
             time.time() - start)
    return manifest


_GENERATED_NAME = re.compile(r"^(?:(?:train|val)-\d{5}\.tfrecord(?:\.tmp)?|manifest\.json(?:" + TEMP_SUFFIX_RE + ")?)$")


def _generated_files(output_dir: str) -> List[str]:
    """Paths of files in ``output_dir`` named like the ones this generator writes (shards, manifest, temps)."""
    if not os.path.isdir(output_dir):
        return []
    return sorted(os.path.join(output_dir, n) for n in os.listdir(output_dir) if _GENERATED_NAME.match(n))


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return e


def _cached_manifest(cfg, output_dir: str) -> Tuple[Optional[dict], str]:
    """(manifest, "") if output_dir holds a complete dataset for cfg, else (None, why not).

    Raises ValueError if output_dir holds a manifest of some other dataset (never overwritten).
    """
    path = os.path.join(output_dir, "manifest.json")
    if not os.path.isfile(path):
        return None, "no manifest.json"
    manifest = _read_json(path)
    if not isinstance(manifest, dict):
        return None, f"unreadable manifest.json ({manifest})"
    source = manifest.get("source")
    if manifest.get("name") != "synthetic" or not isinstance(source, dict) or \
            source.get("generator") != "tfdepth.data.synthetic":
        raise ValueError(f"{path}: holds dataset {manifest.get('name')!r}, not the synthetic dataset; refusing to "
                         f"overwrite it (point data.data_dir elsewhere or use data.dataset: tfrecord)")
    if source != source_description(cfg):
        changed = sorted(k for k in set(source) | set(source_description(cfg))
                         if source.get(k) != source_description(cfg).get(k))
        return None, "settings changed: " + ", ".join(
            f"{k} {source.get(k)!r} -> {source_description(cfg).get(k)!r}" for k in changed)
    for shard in manifest.get("shards", []):
        if not os.path.isfile(os.path.join(output_dir, str(shard.get("path", "")))):
            return None, f"shard {shard.get('path')} listed in the manifest is missing"
    counts = {s: sum(int(x.get("count", 0)) for x in manifest.get("shards", []) if x.get("split") == s) for s in SPLITS}
    if counts["train"] != cfg.num_train or counts["val"] != cfg.num_val:
        return None, f"manifest shard counts {counts} differ from the settings"
    return manifest, ""


def ensure_synthetic_dataset(cfg, output_dir: str, num_workers: Optional[int] = None) -> dict:
    """Return the manifest of the synthetic dataset for ``cfg`` in ``output_dir``, writing it if needed.

    A complete dataset written with the same settings and generator version is reused as is (nothing
    is rewritten). Otherwise (other settings or version, an interrupted write, missing shards) the
    files this generator writes (``train-NNNNN.tfrecord``, ``val-NNNNN.tfrecord``, ``manifest.json``
    and their ``.tmp`` temporaries) are removed and the dataset is written again; other files are
    left alone. A directory holding another dataset's manifest is an error, never overwritten.
    """
    manifest, reason = _cached_manifest(cfg, output_dir)
    if manifest is not None:
        log.info("synthetic: using the cached dataset in %s (%s)", output_dir, GENERATOR_VERSION)
        return manifest
    stale = _generated_files(output_dir)
    if stale:
        log.warning("synthetic: regenerating %s (%s); removing %d old files", output_dir, reason, len(stale))
        # the manifest first: an interrupted clean-up must not leave a manifest over missing shards
        for path in sorted(stale, key=lambda p: os.path.basename(p) != "manifest.json"):
            os.remove(path)
    else:
        log.info("synthetic: generating the dataset in %s", output_dir)
    return write_synthetic_dataset(cfg, output_dir, num_workers=num_workers)
