"""The evaluate command: file mode on 16-bit PNG folders, its errors, plots, evaluate_model, model mode."""

import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import REPO_ROOT
from tfdepth.evaluate import main
from tfdepth.metrics import METRIC_KEYS

RANGE_LABELS = ["[0,1)", "[1,3)", "[3,5)", "[5,inf)"]


def reference_abs_rel_rmse(gt, pred):
    return np.mean(np.abs(gt - pred) / gt), np.sqrt(np.mean((gt - pred) ** 2))


def write_png_folders(root, n=3, shape=(48, 64), seed=0):
    """gt: millimetre PNGs; pred: PNGs at scale 5000 (a different scale, to check both flags)."""
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = root / "gt", root / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    pairs = []
    for i in range(n):
        gt_mm = rng.integers(300, 9500, shape).astype(np.uint16)
        gt_mm[rng.random(shape) < 0.25] = 0
        pred_raw = np.clip(gt_mm.astype(np.float64) * 5 * np.exp(rng.normal(0, 0.1, shape)), 1, 65535).astype(np.uint16)
        assert cv2.imwrite(str(gt_dir / f"frame_{i:03d}.png"), gt_mm)
        assert cv2.imwrite(str(pred_dir / f"frame_{i:03d}.png"), pred_raw)
        pairs.append((gt_mm / 1000.0, pred_raw / 5000.0))
    return gt_dir, pred_dir, pairs


