"""Each loss against a NumPy transcription of its paper formula; masking, resizing, gradients, errors."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tfdepth.config import LossTermConfig
from tfdepth.losses import build_loss
from tfdepth.registries import LOSSES
from tfdepth.sid import depth_to_sid_label, sid_bin_centres, sid_logits_to_depth, sid_thresholds

RNG = np.random.default_rng(1234)


def make_batch(batch, height, width, invalid_fraction=0.3, low=0.5, high=9.0, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(low, high, (batch, height, width, 1)).astype(np.float32)
    gt[rng.random(gt.shape) < invalid_fraction] = 0.0
    gt.flat[rng.integers(0, gt.size, 3)] = np.nan  # non-finite ground truth is invalid too
    pred = rng.uniform(low, high, (batch, height, width, 1)).astype(np.float32)
    return pred, gt


def np_valid(gt, max_depth=None):
    with np.errstate(invalid="ignore"):
        v = np.isfinite(gt) & (gt > 0)
        if max_depth is not None:
            v &= gt <= max_depth
    return v


def np_mean(values, mask):
    """Per-example masked mean [B] (0 for an empty mask)."""
    out = []
    for b in range(values.shape[0]):
        sel = values[b][mask[b]]
        out.append(sel.mean() if sel.size else 0.0)
    return np.array(out)


def np_grad_pairs(pred, gt, valid):
    px, gx = pred[:, :, 1:] - pred[:, :, :-1], gt[:, :, 1:] - gt[:, :, :-1]
    py, gy = pred[:, 1:] - pred[:, :-1], gt[:, 1:] - gt[:, :-1]
    mx = valid[:, :, 1:] & valid[:, :, :-1]
    my = valid[:, 1:] & valid[:, :-1]
    return np_mean(np.abs(px - gx), mx) + np_mean(np.abs(py - gy), my)


def run_term(name, pred, gt, **args):
    fn = LOSSES.get(name)
    return fn(tf.constant(pred), tf.constant(gt), **args).numpy().astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Formulas
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 3])
def test_l1_and_edge_aware_match_numpy(batch):
    pred, gt = make_batch(batch, 7, 9, seed=batch)
    v = np_valid(gt)
    g = np.where(v, gt, 1.0).astype(np.float64)
    p = pred.astype(np.float64)
    l1 = np_mean(np.abs(p - g), v)
    np.testing.assert_allclose(run_term("l1", pred, gt), l1, rtol=1e-5)
    expected = l1 + 0.5 * np_grad_pairs(p, g, v)
    np.testing.assert_allclose(run_term("edge_aware", pred, gt), expected, rtol=1e-5)
    np.testing.assert_allclose(run_term("edge_aware", pred, gt, lam=2.0), l1 + 2.0 * np_grad_pairs(p, g, v), rtol=1e-5)
    # max_depth_m excludes far ground truth
    v5 = np_valid(gt, 5.0)
    np.testing.assert_allclose(run_term("l1", pred, gt, max_depth_m=5.0), np_mean(np.abs(p - g), v5), rtol=1e-5)


def np_gaussian_ssim(x, y, max_val, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Mean SSIM by explicit windows (Wang et al. 2004 with a normalised Gaussian window)."""
    size = min(size, x.shape[0], x.shape[1])
    c = np.arange(size) - (size - 1) / 2.0
    g1 = np.exp(-0.5 * c**2 / sigma**2)
    w = np.outer(g1, g1)
    w /= w.sum()
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            a, b = x[i : i + size, j : j + size], y[i : i + size, j : j + size]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma**2, (w * b * b).sum() - mb**2
            cov = (w * a * b).sum() - ma * mb
            vals.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


