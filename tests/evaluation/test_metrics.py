"""Metrics against the reference formulas (BTS ``compute_errors``) on random and real depth maps."""

import math

import cv2
import numpy as np
import pytest

from helpers import SHARED_DATA
from tfdepth.evaluation.report import format_table
from tfdepth.metrics import (
    DEPTH_RANGES,
    METRIC_KEYS,
    MetricAccumulator,
    crop_mask,
    evaluate_predictions,
    get_protocol,
    image_metrics,
)

REAL = SHARED_DATA


def reference_errors(gt, pred):
    """BTS / AdaBins compute_errors, transcribed (gt, pred: 1-D valid pixels)."""
    thresh = np.maximum(gt / pred, pred / gt)
    d1 = (thresh < 1.25).mean()
    d2 = (thresh < 1.25**2).mean()
    d3 = (thresh < 1.25**3).mean()
    rmse = np.sqrt(((gt - pred) ** 2).mean())
    rmse_log = np.sqrt(((np.log(gt) - np.log(pred)) ** 2).mean())
    abs_rel = np.mean(np.abs(gt - pred) / gt)
    sq_rel = np.mean(((gt - pred) ** 2) / gt)
    err = np.log(pred) - np.log(gt)
    silog = np.sqrt(np.mean(err**2) - np.mean(err) ** 2) * 100
    log10 = np.mean(np.abs(np.log10(pred) - np.log10(gt)))
    mae = np.mean(np.abs(gt - pred))
    return dict(abs_rel=abs_rel, sq_rel=sq_rel, rmse=rmse, rmse_log=rmse_log, log10=log10, silog=silog,
                d1=d1, d2=d2, d3=d3, mae=mae)


def reference_clip(pred, low, high):
    pred = pred.astype(np.float64).copy()
    pred[pred < low] = low
    pred[pred > high] = high
    pred[np.isinf(pred)] = high
    pred[np.isnan(pred)] = low
    return pred


def assert_metrics_close(actual, expected, rtol=1e-6):
    for key in METRIC_KEYS:
        assert actual[key] == pytest.approx(expected[key], rel=rtol, abs=1e-12), key


def noisy_copy(gt, rng, sigma=0.15):
    pred = np.where(gt > 0, gt, rng.uniform(0.5, 5.0, gt.shape)) * np.exp(rng.normal(0, sigma, gt.shape))
    return pred


# ----------------------------------------------------------------------------------------------
# Crops
# ----------------------------------------------------------------------------------------------


def only_window(mask, rows, cols):
    expected = np.zeros_like(mask)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = True
    return np.array_equal(mask, expected)


def test_crops_index_the_stated_rows_and_cols():
    assert only_window(crop_mask((480, 640), get_protocol("nyu")), (45, 471), (41, 601))
    # KITTI 375x1242: int() truncation of the BTS fractions
    assert only_window(crop_mask((375, 1242), get_protocol("kitti")), (153, 371), (44, 1197))  # garg (default)
    assert only_window(crop_mask((375, 1242), get_protocol("kitti", "garg")), (153, 371), (44, 1197))
    assert only_window(crop_mask((375, 1242), get_protocol("kitti", "eigen")), (124, 342), (44, 1197))
    assert only_window(crop_mask((375, 1242), get_protocol("kitti", "kb")), (23, 375), (13, 1229))
    assert crop_mask((375, 1242), get_protocol("none")).all()
    # NYU crop scaled proportionally: 240x320 -> rows 22/23..236, cols 20/21..300
    assert only_window(crop_mask((240, 320), get_protocol("nyu")), (round(22.5), round(235.5)), (round(20.5), 300))
    with pytest.raises(ValueError, match="352x1216"):
        crop_mask((300, 1000), get_protocol("kitti", "kb"))
    with pytest.raises(ValueError, match="crop must be one of"):
        get_protocol("nyu", "center")
    with pytest.raises(ValueError, match="allowed: kitti, none, nyu"):
        get_protocol("sun")


