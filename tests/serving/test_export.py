"""Export (tfdepth.export, tfdepth.serving): the TF Serving SavedModel, TFLite variants, sidecars, accuracy reports,
and the REST client (tools/serving_client.py) against a stand-in for TF Serving's REST API."""

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

import helpers as ds
from helpers import REPO_ROOT


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return ds.workdir(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def keras_model(workdir):
    from tfdepth.training.checkpoint import load_trained_model

    model, cfg = load_trained_model(str(workdir))
    return model, cfg


@pytest.fixture(scope="session")
def saved_model_base(tmp_path_factory, workdir):
    return ds.saved_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def loaded(saved_model_base):
    import tensorflow as tf

    return tf.saved_model.load(str(saved_model_base / "1"))


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory, workdir):
    return ds.tflite(tmp_path_factory.getbasetemp())


def reference_depth(model, images_u8):
    """The Keras model with the serving preprocessing done outside the graph: resize (bilinear,
    antialiased) to 64x64, / 255, model, resize the depth back (bilinear)."""
    import tensorflow as tf

    x = tf.image.resize(tf.cast(images_u8, tf.float32), ds.INPUT_SIZE, method="bilinear", antialias=True) / 255.0
    x = tf.clip_by_value(x, 0.0, 1.0)
    depth = model(x, training=False)["depth"]
    return tf.image.resize(depth, images_u8.shape[1:3], method="bilinear").numpy()


def encode_png(rgb):
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


# --------------------------------------------------------------------------------------------------
# SavedModel
# --------------------------------------------------------------------------------------------------


def test_saved_model_layout_and_signatures(saved_model_base, loaded):
    version_dir = saved_model_base / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert (version_dir / "variables" / "variables.index").is_file()
    assert not [p for p in os.listdir(saved_model_base) if p.startswith(".")], "staging directory left behind"
    assert {"serving_default", "serving_bytes"} <= set(loaded.signatures)
    default = loaded.signatures["serving_default"]
    assert default.structured_input_signature[1]["images"].dtype.name == "uint8"
    assert default.structured_input_signature[1]["images"].shape.as_list() == [None, None, None, 3]
    assert loaded.signatures["serving_bytes"].structured_input_signature[1]["image_bytes"].dtype.name == "string"
    assert set(default.structured_outputs) == {"depth"}


@pytest.mark.skipif(shutil.which("saved_model_cli") is None, reason="saved_model_cli not on PATH")
def test_saved_model_cli_lists_both_signatures(saved_model_base):
    result = subprocess.run(["saved_model_cli", "show", "--dir", str(saved_model_base / "1"), "--all"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "signature_def['serving_default']" in result.stdout
    assert "signature_def['serving_bytes']" in result.stdout
    assert "DT_UINT8" in result.stdout and "DT_STRING" in result.stdout


@pytest.mark.parametrize("size", [(48, 80), (100, 60), ds.INPUT_SIZE])
def test_saved_model_matches_keras_on_both_signatures(loaded, keras_model, size):
    import tensorflow as tf

    model, _ = keras_model
    rng = np.random.default_rng(size[0])
    images = rng.integers(0, 256, (2,) + size + (3,), dtype=np.uint8)
    expected = reference_depth(model, images)
    assert expected.shape == (2,) + size + (1,)
    out = loaded.signatures["serving_default"](images=tf.constant(images))["depth"].numpy()
    assert out.shape == (2,) + size + (1,) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)
    assert out.std() > 1e-3  # a real, varying depth map (not a constant)
    encoded = tf.constant([encode_png(im) for im in images])
    out_bytes = loaded.signatures["serving_bytes"](image_bytes=encoded)["depth"].numpy()
    np.testing.assert_allclose(out_bytes, expected, atol=1e-4, rtol=0)


def test_serving_bytes_decodes_jpeg_and_checks_sizes(loaded, keras_model):
    import tensorflow as tf

    from tfdepth.data.records import encode_jpeg

    model, _ = keras_model
    rgb = np.random.default_rng(7).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    jpeg = encode_jpeg(rgb, quality=90)
    decoded = tf.io.decode_jpeg(jpeg, channels=3).numpy()[None]
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([jpeg]))["depth"].numpy()
    np.testing.assert_allclose(out, reference_depth(model, decoded), atol=1e-4, rtol=0)
    other = encode_png(rgb[:20])
    with pytest.raises(tf.errors.InvalidArgumentError, match="same height and width"):
        loaded.signatures["serving_bytes"](image_bytes=tf.constant([jpeg, other]))


