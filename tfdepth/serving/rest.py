"""TF Serving's REST API for one SavedModel on loopback, for testing clients without TF Serving.

:class:`LocalRestServer` loads a SavedModel (``DIR/N`` or a TF Serving base ``DIR`` whose newest
numbered version is served, :func:`tfdepth.serving.metadata.resolve_saved_model_dir`) and answers, on
``127.0.0.1`` (a free port by default), the requests of the TF Serving REST API that a client of a
tfdepth model sends (https://www.tensorflow.org/tfx/serving/api_rest):

* ``GET /v1/models/NAME[/versions/N]``: the model status (``AVAILABLE``);
* ``GET /v1/models/NAME[/versions/N]/metadata``: the signatures' input and output names, dtypes and shapes;
* ``POST /v1/models/NAME[/versions/N]:predict`` with ``{"signature_name": ..., "instances": [...]}`` (row
  format: one value or ``{input: value}`` per instance, ``{"b64": "..."}`` for bytes) answered
  ``{"predictions": [...]}``, or with ``{"inputs": ...}`` (column format) answered ``{"outputs": ...}``.

Errors are answered as TF Serving does: HTTP 400 / 404 with ``{"error": "message"}``. It runs the real
SavedModel's signature functions, so an answer has TF Serving's numbers; it is not TF Serving (one
model, one version, no batching, no gRPC) and is meant for tests and trying a client out.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Tuple

import numpy as np

from tfdepth.serving.metadata import resolve_saved_model_dir

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<rest>/metadata|:predict)?$")


class RestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _decode_value(value):
    """JSON instance value -> nested lists with ``{"b64": ...}`` replaced by bytes."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def _encode_value(array: np.ndarray):
    if array.dtype.kind in ("S", "O"):
        return [{"b64": base64.b64encode(v).decode("ascii")} for v in array.ravel()]
    return array.tolist()


class LocalRestServer:
    """Serves ``saved_model_path`` as model ``model_name`` on ``host:port`` (0: a free port) in a thread.

    Use as a context manager, or :meth:`start` / :meth:`close`; :attr:`url` is ``http://host:port``."""

    def __init__(self, saved_model_path: str, model_name: str = "depth", host: str = "127.0.0.1", port: int = 0):
        import tensorflow as tf

        directory = resolve_saved_model_dir(saved_model_path)
        if directory is None:
            raise FileNotFoundError(f"{saved_model_path}: no SavedModel (saved_model.pb, or numbered version "
                                    "folders holding one)")
        self.directory = directory
        leaf = os.path.basename(os.path.normpath(directory))
        self.version = int(leaf) if leaf.isdigit() else 1  # TF Serving numbers versions by folder name
        self.model_name = model_name
        self.loaded = tf.saved_model.load(directory)
        self.signatures = dict(self.loaded.signatures)
        self._lock = threading.Lock()
        handler = self._handler_class()
        self.httpd = ThreadingHTTPServer((host, int(port)), handler)
        self.httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalRestServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="tfdepth-rest", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> "LocalRestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------
    def _check_model(self, name: str, version: Optional[str]) -> None:
        if name != self.model_name:
            raise RestError(404, f"Servable not found for request: Latest({name})")
        if version is not None and int(version) != self.version:
            raise RestError(404, f"Servable not found for request: Specific({name}, {version})")

    def status(self) -> dict:
        return {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self) -> dict:
        defs = {}
        for key, fn in self.signatures.items():
            inputs = fn.structured_input_signature[1]
            outputs = fn.structured_outputs
            describe = lambda spec: {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape]}
            defs[key] = {"inputs": {k: describe(v) for k, v in inputs.items()},
                         "outputs": {k: describe(v) for k, v in outputs.items()}}
        return {"model_spec": {"name": self.model_name, "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": defs}}}

    def predict(self, body: dict) -> dict:
        """A ``:predict`` request body -> the answer body (RestError for a request TF Serving refuses)."""
        import tensorflow as tf

        name = body.get("signature_name", "serving_default")
        if name not in self.signatures:
            raise RestError(400, f"Serving signature key \"{name}\" not found.")
        fn = self.signatures[name]
        specs = fn.structured_input_signature[1]
        if "instances" in body:
            instances = body["instances"]
            if not isinstance(instances, list) or not instances:
                raise RestError(400, "\"instances\" must be a non-empty list")
            columns: Dict[str, list] = {k: [] for k in specs}
            for instance in instances:
                if isinstance(instance, dict) and set(instance) <= set(specs) and instance:
                    for k, v in instance.items():
                        columns[k].append(_decode_value(v))
                elif len(specs) == 1:
                    columns[next(iter(specs))].append(_decode_value(instance))
                else:
                    raise RestError(400, f"each instance must be an object with the inputs {sorted(specs)}")
            row = True
        elif "inputs" in body:
            inputs = body["inputs"]
            columns = {k: _decode_value(v) for k, v in inputs.items()} if isinstance(inputs, dict) else \
                {next(iter(specs)): _decode_value(inputs)}
            row = False
        else:
            raise RestError(400, "Missing 'inputs' or 'instances' key")
        missing = sorted(set(specs) - {k for k, v in columns.items() if len(v)})
        if missing:
            raise RestError(400, f"missing input(s) {missing} of signature {name}")
        try:
            tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in columns.items()}
            with self._lock:
                outputs = fn(**tensors)
        except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
            raise RestError(400, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None
        arrays = {k: v.numpy() for k, v in outputs.items()}
        if not row:
            return {"outputs": {k: _encode_value(v) for k, v in arrays.items()} if len(arrays) > 1
                    else _encode_value(next(iter(arrays.values())))}
        n = len(next(iter(arrays.values())))
        if len(arrays) == 1:
            return {"predictions": _encode_value(next(iter(arrays.values())))}
        return {"predictions": [{k: _encode_value(v[i:i + 1])[0] for k, v in arrays.items()} for i in range(n)]}

    def answer(self, method: str, path: str, body: bytes) -> Tuple[int, dict]:
        """(HTTP status, JSON body) of one request."""
        m = _PATH.match(path.split("?", 1)[0])
        try:
            if m is None:
                raise RestError(404, f"Malformed request: {method} {path}")
            self._check_model(m["name"], m["version"])
            rest = m["rest"]
            if method == "GET" and rest is None:
                return 200, self.status()
            if method == "GET" and rest == "/metadata":
                return 200, self.metadata()
            if method == "POST" and rest == ":predict":
                try:
                    request = json.loads(body.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise RestError(400, f"JSON Parse error: {e}") from None
                if not isinstance(request, dict):
                    raise RestError(400, "the request body must be a JSON object")
                return 200, self.predict(request)
            raise RestError(404, f"Malformed request: {method} {path}")
        except RestError as e:
            return e.status, {"error": str(e)}

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 - http.server's naming
                self._reply(*server.answer("GET", self.path, b""))

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self._reply(*server.answer("POST", self.path, self.rfile.read(length)))

            def log_message(self, format, *args):  # quiet: the client prints what matters
                pass

        return Handler


__all__ = ["LocalRestServer", "RestError"]
