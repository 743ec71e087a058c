"""Predict many pictures: files, folders and videos into one output folder, errors collected per input.

:func:`collect_jobs` expands the inputs (a folder in name order, ``recursive`` for subfolders; hidden
files skipped; an explicit file of unknown type is still tried), :class:`IntrinsicsChooser` picks each
picture's camera for point clouds, :func:`run` predicts every job and writes its outputs
(:mod:`tfdepth.serving.outputs`): a picture as ``DIR/<stem>_*``, a video frame by frame as
``DIR/<stem>/<stem>_<frame>_*``. A file that cannot be read is recorded with its error and the rest
still run.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.geometry import DEFAULT_FOV_DEG, Intrinsics
from tfdepth.io.images import (ImageReadError, is_image_path, is_video_path, iter_video_frames, load_image,
                               video_frame_count)
from tfdepth.serving.outputs import depth_summary, write_outputs


@dataclass
class Job:
    """One input: an image file or a video file (``kind``), with the output stem to write under."""

    path: str
    kind: str  # "image" | "video"
    stem: str


@dataclass
class RunSummary:
    """What :func:`run` did: counts, failures as (path, message), and one record per picture / frame."""

    images: int = 0
    frames: int = 0
    failures: List[Tuple[str, str]] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    records: List[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def collect_jobs(inputs: Sequence[str], recursive: bool = False) -> Tuple[List[Job], List[Tuple[str, str]], List[str]]:
    """Expand files and folders into jobs. Returns (jobs, missing inputs as (path, error), skipped
    non-image files in folders)."""
    jobs: List[Job] = []
    missing: List[Tuple[str, str]] = []
    skipped: List[str] = []
    used_stems: Dict[str, int] = {}

    def stem_for(path: str) -> str:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in used_stems:  # same name in another folder: prefix the folder name
            parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
            candidate = f"{parent}_{stem}"
            n = 1
            while candidate in used_stems:
                n += 1
                candidate = f"{parent}_{stem}_{n}"
            stem = candidate
        used_stems[stem] = 1
        return stem

    def add_file(path: str, explicit: bool) -> None:
        if is_video_path(path):
            jobs.append(Job(path, "video", stem_for(path)))
        elif is_image_path(path) or explicit:  # an explicit file of unknown type still gets tried
            jobs.append(Job(path, "image", stem_for(path)))
        else:
            skipped.append(path)

    for item in inputs:
        if os.path.isdir(item):
            if recursive:
                paths = sorted(os.path.join(root, name) for root, _, names in os.walk(item) for name in names)
            else:
                paths = sorted(os.path.join(item, name) for name in os.listdir(item)
                               if os.path.isfile(os.path.join(item, name)))
            for path in paths:
                if not os.path.basename(path).startswith("."):
                    add_file(path, explicit=False)
        elif os.path.isfile(item):
            add_file(item, explicit=True)
        else:
            missing.append((item, "no such file or directory"))
    return jobs, missing, skipped


# --------------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------------


class IntrinsicsChooser:
    """Picks the intrinsics of a picture: --intrinsics > --fov > the model's training camera > guess."""

    def __init__(self, predictor, intrinsics_text: Optional[str] = None, fov_deg: Optional[float] = None):
        if intrinsics_text and fov_deg is not None:
            raise ValueError("give either --intrinsics or --fov, not both")
        self.fixed = Intrinsics.parse(intrinsics_text) if intrinsics_text else None
        if fov_deg is not None:
            Intrinsics.from_fov(fov_deg, (2, 2))  # validates the range
        self.fov_deg = fov_deg
        self.predictor = predictor
        if self.fixed is not None:
            self.source = "--intrinsics"
        elif fov_deg is not None:
            self.source = f"--fov {fov_deg:g}"
        elif predictor.intrinsics is not None:
            self.source = "training data camera (scaled to each picture)"
        else:
            self.source = f"guess: {DEFAULT_FOV_DEG:g} deg horizontal field of view"
        self.default_fov_deg = DEFAULT_FOV_DEG

    def describe(self) -> str:
        if self.source.startswith("guess"):
            return (f"point clouds: no camera intrinsics given or known from the model; assuming a "
                    f"{self.default_fov_deg:g} degree horizontal field of view (set --fov DEG or "
                    f"--intrinsics fx,fy,cx,cy for metric accuracy)")
        return f"point clouds: intrinsics from {self.source}"

    def __call__(self, image_size: Sequence[int]):
        if self.fixed is not None:
            return self.fixed
        if self.fov_deg is not None:
            return Intrinsics.from_fov(self.fov_deg, image_size)
        from_model = self.predictor.intrinsics_for(image_size)
        if from_model is not None:
            return from_model
        return Intrinsics.from_fov(self.default_fov_deg, image_size)


