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

Nonsense is refused rather than scored (``force`` scores it anyway, with ``warnings`` in the result):

* a scale that is not a finite number > 0 (``--gt-scale 0`` / ``-1`` / ``nan``);
* implausible ground truth (:func:`implausible_depth`: more than 10 % of its valid pixels beyond the
  protocol's maximum depth, or its median below a twentieth of it; ``none``: a median outside
  0.01..1000 m), e.g. NYU millimetre PNGs read with ``--gt-scale 256``; the error names the file
  and the usual scale (1000, 256, 5000) that makes it plausible;
* a prediction with more than 1 % non-finite values at valid ground-truth pixels (they would be
  scored as the protocol's clip limits, e.g. NaN as 1 mm); below that they are counted in
  ``nonfinite_pred_pixels`` / ``nonfinite_pred_fraction`` of the result;
* nothing scored (no ground-truth file has a valid pixel under the protocol).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfdepth.errors import UserError
from tfdepth.io.depth import decode_scaled_depth, get_encoding
from tfdepth.metrics import MetricAccumulator, Protocol, valid_gt_mask
from tfdepth.progress import Progress

DEPTH_SUFFIXES = (".npy", ".png")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".bmp")
USUAL_SCALES = (1000.0, 256.0, 5000.0)  # millimetres (NYU, SUN RGB-D, ScanNet), KITTI, TUM
MAX_BEYOND_RANGE = 0.10  # fraction of valid ground truth beyond the protocol's max depth that is implausible
NEAR_FRACTION = 1 / 20  # a median below this fraction of the protocol's max depth is implausible
OPEN_MEDIAN_M = (0.01, 1000.0)  # plausible median for a protocol without a maximum depth (``none``)
MAX_NONFINITE_FRACTION = 0.01  # of a prediction's valid pixels
FORCE_HINT = "give --force to score it anyway"
PREDICTIONS_FILE = "predictions.json"  # the predict command's index of what it wrote (tfdepth.serving.outputs)
PREDICT_SUFFIXES = {"npy": "_depth_m.npy", "png16": "_depth_mm.png"}  # its depth outputs, per kind


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


@dataclass
class FilePair:
    """One scored pair: the ground truth's ``stem``, the prediction (``pred_scale``: its own scale when the
    prediction folder says it, else the --pred-scale given) and, where known, the source picture."""

    stem: str
    pred_path: str
    gt_path: str
    pred_scale: Optional[float] = None
    rgb_path: Optional[str] = None


def _predict_output_path(pred_dir: str, recorded: str) -> str:
    """Where a file ``predict`` recorded in predictions.json lies now: beside predictions.json (a picture's
    outputs) or in its video's sub-folder; the recorded path when neither exists (the error names it)."""
    name = os.path.basename(recorded)
    parent = os.path.basename(os.path.dirname(recorded))
    for candidate in (os.path.join(pred_dir, name), os.path.join(pred_dir, parent, name), recorded):
        if os.path.isfile(candidate):
            return candidate
    return recorded


