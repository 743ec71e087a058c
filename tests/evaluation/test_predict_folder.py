"""``evaluate --pred`` on a ``predict`` output folder as it is (predictions.json: source stems, the depth
file to score, the photo), pairing by number, (1, 1, H, W) arrays, and the per-range table's counts."""

import json

import cv2
import numpy as np
import pytest

from tfdepth.evaluation.files import EvaluationFileError, evaluate_files, match_files
from tfdepth.evaluation.report import format_table
from tfdepth.metrics import get_protocol
from tfdepth.serving.outputs import write_outputs, write_predictions


def _scene(k):
    gt = np.tile(np.linspace(1.0 + k, 4.0 + k, 40), (30, 1))
    gt[:3] = 0.0  # invalid rows
    pred = gt * (1.0 + 0.05 * (k + 1)) + 0.1
    return gt, np.where(gt > 0, pred, 2.0)


def _predict_folder(tmp_path, save=("npy", "color")):
    """A folder as ``python -m tfdepth.predict`` writes it (its own writers), and the ground truth as NYU
    ships it: ``rgb_0000k.jpg`` photos, ``sync_depth_0000k.png`` millimetre PNGs (other stems)."""
    photos, gt_dir, out = tmp_path / "rgb", tmp_path / "depth", tmp_path / "pred"
    for d in (photos, gt_dir, out):
        d.mkdir()
    items = []
    for k in range(3):
        gt, pred = _scene(k)
        cv2.imwrite(str(photos / f"rgb_{k * 50:05d}.jpg"), np.full((30, 40, 3), 60 * k, np.uint8))
        cv2.imwrite(str(gt_dir / f"sync_depth_{k * 50:05d}.png"), np.rint(gt * 1000).astype(np.uint16))
        written = write_outputs(None, pred.astype(np.float32), str(out / f"rgb_{k * 50:05d}"), save)
        items.append({"input": str(photos / f"rgb_{k * 50:05d}.jpg"), "outputs": written})
    write_predictions(str(out), "runs/x", items)
    return out, gt_dir, photos


def test_a_predict_output_folder_is_scored_as_it_is(tmp_path):
    pred_dir, gt_dir, photos = _predict_folder(tmp_path)
    pairs = match_files(str(pred_dir), str(gt_dir))
    assert [(p.stem, p.pred_path.endswith("_depth_m.npy"), p.rgb_path) for p in pairs] == [
        (f"sync_depth_{k * 50:05d}", True, str(photos / f"rgb_{k * 50:05d}.jpg")) for k in range(3)]
    seen = []
    result = evaluate_files(str(pred_dir), str(gt_dir), get_protocol("none"), gt_scale=1000,
                            on_sample=lambda rgb, p, g, name: seen.append((rgb.shape, name)))
    # AbsRel by its formula, per image then averaged (float32 .npy predictions, millimetre ground truth)
    expected = []
    for k in range(3):
        gt, pred = _scene(k)
        gt = np.rint(gt * 1000) / 1000
        valid = gt > 0
        expected.append(np.mean(np.abs(pred.astype(np.float32)[valid] - gt[valid]) / gt[valid]))
    assert result["overall"]["abs_rel"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert result["count"] == 3 and result["pixels"] == 3 * 27 * 40
    assert seen == [((30, 40, 3), f"sync_depth_{k * 50:05d}") for k in range(3)]  # the photos, by name


def test_png16_only_folder_uses_its_recorded_scale_and_refuses_another(tmp_path):
    pred_dir, gt_dir, _ = _predict_folder(tmp_path, save=("png16",))
    result = evaluate_files(str(pred_dir), str(gt_dir), get_protocol("none"), gt_scale=1000)
    gt, pred = _scene(0)
    assert result["overall"]["count"] == 3 and result["overall"]["mae"] > 0.1
    with pytest.raises(EvaluationFileError, match="drop --pred-scale"):
        evaluate_files(str(pred_dir), str(gt_dir), get_protocol("none"), pred_scale=256, gt_scale=1000)
    index = json.loads((pred_dir / "predictions.json").read_text())
    assert index["depth_encodings"]["png16"] == "mm16"
    for item in index["items"]:
        item["outputs"] = {"color": "x_depth_color.png"}
    (pred_dir / "predictions.json").write_text(json.dumps(index))
    with pytest.raises(EvaluationFileError, match="has no depth output .* --save npy"):
        match_files(str(pred_dir), str(gt_dir))


def test_torch_shaped_arrays_and_unmatched_names(tmp_path):
    pred_dir, gt_dir = tmp_path / "p", tmp_path / "g"
    pred_dir.mkdir()
    gt_dir.mkdir()
    gt, pred = _scene(1)
    np.save(gt_dir / "a.npy", gt)
    np.save(pred_dir / "a.npy", pred[None, None].astype(np.float32))  # (1, 1, H, W) as a PyTorch tool saves it
    result = evaluate_files(str(pred_dir), str(gt_dir), get_protocol("none"))
    valid = gt > 0
    assert result["overall"]["rmse"] == pytest.approx(
        np.sqrt(np.mean((pred.astype(np.float32)[valid] - gt[valid]) ** 2)), rel=1e-6)
    np.save(pred_dir / "b.npy", pred)
    with pytest.raises(EvaluationFileError, match="1 prediction file\\(s\\) in .* without ground truth .*: b.npy"):
        match_files(str(pred_dir), str(gt_dir))


def test_the_evaluate_command_on_a_predict_folder(tmp_path, capsys):
    from tfdepth.evaluate import main

    pred_dir, gt_dir, _ = _predict_folder(tmp_path)
    assert main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--gt-scale", "1000", "--protocol", "nyu",
                 "--plots", str(tmp_path / "plots"), "--output", str(tmp_path / "e.json")]) == 0
    captured = capsys.readouterr()
    assert "evaluate: 3 files in" in captured.err  # the end summary of the progress report
    assert (tmp_path / "plots" / "qualitative.png").is_file()
    saved = json.loads((tmp_path / "e.json").read_text())
    assert saved["count"] == 3


def test_the_per_range_table_counts_pixels_and_explains_empty_ranges():
    from tfdepth.metrics import MetricAccumulator

    acc = MetricAccumulator(get_protocol("none"))
    gt = np.full((10, 10), 2.0)
    gt[0, :2] = 0.5  # 2 pixels below 1 m: 2 % of the valid pixels
    acc.update(gt * 1.1, gt)
    result = acc.result()
    assert result["per_range"]["[0,1)"]["pixels"] == 2 and result["per_range"]["[1,3)"]["pixels"] == 98
    assert result["per_range"]["[3,5)"]["pixels"] == 0 and result["overall"]["pixels"] == 100
    table = format_table(result).splitlines()
    row = next(line for line in table if line.startswith("[0,1) m"))
    assert row.split()[-3:] == ["1", "2", "2.0%"]  # images, pixels, share
    assert next(line for line in table if line.startswith("[3,5) m")).split()[2] == "—"
    assert "no valid ground-truth pixel in this range" in next(line for line in table if line.startswith("[5,inf) m"))
    acc.update(np.full((100, 100), 2.0), np.full((100, 100), 2.0))  # now the 2 near pixels are < 1 %
    table = format_table(acc.result())
    assert "2.0%" not in table and "0.0%*" in table and "rest on few pixels" in table