@pytest.mark.parametrize("shape", [(2, 12, 13), (1, 6, 7)])
def test_densedepth_matches_numpy(shape):
    """Masked form: y^ (the model's depth_norm) used as is, target m / clip(g, m / 100, m), gradient
    sums over valid pairs divided by the number of valid pixels (image_gradients' 1/n)."""
    batch, h, w = shape
    _, gt = make_batch(batch, h, w, seed=h, low=0.05, high=12.0)  # some beyond both clip limits
    yp = np.random.default_rng(h).uniform(-5.0, 120.0, gt.shape).astype(np.float32)  # linear head: any value
    m, lo = 10.0, 0.1
    v = np_valid(gt, m)
    yt = m / np.clip(np.where(v, gt, m).astype(np.float64), lo, m)
    y = yp.astype(np.float64)
    l_depth = np_mean(np.abs(y - yt), v)
    sum_y = np.where(v[:, 1:] & v[:, :-1], np.abs((y[:, 1:] - y[:, :-1]) - (yt[:, 1:] - yt[:, :-1])), 0).sum((1, 2, 3))
    sum_x = np.where(v[:, :, 1:] & v[:, :, :-1], np.abs((y[:, :, 1:] - y[:, :, :-1]) - (yt[:, :, 1:] - yt[:, :, :-1])),
                     0).sum((1, 2, 3))
    l_grad = (sum_y + sum_x) / np.maximum(v.sum((1, 2, 3)), 1)
    yt_filled = np.where(v, yt, y)
    l_ssim = np.array(
        [np.clip((1 - np_gaussian_ssim(yt_filled[b, ..., 0], y[b, ..., 0], m / lo)) / 2, 0, 1) for b in range(batch)]
    )
    expected = 0.1 * l_depth + l_grad + l_ssim
    np.testing.assert_allclose(run_term("densedepth", yp, gt), expected, rtol=2e-4, atol=1e-6)


def released_densedepth_loss(y_true, y_pred, theta=0.1, max_depth_val=1000.0 / 10.0):
    """ialhashim/DenseDepth loss.py ``depth_loss_function``, K.* written as tf.* (Keras' compile then
    averages the [B] result over the batch)."""
    l_depth = tf.reduce_mean(tf.abs(y_pred - y_true), axis=-1)
    dy_true, dx_true = tf.image.image_gradients(y_true)
    dy_pred, dx_pred = tf.image.image_gradients(y_pred)
    l_edges = tf.reduce_mean(tf.abs(dy_pred - dy_true) + tf.abs(dx_pred - dx_true), axis=-1)
    l_ssim = tf.clip_by_value((1 - tf.image.ssim(y_true, y_pred, max_depth_val)) * 0.5, 0, 1)
    return tf.reduce_mean((1.0 * l_ssim) + (1.0 * tf.reduce_mean(l_edges)) + (theta * tf.reduce_mean(l_depth)))


@pytest.mark.parametrize("seed", [0, 1])
def test_densedepth_equals_the_released_loss_on_random_maps(seed):
    """The whole DenseDepth objective through build_loss equals the released Keras loss on y = 10 / d."""
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.1, 10.0, (3, 24, 32, 1)).astype(np.float32)  # fully valid, inside [m / 100, m]
    y_pred = rng.uniform(-10.0, 110.0, gt.shape).astype(np.float32)  # the linear head's raw y
    want = float(released_densedepth_loss(tf.constant(10.0 / gt), tf.constant(y_pred)))
    loss = build_loss([LossTermConfig("densedepth", 1.0, {"depth_weight": 0.1})], max_depth_m=10.0)
    total, _ = loss({"depth": tf.ones_like(gt), "depth_norm": tf.constant(y_pred)}, tf.constant(gt))
    assert float(tf.reduce_mean(total)) == pytest.approx(want, rel=1e-5, abs=1e-5)
    # the gradient reaches y unclipped: values outside [1, 100] still get one
    y = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        total, _ = loss({"depth": tf.ones_like(gt), "depth_norm": y}, tf.constant(gt))
        scalar = tf.reduce_mean(total)
    grad = tape.gradient(scalar, y).numpy()
    outside = (y_pred < 1.0) | (y_pred > 100.0)
    assert outside.any() and np.all(np.abs(grad[outside]) > 0)


