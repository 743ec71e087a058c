"""The scaling section's time-ratio vs pixel-ratio check (issue 19, goal 3), on made-up timings."""

import pytest

from tfdepth.bench import scaling, timing


def _row(size, batch, train_s, infer_s):
    return {"size": [size, size], "batch": batch, "train_step_s": timing.summarize([train_s]),
            "infer_batch_s": timing.summarize([infer_s])}


def test_pixel_scaling_ratios_and_the_1_1x_limit():
    rows = [_row(128, 1, 0.40, 0.050), _row(128, 4, 0.70, 0.150),  # batch 4 is not on the size axis
            _row(256, 1, 0.80, 0.215),  # 4x pixels: train 2x, infer 4.3x = 1.075 of the pixel ratio
            {"size": [320, 320], "batch": 1, "skipped": "time budget"},  # left out
            _row(512, 1, 3.00, 0.900)]  # 16x pixels: train 7.5x, infer 18x = 1.125 of it: over 1.1
    result = scaling.pixel_scaling(rows)
    assert result["batch"] == 1 and result["base_size"] == [128, 128] and result["limit"] == 1.1
    by_size = {e["size"][0]: e for e in result["sizes"]}
    assert sorted(by_size) == [128, 256, 512]
    assert by_size[128]["pixel_ratio"] == 1.0 and by_size[128]["within_limit"] is True
    e = by_size[256]
    assert e["pixel_ratio"] == 4.0 and e["train_time_ratio"] == pytest.approx(2.0)
    assert e["infer_time_ratio"] == pytest.approx(4.3) and e["infer_ratio_over_pixels"] == pytest.approx(1.075)
    assert e["within_limit"] is True
    e = by_size[512]
    assert e["pixel_ratio"] == 16.0 and e["train_ratio_over_pixels"] == pytest.approx(0.46875, abs=1e-4)
    assert e["infer_ratio_over_pixels"] == pytest.approx(1.125) and e["within_limit"] is False
    assert result["within_limit"] is False
    table = scaling.pixel_scaling_table(result).splitlines()
    assert table[0].startswith("| size (batch 1) | pixels vs 128x128 |") and "within 1.1x" in table[0]
    assert table[-1] == "| 512x512 | 16 | 7.5 | 0.47 | 18 | 1.12 | NO |"
    assert table[-2].endswith("| yes |")
    # a looser limit passes every size; nothing measured: no verdict
    assert scaling.pixel_scaling(rows, limit=1.2)["within_limit"] is True
    assert scaling.pixel_scaling([rows[3]]) == {"limit": 1.1, "batch": None, "base_size": None, "sizes": [],
                                               "within_limit": None}


def test_default_sizes_reach_512():
    assert max(scaling.DEFAULT_SCALING_SIZES) == 512 and min(scaling.DEFAULT_SCALING_SIZES) == 128


def test_quantized_latency_ratio_to_fp32():
    from tfdepth.bench import infer

    lat = lambda ms: {"latency_ms": timing.summarize([ms])}  # noqa: E731
    variants = {"keras": lat(30.0), "tflite_fp32": lat(40.0), "tflite_dynamic": lat(17.0), "tflite_int8": lat(12.0)}
    out = infer.quantized_vs_fp32(variants)
    assert out == {"tflite_dynamic": {"ratio": 0.425, "limit": 0.4, "within_limit": False},
                   "tflite_int8": {"ratio": 0.3, "limit": 0.4, "within_limit": True}}
    assert infer.quantized_vs_fp32({"tflite_int8": lat(12.0)}) == {}  # no fp32: no ratio
    assert infer.quantized_vs_fp32({"tflite_fp32": lat(40.0), "tflite_int8": {"skipped": "budget"}}) == {}
