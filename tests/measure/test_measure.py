"""The measuring page's server API (``python -m tfdepth.measure``), without a browser.

The server runs in a thread on a free loopback port over the shared tiny deployment workdir
(tests/helpers.py). Depth is compared with ``python -m tfdepth.predict``'s ``.npy`` output and
metrics with the evaluate command's file mode on the same arrays.
"""

from __future__ import annotations

import builtins
import io
import json
import math
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

import helpers as deploy_support
from helpers import SHARED_DATA

IMAGE_SIZE = (60, 80)  # (H, W) of the synthetic test picture
MAX_UPLOAD_BYTES = 2_000_000


# --------------------------------------------------------------------------------------------------
# Helpers shared with test_measure_browser.py (plain functions, built once under pytest's base temp)
# --------------------------------------------------------------------------------------------------


def synthetic_pair(directory: Path):
    """A 60x80 RGB PNG and its ground truth (16-bit PNG, millimetres; a band of zeros = invalid; depths
    0.5..6 m so every per-range row has pixels). Returns (rgb path, gt path, gt metres float64)."""
    directory.mkdir(parents=True, exist_ok=True)
    height, width = IMAGE_SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    rgb = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) % 256], axis=-1).astype(np.uint8)
    gt_mm = np.round(500 + 5500 * (yy / (height - 1)) * (0.6 + 0.4 * xx / (width - 1))).astype(np.uint16)
    gt_mm[:, :4] = 0
    rgb_path, gt_path = directory / "scene.png", directory / "scene_depth.png"
    cv2.imwrite(str(rgb_path), rgb[..., ::-1])
    cv2.imwrite(str(gt_path), gt_mm)
    return rgb_path, gt_path, gt_mm.astype(np.float64) / 1000.0


def sample_files():
    """Real samples (name -> (rgb path, gt path or None, scale or None)) that exist on this machine."""
    samples = {}
    if (SHARED_DATA / "nyu").is_dir():
        samples["nyu"] = (SHARED_DATA / "nyu/rgb/rgb_00000.jpg", SHARED_DATA / "nyu/depth/sync_depth_00000.png", 1000.0)
    if (SHARED_DATA / "kitti").is_dir():
        samples["kitti"] = (SHARED_DATA / "kitti/rgb/0000000005.png", SHARED_DATA / "kitti/depth/0000000005.png", 256.0)
    if (SHARED_DATA / "wild").is_dir():
        samples["wild"] = (SHARED_DATA / "wild/wild_0.jpg", None, None)
    return samples


def predict_command_outputs(base: Path, inputs):
    """Runs ``python -m tfdepth.predict --save npy,ply`` (in process) once over ``inputs`` (paths with
    distinct stems); returns (output dir, predictions.json). Built at most once per session."""
    out = base / "measure" / "predict_out"
    done = out / ".complete"
    if not done.is_file():
        from tfdepth import predict

        if out.exists():
            shutil.rmtree(out)
        code = predict.main(["--model", str(deploy_support.workdir(base)), "--input", *map(str, inputs),
                             "--output", str(out), "--save", "npy,ply", "--quiet"])
        assert code == 0
        done.write_text("ok")
    with open(out / "predictions.json") as f:
        return out, json.load(f)


def reference_inputs(base: Path):
    """The synthetic pair plus the real samples; every picture the measure tests predict."""
    rgb_path, gt_path, gt_m = synthetic_pair(base / "measure" / "synthetic")
    return rgb_path, gt_path, gt_m, [rgb_path] + [rgb for rgb, _, _ in sample_files().values()]


def reference_depth(out_dir: Path, picture: Path) -> np.ndarray:
    return np.load(out_dir / f"{picture.stem}_depth_m.npy")


# --------------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def references(base):
    rgb_path, gt_path, gt_m, inputs = reference_inputs(base)
    out_dir, listing = predict_command_outputs(base, inputs)
    return {"rgb": rgb_path, "gt": gt_path, "gt_m": gt_m, "out": out_dir, "listing": listing}


