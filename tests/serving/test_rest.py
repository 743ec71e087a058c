"""tfdepth.serving.rest: the real SavedModel behind TF Serving's REST API on loopback, and
tools/serving_client.py --local (no TF Serving), whose import needs no TensorFlow."""

import base64
import importlib.util
import json
import subprocess
import sys
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

import helpers as ds
from helpers import REPO_ROOT


@pytest.fixture(scope="module")
def saved_model_base(tmp_path_factory):
    return ds.saved_model(tmp_path_factory.getbasetemp())


def _call(url, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_local_server_answers_like_tf_serving(saved_model_base):
    import tensorflow as tf

    from tfdepth.serving.rest import LocalRestServer

    rgb = np.random.default_rng(5).integers(0, 256, (2, 20, 28, 3), dtype=np.uint8)
    expected = tf.saved_model.load(str(saved_model_base / "1")).signatures["serving_default"](
        images=tf.constant(rgb))["depth"].numpy()
    with LocalRestServer(str(saved_model_base)) as server:  # the base folder: its newest version is served
        assert server.version == 1 and server.url.startswith("http://127.0.0.1:")
        status, body = _call(f"{server.url}/v1/models/depth")
        assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
        status, body = _call(f"{server.url}/v1/models/depth/metadata")
        signatures = body["metadata"]["signature_def"]["signature_def"]
        assert signatures["serving_bytes"]["inputs"]["image_bytes"]["dtype"] == "string"
        # row format: one prediction per instance, the SavedModel's own numbers
        status, body = _call(f"{server.url}/v1/models/depth/versions/1:predict",
                             {"instances": [{"images": rgb[0].tolist()}, {"images": rgb[1].tolist()}]})
        assert status == 200
        np.testing.assert_allclose(np.array(body["predictions"]), expected, atol=1e-6)
        # column format, bytes as {"b64": ...}
        ok, png = cv2.imencode(".png", cv2.cvtColor(rgb[0], cv2.COLOR_RGB2BGR))
        status, body = _call(f"{server.url}/v1/models/depth:predict",
                             {"signature_name": "serving_bytes",
                              "inputs": {"image_bytes": [{"b64": base64.b64encode(png.tobytes()).decode()}]}})
        assert status == 200
        np.testing.assert_allclose(np.array(body["outputs"])[0], expected[0], atol=1e-6)
        # what TF Serving refuses, refused the same way
        assert _call(f"{server.url}/v1/models/other:predict", {"instances": [1]})[0] == 404
        assert _call(f"{server.url}/v1/models/depth/versions/7")[0] == 404
        status, body = _call(f"{server.url}/v1/models/depth:predict", {"signature_name": "nope", "instances": [1]})
        assert status == 400 and "nope" in body["error"]
        status, body = _call(f"{server.url}/v1/models/depth:predict", {"rows": []})
        assert status == 400 and "instances" in body["error"]


def test_client_local_mode_round_trip(saved_model_base, tmp_path, capsys):
    import tensorflow as tf

    spec = importlib.util.spec_from_file_location("serving_client", REPO_ROOT / "tools" / "serving_client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    rgb = np.random.default_rng(6).integers(0, 256, (30, 44, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "pic.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert client.main([str(tmp_path / "pic.png"), "--local", str(saved_model_base / "1"), "--output",
                        str(tmp_path / "out"), "--save", "npy"]) == 0
    expected = tf.saved_model.load(str(saved_model_base / "1")).signatures["serving_default"](
        images=tf.constant(rgb[None]))["depth"].numpy()[0, ..., 0]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "pic_depth_m.npy"), expected, atol=1e-5)
    out = capsys.readouterr().out
    assert "--local: serving" in out and "TF Serving REST API, loopback only" in out
    assert client.main([str(tmp_path / "pic.png"), "--local", str(tmp_path), "--output", str(tmp_path / "o")]) == 2


def test_client_imports_no_tensorflow():
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('c', {str(REPO_ROOT / 'tools' / 'serving_client.py')!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