@pytest.mark.parametrize("batch", [1, 4])
def test_berhu_matches_numpy_both_c_modes(batch):
    pred, gt = make_batch(batch, 5, 6, seed=10 + batch)
    v = np_valid(gt)
    e = np.abs(pred.astype(np.float64) - np.where(v, gt, 1.0))

    def berhu(e, c):
        return np.where(e <= c, e, (e**2 + c**2) / (2 * c))

    c = 0.2 * e[v].max()
    np.testing.assert_allclose(run_term("berhu", pred, gt), np_mean(berhu(e, c), v), rtol=1e-5)
    c_map = 0.2 * np.where(v, e, 0).max(axis=0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np_mean(berhu(e, c_map), v)
    np.testing.assert_allclose(run_term("berhu", pred, gt, c_mode="per_pixel_batch_max"), expected, rtol=1e-5)
    # a larger fraction makes more pixels linear
    np.testing.assert_allclose(run_term("berhu", pred, gt, c_fraction=1.0), np_mean(e, v), rtol=1e-5)


def np_gradients(x, valid, operator):
    x, valid = x[..., 0], valid[..., 0]
    if operator == "sobel":
        kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
        ky = kx.T
        b, h, w = x.shape
        gx = np.zeros((b, h - 2, w - 2))
        gy = np.zeros_like(gx)
        mask = np.zeros(gx.shape, bool)
        for i in range(h - 2):
            for j in range(w - 2):
                win = x[:, i : i + 3, j : j + 3]
                gx[:, i, j] = (win * kx).sum(axis=(1, 2))
                gy[:, i, j] = (win * ky).sum(axis=(1, 2))
                mask[:, i, j] = valid[:, i : i + 3, j : j + 3].all(axis=(1, 2))
        return gx, gy, mask
    gx = (x[:, :, 1:] - x[:, :, :-1])[:, :-1]
    gy = (x[:, 1:] - x[:, :-1])[:, :, :-1]
    mask = valid[:, :-1, :-1] & valid[:, :-1, 1:] & valid[:, 1:, :-1]
    return gx, gy, mask


@pytest.mark.parametrize("operator", ["sobel", "diff"])
def test_gradient_magnitude_and_direction_match_numpy(operator):
    pred, gt = make_batch(3, 8, 9, invalid_fraction=0.1, seed=5)
    v = np_valid(gt)
    g = np.where(v, gt, 1.0).astype(np.float64)
    dx, dy, mask = np_gradients(pred.astype(np.float64), v, operator)
    gx, gy, _ = np_gradients(g, v, operator)
    mg = np_mean(np.abs(gy - dy) + np.abs(dx - gx), mask)
    dr = np_mean(np.abs(gy * dx - dy * gx), mask)
    assert np.all(mg > 0)
    np.testing.assert_allclose(run_term("grad_magnitude", pred, gt, operator=operator), mg, rtol=1e-5)
    np.testing.assert_allclose(run_term("grad_direction", pred, gt, operator=operator), dr, rtol=1e-5)


def released_gradient_losses(gt, pred):
    """HalleyJiang/HQMDE losses.py ``compute_gradient_loss`` (l1 norms, no log): tf.image.sobel_edges,
    magnitude = reduce_mean over both stacked components, direction = reduce_mean of the cross term."""
    g, d = tf.image.sobel_edges(gt), tf.image.sobel_edges(pred)
    gy, gx, dy, dx = g[..., 0], g[..., 1], d[..., 0], d[..., 1]
    direction = tf.reduce_mean(tf.abs(gy * dx - gx * dy))
    magnitude = tf.reduce_mean(tf.abs(g - d))
    return float(magnitude), float(direction)


def test_gradient_terms_equal_the_released_code_normalisation():
    """components: mean + padding: reflect reproduce the released code; components: sum is eq. 5 = 2x."""
    rng = np.random.default_rng(21)
    gt = rng.uniform(0.5, 9.0, (2, 10, 12, 1)).astype(np.float32)  # dense (NYU filled), as the code assumes
    pred = rng.uniform(0.5, 9.0, gt.shape).astype(np.float32)
    want_mg, want_dr = released_gradient_losses(tf.constant(gt), tf.constant(pred))
    mg = run_term("grad_magnitude", pred, gt, padding="reflect", components="mean").mean()
    dr = run_term("grad_direction", pred, gt, padding="reflect").mean()
    assert mg == pytest.approx(want_mg, rel=1e-5) and dr == pytest.approx(want_dr, rel=1e-5)
    eq5 = run_term("grad_magnitude", pred, gt, padding="reflect", components="sum").mean()
    assert eq5 == pytest.approx(2.0 * want_mg, rel=1e-5)
    with pytest.raises(ValueError, match="components must be one of sum, mean"):
        run_term("grad_magnitude", pred, gt, components="half")
    with pytest.raises(ValueError, match="padding 'valid' only"):
        run_term("grad_magnitude", pred, gt, operator="diff", padding="reflect")


def test_detail_preserving_objective_composes_from_config():
    pred, gt = make_batch(2, 8, 8, seed=6)
    loss = build_loss(
        [
            LossTermConfig("berhu", 1.0),
            LossTermConfig("grad_magnitude", 1.0),
            LossTermConfig("grad_direction", 1.0),
        ]
    )
    total, terms = loss({"depth": tf.constant(pred)}, tf.constant(gt))
    expected = sum(run_term(n, pred, gt) for n in ("berhu", "grad_magnitude", "grad_direction"))
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-5)
    assert sorted(terms) == ["berhu", "grad_direction", "grad_magnitude"]