# --------------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------------


def _progress(iterable, total: Optional[int], desc: str, enabled: bool):
    """A tqdm bar on a terminal; elsewhere (logs, pipes) a plain line every ~10 % (or 25 items)."""
    if not enabled:
        return iterable
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm

            return tqdm(iterable, total=total, desc=desc, unit="frame" if "video" in desc else "img",
                        file=sys.stderr, mininterval=0.5, dynamic_ncols=True)
        except ImportError:  # fall through to plain lines
            pass
    return _LineProgress(iterable, total, desc)


class _LineProgress:
    def __init__(self, iterable, total: Optional[int], desc: str):
        self.iterable, self.total, self.desc = iterable, total, desc
        self.every = max(1, (total or 250) // 10)
        self.start = time.perf_counter()

    def __iter__(self):
        count = 0
        for item in self.iterable:
            yield item
            count += 1
            if count % self.every == 0 or count == self.total:
                rate = count / max(time.perf_counter() - self.start, 1e-9)
                of = f"/{self.total}" if self.total else ""
                print(f"{self.desc}: {count}{of} ({rate:.1f}/s)", file=sys.stderr, flush=True)


def _write_line(bar, log, text: str) -> None:
    if hasattr(bar, "write") and not getattr(bar, "disable", True):  # a tqdm bar: print above it
        bar.write(text)
    else:
        log(text)


def _fmt_m(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _error_message(e: Exception) -> str:
    return str(e) if isinstance(e, ImageReadError) else f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def run(predictor, jobs: Sequence[Job], output_dir: str, save: Sequence[str], intrinsics: IntrinsicsChooser,
        color_range: Optional[Tuple[float, float]] = None, ply_binary: bool = True, video_every: int = 1,
        max_frames: Optional[int] = None, progress: bool = True, log: Callable[[str], None] = print) -> RunSummary:
    """Predict every job, writing outputs into ``output_dir``; errors are collected, not raised."""
    os.makedirs(output_dir, exist_ok=True)
    summary = RunSummary()
    image_jobs = [j for j in jobs if j.kind == "image"]
    video_jobs = [j for j in jobs if j.kind == "video"]

    def one(rgb: np.ndarray, prefix: str, source: str) -> dict:
        depth = predictor.predict(rgb)
        intr = intrinsics(rgb.shape[:2]) if "ply" in save else None
        written = write_outputs(rgb, depth, prefix, save, intr, color_range, ply_binary)
        record = {"input": source, "size": [int(rgb.shape[0]), int(rgb.shape[1])], "outputs": written,
                  **depth_summary(depth)}
        if intr is not None:
            record["intrinsics"] = intr.as_list()
        return record

    bar = _progress(image_jobs, len(image_jobs), "images", progress and len(image_jobs) > 1 and sys.stderr.isatty())
    for job in bar:
        try:
            rgb = load_image(job.path)
            record = one(rgb, os.path.join(output_dir, job.stem), job.path)
        except Exception as e:  # a named error per file; the rest of the folder still runs
            message = _error_message(e)
            summary.failures.append((job.path, message))
            summary.records.append({"input": job.path, "error": message})
            _write_line(bar, log, f"FAILED {job.path}: {message}")
            continue
        summary.images += 1
        summary.records.append(record)
        _write_line(bar, log, f"{job.path}: {record['size'][1]}x{record['size'][0]}, depth "
                              f"{_fmt_m(record['min_m'])}..{_fmt_m(record['max_m'])} m -> {job.stem}_*")

    for job in video_jobs:
        video_dir = os.path.join(output_dir, job.stem)
        os.makedirs(video_dir, exist_ok=True)
        total = video_frame_count(job.path)
        if total is not None:
            total = -(-total // max(video_every, 1))
            if max_frames is not None:
                total = min(total, max_frames)
        frames = 0
        try:
            frame_iter = iter_video_frames(job.path, every=video_every, max_frames=max_frames)
            bar = _progress(frame_iter, total, f"video {os.path.basename(job.path)}", progress)
            for index, rgb in bar:
                record = one(rgb, os.path.join(video_dir, f"{job.stem}_{index:06d}"), f"{job.path}#frame={index}")
                summary.records.append(record)
                frames += 1
        except Exception as e:
            message = _error_message(e)
            summary.failures.append((job.path, message))
            summary.records.append({"input": job.path, "error": message, "frames_written": frames})
            log(f"FAILED {job.path}: {message}")
        summary.frames += frames
        if frames:
            log(f"{job.path}: {frames} frames -> {video_dir}/")
    return summary