def read_predict_folder(pred_dir: str) -> Optional[Tuple[Dict[str, str], Dict[str, Optional[float]], Dict[str, str]]]:
    """The depth files of a ``predict`` output folder, from its ``predictions.json`` (None when it has
    none): ({source stem: depth path}, {stem: its scale (None for .npy metres)}, {stem: source picture}).

    A picture's stem is its source file's (``rgb_00050.jpg`` -> ``rgb_00050``, not the output's
    ``rgb_00050_depth_m.npy``); a video frame's is its output prefix. The ``.npy`` output is used where
    written, else the 16-bit PNG (its encoding from ``depth_encodings``, ``mm16`` for files without it)."""
    index = os.path.join(pred_dir, PREDICTIONS_FILE)
    if not os.path.isfile(index):
        return None
    try:
        with open(index) as f:
            listing = json.load(f)
        items = listing["items"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EvaluationFileError(f"{index}: not a predict command's index ({type(e).__name__}: {e})") from None
    encodings = listing.get("depth_encodings") or {"png16": "mm16", "npy": "npy-m"}
    paths: Dict[str, str] = {}
    scales: Dict[str, Optional[float]] = {}
    sources: Dict[str, str] = {}
    failed = [str(item.get("input")) for item in items if "error" in item]
    for item in items:
        outputs = item.get("outputs") or {}
        if "error" in item and not outputs:
            continue
        source = str(item.get("input", ""))
        kind = "npy" if "npy" in outputs else "png16" if "png16" in outputs else None
        if kind is None:
            raise EvaluationFileError(f"{index}: {source} has no depth output ({', '.join(outputs) or 'none'}; a "
                                      "colour picture is not depth): run predict with --save npy (or png16)")
        path = _predict_output_path(pred_dir, outputs[kind])
        if "#frame=" in source:
            stem = os.path.basename(outputs[kind])[:-len(PREDICT_SUFFIXES[kind])]
        else:
            stem = os.path.splitext(os.path.basename(source))[0]
            sources[stem] = source
        if stem in paths:
            raise EvaluationFileError(f"{index}: two predicted pictures share the stem {stem!r} ({paths[stem]} and "
                                      f"{path}); predict them into separate folders")
        paths[stem] = path
        scales[stem] = None if kind == "npy" else float(get_encoding(encodings.get(kind, "mm16")).units_per_m)
    if not paths:
        raise EvaluationFileError(f"{index}: lists no predicted picture" + (
            f" ({len(failed)} input(s) failed in predict, e.g. {failed[0]})" if failed else ""))
    return paths, scales, sources


def pair_stems(first: Dict[str, str], second: Dict[str, str]) -> Tuple[List[Tuple[Optional[str], Optional[str]]], str]:
    """Pairs of (first path, second path) (None where a file has no partner) by stem, or by the last
    number in the name where that pairs more (``rgb_00050`` with ``sync_depth_00050``): the rule of the
    ``folder`` converter (:func:`tfdepth.data.converters.folder.pair_folder`); and the rule used."""
    from tfdepth.data.converters.folder import pair_folder

    return pair_folder(first, second)


def match_files(pred_dir: str, gt_dir: str, pred_scale: Optional[float] = None) -> List[FilePair]:
    """A :class:`FilePair` for every ground-truth file; unmatched files on either side are an error.

    ``pred_dir`` is a folder of depth files, or a ``predict`` output folder (:func:`read_predict_folder`).
    Files pair by stem, or by the last number in their names where that pairs more (:func:`pair_stems`)."""
    predicted = read_predict_folder(pred_dir)
    if predicted is not None:
        preds, scales, sources = predicted
        for stem, scale in scales.items():
            if scale is not None and pred_scale is not None and pred_scale != scale:
                raise EvaluationFileError(f"--pred-scale {pred_scale:g}: {pred_dir} is a predict output folder whose "
                                          f"PNGs are stored at scale {scale:g} ({PREDICTIONS_FILE}); drop --pred-scale")
    else:
        preds = index_folder(pred_dir, DEPTH_SUFFIXES, "prediction")
        scales, sources = {stem: pred_scale for stem in preds}, {}
    gts = index_folder(gt_dir, DEPTH_SUFFIXES, "ground truth")
    pairs, rule = pair_stems(preds, gts)
    missing_pred = sorted(os.path.basename(g) for p, g in pairs if p is None)
    missing_gt = sorted(os.path.basename(p) for p, g in pairs if g is None)
    problems = []
    if missing_pred:
        problems.append(f"{len(missing_pred)} ground-truth file(s) in {gt_dir} without a prediction in {pred_dir}: "
                        + _listing(missing_pred))
    if missing_gt:
        problems.append(f"{len(missing_gt)} prediction file(s) in {pred_dir} without ground truth in {gt_dir}: "
                        + _listing(missing_gt))
    if problems:
        raise EvaluationFileError("unmatched files (paired by stem, or by the number in the name): "
                                  + "; ".join(problems))
    stem_of = {path: stem for stem, path in preds.items()}
    gt_stem = {path: stem for stem, path in gts.items()}
    out = [FilePair(gt_stem[g], p, g, scales[stem_of[p]], sources.get(stem_of[p])) for p, g in pairs]
    return sorted(out, key=lambda pair: pair.stem)


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


def check_scale(flag: str, scale: Optional[float]) -> None:
    """A depth scale must be a finite number > 0 (``flag`` names it in the error)."""
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool)
    if scale is not None and not (number and math.isfinite(scale) and scale > 0):
        shown = format(scale, "g") if number else repr(scale)
        raise EvaluationFileError(f"{flag} {shown}: expected a finite number > 0 (metres = value / S: 1000 for "
                                  "millimetres, 256 for KITTI, 5000 for TUM)")


def _plausible_median_range(protocol: Protocol) -> Tuple[float, float]:
    if math.isfinite(protocol.max_depth_m):
        return protocol.max_depth_m * NEAR_FRACTION, protocol.max_depth_m
    return OPEN_MEDIAN_M