def test_silog_matches_numpy():
    pred, gt = make_batch(3, 6, 6, seed=7)
    v = np_valid(gt)
    e = np.log(pred.astype(np.float64)) - np.log(np.where(v, gt, 1.0))
    mean_sq, mean = np_mean(e**2, v), np_mean(e, v)
    np.testing.assert_allclose(run_term("silog", pred, gt), 10 * np.sqrt(mean_sq - 0.85 * mean**2), rtol=1e-4)
    np.testing.assert_allclose(
        run_term("silog", pred, gt, variance_focus=0.5, scale=1.0), np.sqrt(mean_sq - 0.5 * mean**2), rtol=1e-4
    )


# ----------------------------------------------------------------------------------------------
# SID
# ----------------------------------------------------------------------------------------------


def test_sid_bins_follow_the_paper():
    t = sid_thresholds(71, 1.0, 80.0)
    assert t.shape == (72,)
    np.testing.assert_allclose(t, np.exp(np.log(1.0) + np.arange(72) * np.log(80.0) / 71), rtol=1e-12)
    assert t[0] == pytest.approx(1.0) and t[-1] == pytest.approx(80.0)
    centres = sid_bin_centres(71, 1.0, 80.0)
    assert np.all((centres > t[:-1]) & (centres < t[1:]))
    depth = np.array([0.0, 0.5, 1.0, t[5] + 1e-4, t[6] - 1e-4, 79.9, 80.0, 80.1, np.nan], np.float32)
    labels = depth_to_sid_label(depth, 71, 1.0, 80.0).numpy()
    np.testing.assert_array_equal(labels, [-1, -1, 0, 5, 5, 70, 70, -1, -1])
    # decoding: logits peaked at bin 5 -> centre of bin 5; ordinal with 5 positive channels -> bin 5
    logits = np.full((1, 1, 1, 71), -5.0, np.float32)
    logits[..., 5] = 5.0
    assert sid_logits_to_depth(logits, 1.0, 80.0, mode="ce").numpy().item() == pytest.approx(centres[5], rel=1e-6)
    ordinal = np.full((1, 1, 1, 71), -5.0, np.float32)
    ordinal[..., :5] = 5.0
    assert sid_logits_to_depth(ordinal, 1.0, 80.0, mode="ordinal").numpy().item() == pytest.approx(centres[5], rel=1e-6)


def np_sid_labels(gt, k, alpha, beta):
    t = np.exp(np.log(alpha) + np.arange(k + 1) * np.log(beta / alpha) / k)
    labels = np.full(gt.shape, -1)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(gt) & (gt >= alpha) & (gt <= beta)
    labels[ok] = np.clip(np.searchsorted(t, gt[ok], side="right") - 1, 0, k - 1)
    return labels


@pytest.mark.parametrize("batch", [1, 2])
def test_sid_ce_and_ordinal_match_numpy(batch):
    k = 8
    rng = np.random.default_rng(batch)
    gt = rng.uniform(0.5, 100.0, (batch, 5, 4, 1)).astype(np.float32)  # some outside [1, 80]
    gt[0, 0, 0, 0] = 0.0
    logits = rng.normal(size=(batch, 5, 4, k)).astype(np.float32)
    labels = np_sid_labels(gt[..., 0].astype(np.float64), k, 1.0, 80.0)
    valid = labels >= 0
    z = logits.astype(np.float64)
    log_softmax = z - np.log(np.exp(z).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_softmax, np.maximum(labels, 0)[..., None], axis=-1)[..., 0]
    fn = LOSSES.get("sid_ce")
    np.testing.assert_allclose(fn(tf.constant(logits), tf.constant(gt)).numpy(), np_mean(ce, valid), rtol=1e-5)
    sig = 1 / (1 + np.exp(-z))
    target = np.arange(k)[None, None, None, :] < labels[..., None]
    ordinal = -np.where(target, np.log(sig), np.log(1 - sig)).sum(-1)
    fn = LOSSES.get("sid_ordinal")
    np.testing.assert_allclose(fn(tf.constant(logits), tf.constant(gt)).numpy(), np_mean(ordinal, valid), rtol=1e-5)


