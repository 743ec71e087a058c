"""Predict metric depth for pictures, folders and videos.

``python -m tfdepth.predict --model PATH --input IMAGE|DIR|VIDEO [...] --output DIR
[--save png16,color,npy,ply] [--intrinsics fx,fy,cx,cy | --fov DEG]``

``PATH``: a training workdir / checkpoint, a SavedModel (TF Serving ``DIR`` or ``DIR/N``) or a
``.tflite`` file. Pictures of any size and aspect ratio are resized to the model input and the depth
is resized back, so every output has the picture's own size (after its EXIF orientation is applied).
Greyscale, RGBA and 16-bit pictures are accepted. Per picture ``<stem>``:

- ``<stem>_depth_mm.png``    16-bit PNG, millimetres (metres = value / 1000; saturates at 65.535 m)
- ``<stem>_depth_color.png`` colour-mapped depth (near red, far blue) with a colour bar in metres
- ``<stem>_depth_m.npy``     float32 [H, W] metres
- ``<stem>_points.ply``      coloured point cloud (camera frame: x right, y down, z forward, metres)

Point clouds need the camera intrinsics: ``--intrinsics fx,fy,cx,cy`` (pixels of the pictures as
read, i.e. after EXIF rotation), or ``--fov DEG`` (horizontal field of view), else the intrinsics of
the model's training data (scaled to each picture) when the export carries them, else a guessed
60 degree horizontal field of view (said in the log). A video (``.mp4``, ``.avi``, ...) is predicted
frame by frame into ``DIR/<stem>/<stem>_<frame>_*``. A folder is read in name order (``--recursive``
for subfolders). A file that cannot be read is reported by name and the rest still run; the exit
code is 1 if any input failed. ``DIR/predictions.json`` lists every input with its outputs,
intrinsics and depth range, or its error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth import cli

SAVE_CHOICES = ("png16", "color", "npy", "ply")
OUTPUT_SUFFIXES = {"png16": "_depth_mm.png", "color": "_depth_color.png", "npy": "_depth_m.npy", "ply": "_points.ply"}


@dataclass
class Job:
    """One input: an image file or a video file (``kind``), with the output stem to write under."""

    path: str
    kind: str  # "image" | "video"
    stem: str


@dataclass
class RunSummary:
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
    from tfdepth.imageio import is_image_path, is_video_path

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
        from tfdepth.geometry import DEFAULT_FOV_DEG, Intrinsics

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
        from tfdepth.geometry import Intrinsics

        if self.fixed is not None:
            return self.fixed
        if self.fov_deg is not None:
            return Intrinsics.from_fov(self.fov_deg, image_size)
        from_model = self.predictor.intrinsics_for(image_size)
        if from_model is not None:
            return from_model
        return Intrinsics.from_fov(self.default_fov_deg, image_size)


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def write_outputs(rgb: np.ndarray, depth_m: np.ndarray, prefix: str, save: Sequence[str], intrinsics,
                  color_range: Optional[Tuple[float, float]] = None, ply_binary: bool = True) -> Dict[str, str]:
    """Write the requested outputs of one picture as ``prefix`` + suffix; returns {kind: path}."""
    from tfdepth import geometry, imageio

    written = {}
    if "png16" in save:
        path = prefix + OUTPUT_SUFFIXES["png16"]
        imageio.write_depth_png16(path, depth_m)
        written["png16"] = path
    if "color" in save:
        path = prefix + OUTPUT_SUFFIXES["color"]
        low, high = color_range if color_range else (None, None)
        imageio.write_depth_color(path, depth_m, min_m=low, max_m=high)
        written["color"] = path
    if "npy" in save:
        path = prefix + OUTPUT_SUFFIXES["npy"]
        np.save(path, depth_m.astype(np.float32))
        written["npy"] = path
    if "ply" in save:
        path = prefix + OUTPUT_SUFFIXES["ply"]
        points, colors = geometry.point_cloud(depth_m, intrinsics, rgb)
        geometry.write_ply(path, points, colors, binary=ply_binary)
        written["ply"] = path
    return written


def _depth_summary(depth_m: np.ndarray) -> dict:
    valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return {"min_m": None, "median_m": None, "max_m": None}
    return {"min_m": float(valid.min()), "median_m": float(np.median(valid)), "max_m": float(valid.max())}


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


def run(predictor, jobs: Sequence[Job], output_dir: str, save: Sequence[str], intrinsics: IntrinsicsChooser,
        color_range: Optional[Tuple[float, float]] = None, ply_binary: bool = True, video_every: int = 1,
        max_frames: Optional[int] = None, progress: bool = True, log: Callable[[str], None] = print) -> RunSummary:
    """Predict every job, writing outputs into ``output_dir``; errors are collected, not raised."""
    from tfdepth import imageio

    os.makedirs(output_dir, exist_ok=True)
    summary = RunSummary()
    image_jobs = [j for j in jobs if j.kind == "image"]
    video_jobs = [j for j in jobs if j.kind == "video"]

    def one(rgb: np.ndarray, prefix: str, source: str) -> dict:
        depth = predictor.predict(rgb)
        intr = intrinsics(rgb.shape[:2]) if "ply" in save else None
        written = write_outputs(rgb, depth, prefix, save, intr, color_range, ply_binary)
        record = {"input": source, "size": [int(rgb.shape[0]), int(rgb.shape[1])], "outputs": written,
                  **_depth_summary(depth)}
        if intr is not None:
            record["intrinsics"] = intr.as_list()
        return record

    bar = _progress(image_jobs, len(image_jobs), "images", progress and len(image_jobs) > 1 and sys.stderr.isatty())
    for job in bar:
        try:
            rgb = imageio.load_image(job.path)
            record = one(rgb, os.path.join(output_dir, job.stem), job.path)
        except Exception as e:  # a named error per file; the rest of the folder still runs
            message = f"{type(e).__name__}: {e}" if not isinstance(e, imageio.ImageReadError) else str(e)
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
        total = imageio.video_frame_count(job.path)
        if total is not None:
            total = -(-total // max(video_every, 1))
            if max_frames is not None:
                total = min(total, max_frames)
        frames = 0
        try:
            frame_iter = imageio.iter_video_frames(job.path, every=video_every, max_frames=max_frames)
            bar = _progress(frame_iter, total, f"video {os.path.basename(job.path)}", progress)
            for index, rgb in bar:
                record = one(rgb, os.path.join(video_dir, f"{job.stem}_{index:06d}"), f"{job.path}#frame={index}")
                summary.records.append(record)
                frames += 1
        except Exception as e:
            message = f"{type(e).__name__}: {e}" if not isinstance(e, imageio.ImageReadError) else str(e)
            summary.failures.append((job.path, message))
            summary.records.append({"input": job.path, "error": message, "frames_written": frames})
            log(f"FAILED {job.path}: {message}")
        summary.frames += frames
        if frames:
            log(f"{job.path}: {frames} frames -> {video_dir}/")
    return summary


def _write_line(bar, log, text: str) -> None:
    if hasattr(bar, "write") and not getattr(bar, "disable", True):  # a tqdm bar: print above it
        bar.write(text)
    else:
        log(text)


def _fmt_m(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def parse_save(text: str) -> List[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in SAVE_CHOICES]
    if unknown or not items:
        raise ValueError(f"--save {text!r}: choose from {','.join(SAVE_CHOICES)}")
    return items


def parse_range(text: Optional[str]) -> Optional[Tuple[float, float]]:
    if not text:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--color-range {text!r}: expected MIN,MAX in metres") from None
    if not high > low >= 0:
        raise ValueError(f"--color-range {text!r}: expected 0 <= MIN < MAX")
    return low, high


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="workdir / checkpoint, SavedModel dir, or .tflite file")
    parser.add_argument("--input", required=True, nargs="+", help="image file(s), folder(s) or video file(s)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--save", default="png16,color,npy,ply", help="outputs, comma-separated (default: all four)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels of the input pictures")
    group.add_argument("--fov", type=float, help="horizontal field of view in degrees (square pixels, centred)")
    parser.add_argument("--recursive", action="store_true", help="also read subfolders of folder inputs")
    parser.add_argument("--color-range", help="MIN,MAX metres of the colour map (default: per picture 1-99th percentile)")
    parser.add_argument("--ply-ascii", action="store_true", help="write ASCII PLY (default binary little-endian)")
    parser.add_argument("--video-every", type=int, default=1, help="predict every N-th video frame (default 1)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video after this many predicted frames")
    parser.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    save = parse_save(args.save)
    color_range = parse_range(args.color_range)
    if args.video_every < 1:
        raise ValueError(f"--video-every must be >= 1, got {args.video_every}")
    from tfdepth.geometry import Intrinsics

    if args.intrinsics:
        Intrinsics.parse(args.intrinsics)  # fail before the (slow) model load
    if args.fov is not None:
        Intrinsics.from_fov(args.fov, (2, 2))
    jobs, missing, skipped = collect_jobs(args.input, args.recursive)
    if not jobs and not missing:
        raise ValueError(f"--input {' '.join(args.input)}: no images or videos found")

    from tfdepth.inference import DepthPredictor

    start = time.perf_counter()
    predictor = DepthPredictor.load(args.model, num_threads=args.threads)
    print(f"model: {predictor.describe()}")
    chooser = IntrinsicsChooser(predictor, args.intrinsics, args.fov)
    if "ply" in save:
        print(chooser.describe())
    if skipped:
        print(f"skipping {len(skipped)} file(s) that are neither images nor videos (e.g. {skipped[0]})")
    summary = run(predictor, jobs, args.output, save, chooser, color_range, not args.ply_ascii, args.video_every,
                  args.max_frames, progress=not args.quiet)
    summary.failures = missing + summary.failures
    summary.records = [{"input": p, "error": m} for p, m in missing] + summary.records
    with open(os.path.join(args.output, "predictions.json"), "w") as f:
        json.dump({"model": args.model, "intrinsics_source": chooser.source if "ply" in save else None,
                   "items": summary.records}, f, indent=1)
    elapsed = time.perf_counter() - start
    print(f"done: {summary.images} image(s), {summary.frames} video frame(s) -> {args.output} ({elapsed:.1f} s)")
    if summary.failures:
        print(f"{len(summary.failures)} input(s) failed:", file=sys.stderr)
        for path, message in summary.failures:
            print(f"  {path}: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
