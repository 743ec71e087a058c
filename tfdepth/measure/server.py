"""The measuring page's HTTP server: Starlette routes served by uvicorn (HTTP parsing, keep-alive and
early answers are theirs; the page's logic is :mod:`tfdepth.measure.app`).

Routes (all answers of ``/api/*`` are JSON unless said otherwise; errors are ``{"error": message,
"status": code}`` with a 4xx/5xx status, and the server keeps serving)::

    GET  /                          the page (static/index.html), /static/app.js, /static/style.css
    GET  /api/info                  model, camera defaults, upload limit, protocols, colour map
    POST /api/predict               body: the picture file's raw bytes; header X-File-Name
                                    (URL-encoded) names it in messages. -> id, width, height,
                                    URLs below, colour range, depth statistics, model intrinsics
    GET  /api/depth/ID              float32 little-endian [H, W] metres (application/octet-stream)
    GET  /api/image/ID              the picture as the model saw it (upright), PNG
    GET  /api/color/ID/pred|gt[?range=own|shared]   colour-mapped prediction / ground truth, PNG: in its
                                    own colour range, or (default) in the range shared by both
    POST /api/gt?id=ID&scale=S&protocol=nyu|kitti|none[&crop=C][&allow_8bit=1]
                                    body: the ground-truth file (16-bit PNG + scale, or .npy metres)
                                    -> metrics (as /api/metrics) + gt URLs
    GET  /api/gt/ID                 ground truth, float32 little-endian [H, W] metres
    GET  /api/metrics?id=ID&protocol=P[&crop=C]   the evaluate command's metrics for this picture

Uploads are judged by their ``Content-Length`` before a byte of the body is read: missing (or
chunked) gets 411, over the limit 413, malformed or negative 400 (from the HTTP parser, still as
JSON). The refusal is sent at once; the bytes the client still sends are then dropped, never kept
(see :class:`DrainingResponse`). Nothing is written to disk. Uploads (``/api/predict``, ``/api/gt``)
run in a pool of ``workers`` threads, never on the event loop, with at most ``queue`` more
waiting; beyond that the answer is 503 with ``Retry-After`` at once. Bound to a loopback address,
the server only answers requests whose ``Host`` is a loopback name (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Optional, Tuple
from urllib.parse import unquote

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

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
# An upload refused before its body was read (too large, busy, ...) is answered at once; then, so that
# a client that sends its whole body before reading (urllib, Python's http.client) gets that answer
# rather than a reset, the bytes it still sends are read and dropped, at most this many in this time.
# A larger declared body is answered and its connection closed.
DRAIN_LIMIT_BYTES = 512 * 1024 * 1024
DRAIN_TIMEOUT_S = 60
DEFAULT_WORKERS = 2  # uploads processed at once (the model is CPU-bound)
DEFAULT_QUEUE = 8  # uploads waiting for a worker; more get 503 + Retry-After
RETRY_AFTER_S = 2
GRACEFUL_SHUTDOWN_S = 5
_ID = re.compile(r"[0-9a-f]{1,64}")
BODY_READ = "tfdepth.measure.body_read"  # set in the request's scope once its body is being read
JSON_TYPE = "application/json; charset=utf-8"


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


# ---- responses -------------------------------------------------------------------------------------


def json_bytes(payload: dict) -> bytes:
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")


def reply(status: int, body: bytes, content_type: str, extra: Optional[dict] = None) -> Response:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if content_type.startswith("text/html"):
        headers.update({"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer"})
    headers.update(extra or {})
    return Response(body, status_code=status, headers=headers, media_type=content_type)


def json_reply(status: int, payload: dict, extra: Optional[dict] = None) -> Response:
    return reply(status, json_bytes(payload), JSON_TYPE, extra)


def error_reply(status: int, message: str, extra: Optional[dict] = None) -> Response:
    return json_reply(status, {"error": message, "status": status}, extra)


def array_reply(data: bytes, size) -> Response:
    return reply(200, data, "application/octet-stream",
                 {"X-Depth-Height": str(size[0]), "X-Depth-Width": str(size[1]), "X-Depth-Dtype": "float32"})


class DrainingResponse(Response):
    """The whole answer sent at once, then the unread request body dropped as it arrives (never kept;
    bounded by ``limit`` bytes and :data:`DRAIN_TIMEOUT_S`) before the response is closed."""

    def __init__(self, response: Response, limit: int):
        super().__init__(response.body, status_code=response.status_code)
        self.raw_headers = response.raw_headers
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})

        async def drain():
            dropped = 0
            while dropped <= self.limit:
                message = await receive()
                if message["type"] != "http.request":
                    return
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return

        try:
            await asyncio.wait_for(drain(), DRAIN_TIMEOUT_S)
        except asyncio.TimeoutError:
            pass
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class BusyError(RequestError):
    """Every worker and queue place is taken: 503 with ``Retry-After``."""

    def __init__(self, message: str):
        super().__init__(message, 503)


# ---- the upload gate -------------------------------------------------------------------------------


class UploadGate:
    """At most ``workers`` uploads processed at once (in a thread pool, off the event loop) and at most
    ``queue`` more admitted and waiting; the rest are refused at once. Used only on the event loop."""

    def __init__(self, workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if queue < 0:
            raise ValueError(f"queue must be 0 or more, got {queue}")
        self.workers, self.queue = int(workers), int(queue)
        self.admitted = 0
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="tfdepth-measure-worker")

    def enter(self) -> None:
        """Take a place or raise :class:`BusyError` (before the upload's body is read)."""
        if self.admitted >= self.workers + self.queue:
            raise BusyError(f"the server is busy ({self.workers} uploads being processed and {self.queue} waiting); "
                            f"try again in {RETRY_AFTER_S} s")
        self.admitted += 1

    def leave(self) -> None:
        self.admitted -= 1

    async def run(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(function, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# ---- the routes ------------------------------------------------------------------------------------


def upload_length(request: Request, what: str, limit: int) -> Tuple[int, str]:
    """(the declared body length, the uploaded file's name), judged from the headers alone."""
    name = clean_name(request.headers.get("x-file-name"))
    length_text = request.headers.get("content-length")
    if "chunked" in request.headers.get("transfer-encoding", "").lower() or length_text is None:
        raise RequestError(f"{name}: the upload needs a Content-Length header (send the {what} file's bytes "
                           "as the request body)", 411)
    if not length_text.strip().isdigit():  # the HTTP parser already refuses these; never read such a body
        raise RequestError(f"bad Content-Length {length_text!r}: expected the body's size in bytes", 400)
    length = int(length_text)
    if length > limit:
        raise RequestError(f"{name}: {length / 1e6:.1f} MB is over the upload limit of {limit / 1e6:.1f} MB "
                           "(start the server with --max-upload-mb to change it)", 413)
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise RequestError(f"{name}: send the {what} file's raw bytes as the request body, not a multipart "
                           "form (e.g. curl --data-binary @FILE)", 415)
    return length, name


async def read_upload(request: Request, what: str, limit: int) -> Tuple[bytes, str]:
    length, name = upload_length(request, what, limit)
    request.scope[BODY_READ] = True
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > length:  # the parser holds the body to its length; never trust it blindly
            raise RequestError(f"{name}: the body is longer than its Content-Length ({length} bytes)", 400)
        chunks.append(chunk)
    if received != length:
        raise RequestError(f"{name}: upload cut short ({received} of {length} bytes)", 400)
    return b"".join(chunks), name


def build_routes(app: MeasureApp, gate: UploadGate):
    """The Starlette routes over ``app``; every blocking call runs in a thread."""

    def picture_id(request: Request) -> str:
        value = request.path_params["picture_id"]
        if not _ID.fullmatch(value):
            raise RequestError(f"no such page or API: {request.method} {request.url.path}", 404)
        return value

    def query(request: Request) -> dict:
        return dict(request.query_params)

    async def page(request: Request) -> Response:
        return await static_file("index.html")

    async def static(request: Request) -> Response:
        return await static_file(request.path_params["name"])

    async def static_file(name: str) -> Response:
        if name not in STATIC_FILES:
            raise RequestError(f"no such file: /static/{name}", 404)
        return reply(200, await run_in_threadpool((STATIC_DIR / name).read_bytes), STATIC_FILES[name])

    async def favicon(request: Request) -> Response:
        return reply(204, b"", "image/x-icon")

    async def info(request: Request) -> Response:
        return json_reply(200, await run_in_threadpool(app.info))

    async def depth(request: Request) -> Response:
        return array_reply(*await run_in_threadpool(app.depth_bytes, picture_id(request)))

    async def gt_depth(request: Request) -> Response:
        return array_reply(*await run_in_threadpool(app.gt_bytes, picture_id(request)))

    async def image(request: Request) -> Response:
        return reply(200, await run_in_threadpool(app.display_png, picture_id(request)), "image/png")

    async def color(request: Request) -> Response:
        data = await run_in_threadpool(app.color_png, picture_id(request), request.path_params["which"],
                                       query(request).get("range") or "shared")
        return reply(200, data, "image/png")

    async def metrics(request: Request) -> Response:
        q = query(request)
        if not q.get("id"):
            raise RequestError("missing id")
        result = await run_in_threadpool(app.metrics, q["id"], q.get("protocol", "nyu"), q.get("crop") or None)
        return json_reply(200, result)

    async def predict(request: Request) -> Response:
        upload_length(request, "picture", app.max_upload_bytes)  # refuse before taking a place
        gate.enter()
        try:
            data, name = await read_upload(request, "picture", app.max_upload_bytes)
            return json_reply(200, await gate.run(app.predict, data, name))
        finally:
            gate.leave()

    async def ground_truth(request: Request) -> Response:
        q = query(request)
        upload_length(request, "ground-truth depth", app.max_upload_bytes)
        gate.enter()
        try:
            data, name = await read_upload(request, "ground-truth depth", app.max_upload_bytes)
            if not q.get("id"):
                raise RequestError("open a picture first: ground truth belongs to a picture (missing id)")
            result = await gate.run(app.set_ground_truth, q["id"], data, name, q.get("scale"),
                                    q.get("protocol", "nyu"), q.get("crop") or None,
                                    q.get("allow_8bit", "") in ("1", "true", "on"))
            return json_reply(200, result)
        finally:
            gate.leave()

    return [
        Route("/", page, methods=["GET"]),
        Route("/index.html", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/api/info", info, methods=["GET"]),
        Route("/api/depth/{picture_id}", depth, methods=["GET"]),
        Route("/api/gt/{picture_id}", gt_depth, methods=["GET"]),
        Route("/api/image/{picture_id}", image, methods=["GET"]),
        Route("/api/color/{picture_id}/{which:str}", color, methods=["GET"]),
        Route("/api/metrics", metrics, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/gt", ground_truth, methods=["POST"]),
    ]


def build_asgi(app: MeasureApp, gate: UploadGate, loopback_only: bool = True, verbose: bool = False):
    """The ASGI application: routes, JSON errors, the loopback ``Host`` check and the request log."""

    async def request_error(request: Request, exc: RequestError) -> Response:
        extra = {"Retry-After": str(RETRY_AFTER_S)} if isinstance(exc, BusyError) else {}
        if request.method != "POST" or request.scope.get(BODY_READ):
            return error_reply(exc.status, str(exc), extra)
        # Refused before its body was read: answer now, then drop what is still sent (or close).
        declared = request.headers.get("content-length", "")
        chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
        if not chunked and not (declared.isdigit() and int(declared) > 0):
            return error_reply(exc.status, str(exc), extra)
        if not chunked and int(declared) > DRAIN_LIMIT_BYTES:
            return error_reply(exc.status, str(exc), {**extra, "Connection": "close"})
        return DrainingResponse(error_reply(exc.status, str(exc), extra),
                                DRAIN_LIMIT_BYTES if chunked else int(declared))

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return error_reply(404, f"no such page or API: {request.method} {request.url.path}")
        return error_reply(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    async def internal_error(request: Request, exc: Exception) -> Response:
        # Starlette re-raises after this answer and uvicorn logs the traceback; the server keeps serving.
        return error_reply(500, f"internal error: {type(exc).__name__}: {exc}")

    async def client_gone(request: Request, exc: ClientDisconnect) -> Response:
        return error_reply(400, "the client went away before its upload arrived")

    routes = Starlette(routes=build_routes(app, gate), exception_handlers={
        RequestError: request_error, HTTPException: http_error, ClientDisconnect: client_gone,
        Exception: internal_error})
    return Guard(routes, loopback_only, verbose)


class Guard:
    """ASGI wrapper: refuses a non-loopback ``Host`` (when bound to loopback) and logs each request."""

    def __init__(self, app, loopback_only: bool, verbose: bool):
        self.app, self.loopback_only, self.verbose = app, loopback_only, verbose

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [0]

        async def logged_send(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        if self.loopback_only and not is_loopback(host_name(Headers(scope=scope).get("host"))):
            response = error_reply(403, "this server answers only requests addressed to a loopback name "
                                        "(http://127.0.0.1 or http://localhost)", {"Connection": "close"})
            await response(scope, receive, logged_send)
        else:
            await self.app(scope, receive, logged_send)
        if self.verbose:
            client = (scope.get("client") or ("-",))[0]
            sys.stderr.write(f"[measure] {client} \"{scope['method']} {scope['path']}\" {status[0]}\n")


class JsonErrorProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, whose answer to a request it cannot parse (``Content-Length: -1``,
    a broken request line) is the page's JSON error instead of plain text; the body is never read."""

    def send_400_response(self, msg: str) -> None:
        body = json_bytes({"error": "malformed HTTP request (e.g. a Content-Length that is not the body's size "
                                    "in bytes); nothing of its body was read", "status": 400})
        headers = [(b"content-type", JSON_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


# ---- the server ------------------------------------------------------------------------------------


class MeasureServer:
    """The :class:`MeasureApp` served by uvicorn on a socket bound here (so a busy port fails at once
    and port 0 is known before serving). ``serve_forever()`` blocks; ``shutdown()`` (from another
    thread) stops it; ``server_close()`` frees the socket and the worker threads."""

    def __init__(self, app: MeasureApp, host: str = "127.0.0.1", port: int = 8080, verbose: bool = True,
                 workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE):
        self.app = app
        self.verbose = verbose
        self.loopback_only = is_loopback(host)
        self.gate = UploadGate(workers, queue)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(2048)
        except OSError:
            self.socket.close()
            self.gate.close()
            raise
        self.server_address = self.socket.getsockname()
        config = uvicorn.Config(build_asgi(app, self.gate, self.loopback_only, verbose), http=JsonErrorProtocol,
                                ws="none", lifespan="off", loop="asyncio", log_config=None, access_log=False,
                                server_header=False, headers=[("Server", "tfdepth-measure")],
                                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
        self._uvicorn = uvicorn.Server(config)
        self._stopped = threading.Event()
        self._stopped.set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    @property
    def started(self) -> bool:
        return self._uvicorn.started

    def serve_forever(self) -> None:
        self._stopped.clear()
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self, timeout: float = GRACEFUL_SHUTDOWN_S + 10) -> None:
        """Ask ``serve_forever`` to return and wait (at most ``timeout`` seconds) until it has."""
        self._uvicorn.should_exit = True
        self._stopped.wait(timeout)

    def server_close(self) -> None:
        self.socket.close()
        self.gate.close()


def start_in_thread(app: MeasureApp, host: str = "127.0.0.1", port: int = 0, verbose: bool = False,
                    workers: int = DEFAULT_WORKERS, queue: int = DEFAULT_QUEUE,
                    start_timeout: float = 30.0) -> Tuple[MeasureServer, threading.Thread]:
    """Serve in a daemon thread (tests, notebooks), returning once it answers; stop with
    ``server.shutdown(); server.server_close()``."""
    server = MeasureServer(app, host, port, verbose, workers, queue)
    thread = threading.Thread(target=server.serve_forever, name="tfdepth-measure", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.shutdown(timeout=1)
            server.server_close()
            raise RuntimeError(f"the measure server on {server.url} did not start")
        time.sleep(0.01)
    return server, thread


__all__ = ["MeasureServer", "UploadGate", "build_asgi", "start_in_thread", "is_loopback", "host_name", "clean_name"]