def test_saved_model_metadata_and_versions(saved_model_base, workdir, tmp_path):
    from tfdepth.serving.errors import ExportError
    from tfdepth.serving.metadata import resolve_saved_model_dir
    from tfdepth.serving.predictor import DepthPredictor
    from tfdepth.serving.saved_model import export_saved_model

    meta = ds.read_json(saved_model_base / "1" / "assets.extra" / "tfdepth.json")
    assert meta["input"]["size"] == list(ds.INPUT_SIZE) and meta["output"]["units"] == "metres"
    fx, fy, cx, cy = ds.DATA_INTRINSICS
    sy, sx = ds.INPUT_SIZE[0] / ds.DATA_SIZE[0], ds.INPUT_SIZE[1] / ds.DATA_SIZE[1]
    intr = meta["intrinsics"]
    assert [intr["fx"], intr["fy"], intr["cx"], intr["cy"]] == pytest.approx(
        [fx * sx, fy * sy, (cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5])

    # An existing version is refused; --version 2 sits beside it and is what a loader picks.
    out = tmp_path / "served"
    shutil.copytree(saved_model_base / "1", out / "1")
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(None, ds.INPUT_SIZE, str(out), version=1)
    assert resolve_saved_model_dir(str(out)) == str(out / "1")
    shutil.copytree(out / "1", out / "2")
    assert resolve_saved_model_dir(str(out)) == str(out / "2")
    predictor = DepthPredictor.load(str(out))
    assert predictor.kind == "saved_model" and predictor.input_size == ds.INPUT_SIZE
    assert predictor.intrinsics.as_list() == pytest.approx([intr["fx"], intr["fy"], intr["cx"], intr["cy"]])


def test_export_cli_errors_are_named(workdir, tmp_path):
    from tfdepth import cli, export

    assert cli.run_main(export.main, ["--checkpoint", str(workdir), "--output", str(tmp_path / "t"),
                                      "--format", "tflite", "--quantize", "int4"]) == 2
    assert cli.run_main(export.main, ["--checkpoint", str(tmp_path / "nothing"), "--output", str(tmp_path / "t")]) == 2


# --------------------------------------------------------------------------------------------------
# TFLite
# --------------------------------------------------------------------------------------------------


def _run_tflite(path, image):
    from tfdepth.serving.tflite import make_tflite_interpreter

    interpreter = make_tflite_interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], image[None])
    interpreter.invoke()
    return interpreter.get_tensor(out["index"])[0, ..., 0], interpreter


def test_tflite_interpreter_log_line_only_when_verbose(tmp_path):
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." (once per process) when
    tensors are allocated: hidden when the commands quiet TensorFlow's C++ logs, shown with --verbose."""
    import sys

    import tensorflow as tf

    double = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()], double)
    path = tmp_path / "double.tflite"
    path.write_bytes(converter.convert())
    script = ("import numpy as np; from tfdepth.serving.tflite import make_tflite_interpreter as m; "
              f"i = m(model_path={str(path)!r}); d = i.get_input_details()[0]; "
              "i.set_tensor(d['index'], np.ones([1, 4, 4, 3], np.float32)); i.invoke(); "
              "print(float(i.get_tensor(i.get_output_details()[0]['index']).sum()))")
    runs = {level: subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=str(REPO_ROOT), env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": level})
            for level in ("2", "0")}  # both processes at once (two cores)
    for level, shown in (("2", False), ("0", True)):
        stdout, stderr = runs[level].communicate(timeout=300)
        assert runs[level].returncode == 0, stderr
        assert float(stdout) == 96.0  # 2 x 48 ones
        assert ("XNNPACK delegate" in stderr) is shown, (level, stderr)


@pytest.mark.parametrize("variant,tolerance", [("fp32", 1e-3), ("float16", 1e-2)])
def test_float_tflite_matches_keras(tflite_dir, keras_model, variant, tolerance):
    model, _ = keras_model
    path = tflite_dir / f"depth_{variant}.tflite"
    sidecar = ds.read_json(tflite_dir / f"depth_{variant}.json")
    assert sidecar["input"]["dtype"] == "float32" and sidecar["input"]["range"] == [0.0, 1.0]
    assert sidecar["input"]["size"] == list(ds.INPUT_SIZE) and sidecar["output"]["units"] == "metres"
    assert sidecar["quantization"] == {"fp32": "none", "float16": "float16"}[variant]
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(3):
        image = rng.random(ds.INPUT_SIZE + (3,), dtype=np.float32)
        depth, interpreter = _run_tflite(path, image)
        expected = model(image[None], training=False)["depth"].numpy()[0, ..., 0]
        worst = max(worst, float(np.abs(depth - expected).max()))
    assert worst < tolerance
    assert interpreter.tfdepth_backend == "ai_edge_litert"
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    report = ds.read_json(tflite_dir / f"depth_{variant}.report.json")
    assert report["diff_from_keras_m"]["max"] < tolerance