# ----------------------------------------------------------------------------------------------
# Random maps
# ----------------------------------------------------------------------------------------------


def test_image_metrics_match_reference_on_random_map_nyu():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.0, 12.0, (48, 64))
    gt[rng.random(gt.shape) < 0.2] = 0.0
    gt[0, 5] = np.nan
    pred = noisy_copy(gt, rng) * 1.1
    pred[10, 10], pred[11, 11], pred[12, 12], pred[13, 13] = np.nan, np.inf, -1.0, 30.0
    protocol = get_protocol("nyu")
    got = image_metrics(pred, gt, protocol)
    # reference: validity, crop (rows 4/5..47, cols 4..60 scaled from 45:471, 41:601) and clipping written out
    mask = np.zeros(gt.shape, bool)
    mask[round(45 * 48 / 480) : round(471 * 48 / 480), round(41 * 64 / 640) : round(601 * 64 / 640)] = True
    with np.errstate(invalid="ignore"):
        mask &= (gt > 1e-3) & (gt < 10)
    p = reference_clip(pred, 1e-3, 10)
    assert got["count"] == mask.sum()
    assert_metrics_close(got, reference_errors(gt[mask], p[mask]))
    assert 0 < got["d1"] < 1


def test_accumulator_per_image_pooled_and_per_range_on_random_maps():
    rng = np.random.default_rng(1)
    protocol = get_protocol("none")
    preds, gts = [], []
    for i in range(4):
        gt = rng.uniform(0.2, 8.0, (20 + i, 30))
        gt[rng.random(gt.shape) < 0.3] = 0.0
        gts.append(gt)
        preds.append(noisy_copy(gt, rng))
    gts.append(np.zeros((10, 10)))  # no valid pixel: skipped
    preds.append(np.ones((10, 10)))
    result = evaluate_predictions(preds, gts, protocol)
    assert result["count"] == 4 and result["skipped"] == 1
    per_image = [reference_errors(g[g > 0], np.maximum(p[g > 0], 1e-3)) for p, g in zip(preds[:4], gts[:4])]
    mean = {k: np.mean([m[k] for m in per_image]) for k in METRIC_KEYS}
    assert_metrics_close(result["overall"], mean)
    assert result["pixels"] == sum(int((g > 0).sum()) for g in gts)
    assert list(result["per_range"]) == ["[0,1)", "[1,3)", "[3,5)", "[5,inf)"]
    for label, low, high in DEPTH_RANGES:
        rows = []
        for p, g in zip(preds[:4], gts[:4]):
            sel = (g > 0) & (g >= low) & (g < high)
            if sel.any():
                rows.append(reference_errors(g[sel], p[sel]))
        expected = {k: np.mean([m[k] for m in rows]) for k in METRIC_KEYS}
        assert_metrics_close(result["per_range"][label], expected)
        assert result["per_range"][label]["count"] == len(rows)
    pooled = evaluate_predictions(preds, gts, protocol, pooled=True)
    all_g = np.concatenate([g[g > 0] for g in gts[:4]])
    all_p = np.concatenate([p[g > 0] for p, g in zip(preds[:4], gts[:4])])
    assert_metrics_close(pooled["overall"], reference_errors(all_g, all_p))
    assert pooled["overall"]["rmse"] != pytest.approx(result["overall"]["rmse"], rel=1e-9)
    table = format_table(result)
    assert "abs_rel" in table and "[5,inf)" in table and "1 image(s) without valid pixels" in table


def test_shape_mismatch_and_bad_shapes_raise():
    protocol = get_protocol("none")
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(4, 6\)"):
        image_metrics(np.ones((4, 5)), np.ones((4, 6)), protocol)
    with pytest.raises(ValueError, match=r"HxW.*\(2, 4, 5\)"):
        image_metrics(np.ones((2, 4, 5)), np.ones((2, 4, 5)), protocol)
    assert image_metrics(np.ones((4, 5, 1)), np.full((4, 5), 2.0), protocol)["abs_rel"] == pytest.approx(0.5)
    empty = image_metrics(np.ones((4, 5)), np.zeros((4, 5)), protocol)
    assert empty["count"] == 0 and math.isnan(empty["rmse"])