def implausible_depth(depth_m: np.ndarray, protocol: Protocol) -> Optional[str]:
    """Why ``depth_m`` (metres, its finite values > 0 are valid) is implausible ground truth for
    ``protocol`` (more than :data:`MAX_BEYOND_RANGE` of it beyond the protocol's maximum depth, or its
    median below :data:`NEAR_FRACTION` of it; without a maximum: a median outside :data:`OPEN_MEDIAN_M`),
    or None (also for a map without a valid pixel)."""
    with np.errstate(invalid="ignore"):
        valid = depth_m[np.isfinite(depth_m) & (depth_m > 0)]
    if valid.size == 0:
        return None
    median = float(np.median(valid))
    low, high = _plausible_median_range(protocol)
    if math.isfinite(protocol.max_depth_m):
        beyond = float(np.mean(valid >= high))
        if beyond > MAX_BEYOND_RANGE:
            return (f"{beyond:.0%} of its valid pixels (median {median:.3g} m) lie beyond the {protocol.name} "
                    f"protocol's {high:g} m maximum and would be dropped")
        if median < low:
            return (f"its median valid depth {median:.3g} m is implausibly near for the {protocol.name} protocol "
                    f"(expected a median of at least {low:g} m)")
    elif not low <= median <= high:
        return f"its median valid depth {median:.3g} m is outside {low:g}..{high:g} m"
    return None


def likely_scale(depth_m: np.ndarray, scale: Optional[float], protocol: Protocol) -> Optional[Tuple[float, float]]:
    """(scale, median metres) of the usual scale (:data:`USUAL_SCALES`) that makes the file's values
    (``depth_m`` decoded with ``scale``; None: metres) plausible, the most typical median first; or None."""
    raw = depth_m * (scale or 1.0)
    low, high = _plausible_median_range(protocol)
    centre = math.sqrt(low * high)
    best = None
    for candidate in USUAL_SCALES:
        if candidate == scale or implausible_depth(raw / candidate, protocol) is not None:
            continue
        with np.errstate(invalid="ignore"):
            median = float(np.median(raw[np.isfinite(raw) & (raw > 0)])) / candidate
        if best is None or abs(math.log(median / centre)) < abs(math.log(best[1] / centre)):
            best = (candidate, median)
    return best


def _implausible_message(gt_path: str, gt: np.ndarray, gt_scale: Optional[float], protocol: Protocol,
                         reason: str) -> str:
    png = gt_path.lower().endswith(".png")
    guess = likely_scale(gt, gt_scale if png else None, protocol)
    what = f"ground truth read with --gt-scale {gt_scale:g}" if png else "ground truth (.npy, metres)"
    if guess is None:
        hint = f"none of the usual scales ({', '.join(f'{s:g}' for s in USUAL_SCALES)}) makes it plausible"
    elif png:
        hint = f"with --gt-scale {guess[0]:g} its median would be {guess[1]:.2f} m: is that its encoding?"
    else:
        hint = f"its values / {guess[0]:g} would have a median of {guess[1]:.2f} m: saved in other units?"
    return f"{gt_path}: implausible {what}: {reason}; {hint} ({FORCE_HINT})"


def _nonfinite_message(pred_path: str, count: int, valid: int, protocol: Protocol) -> str:
    return (f"{pred_path}: {count} of the prediction's {valid} valid pixels ({count / valid:.1%}) are NaN or "
            f"infinite (more than {MAX_NONFINITE_FRACTION:.0%}); they would be scored as {protocol.pred_min_m:g} m "
            f"(NaN, -inf) / {protocol.pred_max_m:g} m (+inf) ({FORCE_HINT})")