def test_int8_tflite_is_small_uint8_and_reported(tflite_dir, keras_model):
    model, cfg = keras_model
    sizes = {v: os.path.getsize(tflite_dir / f"depth_{v}.tflite") for v in ("fp32", "float16", "int8")}
    assert sizes["int8"] <= 0.3 * sizes["fp32"], sizes
    assert sizes["float16"] <= 0.55 * sizes["fp32"], sizes
    sidecar = ds.read_json(tflite_dir / "depth_int8.json")
    assert sidecar["input"]["dtype"] == "uint8" and sidecar["input"]["range"] == [0, 255]
    assert sidecar["calibration"] == {"split": "val", "images": ds.NUM_VAL}
    assert sidecar["intrinsics"]["fx"] == pytest.approx(ds.DATA_INTRINSICS[0] * ds.INPUT_SIZE[1] / ds.DATA_SIZE[1])

    report = ds.read_json(tflite_dir / "depth_int8.report.json")
    assert report["file_size_bytes"] == sizes["int8"]
    assert report["size_ratio_to_fp32"] == pytest.approx(sizes["int8"] / sizes["fp32"])
    assert report["images"] == ds.NUM_VAL and report["input_dtype"] == "uint8"
    combined = ds.read_json(tflite_dir / "all_reports.json")
    assert [r["file"] for r in combined["variants"]] == ["depth_fp32.tflite", "depth_float16.tflite",
                                                         "depth_int8.tflite"]

    # Recompute the report independently: the interpreter on the uint8 validation images vs the Keras
    # model on the same pixels, and AbsRel / delta1 (protocol "none": all gt > 0) by their formulas.
    from tfdepth.serving.signature import to_uint8
    from tfdepth.serving.tflite import validation_samples

    diffs, abs_rel, d1 = [], [], []
    for image, gt in validation_samples(cfg):
        q = to_uint8(image)
        depth, interpreter = _run_tflite(tflite_dir / "depth_int8.tflite", q)
        expected = model(q[None].astype(np.float32) / 255.0, training=False)["depth"].numpy()[0, ..., 0]
        diffs.append(np.abs(depth.astype(np.float64) - expected))
        valid = gt > 0
        p, g = np.maximum(depth[valid].astype(np.float64), 1e-3), gt[valid].astype(np.float64)
        abs_rel.append(np.mean(np.abs(p - g) / g))
        d1.append(np.mean(np.maximum(p / g, g / p) < 1.25))
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert report["diff_from_keras_m"]["max"] == pytest.approx(max(d.max() for d in diffs), rel=1e-6)
    assert report["diff_from_keras_m"]["mean"] == pytest.approx(np.mean(np.concatenate(diffs).ravel()), rel=1e-6)
    assert 0 < report["diff_from_keras_m"]["max"] < 0.5  # quantised, but still the same model
    assert report["metrics"]["abs_rel"] == pytest.approx(np.mean(abs_rel), rel=1e-6)
    assert report["metrics"]["d1"] == pytest.approx(np.mean(d1), rel=1e-6)


def _small_depth_model():
    """A small Keras model with the depth-model interface (image [1, 16, 16, 3] -> {"depth": metres}),
    whose weights are big enough (> 1024 per tensor) for dynamic-range quantisation to touch them."""
    import keras

    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(48, 3, padding="same", activation="relu")(image)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    return keras.Model(image, {"depth": keras.layers.Rescaling(10.0)(x)})


def test_dynamic_range_variant(tmp_path):
    from tfdepth.serving.tflite import TFLiteExporter

    model = _small_depth_model()
    with TFLiteExporter(model, (16, 16)) as exporter:
        fp32, dynamic = exporter.convert("none"), exporter.convert("dynamic")
    (tmp_path / "fp32.tflite").write_bytes(fp32)
    (tmp_path / "dyn.tflite").write_bytes(dynamic)
    assert len(dynamic) < 0.5 * len(fp32)  # the big convolution's weights are int8
    image = np.random.default_rng(2).random((16, 16, 3), dtype=np.float32)
    expected = model(image[None], training=False)["depth"].numpy()[0, ..., 0]
    depth_fp32, _ = _run_tflite(tmp_path / "fp32.tflite", image)
    depth_dyn, interpreter = _run_tflite(tmp_path / "dyn.tflite", image)
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert np.abs(depth_fp32 - expected).max() < 1e-4
    assert 0 < np.abs(depth_dyn - expected).max() < 0.1  # weights quantised, activations float


