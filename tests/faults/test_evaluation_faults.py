"""Issue 21, file-mode evaluation: nonsense is refused instead of scored. Invalid scales, ground truth
decoded with the wrong scale (real NYU millimetre and KITTI PNGs), NaN predictions and folders where
nothing can be scored each give exit 2 and one line naming the flag or file; ``--force`` scores the
implausible anyway and says so."""

import json
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from helpers import REPO_ROOT, SHARED_DATA
from tfdepth.cli import run_main
from tfdepth.evaluate import main

NYU = SHARED_DATA / "nyu" / "depth"  # uint16 millimetres
KITTI = SHARED_DATA / "kitti" / "depth"  # uint16, metres = v / 256


def folders(tmp_path, source, scale, pred=lambda gt_m, rng: gt_m * rng.uniform(0.9, 1.1, gt_m.shape)):
    """gt: copies of the real PNGs of ``source``; pred: ``pred(gt metres, rng)`` as float32 .npy."""
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    sources = sorted(source.glob("*.png"))
    assert len(sources) == 3, f"{source}: the real samples are missing"
    for path in sources:
        shutil.copy(path, gt_dir / path.name)
        gt_m = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64) / scale
        np.save(pred_dir / f"{path.stem}.npy", np.where(gt_m > 0, pred(gt_m, rng), 2.0).astype(np.float32))
    return gt_dir, pred_dir


def evaluate(capsys, gt_dir, pred_dir, *flags):
    """``(rc, stdout, stderr)`` with the progress lines (``evaluate: 3 files in 0.1 s ...``) taken out of
    stderr: what is left are the errors and warnings these tests are about."""
    rc = run_main(main, ["--pred", str(pred_dir), "--gt", str(gt_dir), *flags])
    out = capsys.readouterr()
    err = "".join(line for line in out.err.splitlines(keepends=True) if not re.match(r"evaluate: \d+ files? ", line))
    return rc, out.out, err


@pytest.mark.parametrize("flags,flag", [
    (["--gt-scale", "0"], "--gt-scale 0:"),
    (["--gt-scale", "-1000"], "--gt-scale -1000:"),
    (["--gt-scale", "nan"], "--gt-scale nan:"),
    (["--gt-scale", "1000", "--pred-scale", "0"], "--pred-scale 0:"),
])
def test_invalid_scale_is_refused_naming_the_flag(tmp_path, capsys, flags, flag):
    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0)
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", *flags)
    assert rc == 2 and out == "", out
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: {flag} expected a finite number > 0"), err


def test_invalid_scale_from_the_command_line_no_traceback(tmp_path):
    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0)
    proc = subprocess.run([sys.executable, "-m", "tfdepth.evaluate", "--pred", str(pred_dir), "--gt", str(gt_dir),
                           "--protocol", "nyu", "--gt-scale", "nan", "--output", str(tmp_path / "r.json")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "--gt-scale nan" in proc.stderr
    assert not (tmp_path / "r.json").exists()


def test_millimetre_pngs_read_at_scale_256_name_the_file_and_1000(tmp_path, capsys):
    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0)
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "256")
    assert rc == 2 and out == ""
    assert err.startswith(f"error: {gt_dir / 'sync_depth_00000.png'}: implausible ground truth read with --gt-scale "
                          "256: 89% of its valid pixels (median 12.7 m) lie beyond the nyu protocol's 10 m"), err
    assert "with --gt-scale 1000 its median would be 3.26 m" in err and "--force" in err
    # the right scale scores; --force scores the wrong one too, says so and records it
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "1000")
    assert rc == 0 and err == "" and "3 images" in out
    json_path = tmp_path / "forced.json"
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "256", "--force",
                            "--output", str(json_path))
    assert rc == 0 and err.startswith("warning: scored despite implausible ground truth (--force): ")
    assert "(and 2 more file(s))" in err
    assert json.loads(json_path.read_text())["warnings"] == [err.strip()[len("warning: "):]]


def test_kitti_pngs_read_as_millimetres_name_256(tmp_path, capsys):
    gt_dir, pred_dir = folders(tmp_path, KITTI, 256.0)
    rc, _, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "kitti", "--gt-scale", "1000")
    assert rc == 2 and "0000000005.png: implausible ground truth" in err and "implausibly near" in err
    assert "with --gt-scale 256 its median would be 13.84 m" in err
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "kitti", "--gt-scale", "256")
    assert rc == 0 and err == "", err


def test_npy_ground_truth_in_millimetres(tmp_path, capsys):
    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0)
    for path in sorted(gt_dir.glob("*.png")):  # the same depths saved as .npy "metres" that are millimetres
        np.save(gt_dir / f"{path.stem}.npy", cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float32))
        path.unlink()
    rc, _, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "none")
    assert rc == 2 and "sync_depth_00000.npy: implausible ground truth (.npy, metres)" in err, err
    assert "median valid depth 3.26e+03 m" in err and "its values / 1000 would have a median of 3.26 m" in err


def test_all_nan_predictions_are_refused_and_counted_when_forced(tmp_path, capsys):
    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0, pred=lambda gt_m, rng: np.full(gt_m.shape, np.nan))
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "1000")
    assert rc == 2 and out == ""
    assert err.startswith(f"error: {pred_dir / 'sync_depth_00000.npy'}: 221809 of the prediction's 221809 valid "
                          "pixels (100.0%) are NaN or infinite"), err
    json_path = tmp_path / "forced.json"
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "1000", "--force",
                            "--output", str(json_path))
    result = json.loads(json_path.read_text())
    assert rc == 0 and result["nonfinite_pred_pixels"] == result["pixels"] and result["nonfinite_pred_fraction"] == 1
    assert f"{result['pixels']} non-finite prediction pixel(s) (100.00% of the valid ones)" in out
    assert err.startswith("warning: scored despite non-finite predictions (--force)")


def test_a_few_nan_pixels_are_counted_in_the_json_and_the_summary(tmp_path, capsys):
    def two_nan_rows(gt_m, rng):
        pred = gt_m * rng.uniform(0.9, 1.1, gt_m.shape)
        pred[200:202] = np.nan  # inside the Eigen crop: 2 of 426 rows, under 1 % of the valid pixels
        return pred

    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0, pred=two_nan_rows)
    expected = 0
    for path in sorted(gt_dir.glob("*.png")):
        gt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        expected += int((gt[200:202, 41:601] > 0).sum())
    json_path = tmp_path / "r.json"
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "1000",
                            "--output", str(json_path))
    result = json.loads(json_path.read_text())
    assert rc == 0 and err == "" and result["warnings"] == []
    assert result["nonfinite_pred_pixels"] == expected > 0
    assert result["nonfinite_pred_fraction"] == pytest.approx(expected / result["pixels"])
    assert f"3 images, {expected} non-finite prediction pixel(s)" in out


def test_nothing_scored_exits_2(tmp_path, capsys):
    gt_dir, pred_dir = folders(tmp_path, NYU, 1000.0)
    for path in gt_dir.glob("*.png"):  # every pixel invalid
        cv2.imwrite(str(path), np.zeros((480, 640), np.uint16))
    rc, out, err = evaluate(capsys, gt_dir, pred_dir, "--protocol", "nyu", "--gt-scale", "1000",
                            "--output", str(tmp_path / "r.json"))
    assert rc == 2 and out == "" and not (tmp_path / "r.json").exists()
    assert err == (f"error: {gt_dir}: nothing scored: none of the 3 ground-truth file(s) has a valid pixel under the "
                   "nyu protocol (0.001 < depth < 10 m, crop eigen); check --gt-scale, --protocol and --crop\n")
