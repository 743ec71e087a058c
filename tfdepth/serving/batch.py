"""Predict many pictures: files, folders and videos into one output folder, errors collected per input.

:func:`collect_jobs` expands the inputs (a folder in name order, ``recursive`` for subfolders; hidden
files skipped; an explicit file of unknown type is still tried), :class:`IntrinsicsChooser` picks each
picture's camera for point clouds, :func:`run` predicts every job and writes its outputs
(:mod:`tfdepth.serving.outputs`): a picture as ``DIR/<stem>_*``, a video frame by frame as
``DIR/<stem>/<stem>_<frame>_*``. A file that cannot be read is recorded with its error and the rest
still run.

Large pictures are predicted at a working resolution (``DepthPredictor.predict``,
:func:`tfdepth.serving.predictor.working_size`); the record says which (``working_size``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.geometry import DEFAULT_FOV_DEG, Intrinsics
from tfdepth.io.images import (ImageReadError, is_image_path, is_video_path, iter_video_frames, load_image,
                               video_frame_count)
from tfdepth.progress import Progress
from tfdepth.serving.outputs import auto_ply_stride, depth_summary, write_outputs


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
    """The one choice of a picture's camera (predict's outputs and point clouds, the measuring page):
    --intrinsics > --focal-px > --fov > the picture's EXIF 35 mm focal length > the model's training
    camera (a model without canonical camera: the camera its depth assumes, mapped through the padding
    to the picture, square pixels) > a stated default horizontal field of view. Never a training
    camera stretched to another aspect ratio; :meth:`choose` says which source it used."""

    def __init__(self, predictor, intrinsics_text: Optional[str] = None, fov_deg: Optional[float] = None,
                 focal_px: Optional[float] = None, use_exif: bool = True):
        if sum(v is not None and not (isinstance(v, str) and v == "") for v in (intrinsics_text, fov_deg, focal_px)) > 1:
            raise ValueError("give only one of --intrinsics, --focal-px and --fov")
        if isinstance(intrinsics_text, Intrinsics):  # already parsed (the measuring page's --intrinsics)
            self.fixed = intrinsics_text
        else:
            self.fixed = Intrinsics.parse(intrinsics_text) if intrinsics_text else None
        if fov_deg is not None:
            Intrinsics.from_fov(fov_deg, (2, 2))  # validates the range
        if focal_px is not None and not (np.isfinite(focal_px) and focal_px > 0):
            raise ValueError(f"--focal-px must be a positive number of pixels, got {focal_px}")
        self.fov_deg, self.focal_px, self.use_exif = fov_deg, focal_px, use_exif
        self.predictor = predictor
        canonical = getattr(predictor, "canonical_focal_px", None) is not None
        self.from_model = predictor.intrinsics is not None and not canonical
        if self.fixed is not None:
            self.source = "--intrinsics"
        elif focal_px is not None:
            self.source = f"--focal-px {focal_px:g} (principal point at the centre)"
        elif fov_deg is not None:
            self.source = f"--fov {fov_deg:g}"
        else:
            fallback = ("training data camera (its aspect ratio kept)" if self.from_model else
                        f"default: {DEFAULT_FOV_DEG:g} deg horizontal field of view")
            self.source = ("EXIF 35 mm focal length where the picture has it, else " if use_exif else "") + fallback
        self.default_fov_deg = DEFAULT_FOV_DEG

    def describe(self) -> str:
        if self.fixed is not None or self.focal_px is not None or self.fov_deg is not None:
            return f"camera: intrinsics from {self.source}"
        fallback = ("the training data camera (its aspect ratio kept)" if self.from_model else
                    f"assuming a {self.default_fov_deg:g} degree horizontal field of view (set --focal-px F, "
                    f"--fov DEG or --intrinsics fx,fy,cx,cy for metric accuracy)")
        return "camera: " + ("each picture's EXIF 35 mm focal length where it has one, else " if self.use_exif
                             else "") + fallback

    def choose(self, image_size: Sequence[int], picture=None) -> Tuple[Intrinsics, str]:
        """(intrinsics in pixels of an ``image_size`` (H, W) picture, where they came from); ``picture``:
        the file path or bytes the EXIF focal length is read from."""
        height, width = int(image_size[0]), int(image_size[1])
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        if self.fixed is not None:
            return self.fixed, "--intrinsics"
        if self.focal_px is not None:
            return Intrinsics(self.focal_px, self.focal_px, *centre), "--focal-px"
        if self.fov_deg is not None:
            return Intrinsics.from_fov(self.fov_deg, image_size), "--fov"
        if self.use_exif and picture is not None:
            from tfdepth.geometry import focal_px_from_35mm
            from tfdepth.io.images import exif_focal_35mm

            f35 = exif_focal_35mm(picture)
            if f35 is not None:  # the 36 mm side of the 35 mm frame is the picture's long side
                focal = focal_px_from_35mm(f35, max(height, width))
                return Intrinsics(focal, focal, *centre), f"exif FocalLengthIn35mmFilm {f35:g} mm"
        if self.from_model:
            return self.predictor.intrinsics_for(image_size), "training camera"
        return Intrinsics.from_fov(self.default_fov_deg, image_size), f"default {self.default_fov_deg:g} deg fov"

    def __call__(self, image_size: Sequence[int], picture=None) -> Intrinsics:
        return self.choose(image_size, picture)[0]


# --------------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------------


def _fmt_m(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _error_message(e: Exception) -> str:
    return str(e) if isinstance(e, ImageReadError) else f"{type(e).__name__}: {e}"


def _say(progress, log, text: str) -> None:
    """A message line: above the progress line while one is drawn on the terminal, else through ``log``."""
    if progress.redrawing:
        progress.write(text)
    else:
        log(text)


# --------------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------------


def run(predictor, jobs: Sequence[Job], output_dir: str, save: Sequence[str], intrinsics: IntrinsicsChooser,
        color_range: Optional[Tuple[float, float]] = None, ply_binary: bool = True, video_every: int = 1,
        max_frames: Optional[int] = None, progress: bool = True, log: Callable[[str], None] = print,
        ply_stride: Optional[int] = None) -> RunSummary:
    """Predict every job (``predictor.predict``), writing outputs into ``output_dir``; errors are
    collected, not raised. ``progress``: a :class:`tfdepth.progress.Progress` report on stderr
    (pictures, and each video's frames) with a summary line at the end. ``ply_stride``: the point
    clouds' pixel stride (None: :func:`tfdepth.serving.outputs.auto_ply_stride` per picture)."""
    progress_enabled = progress
    os.makedirs(output_dir, exist_ok=True)
    summary = RunSummary()
    image_jobs = [j for j in jobs if j.kind == "image"]
    video_jobs = [j for j in jobs if j.kind == "video"]

    def one(rgb: np.ndarray, prefix: str, source: str, picture=None) -> dict:
        intr, camera = intrinsics.choose(rgb.shape[:2], picture)  # the camera the depth and the PLY use
        depth = predictor.predict(rgb, intr)
        working = predictor.last_working_size
        stride = ply_stride if ply_stride is not None else auto_ply_stride(rgb.shape[:2])
        written = write_outputs(rgb, depth, prefix, save, intr, color_range, ply_binary, stride)
        record = {"input": source, "size": [int(rgb.shape[0]), int(rgb.shape[1])], "outputs": written,
                  **depth_summary(depth), "intrinsics": intr.as_list(), "intrinsics_source": camera}
        if working is not None:
            record["working_size"] = [int(working[0]), int(working[1])]
        if "ply" in save:
            record["ply_stride"] = int(stride)
        if getattr(predictor, "canonical_focal_px", None) is not None:
            record["focal_px_at_model_input"] = predictor.input_intrinsics(intr, rgb.shape[:2]).focal_px
            if getattr(predictor, "last_focal_resize", None) is not None:  # resized into the trained range
                record["focal_resize"] = predictor.last_focal_resize
        return record

    progress = Progress("predict", len(image_jobs), "image", enabled=progress_enabled and len(image_jobs) > 1)
    for job in image_jobs:
        try:
            rgb = load_image(job.path)
            record = one(rgb, os.path.join(output_dir, job.stem), job.path, picture=job.path)
        except Exception as e:  # a named error per file; the rest of the folder still runs
            message = _error_message(e)
            summary.failures.append((job.path, message))
            summary.records.append({"input": job.path, "error": message})
            _say(progress, log, f"FAILED {job.path}: {message}")
            progress.update()
            continue
        summary.images += 1
        summary.records.append(record)
        _say(progress, log, f"{job.path}: {record['size'][1]}x{record['size'][0]}, depth "
                            f"{_fmt_m(record['min_m'])}..{_fmt_m(record['max_m'])} m -> {job.stem}_*")
        progress.update()
    progress.close(f"{len(summary.failures)} failed" if summary.failures else "", summary=bool(image_jobs))

    for job in video_jobs:
        video_dir = os.path.join(output_dir, job.stem)
        os.makedirs(video_dir, exist_ok=True)
        total = video_frame_count(job.path)
        if total is not None:
            total = -(-total // max(video_every, 1))
            if max_frames is not None:
                total = min(total, max_frames)
        frames = 0
        progress = Progress(f"predict {os.path.basename(job.path)}", total, "frame", enabled=progress_enabled)
        try:
            for index, rgb in iter_video_frames(job.path, every=video_every, max_frames=max_frames):
                record = one(rgb, os.path.join(video_dir, f"{job.stem}_{index:06d}"), f"{job.path}#frame={index}")
                summary.records.append(record)
                frames += 1
                progress.update()
        except Exception as e:
            message = _error_message(e)
            summary.failures.append((job.path, message))
            summary.records.append({"input": job.path, "error": message, "frames_written": frames})
            _say(progress, log, f"FAILED {job.path}: {message}")
        progress.close()
        summary.frames += frames
        if frames:
            log(f"{job.path}: {frames} frames -> {video_dir}/")
    return summary