def test_tflite_export_without_validation_data(tmp_path):
    from tfdepth.config import load_config
    from tfdepth.serving.errors import ExportError
    from tfdepth.serving.tflite import export_tflite

    cfg = load_config(None, ["data.dataset=tfrecord", f"data.data_dir={tmp_path / 'gone'}", "data.input_size=[16,16]"])
    model = _small_depth_model()
    lines = []
    reports = export_tflite(model, cfg, str(tmp_path / "out"), ["none"], log=lines.append)
    assert (tmp_path / "out" / "depth_fp32.tflite").is_file()
    sidecar = ds.read_json(tmp_path / "out" / "depth_fp32.json")
    assert sidecar["intrinsics"] is None and sidecar["input"]["size"] == [16, 16]
    report = ds.read_json(tmp_path / "out" / "depth_fp32.report.json")
    assert report == reports[0] and "gone" in report["error"]
    assert any("no accuracy report" in line for line in lines)
    with pytest.raises(ExportError, match="int8 calibration needs the validation split 'val'.*gone"):
        export_tflite(model, cfg, str(tmp_path / "out"), ["int8"], log=lines.append)


# --------------------------------------------------------------------------------------------------
# REST client against a stand-in for tensorflow_model_server's REST API
# --------------------------------------------------------------------------------------------------


def _load_client():
    spec = importlib.util.spec_from_file_location("serving_client", REPO_ROOT / "tools" / "serving_client.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakeServing(BaseHTTPRequestHandler):
    """POST /v1/models/depth[/versions/N]:predict in TF Serving's row format, run on the SavedModel."""

    loaded = None
    requests = []

    def do_POST(self):  # noqa: N802
        import tensorflow as tf

        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append((self.path, body))
        if not self.path.startswith("/v1/models/depth") or not self.path.endswith(":predict"):
            return self._reply(404, {"error": f"Servable not found for request: {self.path}"})
        signature = body.get("signature_name", "serving_default")
        if signature == "serving_bytes":
            inputs = {"image_bytes": tf.constant([base64.b64decode(i["image_bytes"]["b64"]) for i in body["instances"]])}
        else:
            inputs = {"images": tf.constant(np.array([i["images"] for i in body["instances"]], np.uint8))}
        depth = self.loaded.signatures[signature](**inputs)["depth"].numpy()
        self._reply(200, {"predictions": depth.tolist()})

    def _reply(self, code, payload):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_serving_client_round_trip(loaded, keras_model, tmp_path):
    import cv2
    from PIL import Image

    client = _load_client()
    _FakeServing.loaded = loaded
    _FakeServing.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeServing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        rgb = np.random.default_rng(3).integers(0, 256, (36, 52, 3), dtype=np.uint8)
        png = tmp_path / "pic.png"
        cv2.imwrite(str(png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        rotated = tmp_path / "rotated.png"  # stored sideways with EXIF orientation 6: sent upright
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(np.rot90(rgb, k=1).copy()).save(rotated, exif=exif)
        out = tmp_path / "out"
        assert client.main([str(png), str(rotated), "--url", url, "--model", "depth", "--output", str(out),
                            "--save", "png16,npy,color"]) == 0
        expected = reference_depth(keras_model[0], rgb[None])[0, ..., 0]
        for stem in ("pic", "rotated"):
            depth = np.load(out / f"{stem}_depth_m.npy")
            np.testing.assert_allclose(depth, expected, atol=1e-4)
            mm = cv2.imread(str(out / f"{stem}_depth_mm.png"), cv2.IMREAD_UNCHANGED)
            assert mm.dtype == np.uint16 and mm.shape == (36, 52)
            # millimetres of the same depth (the client rounds the JSON's float64, .npy holds float32)
            assert np.abs(mm.astype(np.int64) - np.rint(depth.astype(np.float64) * 1000)).max() <= 1
        path, body = _FakeServing.requests[0]
        assert path == "/v1/models/depth:predict" and body["signature_name"] == "serving_bytes"
        assert base64.b64decode(body["instances"][0]["image_bytes"]["b64"]) == png.read_bytes()

        # uint8 pixels through serving_default, a version in the URL; an unknown model fails by name.
        assert client.main([str(png), "--url", url, "--model", "depth", "--version", "1", "--signature",
                            "serving_default", "--output", str(tmp_path / "o2"), "--save", "npy"]) == 0
        assert _FakeServing.requests[-1][0] == "/v1/models/depth/versions/1:predict"
        np.testing.assert_allclose(np.load(tmp_path / "o2" / "pic_depth_m.npy"), expected, atol=1e-4)
        with pytest.raises(client.ServingError, match="HTTP 404.*Servable not found"):
            client.request_depth(client.predict_url(url, "nope"), str(png))
    finally:
        server.shutdown()
        server.server_close()
