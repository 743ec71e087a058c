"""Prediction files against ground-truth files: find them, pair them by stem, decode them, score them.

File formats (both folders):

* ``.npy``: float depth in metres, HxW or HxWx1 (the scale does not apply).
* 16-bit PNG (single channel): metres = value / S with S the folder's scale (1000 for millimetres as
  NYU, 256 for KITTI). The scale is REQUIRED when PNGs are present: a guessed scale silently gives
  wrong numbers.
* 8-bit PNG: refused unless ``allow_8bit`` is given as well as the scale (8-bit depth is a coarse
  quantisation, e.g. NYU's 0..255 -> 0..10 m is scale 25.5; it is easy to pass by mistake).
* A value of 0 is invalid in every format; colour PNGs are refused.

The files are decoded by :func:`tfdepth.io.depth.decode_scaled_depth` (a
:class:`~tfdepth.io.depth.DepthFormatError` names the file); the other errors are
:class:`EvaluationFileError`, naming the file or folder: unmatched stems (in either folder),
unreadable files, size mismatches (unless ``resize_pred``: predictions are then resized bilinearly
to the ground truth).
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.errors import UserError
from tfdepth.io.depth import decode_scaled_depth
from tfdepth.metrics import MetricAccumulator, Protocol

DEPTH_SUFFIXES = (".npy", ".png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")


class EvaluationFileError(UserError, ValueError):
    """A prediction, ground-truth or RGB file (or folder) cannot be scored; the message names it."""


def load_depth_file(path: str, scale: Optional[float], what: str = "depth", allow_8bit: bool = False) -> np.ndarray:
    """One depth file -> float64 HxW metres, 0 = invalid (the rules of
    :func:`tfdepth.io.depth.decode_scaled_depth`, whose :class:`~tfdepth.io.depth.DepthFormatError`
    names the file); ``what`` is ``"ground truth"`` or ``"prediction"`` (it names the scale flag)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise EvaluationFileError(f"{path}: cannot read {what} file ({e.strerror})") from None
    flag = "--gt-scale S" if what == "ground truth" else "--pred-scale S"
    return decode_scaled_depth(data, path, scale, what, allow_8bit, scale_hint=flag)


def index_folder(folder: str, suffixes: Sequence[str], what: str) -> Dict[str, str]:
    """{stem: path} of the files of ``folder`` with one of ``suffixes`` (hidden files ignored)."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: {what} folder not found")
    by_stem: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, suffix = os.path.splitext(name)
        if suffix.lower() not in suffixes or name.startswith("."):
            continue
        if stem in by_stem:
            raise EvaluationFileError(f"{folder}: two {what} files share the stem {stem!r}: "
                                      f"{os.path.basename(by_stem[stem])} and {name}")
        by_stem[stem] = os.path.join(folder, name)
    if not by_stem:
        raise EvaluationFileError(f"{folder}: no {what} files ({', '.join(suffixes)})")
    return by_stem


def _listing(names: List[str]) -> str:
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def match_files(pred_dir: str, gt_dir: str) -> List[Tuple[str, str, str]]:
    """(stem, pred path, gt path) for every stem; unmatched stems on either side are an error."""
    preds = index_folder(pred_dir, DEPTH_SUFFIXES, "prediction")
    gts = index_folder(gt_dir, DEPTH_SUFFIXES, "ground truth")
    missing_pred = sorted(set(gts) - set(preds))
    missing_gt = sorted(set(preds) - set(gts))
    problems = []
    if missing_pred:
        problems.append(f"{len(missing_pred)} ground-truth file(s) without a prediction in {pred_dir}: "
                        + _listing([os.path.basename(gts[s]) for s in missing_pred]))
    if missing_gt:
        problems.append(f"{len(missing_gt)} prediction file(s) without ground truth in {gt_dir}: "
                        + _listing([os.path.basename(preds[s]) for s in missing_gt]))
    if problems:
        raise EvaluationFileError("unmatched file stems: " + "; ".join(problems))
    return [(stem, preds[stem], gts[stem]) for stem in sorted(gts)]


def resize_bilinear(array: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """float64 HxW map resized bilinearly (OpenCV, float32 inside) to ``shape`` (H, W)."""
    import cv2

    return cv2.resize(array.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR).astype(np.float64)


def load_rgb(path: str, shape: Tuple[int, int]) -> np.ndarray:
    """uint8 RGB [H, W, 3] of the picture at ``path``, resized (area) to ``shape`` when it differs."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise EvaluationFileError(f"{path}: cannot read RGB image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if rgb.shape[:2] != tuple(shape):
        rgb = cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return rgb


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
    on_sample: Optional[Callable] = None,
    rgb_dir: Optional[str] = None,
) -> Dict[str, object]:
    """Scores prediction files against ground-truth files matched by stem; returns
    :meth:`tfdepth.metrics.MetricAccumulator.result`.

    ``on_sample(rgb or None, pred_m, gt_m, name=stem)`` is called for every pair (e.g. a
    :class:`tfdepth.evaluation.report.PlotCollector`); ``rgb`` comes from ``rgb_dir`` (matched by
    stem; every ground-truth file then needs its picture), else None.
    """
    pairs = match_files(pred_dir, gt_dir)
    rgb_index = index_folder(rgb_dir, IMAGE_SUFFIXES, "RGB") if rgb_dir else {}
    if rgb_dir:
        missing = [os.path.basename(g) for stem, _, g in pairs if stem not in rgb_index]
        if missing:
            raise EvaluationFileError(f"{rgb_dir}: no RGB image with the stem of {len(missing)} ground-truth "
                                      "file(s): " + _listing(missing))
    acc = MetricAccumulator(protocol, pooled=pooled, with_ssim=with_ssim)
    for stem, pred_path, gt_path in pairs:
        gt = load_depth_file(gt_path, gt_scale, "ground truth", allow_8bit)
        pred = load_depth_file(pred_path, pred_scale, "prediction", allow_8bit)
        if pred.shape != gt.shape:
            if not resize_pred:
                raise EvaluationFileError(
                    f"{pred_path}: prediction is {pred.shape[0]}x{pred.shape[1]} but ground truth {gt_path} is "
                    f"{gt.shape[0]}x{gt.shape[1]} (use --resize-pred to resize bilinearly)")
            pred = resize_bilinear(pred, gt.shape)
        acc.update(pred, gt)
        if on_sample is not None:
            on_sample(load_rgb(rgb_index[stem], gt.shape) if rgb_index else None, pred, gt, name=stem)
    return acc.result()


__all__ = ["DEPTH_SUFFIXES", "EvaluationFileError", "IMAGE_SUFFIXES", "evaluate_files",
           "index_folder", "load_depth_file", "load_rgb", "match_files", "resize_bilinear"]
