"""The measuring page's HTTP server: the standard library's ``ThreadingHTTPServer``, no framework.

Routes (all answers of ``/api/*`` are JSON unless said otherwise; errors are ``{"error": message}``
with a 4xx status, and the server keeps serving)::

    GET  /                          the page (static/index.html), /static/app.js, /static/style.css
    GET  /api/info                  model, camera defaults, upload limit, protocols, colour map
    POST /api/predict               body: the picture file's raw bytes; header X-File-Name
                                    (URL-encoded) names it in messages. -> id, width, height,
                                    URLs below, colour range, depth statistics, model intrinsics
    GET  /api/depth/ID              float32 little-endian [H, W] metres (application/octet-stream)
    GET  /api/image/ID              the picture as the model saw it (upright), PNG
    GET  /api/color/ID/pred|gt      colour-mapped prediction / ground truth (the prediction's range), PNG
    POST /api/gt?id=ID&scale=S&protocol=nyu|kitti|none[&crop=C][&allow_8bit=1]
                                    body: the ground-truth file (16-bit PNG + scale, or .npy metres)
                                    -> metrics (as /api/metrics) + gt URLs
    GET  /api/gt/ID                 ground truth, float32 little-endian [H, W] metres
    GET  /api/metrics?id=ID&protocol=P[&crop=C]   the evaluate command's metrics for this picture

Uploads larger than the limit get 413 and a message; nothing is written to disk. Bound to a loopback
address, the server only answers requests whose ``Host`` is a loopback name (no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from tfdepth.measure.app import MeasureApp, RequestError

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
DRAIN_LIMIT_BYTES = 512 * 1024 * 1024  # an over-limit upload up to this size is read and discarded
_ID = r"([0-9a-f]{1,64})"


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: Optional[str]) -> str:
    """The name part of a ``Host`` header (``[::1]:8080`` -> ``::1``, ``localhost:80`` -> ``localhost``)."""
    header = (header or "").strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def clean_name(raw: Optional[str]) -> str:
    """A file name for messages: URL-decoded, without folders, printable, at most 120 characters."""
    name = unquote(raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable()).strip()
    if len(name) > 120:
        name = name[:60] + "…" + name[-59:]
    return name or "upload"


class MeasureHandler(BaseHTTPRequestHandler):
    """One request; ``self.server.app`` is the :class:`MeasureApp`."""

    server_version = "tfdepth-measure"
    protocol_version = "HTTP/1.1"

    # ---- plumbing --------------------------------------------------------------------------------

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        if getattr(self.server, "verbose", True):
            sys.stderr.write(f"[measure] {self.address_string()} {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str, extra: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.send_header("Referrer-Policy", "no-referrer")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _query(self) -> dict:
        return {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}

    def _read_body(self, what: str) -> Tuple[bytes, str]:
        """(the request body, the uploaded file's name); 411/413 as :class:`RequestError`."""
        name = clean_name(self.headers.get("X-File-Name"))
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length_text is None:
            self.close_connection = True
            raise RequestError(f"{name}: the upload needs a Content-Length header (send the {what} file's bytes "
                               "as the request body)", 411)
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise RequestError(f"bad Content-Length {length_text!r}", 400) from None
        limit = self.server.app.max_upload_bytes
        if length > limit:
            self._discard(length)
            raise RequestError(f"{name}: {length / 1e6:.1f} MB is over the upload limit of "
                               f"{limit / 1e6:.1f} MB (start the server with --max-upload-mb to change it)", 413)
        data = self.rfile.read(length)
        self._body_read = True
        if len(data) != length:
            self.close_connection = True
            raise RequestError(f"{name}: upload cut short ({len(data)} of {length} bytes)", 400)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("multipart/"):
            raise RequestError(f"{name}: send the {what} file's raw bytes as the request body, not a multipart "
                               "form (e.g. curl --data-binary @FILE)", 415)
        return data, name

    def _discard(self, length: int) -> None:
        """Read and drop an over-limit body, so the client sees our answer rather than a reset."""
        if length > DRAIN_LIMIT_BYTES:
            self.close_connection = True
            return
        remaining = length
        self._body_read = True
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                self.close_connection = True
                break
            remaining -= len(chunk)

    def _check_host(self) -> bool:
        if not self.server.loopback_only:
            return True
        if is_loopback(host_name(self.headers.get("Host"))):
            return True
        self.close_connection = True
        self._error(HTTPStatus.FORBIDDEN, "this server answers only requests addressed to a loopback name "
                                          "(http://127.0.0.1 or http://localhost)")
        return False

    def _dispatch(self, routes) -> None:
        self._body_read = False
        if not self._check_host():
            return
        path = urlsplit(self.path).path
        try:
            for pattern, handler in routes:
                match = re.fullmatch(pattern, path)
                if match:
                    handler(*match.groups())
                    return
            raise RequestError(f"no such page or API: {self.command} {path}", 404)
        except RequestError as e:
            if self.command == "POST" and not self._body_read:
                self.close_connection = True  # an unread body must not be taken for the next request
            self._error(e.status, str(e))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # noqa: BLE001 - the server keeps serving; the page shows the message
            traceback.print_exc(file=sys.stderr)
            if self.command == "POST" and not self._body_read:
                self.close_connection = True
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(e).__name__}: {e}")

    # ---- routes ----------------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 - http.server's naming
        self._dispatch([
            (r"/|/index\.html", lambda: self._static("index.html")),
            (r"/static/([A-Za-z0-9_.-]+)", self._static),
            (r"/favicon\.ico", lambda: self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")),
            (r"/api/info", lambda: self._json(HTTPStatus.OK, self.server.app.info())),
            (rf"/api/depth/{_ID}", lambda i: self._array(*self.server.app.depth_bytes(i))),
            (rf"/api/gt/{_ID}", lambda i: self._array(*self.server.app.gt_bytes(i))),
            (rf"/api/image/{_ID}", lambda i: self._send(HTTPStatus.OK, self.server.app.display_png(i), "image/png")),
            (rf"/api/color/{_ID}/(pred|gt)",
             lambda i, which: self._send(HTTPStatus.OK, self.server.app.color_png(i, which), "image/png")),
            (r"/api/metrics", self._metrics),
        ])

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def do_POST(self):  # noqa: N802
        self._dispatch([
            (r"/api/predict", self._predict),
            (r"/api/gt", self._ground_truth),
        ])

    def _static(self, name: str) -> None:
        if name not in STATIC_FILES:
            raise RequestError(f"no such file: /static/{name}", 404)
        self._send(HTTPStatus.OK, (STATIC_DIR / name).read_bytes(), STATIC_FILES[name])

    def _array(self, data: bytes, size) -> None:
        self._send(HTTPStatus.OK, data, "application/octet-stream",
                   {"X-Depth-Height": str(size[0]), "X-Depth-Width": str(size[1]), "X-Depth-Dtype": "float32"})

    def _predict(self) -> None:
        data, name = self._read_body("picture")
        self._json(HTTPStatus.OK, self.server.app.predict(data, name))

    def _ground_truth(self) -> None:
        query = self._query()
        data, name = self._read_body("ground-truth depth")
        if not query.get("id"):
            raise RequestError("open a picture first: ground truth belongs to a picture (missing id)")
        result = self.server.app.set_ground_truth(
            query["id"], data, name, query.get("scale"), query.get("protocol", "nyu"), query.get("crop") or None,
            query.get("allow_8bit", "") in ("1", "true", "on"))
        self._json(HTTPStatus.OK, result)

    def _metrics(self) -> None:
        query = self._query()
        if not query.get("id"):
            raise RequestError("missing id")
        self._json(HTTPStatus.OK, self.server.app.metrics(query["id"], query.get("protocol", "nyu"),
                                                          query.get("crop") or None))


class MeasureServer(ThreadingHTTPServer):
    """A threading HTTP server holding the :class:`MeasureApp`."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: MeasureApp, host: str = "127.0.0.1", port: int = 8080, verbose: bool = True):
        self.app = app
        self.verbose = verbose
        self.loopback_only = is_loopback(host)
        if ":" in host:  # an IPv6 address
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host, port), MeasureHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"


def start_in_thread(app: MeasureApp, host: str = "127.0.0.1", port: int = 0, verbose: bool = False
                    ) -> Tuple[MeasureServer, threading.Thread]:
    """Serve in a daemon thread (tests, notebooks); stop with ``server.shutdown(); server.server_close()``."""
    server = MeasureServer(app, host, port, verbose)
    thread = threading.Thread(target=server.serve_forever, name="tfdepth-measure", daemon=True)
    thread.start()
    return server, thread


__all__ = ["MeasureHandler", "MeasureServer", "start_in_thread", "is_loopback", "host_name", "clean_name"]
