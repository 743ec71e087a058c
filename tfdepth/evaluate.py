"""Score depth predictions with the published protocols: a trained model on a dataset, or files.

Model mode (a trained tfdepth model on a split of its dataset)::

    python -m tfdepth.evaluate --checkpoint runs/exp1 [--config FILE] [--protocol nyu] [--split val]
        [--flip-average] [--max-images N] [--output metrics.json] [--plots DIR]

File mode (any model's outputs, matched to ground truth by file stem)::

    python -m tfdepth.evaluate --pred DIR --gt DIR --protocol nyu|kitti|none
        [--pred-scale S] [--gt-scale S] [--crop garg|eigen|kb|none] [--pooled]
        [--output FILE.json] [--plots DIR [--rgb DIR]]

File formats (file mode):

* ``.npy``: float depth in metres, HxW or HxWx1 (``--*-scale`` does not apply).
* 16-bit PNG (single channel): metres = value / S with S from ``--pred-scale`` / ``--gt-scale``
  (1000 for millimetres as NYU, 256 for KITTI). The scale is REQUIRED when PNGs are present: a
  guessed scale silently gives wrong numbers.
* 8-bit PNG: refused unless ``--allow-8bit`` is given as well as the scale (8-bit depth is a coarse
  quantisation, e.g. NYU's 0..255 -> 0..10 m is scale 25.5; it is easy to pass by mistake).
* A value of 0 is invalid in every format; colour PNGs are refused.

Errors name the file: unmatched stems (in either folder), unreadable files, size mismatches (or
``--resize-pred`` to resize predictions bilinearly to the ground truth).

Output: a table on stdout; ``--output`` writes JSON with ``overall`` and ``per_range`` (range label ->
metrics, keys ``abs_rel sq_rel rmse rmse_log log10 silog d1 d2 d3 mae`` plus ``ssim`` with
``--ssim``, and ``count`` = images), ``count``, ``skipped``, ``pixels``, ``protocol``, ``averaging``;
non-finite numbers are written as null. ``--plots DIR`` writes ``error_vs_depth.png`` and
``qualitative.png`` (RGB | prediction | ground truth | absolute error; the RGB column in file mode
only with ``--rgb DIR``).
"""

from __future__ import annotations

import argparse
import json
import math
import io
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.cli import run_main
from tfdepth.metrics import (
    MetricAccumulator,
    Protocol,
    evaluate_model,
    format_table,
    get_protocol,
    prepare_pair,
)

__all__ = ["evaluate_model", "evaluate_files", "load_depth_file", "main"]