def test_sid_terms_read_sid_logits_from_outputs():
    assert LOSSES.meta("sid_ce")["input"] == "sid_logits" and LOSSES.meta("l1")["input"] == "depth"
    rng = np.random.default_rng(3)
    gt = rng.uniform(1.0, 80.0, (2, 8, 8, 1)).astype(np.float32)
    logits = rng.normal(size=(2, 4, 4, 71)).astype(np.float32)  # half resolution: gt resized (nearest)
    loss = build_loss([LossTermConfig("sid_ce", 1.0)])
    total, _ = loss({"depth": tf.zeros([2, 8, 8, 1]), "sid_logits": tf.constant(logits)}, tf.constant(gt))
    expected = LOSSES.get("sid_ce")(tf.constant(logits), tf.constant(gt[:, 1::2, 1::2])).numpy()
    np.testing.assert_allclose(total.numpy(), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="sid_logits"):
        loss({"depth": tf.zeros([2, 8, 8, 1])}, tf.constant(gt))


# ----------------------------------------------------------------------------------------------
# build_loss: composition, resizing, deep supervision, dtype, errors
# ----------------------------------------------------------------------------------------------


def test_build_loss_weights_names_and_half_resolution_prediction():
    pred, gt = make_batch(2, 4, 5, seed=8)
    gt_full = np.repeat(np.repeat(gt, 2, axis=1), 2, axis=2)  # [2, 8, 10, 1]; nearest picks rows/cols 1::2
    loss = build_loss(
        [LossTermConfig("l1", 2.0), LossTermConfig("edge_aware", 0.5, {"lam": 1.0}), LossTermConfig("l1", 1.0)]
    )
    total, terms = loss({"depth": tf.constant(pred)}, tf.constant(gt_full))
    assert list(terms) == ["l1", "edge_aware", "l1_2"] and loss.term_names == ["l1", "edge_aware", "l1_2"]
    l1 = run_term("l1", pred, gt)
    edge = run_term("edge_aware", pred, gt, lam=1.0)
    np.testing.assert_allclose(terms["l1"].numpy(), l1, rtol=1e-6)
    np.testing.assert_allclose(total.numpy(), 3.0 * l1 + 0.5 * edge, rtol=1e-5)
    # a bare tensor is accepted as the depth output; float16 outputs are computed in float32
    total16, terms16 = loss(tf.constant(pred, tf.float16), tf.constant(gt_full))
    assert total16.dtype == tf.float32 and terms16["l1"].dtype == tf.float32
    np.testing.assert_allclose(terms16["l1"].numpy(), run_term("l1", pred.astype(np.float16).astype(np.float32), gt), rtol=1e-5)


def test_deep_supervision_weighted_sum_over_aux_outputs():
    rng = np.random.default_rng(9)
    pred, gt = make_batch(2, 8, 8, seed=9)
    aux1 = rng.uniform(1, 9, (2, 4, 4, 1)).astype(np.float32)
    aux2 = rng.uniform(1, 9, (2, 2, 2, 1)).astype(np.float32)
    outputs = {"depth": tf.constant(pred), "depth_aux2": tf.constant(aux2), "depth_aux1": tf.constant(aux1)}
    cfg = {"loss": "l1", "weights": [0.5, 0.25], "upsample_outputs": False}
    loss = build_loss([LossTermConfig("l1", 1.0), LossTermConfig("deep_supervision", 2.0, cfg)])
    total, terms = loss(outputs, tf.constant(gt))
    gt_clean = np.where(np.isfinite(gt), gt, 0.0)
    expected_ds = 0.5 * run_term("l1", aux1, gt_clean[:, 1::2, 1::2]) + 0.25 * run_term("l1", aux2, gt_clean[:, 2::4, 2::4])
    np.testing.assert_allclose(terms["deep_supervision"].numpy(), expected_ds, rtol=1e-5)
    np.testing.assert_allclose(total.numpy(), run_term("l1", pred, gt) + 2.0 * expected_ds, rtol=1e-5)
    # default: auxiliary outputs upsampled bilinearly to the ground truth (the DenseNet paper)
    loss_up = build_loss([LossTermConfig("deep_supervision", 1.0, {"loss": "l1", "weights": [1.0, 1.0]})])
    _, terms_up = loss_up(outputs, tf.constant(gt))
    up1 = tf.image.resize(aux1, [8, 8], method="bilinear").numpy()
    up2 = tf.image.resize(aux2, [8, 8], method="bilinear").numpy()
    np.testing.assert_allclose(
        terms_up["deep_supervision"].numpy(), run_term("l1", up1, gt) + run_term("l1", up2, gt), rtol=1e-5
    )
    with pytest.raises(ValueError, match="2 weights for 1 auxiliary"):
        loss({"depth": tf.constant(pred), "depth_aux1": tf.constant(aux1)}, tf.constant(gt))