@pytest.fixture(scope="module")
def server(base):
    from tfdepth.serving.predictor import DepthPredictor
    from tfdepth.measure import MeasureApp, start_in_thread

    workdir = deploy_support.workdir(base)
    app = MeasureApp(DepthPredictor.load(str(workdir)), str(workdir), max_upload_bytes=MAX_UPLOAD_BYTES,
                     max_pictures=2, max_pixels=2_000_000)
    srv, thread = start_in_thread(app)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def call(srv, path, data=None, name=None, headers=None, method=None):
    """(status, headers, body bytes) of one request; JSON error bodies are returned, not raised."""
    request = urllib.request.Request(srv.url.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/octet-stream")
    if name:
        request.add_header("X-File-Name", urllib.request.quote(name))
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def call_json(srv, path, **kwargs):
    status, headers, body = call(srv, path, **kwargs)
    assert headers["Content-Type"].startswith("application/json"), (status, body[:200])
    return status, json.loads(body)


def predict_file(srv, path: Path):
    status, result = call_json(srv, "/api/predict", data=path.read_bytes(), name=path.name)
    assert status == 200, result
    status, headers, body = call(srv, result["depth_url"])
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    depth = np.frombuffer(body, dtype="<f4").reshape(result["height"], result["width"])
    return result, depth


# --------------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------------


def test_predict_api_equals_predict_command(server, references):
    result, depth = predict_file(server, references["rgb"])
    expected = reference_depth(references["out"], references["rgb"])
    assert (result["height"], result["width"]) == IMAGE_SIZE == expected.shape
    np.testing.assert_allclose(depth, expected, rtol=0, atol=1e-6)
    valid = expected[np.isfinite(expected) & (expected > 0)]
    assert result["depth_min_m"] == pytest.approx(float(valid.min()), abs=1e-6)
    assert result["depth_max_m"] == pytest.approx(float(valid.max()), abs=1e-6)
    low, high = np.percentile(valid.astype(np.float64), [1, 99])
    assert (result["color_min_m"], result["color_max_m"]) == pytest.approx((low, high), abs=1e-9)
    # The model's training camera scaled to the picture: the predict command's point-cloud intrinsics.
    record = next(r for r in references["listing"]["items"] if r["input"] == str(references["rgb"]))
    assert result["model_intrinsics"] == pytest.approx(record["intrinsics"], abs=1e-9)
    # ... and the page's depth used the same camera, chosen by the same logic, and says which
    assert result["camera"] == {"intrinsics": pytest.approx(record["intrinsics"], abs=1e-9),
                                "source": record["intrinsics_source"],
                                "focal_resize": record.get("focal_resize")}  # None: no trained focal range
    # The display image is the decoded picture, pixel for pixel; the colour map has the picture's size.
    status, headers, png = call(server, result["image_url"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    shown = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(shown, cv2.imread(str(references["rgb"]))[..., ::-1])
    status, _, color = call(server, result["color_url"])
    assert status == 200
    assert cv2.imdecode(np.frombuffer(color, np.uint8), cv2.IMREAD_COLOR).shape == IMAGE_SIZE + (3,)


def test_real_samples_predict_and_score_like_the_commands(server, references, tmp_path):
    """nyu (JPEG + mm PNG), kitti (PNG + /256 PNG) and a wild photo: the API's depth equals the predict
    command's .npy and the summary equals the evaluate command's file mode on the same files."""
    from tfdepth.evaluation.files import evaluate_files
    from tfdepth.metrics import get_protocol

    samples = sample_files()
    if not samples:
        pytest.skip(f"real RGB-D samples not found under {SHARED_DATA}")
    for name, (rgb_path, gt_path, scale) in samples.items():
        result, depth = predict_file(server, rgb_path)
        expected = reference_depth(references["out"], rgb_path)
        np.testing.assert_allclose(depth, expected, rtol=0, atol=1e-6, err_msg=name)
        if gt_path is None:
            continue
        protocol = "kitti" if name == "kitti" else "nyu"
        status, scored = call_json(server, f"/api/gt?id={result['id']}&scale={scale:g}&protocol={protocol}",
                                   data=gt_path.read_bytes(), name=gt_path.name)
        assert status == 200, scored
        pred_dir, gt_dir = tmp_path / name / "pred", tmp_path / name / "gt"
        pred_dir.mkdir(parents=True)
        gt_dir.mkdir(parents=True)
        shutil.copy(references["out"] / f"{rgb_path.stem}_depth_m.npy", pred_dir / "x.npy")
        shutil.copy(gt_path, gt_dir / "x.png")
        expected_metrics = evaluate_files(str(pred_dir), str(gt_dir), get_protocol(protocol), gt_scale=scale)
        for key in ("abs_rel", "rmse", "d1", "mae"):
            assert scored["overall"][key] == pytest.approx(expected_metrics["overall"][key], rel=1e-9, abs=1e-12), key
        for row in scored["per_range"]:
            reference = expected_metrics["per_range"][row["range"]]
            if row["pixels"] == 0:
                assert reference["count"] == 0 and row["abs_rel"] is None
            else:
                assert row["abs_rel"] == pytest.approx(reference["abs_rel"], rel=1e-9)
                assert row["rmse"] == pytest.approx(reference["rmse"], rel=1e-9)
        assert scored["overall"]["pixels"] == expected_metrics["pixels"]


# --------------------------------------------------------------------------------------------------
# Ground truth and metrics
# --------------------------------------------------------------------------------------------------


def test_ground_truth_metrics_equal_the_evaluate_protocols(server, references):
    from tfdepth.metrics import DEPTH_RANGES, get_protocol, image_metrics, prepare_pair

    result, depth = predict_file(server, references["rgb"])
    gt_m = references["gt_m"]
    status, scored = call_json(server, f"/api/gt?id={result['id']}&scale=1000&protocol=none",
                               data=references["gt"].read_bytes(), name="scene_depth.png")
    assert status == 200, scored
    status, _, body = call(server, scored["gt_url"])
    np.testing.assert_array_equal(np.frombuffer(body, "<f4").reshape(IMAGE_SIZE), gt_m.astype(np.float32))
    assert scored["gt_valid_fraction"] == pytest.approx(np.mean(gt_m > 0))

    for protocol, crop in (("none", None), ("nyu", None), ("kitti", None), ("nyu", "none")):
        query = f"/api/metrics?id={result['id']}&protocol={protocol}" + (f"&crop={crop}" if crop else "")
        status, scored = call_json(server, query)
        assert status == 200, scored
        chosen = get_protocol(protocol, crop)
        expected = image_metrics(depth, gt_m, chosen)
        assert scored["protocol"]["name"] == protocol and scored["protocol"]["crop"] == chosen.crop
        assert scored["overall"]["pixels"] == expected["count"] > 0
        for key in ("abs_rel", "rmse", "d1", "mae", "silog"):
            assert scored["overall"][key] == pytest.approx(expected[key], rel=1e-12), (protocol, key)
        # The per-range rows by formula: the same metrics restricted to valid gt inside each range.
        pred, gt, valid = prepare_pair(depth, gt_m, chosen)
        for row, (label, low, high) in zip(scored["per_range"], DEPTH_RANGES):
            in_range = valid & (gt >= low) & (gt < high)
            assert row["range"] == label and row["pixels"] == int(in_range.sum())
            if row["pixels"]:
                p, g = pred[in_range], gt[in_range]
                assert row["abs_rel"] == pytest.approx(np.mean(np.abs(p - g) / g), rel=1e-9)
                assert row["rmse"] == pytest.approx(np.sqrt(np.mean((p - g) ** 2)), rel=1e-9)
                assert row["d1"] == pytest.approx(np.mean(np.maximum(p / g, g / p) < 1.25), rel=1e-12)
            else:
                assert row["abs_rel"] is None
    assert sum(r["pixels"] for r in scored["per_range"]) == scored["overall"]["pixels"]

    # A .npy ground truth in metres (no scale), and the shared colour range now covers both maps.
    buffer = io.BytesIO()
    np.save(buffer, (gt_m * 2).astype(np.float32))
    status, scored = call_json(server, f"/api/gt?id={result['id']}&protocol=none", data=buffer.getvalue(),
                               name="gt.npy")
    assert status == 200, scored
    expected = image_metrics(depth, (gt_m * 2).astype(np.float32), get_protocol("none"))
    assert scored["overall"]["abs_rel"] == pytest.approx(expected["abs_rel"], rel=1e-12)
    assert scored["color_max_m"] >= np.percentile(gt_m[gt_m > 0] * 2, 99) - 1e-6


def test_colour_ranges_each_its_own_or_shared(server, references):
    """Both colour views of a picture with ground truth: each map in its own range (the colour-map rule
    on that map) or both in their union; the PNGs are those maps coloured in those ranges."""
    from tfdepth.io.colormap import colorize, depth_range

    result, depth = predict_file(server, references["rgb"])
    pred_range = depth_range(depth)
    for mode in ("own", "shared"):  # one map yet: one range
        only = result["colors"][mode]
        assert list(only) == ["pred"] and (only["pred"]["min_m"], only["pred"]["max_m"]) == pytest.approx(pred_range)
    gt_m = references["gt_m"]
    status, scored = call_json(server, f"/api/gt?id={result['id']}&scale=1000&protocol=none",
                               data=references["gt"].read_bytes(), name="scene_depth.png")
    assert status == 200, scored
    gt_range = depth_range(gt_m)
    union = (min(pred_range[0], gt_range[0]), max(pred_range[1], gt_range[1]))
    assert abs(gt_range[1] - gt_range[0]) > 2 * abs(pred_range[1] - pred_range[0])  # the prediction is flatter
    expected = {("own", "pred"): (depth, pred_range), ("own", "gt"): (gt_m, gt_range),
                ("shared", "pred"): (depth, union), ("shared", "gt"): (gt_m, union)}
    for (mode, which), (depth_map, (low, high)) in expected.items():
        shown = scored["colors"][mode][which]
        assert (shown["min_m"], shown["max_m"]) == pytest.approx((low, high), abs=1e-9), (mode, which)
        status, headers, png = call(server, shown["url"])
        assert status == 200 and headers["Content-Type"] == "image/png"
        rgb = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        assert np.mean(rgb != colorize(depth_map, low, high)) < 1e-3, (mode, which)
    assert (scored["color_min_m"], scored["color_max_m"]) == pytest.approx(union)  # the older keys: shared
    status, refused = call_json(server, f"/api/color/{result['id']}/gt?range=loud")
    assert status == 400 and "own or shared" in refused["error"]


def test_bad_ground_truth_gets_a_clear_message(server, references, tmp_path):
    result, _ = predict_file(server, references["rgb"])
    gt_bytes = references["gt"].read_bytes()
    url = f"/api/gt?id={result['id']}&protocol=none"
    color_png = cv2.imencode(".png", np.zeros(IMAGE_SIZE + (3,), np.uint8))[1].tobytes()
    eight_bit = cv2.imencode(".png", np.ones(IMAGE_SIZE, np.uint8))[1].tobytes()
    small = cv2.imencode(".png", np.ones((10, 10), np.uint16))[1].tobytes()
    cases = [
        (url, gt_bytes, "needs its scale"),
        (url + "&scale=abc", gt_bytes, "not a number"),
        (url + "&scale=-1", gt_bytes, "positive"),
        (url + "&scale=1000", color_png, "one channel"),
        (url + "&scale=1000", eight_bit, "8-bit"),
        (url + "&scale=1000", small, "must be the same size"),
        (url + "&scale=1000", b"hello", "not a ground-truth depth file"),
        (url + "&scale=1000", gt_bytes[: len(gt_bytes) // 2], "cannot decode"),
        (url.replace("none", "bogus") + "&scale=1000", gt_bytes, "unknown protocol"),
        ("/api/gt?id=ffff&scale=1000", gt_bytes, "not held by the server"),
    ]
    for path, data, expected in cases:
        status, body = call_json(server, path, data=data, name="depth.png")
        assert status in (400, 404) and expected in body["error"], (path, body)
        assert "depth.png" in body["error"] or "protocol" in body["error"] or "held" in body["error"]
    # 8-bit is accepted when asked for, with its scale.
    status, body = call_json(server, url + "&scale=100&allow_8bit=1", data=eight_bit, name="depth8.png")
    assert status == 200 and body["overall"]["pixels"] > 0
    status, body = call_json(server, f"/api/metrics?id={result['id']}&protocol=kitti&crop=kb")
    assert status == 400 and "KB crop needs a map of at least 352x1216" in body["error"]
    status, body = call_json(server, f"/api/metrics?id={result['id']}&protocol=kitti&crop=square")
    assert status == 400 and "unknown crop" in body["error"]
    # Metrics without ground truth.
    fresh, _ = predict_file(server, references["rgb"])
    status, body = call_json(server, f"/api/metrics?id={fresh['id']}&protocol=nyu")
    assert status == 400 and "no ground truth" in body["error"]


# --------------------------------------------------------------------------------------------------
# Bad uploads, limits, routes; the server keeps serving
# --------------------------------------------------------------------------------------------------


def test_bad_uploads_get_clear_messages_and_the_server_keeps_serving(server, references):
    good = references["rgb"].read_bytes()
    jpeg = cv2.imencode(".jpg", cv2.imread(str(references["rgb"])))[1].tobytes()
    cases = [
        (b"\x00" * (MAX_UPLOAD_BYTES + 1), "huge.jpg", 413, "over the upload limit"),
        (b"plain text, not a picture", "notes.txt", 400, "cannot decode image"),
        (b"", "empty.png", 400, "empty file"),
        (good[: len(good) // 2], "cut.png", 400, "cannot decode image"),
        (jpeg[: len(jpeg) // 2], "cut.jpg", 400, "broken JPEG"),
    ]
    for data, name, status_expected, text in cases:
        status, body = call_json(server, "/api/predict", data=data, name=name)
        assert status == status_expected and text in body["error"] and name in body["error"], body
        status, info = call_json(server, "/api/info")  # still serving
        assert status == 200 and info["max_upload_bytes"] == MAX_UPLOAD_BYTES
    # Too many pixels for the server (a small file of a large picture).
    big = cv2.imencode(".png", np.zeros((1500, 1500, 3), np.uint8))[1].tobytes()
    status, body = call_json(server, "/api/predict", data=big, name="wide.png")
    assert status == 413 and "megapixels" in body["error"]
    # A multipart form instead of raw bytes.
    status, body = call_json(server, "/api/predict", data=b"--x\r\n\r\n--x--", name="form",
                             headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 415 and "raw bytes" in body["error"]
    # Only the last max_pictures (2) are kept.
    first, _ = predict_file(server, references["rgb"])
    predict_file(server, references["rgb"])
    predict_file(server, references["rgb"])
    status, body = call_json(server, first["depth_url"])
    assert status == 404 and "open the picture again" in body["error"]


def test_routes_static_files_and_loopback_host_check(server):
    status, headers, html = call(server, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="/static/app.js"' in html and "default-src 'self'" in headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = call(server, f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
    for path in ("/static/../server.py", "/static/secret.txt", "/api/nothing", "/api/depth/zzz"):
        status, body = call_json(server, path)
        assert status == 404 and body["error"], path
    status, body = call_json(server, "/api/info", headers={"Host": "attacker.example:80"})
    assert status == 403 and "loopback" in body["error"]
    status, body = call_json(server, "/api/info", headers={"Host": "localhost:1234"})
    assert status == 200 and body["colormap"]["name"] == "turbo_r" and len(body["colormap"]["stops"]) == 64


def test_nothing_is_written_while_serving(server, references, monkeypatch):
    """Uploads, predictions and scoring stay in memory: no Python file is opened for writing."""
    writes = []
    real_open = builtins.open

    def watching_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching_open)
    monkeypatch.setattr(io, "open", watching_open)
    before = set(os.listdir(os.getcwd()))
    result, _ = predict_file(server, references["rgb"])
    call_json(server, f"/api/gt?id={result['id']}&scale=1000&protocol=nyu", data=references["gt"].read_bytes(),
              name="gt.png")
    call(server, f"/api/color/{result['id']}/gt")
    call_json(server, "/api/predict", data=b"junk", name="junk.jpg")
    assert writes == []
    assert set(os.listdir(os.getcwd())) == before


def test_cli_arguments():
    from tfdepth.cli import run_main
    from tfdepth.measure.__main__ import build_parser, main

    args = build_parser().parse_args(["--model", "m"])
    assert (args.host, args.port, args.max_upload_mb) == ("127.0.0.1", 8080, 20.0)
    assert run_main(main, ["--model", "/nonexistent/model.tflite"]) == 2
    assert run_main(main, ["--model", "m", "--max-upload-mb", "0"]) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--model", "m", "--fov", "60", "--intrinsics", "1,1,1,1"])


def test_host_helpers():
    from tfdepth.measure.server import clean_name, host_name, is_loopback

    assert host_name("[::1]:8080") == "::1" and host_name("LocalHost:80") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert is_loopback("127.0.0.2") and is_loopback("::1") and not is_loopback("0.0.0.0")
    assert not is_loopback("example.com")
    assert clean_name("..%2F..%2Fetc%2Fpasswd") == "passwd" and clean_name(None) == "upload"
    assert math.isclose(len(clean_name("a" * 500)), 120)