DEPTH_SUFFIXES = (".npy", ".png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
QUALITATIVE_SAMPLES = 4


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


NPY_MAGIC = b"\x93NUMPY"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def decode_depth_bytes(data: bytes, name: str, scale: Optional[float], what: str = "depth",
                       allow_8bit: bool = False, scale_hint: str = "--gt-scale S",
                       error: type = ValueError) -> np.ndarray:
    """The bytes of a depth file (.npy metres, or single-channel 16-bit PNG with metres = value /
    ``scale``) -> float64 HxW metres; ``error`` is raised with a message naming ``name``.

    The rules are shared by the evaluate command (files) and the measuring page (uploads)."""
    if len(data) == 0:
        raise error(f"{name}: empty file")
    if data.startswith(NPY_MAGIC):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any reader failure is reported with the file name
            raise error(f"{name}: cannot read {what} .npy file ({e})") from None
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim != 2 or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise error(f"{name}: expected an HxW numeric {what} map in metres, got {array.dtype} {array.shape}")
        return array.astype(np.float64)
    if data.startswith(PNG_MAGIC):
        import cv2

        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if array is None:
            raise error(f"{name}: cannot decode {what} PNG (truncated or corrupt)")
        if array.ndim != 2:
            raise error(f"{name}: a {what} PNG must have one channel, got shape {array.shape} "
                        "(a colour picture, not a depth map?)")
        if array.dtype == np.uint8:
            if not allow_8bit:
                raise error(f"{name}: 8-bit {what} PNG refused (coarse quantisation); convert it to 16-bit "
                            "or allow 8-bit with an explicit scale")
        elif array.dtype != np.uint16:
            raise error(f"{name}: {what} PNG must be 16-bit, got {array.dtype}")
        if scale is None:
            raise error(f"{name}: a {what} PNG needs its scale, {scale_hint} (metres = value / scale: 1000 for "
                        "millimetres, 256 for KITTI, 5000 for TUM)")
        return array.astype(np.float64) / float(scale)
    raise error(f"{name}: not a {what} depth file, cannot read it: expected a 16-bit PNG (with its scale) "
                "or a .npy array in metres")


def load_depth_file(path: str, scale: Optional[float], what: str = "depth", allow_8bit: bool = False) -> np.ndarray:
    """One depth file -> float64 HxW metres (see :func:`decode_depth_bytes`)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read {what} file ({e.strerror})") from None
    flag = "--gt-scale S" if what == "ground truth" else "--pred-scale S"
    return decode_depth_bytes(data, path, scale, what, allow_8bit, scale_hint=flag)


def _index_folder(folder: str, suffixes: Sequence[str], what: str) -> Dict[str, str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: {what} folder not found")
    by_stem: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in suffixes or name.startswith("."):
            continue
        if stem in by_stem:
            raise ValueError(f"{folder}: two {what} files share the stem {stem!r}: "
                             f"{os.path.basename(by_stem[stem])} and {name}")
        by_stem[stem] = os.path.join(folder, name)
    if not by_stem:
        raise ValueError(f"{folder}: no {what} files ({', '.join(suffixes)})")
    return by_stem


def match_files(pred_dir: str, gt_dir: str) -> List[Tuple[str, str, str]]:
    """(stem, pred path, gt path) for every stem; unmatched stems on either side are an error."""
    preds = _index_folder(pred_dir, DEPTH_SUFFIXES, "prediction")
    gts = _index_folder(gt_dir, DEPTH_SUFFIXES, "ground truth")
    missing_pred = sorted(set(gts) - set(preds))
    missing_gt = sorted(set(preds) - set(gts))
    problems = []
    if missing_pred:
        problems.append(f"{len(missing_pred)} ground-truth file(s) without a prediction in {pred_dir}: "
                        + ", ".join(os.path.basename(gts[s]) for s in missing_pred[:10])
                        + (" ..." if len(missing_pred) > 10 else ""))
    if missing_gt:
        problems.append(f"{len(missing_gt)} prediction file(s) without ground truth in {gt_dir}: "
                        + ", ".join(os.path.basename(preds[s]) for s in missing_gt[:10])
                        + (" ..." if len(missing_gt) > 10 else ""))
    if problems:
        raise ValueError("unmatched file stems: " + "; ".join(problems))
    return [(stem, preds[stem], gts[stem]) for stem in sorted(gts)]


def _resize_bilinear(array: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(array.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float64)


def _load_rgb(rgb_index: Dict[str, str], stem: str, shape: Tuple[int, int]) -> Optional[np.ndarray]:
    import cv2

    path = rgb_index.get(stem)
    if path is None:
        return None
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot read RGB image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] != tuple(shape):
        rgb = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return rgb


class _PlotCollector:
    """Feeds the error-by-depth accumulator and keeps the first few samples for the grid."""

    def __init__(self, protocol: Protocol, samples: int = QUALITATIVE_SAMPLES):
        from tfdepth.plots import ErrorByDepth

        width = protocol.max_depth_m / 40.0 if math.isfinite(protocol.max_depth_m) else 0.25
        self.protocol = protocol
        self.errors = ErrorByDepth(width)
        self.samples: List[dict] = []
        self.limit = samples

    def __call__(self, rgb, pred_m, gt_m, name: Optional[str] = None) -> None:
        pred, gt, valid = prepare_pair(pred_m, gt_m, self.protocol)
        self.errors.update(pred[valid], gt[valid])
        if len(self.samples) < self.limit:
            self.samples.append({"rgb": rgb, "pred": pred, "gt": np.where(valid, gt, 0.0), "valid": valid,
                                 "name": name})

    def write(self, directory: str) -> List[str]:
        from tfdepth.plots import plot_error_vs_depth, plot_qualitative_grid

        os.makedirs(directory, exist_ok=True)
        paths = [plot_error_vs_depth(self.errors, os.path.join(directory, "error_vs_depth.png"),
                                     title=f"Mean absolute error against depth ({self.protocol.name})")]
        if self.samples:
            paths.append(plot_qualitative_grid(self.samples, os.path.join(directory, "qualitative.png")))
        with open(os.path.join(directory, "error_vs_depth.json"), "w") as f:
            json.dump(_finite_or_none(self.errors.result()), f, indent=1)
        return paths


def evaluate_files(
    pred_dir: str,
    gt_dir: str,
    protocol: Protocol,
    pred_scale: Optional[float] = None,
    gt_scale: Optional[float] = None,
    pooled: bool = False,
    with_ssim: bool = False,
    resize_pred: bool = False,
    allow_8bit: bool = False,
    plots: Optional[_PlotCollector] = None,
    rgb_dir: Optional[str] = None,
) -> Dict[str, object]:
    """Scores prediction files against ground-truth files matched by stem; returns the result dict."""
    pairs = match_files(pred_dir, gt_dir)
    rgb_index = _index_folder(rgb_dir, IMAGE_SUFFIXES, "RGB") if rgb_dir else {}
    if rgb_dir:
        missing = [os.path.basename(g) for stem, _, g in pairs if stem not in rgb_index]
        if missing:
            raise ValueError(f"{rgb_dir}: no RGB image with the stem of {len(missing)} ground-truth file(s): "
                             + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
    acc = MetricAccumulator(protocol, pooled=pooled, with_ssim=with_ssim)
    for stem, pred_path, gt_path in pairs:
        gt = load_depth_file(gt_path, gt_scale, "ground truth", allow_8bit)
        pred = load_depth_file(pred_path, pred_scale, "prediction", allow_8bit)
        if pred.shape != gt.shape:
            if not resize_pred:
                raise ValueError(f"{pred_path}: prediction is {pred.shape[0]}x{pred.shape[1]} but ground truth "
                                 f"{gt_path} is {gt.shape[0]}x{gt.shape[1]} (use --resize-pred to resize bilinearly)")
            pred = _resize_bilinear(pred, gt.shape)
        acc.update(pred, gt)
        if plots is not None:
            plots(_load_rgb(rgb_index, stem, gt.shape) if rgb_index else None, pred, gt, name=stem)
    return acc.result()


# --------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------


def evaluate_checkpoint(
    checkpoint: str,
    config_path: Optional[str] = None,
    overrides: Sequence[str] = (),
    protocol_name: Optional[str] = None,
    crop: Optional[str] = None,
    split: Optional[str] = None,
    flip_average: Optional[bool] = None,
    max_images: Optional[int] = None,
    pooled: bool = False,
    with_ssim: bool = False,
    plots: Optional[str] = None,
) -> Dict[str, object]:
    """A trained model (workdir or checkpoint prefix) on ``split`` of its dataset (default: the
    config's ``data.val_split``); protocol / flip averaging / max images default to ``eval.*``."""
    import tensorflow as tf

    from tfdepth.config import load_config
    from tfdepth.data.pipeline import build_eval_dataset
    from tfdepth.training.checkpoint import load_trained_model

    config = None
    if config_path or overrides:
        if not config_path:
            from tfdepth.training.checkpoint import find_config_for

            config_path = find_config_for(checkpoint)
        config = load_config(config_path, overrides)
    model, cfg = load_trained_model(checkpoint, config)
    protocol = get_protocol(protocol_name or cfg.eval.protocol, crop)
    split = split or cfg.data.val_split
    flip = cfg.eval.flip_average if flip_average is None else flip_average
    limit = max_images if max_images is not None else cfg.eval.max_images
    dataset = build_eval_dataset(cfg.data, cfg.eval, split)

    @tf.function
    def predict(images):
        outputs = model(images, training=False)
        depth = outputs["depth"] if isinstance(outputs, dict) else outputs
        return tf.cast(depth, tf.float32)

    collector = _PlotCollector(protocol) if plots else None
    result = evaluate_model(predict, dataset, protocol, flip_average=flip, max_images=limit, with_ssim=with_ssim,
                            pooled=pooled, on_sample=collector)
    result["split"] = split
    result["flip_average"] = bool(flip)
    result["checkpoint"] = checkpoint
    if collector is not None:
        result["plots"] = collector.write(plots)
    return result


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _finite_or_none(value):
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(result: Dict[str, object], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_finite_or_none(result), f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tfdepth.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model mode")
    model.add_argument("--checkpoint", help="workdir or checkpoint prefix of a trained model")
    model.add_argument("--config", help="experiment YAML (default: the workdir's config.yaml)")
    model.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key (repeatable)")
    model.add_argument("--split", help="dataset split (default: data.val_split)")
    model.add_argument("--flip-average", action="store_true", default=None,
                       help="average with the flipped prediction of the flipped image")
    model.add_argument("--max-images", type=int, help="score at most N images")
    files = parser.add_argument_group("file mode")
    files.add_argument("--pred", help="folder of predictions (.npy metres or 16-bit PNG)")
    files.add_argument("--gt", help="folder of ground truth (.npy metres or 16-bit PNG)")
    files.add_argument("--pred-scale", type=float, help="PNG predictions: metres = value / S")
    files.add_argument("--gt-scale", type=float, help="PNG ground truth: metres = value / S (1000 mm, 256 KITTI)")
    files.add_argument("--allow-8bit", action="store_true", help="accept 8-bit PNGs (with an explicit scale)")
    files.add_argument("--resize-pred", action="store_true", help="resize predictions bilinearly to the ground truth")
    files.add_argument("--rgb", help="folder of RGB images (matched by stem) for the qualitative plot")
    common = parser.add_argument_group("both modes")
    common.add_argument("--protocol", choices=["nyu", "kitti", "none"],
                        help="evaluation protocol (model mode default: eval.protocol; file mode: required)")
    common.add_argument("--crop", choices=["none", "eigen", "garg", "kb"], help="override the protocol's crop")
    common.add_argument("--pooled", action="store_true", help="average over pixels instead of per image")
    common.add_argument("--ssim", action="store_true", help="also report SSIM of the depth maps")
    common.add_argument("--output", help="write the result as JSON")
    common.add_argument("--plots", help="folder for error_vs_depth.png and qualitative.png")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    file_mode = args.pred is not None or args.gt is not None
    if file_mode and args.checkpoint:
        parser.error("give either --checkpoint (model mode) or --pred/--gt (file mode), not both")
    if file_mode:
        if not (args.pred and args.gt):
            parser.error("file mode needs both --pred DIR and --gt DIR")
        if not args.protocol:
            parser.error("file mode needs --protocol nyu|kitti|none")
        protocol = get_protocol(args.protocol, args.crop)
        collector = _PlotCollector(protocol) if args.plots else None
        result = evaluate_files(args.pred, args.gt, protocol, pred_scale=args.pred_scale, gt_scale=args.gt_scale,
                                pooled=args.pooled, with_ssim=args.ssim, resize_pred=args.resize_pred,
                                allow_8bit=args.allow_8bit, plots=collector, rgb_dir=args.rgb)
        if collector is not None:
            result["plots"] = collector.write(args.plots)
    else:
        if not args.checkpoint:
            parser.error("give --checkpoint PATH (model mode) or --pred DIR --gt DIR (file mode)")
        result = evaluate_checkpoint(args.checkpoint, args.config, args.overrides, args.protocol, args.crop,
                                     args.split, args.flip_average, args.max_images, args.pooled, args.ssim,
                                     args.plots)
    print(f"protocol {result['protocol']['name']} (crop {result['protocol']['crop']}), "
          f"{result['averaging'].replace('_', '-')} averaging, {result['count']} images")
    print(format_table(result))
    if args.output:
        write_json(result, args.output)
        print(f"wrote {args.output}")
    for path in result.get("plots", []):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