def test_build_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown loss 'l3'.*allowed: .*berhu.*l1"):
        build_loss([LossTermConfig("l3", 1.0)])
    with pytest.raises(ValueError, match=r"'edge_aware'.*unknown arg 'lambda'.*allowed: lam"):
        build_loss([LossTermConfig("edge_aware", 1.0, {"lambda": 0.5})])
    with pytest.raises(ValueError, match=r"unknown arg 'bogus' for loss 'l1'"):
        build_loss([LossTermConfig("deep_supervision", 1.0, {"loss": "l1", "loss_args": {"bogus": 1}})])
    with pytest.raises(ValueError, match="does not take a depth map"):
        build_loss([LossTermConfig("deep_supervision", 1.0, {"loss": "sid_ce"})])
    with pytest.raises(ValueError, match="empty"):
        build_loss([])
    with pytest.raises(ValueError, match="c_mode"):
        build_loss([LossTermConfig("berhu", 1.0, {"c_mode": "pixel"})])({"depth": tf.ones([1, 3, 3, 1])}, tf.ones([1, 3, 3, 1]))


def test_build_loss_hands_the_runs_max_depth_and_sid_bins_to_the_terms():
    """data.max_depth_m and the decoder's SID bins are set once; build_loss passes them on."""
    pred, gt = make_batch(2, 8, 8, seed=14)
    gt[0, :4] = 7.0  # beyond a 5 m range: invalid for the run
    far = build_loss([LossTermConfig("l1", 1.0), LossTermConfig("densedepth", 1.0)], max_depth_m=5.0)
    _, terms = far({"depth": tf.constant(pred)}, tf.constant(gt))
    np.testing.assert_allclose(terms["l1"].numpy(), run_term("l1", pred, gt, max_depth_m=5.0), rtol=1e-6)
    y_of_depth = 5.0 / np.clip(pred, 0.05, 5.0)  # no depth_norm output: DepthNorm of the metric depth
    np.testing.assert_allclose(terms["densedepth"].numpy(), run_term("densedepth", y_of_depth, gt, max_depth_m=5.0),
                               rtol=1e-5)
    ds = build_loss([LossTermConfig("deep_supervision", 1.0, {"loss": "densedepth"})], max_depth_m=5.0)
    _, ds_terms = ds({"depth": tf.constant(pred), "depth_aux1": tf.constant(pred)}, tf.constant(gt))
    np.testing.assert_allclose(ds_terms["deep_supervision"].numpy(), terms["densedepth"].numpy(), rtol=1e-5)
    with pytest.raises(ValueError, match=r"args.max_depth_m = 10.0 differs from the run's max_depth_m = 5.0"):
        build_loss([LossTermConfig("densedepth", 1.0, {"max_depth_m": 10.0})], max_depth_m=5.0)
    # a DenseDepth model's linear outputs: depth_norm / depth_norm_auxK are what the terms read
    y_main = np.random.default_rng(16).uniform(0.0, 120.0, pred.shape).astype(np.float32)
    y_aux = np.random.default_rng(17).uniform(0.0, 120.0, (2, 4, 4, 1)).astype(np.float32)
    dd = build_loss([LossTermConfig("densedepth", 1.0),
                     LossTermConfig("deep_supervision", 1.0, {"loss": "densedepth", "weights": [0.5]})], max_depth_m=5.0)
    _, dd_terms = dd({"depth": tf.constant(pred), "depth_norm": tf.constant(y_main),
                      "depth_aux1": tf.ones([2, 4, 4, 1]), "depth_norm_aux1": tf.constant(y_aux)}, tf.constant(gt))
    np.testing.assert_allclose(dd_terms["densedepth"].numpy(), run_term("densedepth", y_main, gt, max_depth_m=5.0),
                               rtol=1e-5)
    y_aux_up = tf.image.resize(y_aux, [8, 8], method="bilinear").numpy()
    np.testing.assert_allclose(dd_terms["deep_supervision"].numpy(),
                               0.5 * run_term("densedepth", y_aux_up, gt, max_depth_m=5.0), rtol=1e-5)

    rng = np.random.default_rng(15)
    gt_sid = rng.uniform(1.0, 40.0, (2, 4, 4, 1)).astype(np.float32)
    logits = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)
    bins = {"num_bins": 8, "alpha_m": 2.0, "beta_m": 30.0}
    _, sid_terms = build_loss([LossTermConfig("sid_ce", 1.0)], sid_bins=bins)(
        {"depth": tf.zeros([2, 4, 4, 1]), "sid_logits": tf.constant(logits)}, tf.constant(gt_sid))
    expected = LOSSES.get("sid_ce")(tf.constant(logits), tf.constant(gt_sid), alpha_m=2.0, beta_m=30.0).numpy()
    np.testing.assert_allclose(sid_terms["sid_ce"].numpy(), expected, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# All-invalid and partly invalid batches: finite values, finite gradients
# ----------------------------------------------------------------------------------------------


def all_terms_config():
    terms = []
    for name in LOSSES.names():
        if name == "deep_supervision":
            terms.append(LossTermConfig(name, 1.0, {"loss": "edge_aware"}))
        else:
            terms.append(LossTermConfig(name, 1.0))
    return terms


@pytest.mark.parametrize("case", ["all_invalid", "one_example_invalid"])
def test_every_term_finite_with_masks(case):
    rng = np.random.default_rng(11)
    gt = rng.uniform(1.0, 9.0, (2, 12, 12, 1)).astype(np.float32)
    if case == "all_invalid":
        gt[:] = 0.0
        gt[0, 0, 0, 0] = np.nan
        gt[1, 0, 0, 0] = np.inf
    else:
        gt[1] = 0.0
        gt[1, 3, 3, 0] = np.nan
    pred = tf.Variable(rng.uniform(0.0, 9.0, (2, 12, 12, 1)).astype(np.float32))
    logits = tf.Variable(rng.normal(size=(2, 12, 12, 71)).astype(np.float32))
    aux = tf.Variable(rng.uniform(0.5, 9.0, (2, 6, 6, 1)).astype(np.float32))
    loss = build_loss(all_terms_config())
    with tf.GradientTape() as tape:
        total, terms = loss({"depth": pred, "sid_logits": logits, "depth_aux1": aux}, tf.constant(gt))
        scalar = tf.reduce_mean(total)
    grads = tape.gradient(scalar, [pred, logits, aux])
    for name, value in terms.items():
        assert np.all(np.isfinite(value.numpy())), name
        assert value.numpy()[1] == 0.0, name  # the invalid example contributes exactly 0
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
        assert np.all(g.numpy()[1] == 0.0)
    if case == "all_invalid":
        assert float(scalar) == 0.0
    else:
        assert np.all([v.numpy()[0] > 0 for v in terms.values()])
        assert np.abs(grads[0].numpy()[0]).sum() > 0


def test_perfect_prediction_gives_zero_and_finite_gradients():
    rng = np.random.default_rng(12)
    gt = rng.uniform(1.5, 9.0, (2, 12, 12, 1)).astype(np.float32)
    pred = tf.Variable(gt)
    names = ["l1", "edge_aware", "berhu", "grad_magnitude", "grad_direction", "silog", "densedepth"]
    loss = build_loss([LossTermConfig(n, 1.0) for n in names])
    with tf.GradientTape() as tape:
        total, terms = loss({"depth": pred}, tf.constant(gt))
        scalar = tf.reduce_sum(total)
    grad = tape.gradient(scalar, pred)
    assert np.all(np.isfinite(grad.numpy()))
    for name in names:
        assert terms[name].numpy() == pytest.approx([0.0, 0.0], abs=1e-4), name


def test_loss_works_inside_tf_function():
    pred, gt = make_batch(2, 12, 12, seed=13)
    loss = build_loss([LossTermConfig(n, 1.0) for n in ("berhu", "densedepth", "grad_direction", "silog")])
    eager, _ = loss({"depth": tf.constant(pred)}, tf.constant(gt))
    graph, _ = tf.function(lambda p, g: loss({"depth": p}, g))(tf.constant(pred), tf.constant(gt))
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), rtol=1e-5)
    assert math.isfinite(float(tf.reduce_sum(graph)))