def _summarise(messages: List[str], what: str) -> List[str]:
    if not messages:
        return []
    more = f" (and {len(messages) - 1} more file(s))" if len(messages) > 1 else ""
    return [f"scored despite {what} (--force): {messages[0].replace(f' ({FORCE_HINT})', '')}{more}"]


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
    force: bool = False,
    progress: bool = False,
) -> Dict[str, object]:
    """Scores prediction files against ground-truth files matched by stem; returns
    :meth:`tfdepth.metrics.MetricAccumulator.result`.

    ``on_sample(rgb or None, pred_m, gt_m, name=stem)`` is called for every pair (e.g. a
    :class:`tfdepth.evaluation.report.PlotCollector`); ``rgb`` comes from ``rgb_dir`` (matched by
    stem; every ground-truth file then needs its picture), else None.

    Implausible ground truth or a prediction with more than 1 % non-finite valid pixels is an
    :class:`EvaluationFileError` naming the file, unless ``force`` (then ``warnings`` in the result says
    so); the result also has ``nonfinite_pred_pixels`` (non-finite predictions at valid pixels, scored as
    the protocol's clip limits) and ``nonfinite_pred_fraction`` (of ``pixels``). Nothing scored is an error.
    """
    check_scale("--pred-scale", pred_scale)
    check_scale("--gt-scale", gt_scale)
    pairs = match_files(pred_dir, gt_dir, pred_scale)
    rgb_for: Dict[str, str] = {}
    if rgb_dir:
        rgb_pairs, _ = pair_stems(index_folder(rgb_dir, IMAGE_SUFFIXES, "RGB"), {p.stem: p.gt_path for p in pairs})
        rgb_for = {g: r for r, g in rgb_pairs if r is not None and g is not None}
        missing = [os.path.basename(p.gt_path) for p in pairs if p.gt_path not in rgb_for]
        if missing:
            raise EvaluationFileError(f"{rgb_dir}: no RGB image with the stem (or number) of {len(missing)} "
                                      "ground-truth file(s): " + _listing(missing))
    elif all(p.rgb_path and os.path.isfile(p.rgb_path) for p in pairs):  # a predict folder names its pictures
        rgb_for = {p.gt_path: p.rgb_path for p in pairs}
    acc = MetricAccumulator(protocol, pooled=pooled, with_ssim=with_ssim)
    implausible: List[str] = []
    nonfinite_files: List[str] = []
    nonfinite = 0
    progress = Progress("evaluate", len(pairs), "file", enabled=progress)
    for pair in pairs:
        stem, pred_path, gt_path = pair.stem, pair.pred_path, pair.gt_path
        gt = load_depth_file(gt_path, gt_scale, "ground truth", allow_8bit)
        reason = implausible_depth(gt, protocol)
        if reason is not None:
            implausible.append(_implausible_message(gt_path, gt, gt_scale, protocol, reason))
            if not force:
                raise EvaluationFileError(implausible[-1])
        pred = load_depth_file(pred_path, pair.pred_scale, "prediction", allow_8bit)
        if pred.shape != gt.shape:
            if not resize_pred:
                raise EvaluationFileError(
                    f"{pred_path}: prediction is {pred.shape[0]}x{pred.shape[1]} but ground truth {gt_path} is "
                    f"{gt.shape[0]}x{gt.shape[1]} (use --resize-pred to resize bilinearly)")
            pred = resize_bilinear(pred, gt.shape)
        valid = valid_gt_mask(gt, protocol)
        bad, count = int((~np.isfinite(pred) & valid).sum()), int(valid.sum())
        nonfinite += bad
        if bad > MAX_NONFINITE_FRACTION * count:
            nonfinite_files.append(_nonfinite_message(pred_path, bad, count, protocol))
            if not force:
                raise EvaluationFileError(nonfinite_files[-1])
        acc.update(pred, gt)
        if on_sample is not None:
            on_sample(load_rgb(rgb_for[gt_path], gt.shape) if rgb_for else None, pred, gt, name=stem)
        progress.update()
    progress.close()
    result = acc.result()
    if not result["count"]:
        crop = f", crop {protocol.crop}" if protocol.crop != "none" else ""
        raise EvaluationFileError(
            f"{gt_dir}: nothing scored: none of the {len(pairs)} ground-truth file(s) has a valid pixel under the "
            f"{protocol.name} protocol ({protocol.min_depth_m:g} < depth < {protocol.max_depth_m:g} m{crop}); "
            "check --gt-scale, --protocol and --crop")
    result["nonfinite_pred_pixels"] = nonfinite
    result["nonfinite_pred_fraction"] = nonfinite / result["pixels"]
    result["warnings"] = (_summarise(implausible, "implausible ground truth")
                          + _summarise(nonfinite_files, "non-finite predictions"))
    return result


__all__ = ["DEPTH_SUFFIXES", "EvaluationFileError", "FilePair", "IMAGE_SUFFIXES", "MAX_NONFINITE_FRACTION",
           "PREDICTIONS_FILE", "PREDICT_SUFFIXES", "USUAL_SCALES", "check_scale", "evaluate_files",
           "implausible_depth", "index_folder", "likely_scale", "load_depth_file", "load_rgb", "match_files",
           "pair_stems", "read_predict_folder", "resize_bilinear"]
