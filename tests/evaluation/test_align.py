"""--align scale_shift: least-squares scale and shift (MiDaS Eq. 4) in depth and in disparity space."""

import numpy as np
import pytest

from tfdepth.evaluation.align import align_scale_shift, align_to_protocol, fit_scale_shift
from tfdepth.metrics import get_protocol, image_metrics


def test_fit_equals_numpy_lstsq():
    rng = np.random.default_rng(0)
    p, y = rng.uniform(0, 3, 200), rng.uniform(1, 5, 200)
    s, t = fit_scale_shift(p, y)
    ref = np.linalg.lstsq(np.stack([p, np.ones_like(p)], 1), y, rcond=None)[0]
    np.testing.assert_allclose([s, t], ref, rtol=1e-10)


def test_affine_disparity_is_recovered_exactly_and_mask_respected():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.5, 9.0, (24, 32))
    relative = 1.0 / gt * 0.37 - 0.05  # an affine function of the true disparity
    mask = np.ones_like(gt, bool)
    relative_bad = relative.copy()
    relative_bad[:4] = 100.0  # outside the mask: must not influence the fit
    mask[:4] = False
    depth = align_scale_shift(relative_bad, gt, mask, "disparity", max_depth_m=10.0)
    np.testing.assert_allclose(depth[4:], gt[4:], rtol=1e-9)
    depth_space = align_scale_shift(2.0 * gt + 1.0, gt, np.ones_like(gt, bool), "depth")
    np.testing.assert_allclose(depth_space, gt, rtol=1e-9)


def test_alignment_improves_an_affine_prediction_under_the_protocol():
    gt = np.random.default_rng(2).uniform(1.0, 9.0, (48, 64))
    protocol = get_protocol("nyu")
    pred = 0.5 * gt + 2.0
    raw = image_metrics(pred, gt, protocol)["abs_rel"]
    aligned = image_metrics(align_to_protocol(pred, gt, protocol, "depth"), gt, protocol)["abs_rel"]
    assert raw > 0.1 and aligned == pytest.approx(0.0, abs=1e-9)