def test_file_mode_on_16bit_pngs(tmp_path, capsys):
    gt_dir, pred_dir, pairs = write_png_folders(tmp_path)
    out = tmp_path / "result.json"
    plots = tmp_path / "plots"
    rc = main(["--pred", str(pred_dir), "--gt", str(gt_dir), "--protocol", "nyu", "--pred-scale", "5000",
               "--gt-scale", "1000", "--output", str(out), "--plots", str(plots)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "abs_rel" in printed and "[5,inf)" in printed
    result = json.loads(out.read_text())
    assert {"overall", "per_range", "count"} <= set(result)
    assert set(result["overall"]) == set(METRIC_KEYS) | {"count", "pixels"}
    assert list(result["per_range"]) == RANGE_LABELS
    assert result["count"] == 3 and result["skipped"] == 0
    # value against the formula: NYU Eigen crop scaled to 48x64 = rows 4:47, cols 4:60
    rows = []
    for gt, pred in pairs:
        mask = np.zeros(gt.shape, bool)
        mask[round(45 * 48 / 480) : round(471 * 48 / 480), round(41 * 64 / 640) : round(601 * 64 / 640)] = True
        mask &= (gt > 1e-3) & (gt < 10)
        rows.append(reference_abs_rel_rmse(gt[mask], np.clip(pred[mask], 1e-3, 10)))
    assert result["overall"]["abs_rel"] == pytest.approx(np.mean([r[0] for r in rows]), rel=1e-9)
    assert result["overall"]["rmse"] == pytest.approx(np.mean([r[1] for r in rows]), rel=1e-9)
    assert result["per_range"]["[0,1)"]["count"] == 3
    for name in ("error_vs_depth.png", "qualitative.png"):
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_file_mode_as_a_command_with_npy_and_pooled(tmp_path):
    gt_dir, _, pairs = write_png_folders(tmp_path, n=2, shape=(20, 30), seed=1)
    npy_dir = tmp_path / "npy"
    npy_dir.mkdir()
    for i, (_, pred) in enumerate(pairs):
        np.save(npy_dir / f"frame_{i:03d}.npy", pred.astype(np.float32)[..., None])
    out = tmp_path / "pooled.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tfdepth.evaluate", "--pred", str(npy_dir), "--gt", str(gt_dir), "--protocol", "none",
         "--gt-scale", "1000", "--pooled", "--output", str(out)],
        capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    gt_all = np.concatenate([g[g > 0] for g, _ in pairs])
    pred_all = np.concatenate([p.astype(np.float32).astype(np.float64)[g > 0] for g, p in pairs])
    abs_rel, rmse = reference_abs_rel_rmse(gt_all, pred_all)
    assert result["averaging"] == "pooled"
    assert result["overall"]["abs_rel"] == pytest.approx(abs_rel, rel=1e-6)
    assert result["overall"]["rmse"] == pytest.approx(rmse, rel=1e-6)
    # the none protocol's infinite max depth is written as null (strict JSON)
    assert result["protocol"]["max_depth_m"] is None


def run_cli(argv, capsys):
    from tfdepth.cli import run_main

    rc = run_main(main, argv)
    return rc, capsys.readouterr().err


def test_file_mode_errors_name_the_files(tmp_path, capsys):
    gt_dir, pred_dir, _ = write_png_folders(tmp_path, n=2, shape=(10, 12))
    base = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--protocol", "none", "--pred-scale", "5000"]
    rc, err = run_cli(base, capsys)  # no --gt-scale for PNG ground truth
    assert rc == 2 and "frame_000.png" in err and "--gt-scale" in err
    base += ["--gt-scale", "1000"]
    (pred_dir / "frame_001.png").unlink()
    cv2.imwrite(str(pred_dir / "extra.png"), np.ones((10, 12), np.uint16))
    rc, err = run_cli(base, capsys)
    assert rc == 2 and "frame_001.png" in err and "extra.png" in err and "unmatched" in err
    (pred_dir / "extra.png").unlink()
    cv2.imwrite(str(pred_dir / "frame_001.png"), np.ones((10, 13), np.uint16))
    rc, err = run_cli(base, capsys)
    assert rc == 2 and "frame_001.png" in err and "10x13" in err and "10x12" in err
    np.save(pred_dir / "frame_001.npy", np.ones((10, 12), np.float32))
    rc, err = run_cli(base, capsys)
    assert rc == 2 and "share the stem 'frame_001'" in err
    (pred_dir / "frame_001.npy").unlink()
    cv2.imwrite(str(pred_dir / "frame_001.png"), np.ones((10, 12), np.uint8))
    rc, err = run_cli(base, capsys)
    assert rc == 2 and "8-bit" in err and "frame_001.png" in err
    (pred_dir / "frame_001.png").write_bytes(b"not a png")
    rc, err = run_cli(base, capsys)
    assert rc == 2 and "cannot read" in err and "frame_001.png" in err
    # 8-bit accepted only with --allow-8bit (and its explicit scale)
    cv2.imwrite(str(pred_dir / "frame_001.png"), np.full((10, 12), 100, np.uint8))
    rc, err = run_cli(base + ["--allow-8bit"], capsys)
    assert rc == 0, err


def test_rgb_column_and_missing_rgb(tmp_path, capsys):
    gt_dir, pred_dir, _ = write_png_folders(tmp_path, n=2, shape=(24, 32))
    rgb_dir = tmp_path / "rgb"
    rgb_dir.mkdir()
    cv2.imwrite(str(rgb_dir / "frame_000.jpg"), np.full((24, 32, 3), 128, np.uint8))
    base = ["--pred", str(pred_dir), "--gt", str(gt_dir), "--protocol", "none", "--pred-scale", "5000",
            "--gt-scale", "1000", "--plots", str(tmp_path / "plots"), "--rgb", str(rgb_dir)]
    rc, err = run_cli(base, capsys)
    assert rc == 2 and "frame_001.png" in err
    cv2.imwrite(str(rgb_dir / "frame_001.jpg"), np.full((24, 32, 3), 128, np.uint8))
    rc, err = run_cli(base, capsys)
    assert rc == 0, err
    assert (tmp_path / "plots" / "qualitative.png").is_file()


# ----------------------------------------------------------------------------------------------
# evaluate_model: flip averaging, bilinear resizing, max_images
# ----------------------------------------------------------------------------------------------


def test_evaluate_model_flip_average_resize_and_limit():
    import tensorflow as tf

    from tfdepth.evaluation.model_eval import evaluate_model
    from tfdepth.metrics import evaluate_predictions, get_protocol

    rng = np.random.default_rng(3)
    images = rng.uniform(0, 1, (5, 8, 12, 3)).astype(np.float32)
    depth = rng.uniform(0.5, 8, (5, 8, 12, 1)).astype(np.float32)
    depth[:, 0, 0] = 0
    ramp = np.linspace(0.5, 1.5, 6, dtype=np.float32)[None, None, :, None]

    def predict(x):  # half resolution and NOT flip-equivariant: depends on the column
        return 1.0 + 4.0 * tf.image.resize(x[..., :1], [4, 6]) * ramp

    dataset = tf.data.Dataset.from_tensor_slices((images, depth)).batch(2)
    result = evaluate_model(predict, dataset, "none", flip_average=True, max_images=3)
    assert result["count"] == 3
    p = predict(tf.constant(images)).numpy()
    pf = predict(tf.constant(images[:, :, ::-1])).numpy()[:, :, ::-1]
    averaged = tf.image.resize(0.5 * (p + pf), [8, 12], method="bilinear").numpy()
    expected = evaluate_predictions([a[..., 0] for a in averaged[:3]], [d[..., 0] for d in depth[:3]], get_protocol("none"))
    for key in METRIC_KEYS:
        assert result["overall"][key] == pytest.approx(expected["overall"][key], rel=1e-6)
    plain = evaluate_model(predict, dataset, "none", max_images=3)
    assert plain["overall"]["abs_rel"] != pytest.approx(result["overall"]["abs_rel"], rel=1e-6)


# ----------------------------------------------------------------------------------------------
# Model mode figures: the stored photos, named
# ----------------------------------------------------------------------------------------------


def test_figures_show_the_stored_photos_named_in_the_order_scored(tmp_path):
    """``first_records`` reads a split in the evaluation dataset's order (three shards interleaved) with
    each record's ``source/name``; ``StoredPhotos`` gives the plot collector those stored photos
    (centre-cropped as the ground truth under centre-crop scoring) and names; a record without a name
    (a dataset converted before names were stored) is ``split #index``."""
    from helpers import write_tiny_dataset
    from tfdepth.config import DataConfig
    from tfdepth.data import pipeline
    from tfdepth.data.records import decode_example_numpy, encode_example
    from tfdepth.evaluation.model_eval import StoredPhotos
    from tfdepth.evaluation.report import PlotCollector
    from tfdepth.metrics import get_protocol

    data_dir = tmp_path / "data"
    manifest, samples = write_tiny_dataset(data_dir, num_train=0, num_val=6, height=24, width=32, records_per_shard=2)
    assert len(manifest["shards"]) == 3
    records = pipeline.first_records(str(data_dir), manifest, "val", 4)
    order = [0, 2, 4, 1]  # shard k holds samples 2k, 2k + 1; read one record of each shard in turn
    assert [r["name"] for r in records] == [f"tiny val[{i}]" for i in order]
    cfg = DataConfig(dataset="tfrecord", data_dir=str(data_dir), input_size=[])
    scored = [images.numpy() for images, _ in pipeline.build_dataset(cfg, "val", 1, training=False)]
    for k, i in enumerate(order):
        np.testing.assert_array_equal(records[k]["rgb"], samples["val"][i][0])
        np.testing.assert_allclose(scored[k][0], samples["val"][i][0] / 255.0, atol=1e-6)  # the same order

    gt = np.full((12, 16), 2.0)  # e.g. the ground truth at the input size
    unnamed = decode_example_numpy(encode_example(samples["val"][5][0], samples["val"][5][1]))
    assert unnamed["name"] is None
    collector = PlotCollector(get_protocol("none"), samples=3, label="val")
    feed = StoredPhotos(collector, records[:2] + [unnamed], "center_crop", [16, 16])
    for _ in range(4):
        feed(np.zeros((16, 16, 3), np.float32), gt * 1.1, gt)
    assert [s["name"] for s in collector.samples] == ["tiny val[0]", "tiny val[2]", "val #2"]
    np.testing.assert_array_equal(collector.samples[0]["rgb"], samples["val"][0][0][:, 4:28])  # 24x24 centre
    assert collector.seen == 4 and int(np.sum(collector.errors.count)) == 4 * gt.size
    whole = StoredPhotos(PlotCollector(get_protocol("none")), records[:1], "full", [16, 16])
    assert whole.photo(records[0]["rgb"]).shape == (24, 32, 3)


# ----------------------------------------------------------------------------------------------
# Model mode end to end on a tiny saved model
# ----------------------------------------------------------------------------------------------


def test_model_mode_on_a_saved_checkpoint(tmp_path, capsys):
    import tensorflow as tf

    from helpers import write_tiny_dataset
    from tfdepth.config import load_config, save_config
    from tfdepth.models.build import build_model

    data_dir = tmp_path / "data"
    _, samples = write_tiny_dataset(data_dir, num_train=2, num_val=3, height=32, width=32)
    cfg = load_config(str(REPO_ROOT / "configs/synthetic_unet_resnet34.yaml"),
                      ["data.dataset=tfrecord", f"data.data_dir={data_dir}", "data.input_size=[32, 32]",
                       "model.encoder=resnet18", "eval.batch_size=2", "eval.protocol=nyu"])
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    model = build_model(cfg.model, cfg.data.input_size, cfg.data.max_depth_m)
    save_config(cfg, str(workdir / "config.yaml"))
    tf.train.Checkpoint(model=model).save(str(workdir / "checkpoints" / "ckpt"))

    out = tmp_path / "model.json"
    rc = main(["--checkpoint", str(workdir), "--flip-average", "--output", str(out), "--plots", str(tmp_path / "p")])
    assert rc == 0
    assert re.search(r"^evaluate val: 3 images in [0-9.]+ s \([0-9.]+/s\)$", capsys.readouterr().err, re.M)
    result = json.loads(out.read_text())
    assert result["count"] == 3 and result["split"] == "val" and result["flip_average"] is True
    assert list(result["per_range"]) == RANGE_LABELS
    # reference: the same weights run directly on the stored validation samples
    images = np.stack([rgb for rgb, _ in samples["val"]]).astype(np.float32) / 255.0
    pred = model(images, training=False)["depth"].numpy()
    pred_flip = model(images[:, :, ::-1].copy(), training=False)["depth"].numpy()[:, :, ::-1]
    pred = 0.5 * (pred + pred_flip)
    rows = []
    for (_, gt), p in zip(samples["val"], pred):
        mask = np.zeros(gt.shape, bool)
        mask[round(45 * 32 / 480) : round(471 * 32 / 480), round(41 * 32 / 640) : round(601 * 32 / 640)] = True
        mask &= (gt > 1e-3) & (gt < 10)
        rows.append(reference_abs_rel_rmse(gt[mask].astype(np.float64), np.clip(p[..., 0][mask], 1e-3, 10)))
    assert result["overall"]["abs_rel"] == pytest.approx(np.mean([r[0] for r in rows]), rel=1e-4)
    assert result["overall"]["rmse"] == pytest.approx(np.mean([r[1] for r in rows]), rel=1e-4)
    assert (tmp_path / "p" / "qualitative.png").is_file() and (tmp_path / "p" / "error_vs_depth.png").is_file()


# ----------------------------------------------------------------------------------------------
# Layering: the evaluation library sits below training and the commands
# ----------------------------------------------------------------------------------------------


def test_evaluation_and_measure_import_no_command_and_no_training():
    import ast

    commands = {"tfdepth.cli", "tfdepth.__main__", "tfdepth.train", "tfdepth.evaluate", "tfdepth.predict",
                "tfdepth.export", "tfdepth.convert", "tfdepth.info", "tfdepth.bench", "tfdepth.zoo"}
    package = REPO_ROOT / "tfdepth"
    files = sorted((package / "evaluation").glob("*.py")) + [
        p for p in sorted((package / "measure").glob("*.py")) if p.name != "__main__.py"]
    assert files
    problems = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if name in commands or (path.parent.name == "evaluation" and name.startswith("tfdepth.training")):
                    problems.append(f"{path.relative_to(REPO_ROOT)} imports {name}")
    assert not problems, "\n".join(problems)
