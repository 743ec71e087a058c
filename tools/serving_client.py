#!/usr/bin/env python
"""Send pictures to a TF Serving REST endpoint running a tfdepth SavedModel and save the depth.

    python tools/serving_client.py --url http://localhost:8501 --model depth photo.jpg [more.png ...] \
        --output out/ [--signature serving_bytes|serving_default] [--version N] [--save png16,color,npy]

    # without TF Serving: the real SavedModel behind TF Serving's REST API on 127.0.0.1 (a free port)
    python tools/serving_client.py --local export/depth photo.jpg --output out/

Requests go to ``{url}/v1/models/{model}[/versions/{N}]:predict`` in TF Serving's row format:

- ``serving_bytes`` (default):
  ``{"signature_name": "serving_bytes", "instances": [{"image_bytes": {"b64": "<base64>"}}]}``
  with the file's JPEG/PNG bytes (re-encoded as PNG when the picture has an EXIF rotation, is 16-bit
  or is in a format TensorFlow's decoder does not read, so the server sees the upright 8-bit image);
- ``serving_default``: ``{"signature_name": "serving_default", "instances": [{"images": [[[r, g, b], ...], ...]}]}``
  (uint8 pixels as JSON numbers: simple, but about 4x the bytes of a PNG).

The answer ``{"predictions": [depth [H][W][1]]}`` (metres) is saved per picture as
``<stem>_depth_mm.png`` (16-bit millimetres), ``<stem>_depth_color.png`` and/or ``<stem>_depth_m.npy``
(written by ``tfdepth.serving.outputs``, as ``python -m tfdepth.predict`` writes them).

``--local SAVEDMODEL_DIR`` starts :class:`tfdepth.serving.rest.LocalRestServer` in this process: the
SavedModel (``DIR`` with numbered versions, or ``DIR/N``) answers TF Serving's REST requests on
loopback, and the pictures are sent to it over HTTP exactly as to TF Serving (``--url`` is then
ignored): a way to try the client, or test another one, without installing TF Serving.

Needs NumPy, OpenCV and matplotlib, and the ``tfdepth`` package for reading pictures and writing the
outputs as ``predict`` does (``tfdepth.io``, ``tfdepth.serving.outputs``): run it from a tfdepth
checkout (it finds the package beside ``tools/``) or where tfdepth is installed. TensorFlow is not
imported, except by ``--local``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import List, Optional

import numpy as np

try:
    import tfdepth  # noqa: F401
except ImportError:  # run from a checkout: the package lies beside tools/
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfdepth.io.images import ImageReadError, decode_image, encode_png, exif_orientation, load_image, png_header
from tfdepth.serving.outputs import parse_save, write_outputs

SAVE_CHOICES = ("png16", "color", "npy")


class ServingError(RuntimeError):
    """The server answered with an error or something that is not a depth map."""


def predict_url(base_url: str, model: str, version: Optional[int] = None) -> str:
    base = base_url.rstrip("/")
    if "://" not in base:
        base = "http://" + base
    path = f"/v1/models/{model}" + (f"/versions/{int(version)}" if version is not None else "")
    return base + path + ":predict"


def encoded_for_server(path: str):
    """(bytes to send, RGB uint8 [H, W, 3] as the server will decode them) for ``serving_bytes``.

    The file's own bytes when they are an upright 8-bit JPEG or PNG; a PNG of the upright 8-bit RGB
    picture otherwise.
    """
    with open(path, "rb") as f:
        data = f.read()
    rgb = decode_image(data, path)
    is_jpeg = data[:3] == b"\xff\xd8\xff"
    header = png_header(data, path)
    is_png8 = header is not None and header.bit_depth == 8
    if (is_jpeg or is_png8) and exif_orientation(data) == 1:
        return data, rgb
    return encode_png(rgb), rgb


def build_request(path: str, signature: str) -> dict:
    if signature == "serving_bytes":
        data, _ = encoded_for_server(path)
        return {"signature_name": signature,
                "instances": [{"image_bytes": {"b64": base64.b64encode(data).decode("ascii")}}]}
    if signature == "serving_default":
        rgb = load_image(path)
        return {"signature_name": signature, "instances": [{"images": rgb.tolist()}]}
    raise ValueError(f"--signature must be serving_bytes or serving_default, got {signature!r}")


def parse_response(body: dict, source: str) -> np.ndarray:
    """Depth float32 [H, W] metres from a TF Serving predict answer (row or column format)."""
    if "error" in body:
        raise ServingError(f"{source}: server error: {body['error']}")
    if "predictions" in body:
        first = body["predictions"][0]
        if isinstance(first, dict):  # several outputs: one dict per instance
            first = first["depth"]
    elif "outputs" in body:  # column format
        outputs = body["outputs"]
        first = (outputs["depth"] if isinstance(outputs, dict) else outputs)[0]
    else:
        raise ServingError(f"{source}: answer has neither 'predictions' nor 'outputs': {str(body)[:200]}")
    depth = np.asarray(first, dtype=np.float32)
    if depth.ndim == 3 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2:
        raise ServingError(f"{source}: expected a depth map [H, W, 1], got shape {depth.shape}")
    return depth


def request_depth(url: str, path: str, signature: str = "serving_bytes", timeout: float = 60.0) -> np.ndarray:
    payload = json.dumps(build_request(path, signature)).encode("utf-8")
    request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except ValueError:
            pass
        raise ServingError(f"{path}: HTTP {e.code} from {url}: {detail}") from None
    except urllib.error.URLError as e:
        raise ServingError(f"cannot reach {url}: {e.reason} (is tensorflow_model_server running?)") from None
    return parse_response(body, path)


def save_depth(depth_m: np.ndarray, prefix: str, save: List[str]) -> List[str]:
    """Write the depth as ``prefix`` + the predict command's suffixes; returns the paths written."""
    return list(write_outputs(None, depth_m, prefix, save).values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="+", help="picture files")
    parser.add_argument("--url", default="http://localhost:8501", help="TF Serving REST address (default :8501)")
    parser.add_argument("--model", default="depth", help="model name the server was started with (MODEL_NAME)")
    parser.add_argument("--version", type=int, default=None, help="model version (default: the server's latest)")
    parser.add_argument("--signature", default="serving_bytes", choices=("serving_bytes", "serving_default"))
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--save", default="png16,color", help="png16,color,npy (comma-separated)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--local", metavar="SAVEDMODEL_DIR",
                        help="serve this SavedModel behind TF Serving's REST API on 127.0.0.1 for the run "
                             "(no TF Serving needed; --url is ignored)")
    args = parser.parse_args(argv)

    try:
        save = parse_save(args.save, SAVE_CHOICES)
    except ValueError as e:
        parser.error(str(e))
    os.makedirs(args.output, exist_ok=True)
    server = None
    if args.local:
        from tfdepth.serving.rest import LocalRestServer

        try:
            server = LocalRestServer(args.local, args.model).start()
        except (FileNotFoundError, OSError) as e:
            print(f"error: --local {args.local}: {e}", file=sys.stderr)
            return 2
        args.url = server.url
        print(f"--local: serving {server.directory} as model {args.model!r} (version {server.version}) at "
              f"{server.url} (TF Serving REST API, loopback only)")
    try:
        return _send_all(args, save)
    finally:
        if server is not None:
            server.close()


def _send_all(args, save: List[str]) -> int:
    url = predict_url(args.url, args.model, args.version)
    failures = 0
    for path in args.images:
        start = time.perf_counter()
        try:
            depth = request_depth(url, path, args.signature, args.timeout)
        except (ServingError, ImageReadError, OSError) as e:
            print(f"FAILED {path}: {e}", file=sys.stderr)
            failures += 1
            continue
        prefix = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0])
        written = save_depth(depth, prefix, save)
        print(f"{path}: {depth.shape[1]}x{depth.shape[0]} depth {float(np.min(depth)):.2f}..{float(np.max(depth)):.2f} m "
              f"in {time.perf_counter() - start:.2f} s -> {', '.join(written)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
