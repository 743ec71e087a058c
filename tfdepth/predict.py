"""Predict metric depth for pictures, folders and videos.

``python -m tfdepth.predict --model PATH --input IMAGE|DIR|VIDEO [...] --output DIR
[--save png16,color,npy,ply] [--intrinsics fx,fy,cx,cy | --focal-px F | --fov DEG]``

``PATH``: a training workdir / checkpoint, a SavedModel (TF Serving ``DIR`` or ``DIR/N``) or a
``.tflite`` file. Pictures of any size and aspect ratio are padded to the model input's aspect ratio
(pixels stay square), resized to the model input, and the depth is resized back and cut to the
picture, so every output has the picture's own size (after its EXIF orientation is applied).
Greyscale, RGBA and 16-bit pictures are accepted. Per picture ``<stem>``:

- ``<stem>_depth_mm.png``    16-bit PNG, millimetres (metres = value / 1000; saturates at 65.535 m)
- ``<stem>_depth_color.png`` colour-mapped depth (near red, far blue) with a colour bar in metres
- ``<stem>_depth_m.npy``     float32 [H, W] metres
- ``<stem>_points.ply``      coloured point cloud (camera frame: x right, y down, z forward, metres) of
  every ``--ply-stride`` N-th pixel of every N-th row (default ``auto``: every pixel up to 2 megapixels,
  else the smallest N giving at most 2 M points, e.g. 6 for an 8000x8000 photo: 27 MB)

A picture larger than 3x the model input's scale is predicted at a working resolution (reduced to 3x
the input's scale, the depth upsampled to the picture's size), so very large photos need bounded
memory; ``predictions.json`` records the ``working_size`` and the ``ply_stride`` used.

The camera of each picture (for point clouds, and for the depth itself of a model trained with a
canonical camera, docs/camera.md): ``--intrinsics fx,fy,cx,cy`` (pixels of the pictures as read,
i.e. after EXIF rotation), or ``--focal-px F`` (principal point at the centre), or ``--fov DEG``
(horizontal field of view), else the picture's EXIF ``FocalLengthIn35mmFilm`` (f = f35 / 36 x its long
side), else (a model without canonical camera) the camera of the model's training data with its
aspect ratio kept, else a stated default 60 degree horizontal field of view. ``predictions.json``
records every picture's intrinsics and their source. A video (``.mp4``, ``.avi``, ...) is predicted
frame by frame into ``DIR/<stem>/<stem>_<frame>_*``. A folder is read in name order (``--recursive``
for subfolders). A file that cannot be read is reported by name and the rest still run; the exit
code is 1 if any input failed. ``DIR/predictions.json`` lists every input with its outputs,
intrinsics and depth range, or its error.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Optional, Tuple

from tfdepth import cli
from tfdepth.geometry import Intrinsics
from tfdepth.serving.batch import IntrinsicsChooser, collect_jobs, run
from tfdepth.serving.outputs import parse_ply_stride, parse_save, write_predictions
from tfdepth.serving.predictor import DepthPredictor


def parse_range(text: Optional[str]) -> Optional[Tuple[float, float]]:
    """``--color-range MIN,MAX`` (metres) -> (MIN, MAX), or None when not given."""
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
    parser.add_argument("--model", required=True, help="workdir / checkpoint, SavedModel dir, .tflite file, or hf:DIR / hf:OWNER/NAME "
                        "(a transformers Depth Anything checkpoint)")
    parser.add_argument("--input", required=True, nargs="+", help="image file(s), folder(s) or video file(s)")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--save", default="png16,color,npy,ply", help="outputs, comma-separated (default: all four)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--intrinsics", help="fx,fy,cx,cy in pixels of the input pictures")
    group.add_argument("--focal-px", type=float, help="focal length in pixels of the input pictures (centred)")
    group.add_argument("--fov", type=float, help="horizontal field of view in degrees (square pixels, centred)")
    parser.add_argument("--no-exif", action="store_true", help="ignore the pictures' EXIF focal length")
    parser.add_argument("--recursive", action="store_true", help="also read subfolders of folder inputs")
    parser.add_argument("--color-range", help="MIN,MAX metres of the colour map (default: per picture 1-99th percentile)")
    parser.add_argument("--ply-ascii", action="store_true", help="write ASCII PLY (default binary little-endian)")
    parser.add_argument("--ply-stride", default="auto", help="point cloud of every N-th pixel of every N-th row "
                        "(default auto: 1 up to 2 megapixels, else at most 2 M points)")
    parser.add_argument("--video-every", type=int, default=1, help="predict every N-th video frame (default 1)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop a video after this many predicted frames")
    parser.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    save = parse_save(args.save)
    ply_stride = parse_ply_stride(args.ply_stride)
    color_range = parse_range(args.color_range)
    if args.video_every < 1:
        raise ValueError(f"--video-every must be >= 1, got {args.video_every}")
    if args.intrinsics:
        Intrinsics.parse(args.intrinsics)  # fail before the (slow) model load
    if args.fov is not None:
        Intrinsics.from_fov(args.fov, (2, 2))
    if args.focal_px is not None and not 0 < args.focal_px < float("inf"):
        raise ValueError(f"--focal-px must be a positive number of pixels, got {args.focal_px}")
    jobs, missing, skipped = collect_jobs(args.input, args.recursive)
    if not jobs and not missing:
        raise ValueError(f"--input {' '.join(args.input)}: no images or videos found")

    start = time.perf_counter()
    predictor = DepthPredictor.load(args.model, num_threads=args.threads)
    print(f"model: {predictor.describe()}")
    chooser = IntrinsicsChooser(predictor, args.intrinsics, args.fov, args.focal_px, use_exif=not args.no_exif)
    print(chooser.describe())
    if skipped:
        print(f"skipping {len(skipped)} file(s) that are neither images nor videos (e.g. {skipped[0]})")
    summary = run(predictor, jobs, args.output, save, chooser, color_range, not args.ply_ascii, args.video_every,
                  args.max_frames, progress=not args.quiet, ply_stride=ply_stride)
    summary.failures = missing + summary.failures
    summary.records = [{"input": p, "error": m} for p, m in missing] + summary.records
    write_predictions(args.output, args.model, summary.records, chooser.source)
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