def loop_ssim(pred, gt_filled, valid, data_range, size=11, sigma=1.5):
    c = np.arange(size) - (size - 1) / 2.0
    g1 = np.exp(-0.5 * c**2 / sigma**2)
    w = np.outer(g1, g1) / np.outer(g1, g1).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    r = size // 2
    values = []
    for i in range(r, pred.shape[0] - r):
        for j in range(r, pred.shape[1] - r):
            if not valid[i, j]:
                continue
            a, b = pred[i - r : i + r + 1, j - r : j + r + 1], gt_filled[i - r : i + r + 1, j - r : j + r + 1]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb, cov = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2, (w * a * b).sum() - ma * mb
            values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_of_depth_maps():
    rng = np.random.default_rng(2)
    gt = rng.uniform(0.5, 9.0, (24, 28))
    gt[rng.random(gt.shape) < 0.2] = 0.0
    pred = noisy_copy(gt, rng)
    protocol = get_protocol("nyu", crop="none")
    got = image_metrics(pred, gt, protocol, with_ssim=True)
    valid = (gt > 1e-3) & (gt < 10)
    p = reference_clip(pred, 1e-3, 10)
    expected = loop_ssim(p, np.where(valid, gt, p), valid, 10.0)
    assert got["ssim"] == pytest.approx(expected, rel=1e-9)
    assert image_metrics(gt, gt, protocol, with_ssim=True)["ssim"] == pytest.approx(1.0)
    acc = MetricAccumulator(protocol, with_ssim=True)
    acc.update(pred, gt)
    acc.update(gt, gt)
    assert acc.result()["overall"]["ssim"] == pytest.approx((expected + 1.0) / 2)
    assert "ssim" not in MetricAccumulator(protocol).result()["overall"]


# ----------------------------------------------------------------------------------------------
# Real NYU and KITTI samples with noisy copies as predictions
# ----------------------------------------------------------------------------------------------


def load_real(dataset, scale):
    files = sorted((REAL / dataset / "depth").glob("*.png"))
    if not files:
        pytest.skip(f"real RGB-D samples not found under {REAL}")
    maps = []
    for f in files:
        raw = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        assert raw is not None and raw.dtype == np.uint16, f
        maps.append(raw.astype(np.float64) / scale)
    return maps


@pytest.mark.parametrize(
    "dataset,scale,protocol_name,crop,size,window",
    [
        ("nyu", 1000.0, "nyu", None, (480, 640), ((45, 471), (41, 601))),
        ("kitti", 256.0, "kitti", "garg", (375, 1242), ((153, 371), (44, 1197))),
        ("kitti", 256.0, "kitti", "eigen", (375, 1242), ((124, 342), (44, 1197))),
    ],
)
def test_metrics_on_real_samples(dataset, scale, protocol_name, crop, size, window):
    gts = load_real(dataset, scale)
    protocol = get_protocol(protocol_name, crop)
    rng = np.random.default_rng(42)
    preds = [noisy_copy(g, rng) for g in gts]
    result = evaluate_predictions(preds, gts, protocol)
    max_depth = protocol.max_depth_m
    rows = []
    for p, g in zip(preds, gts):
        assert g.shape == size
        mask = np.zeros(g.shape, bool)
        mask[window[0][0] : window[0][1], window[1][0] : window[1][1]] = True
        mask &= (g > 1e-3) & (g < max_depth)
        assert mask.sum() > 1000
        rows.append(reference_errors(g[mask], reference_clip(p, 1e-3, max_depth)[mask]))
    expected = {k: np.mean([m[k] for m in rows]) for k in METRIC_KEYS}
    assert result["count"] == len(gts)
    assert_metrics_close(result["overall"], expected, rtol=1e-6)
    assert 0.0 < result["overall"]["d1"] < 1.0 and result["overall"]["rmse"] > 0
