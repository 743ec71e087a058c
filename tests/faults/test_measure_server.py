"""Issue 21, case 5: the measure server refuses bad upload lengths before reading, and bounds its work.

Each test drives a real server (``tfdepth.measure.server.start_in_thread``) on a free loopback port
over the tiny deployment workdir (tests/helpers.py):

* ``Content-Length: -1`` and lengths over the upload limit get a 4xx JSON error while the body is
  still unsent: the server answered without reading it (the old ``http.server`` code read a -1 body
  until the client closed, and read and discarded an over-limit one up to 512 MB before answering);
* 50 concurrent predictions all get an HTTP answer, 200 or 503 with ``Retry-After`` (the old server
  reset 21-34 of the 50 connections);
* beyond the workers and the waiting queue, uploads get 503 at once while the admitted ones finish.

Every network wait is bounded (socket timeouts, joins with a timeout); nothing asserts a duration.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

import helpers

MAX_UPLOAD_BYTES = 2_000_000
WAIT_S = 20  # the longest any one answer is waited for


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from tfdepth.serving.predictor import DepthPredictor

    return DepthPredictor.load(str(helpers.workdir(tmp_path_factory.getbasetemp())))


def make_app(predictor):
    from tfdepth.measure.app import MeasureApp

    return MeasureApp(predictor, "tiny", max_upload_bytes=MAX_UPLOAD_BYTES, max_pictures=2, max_pixels=2_000_000)


@pytest.fixture(scope="module")
def server(predictor):
    from tfdepth.measure.server import start_in_thread

    srv, thread = start_in_thread(make_app(predictor))
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=WAIT_S)


@pytest.fixture(scope="module")
def picture():
    yy, xx = np.mgrid[0:60, 0:80]
    rgb = np.stack([xx * 3, yy * 4, (xx + yy) % 256], axis=-1).astype(np.uint8)
    return cv2.imencode(".png", rgb)[1].tobytes()


def address(srv):
    return srv.server_address[0], srv.server_address[1]


def raw_answer(srv, head: bytes, body: bytes = b""):
    """Send ``head`` (+ a part of a body) and keep the connection open for writing, so a server that
    waits for (the rest of) the body never answers. Returns (status, headers, body) or fails."""
    with socket.create_connection(address(srv), timeout=WAIT_S) as sock:
        sock.sendall(head + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            head_part, _, rest = data.partition(b"\r\n\r\n")
            lines = head_part.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
            length = int(headers.get("content-length", "0"))
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        except socket.timeout:
            pytest.fail(f"no answer within {WAIT_S} s while the body was unsent: the server waits to read it")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    return int(lines[0].split()[1]), headers, rest


def post_head(*header_lines: str) -> bytes:
    lines = ["POST /api/predict HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/octet-stream",
             "X-File-Name: big.png", *header_lines]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get_info(srv):
    with urllib.request.urlopen(srv.url + "api/info", timeout=WAIT_S) as response:
        return response.status, json.loads(response.read())


# --------------------------------------------------------------------------------------------------
# (a) lengths judged before the body is read
# --------------------------------------------------------------------------------------------------


def test_negative_content_length_is_refused_without_reading(server):
    """Before: the old server read a ``-1`` body until the client closed (300 MB went into memory);
    here the client keeps the connection open and gets no answer."""
    status, headers, body = raw_answer(server, post_head("Content-Length: -1"), b"\0" * 4096)
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert "Content-Length" in json.loads(body)["error"]
    assert get_info(server)[0] == 200  # still serving


def test_huge_content_length_is_refused_before_reading(server):
    """Before: an over-limit length up to 512 MB was read (and dropped) before the 413 was sent, so a
    client that declares 100 MB and has sent nothing waits for an answer that never comes."""
    for declared in (100_000_000, MAX_UPLOAD_BYTES + 1):
        status, headers, body = raw_answer(server, post_head(f"Content-Length: {declared}"), b"\0" * 1024)
        error = json.loads(body)["error"]
        assert status == 413 and "over the upload limit" in error and "big.png" in error, (declared, error)
    # Longer than any real upload (more digits than a 64-bit length): refused by the HTTP parser.
    status, headers, body = raw_answer(server, post_head("Content-Length: " + "9" * 30))
    assert 400 <= status < 500 and "error" in json.loads(body)
    # No length at all (and chunked): 411, as the page expects.
    for headers in ((), ("Transfer-Encoding: chunked",)):
        status, _, body = raw_answer(server, post_head(*headers))
        assert status == 411 and "Content-Length" in json.loads(body)["error"], headers
    assert get_info(server)[0] == 200


# --------------------------------------------------------------------------------------------------
# (b) bounded concurrency: an HTTP answer for everyone, never a reset
# --------------------------------------------------------------------------------------------------


def concurrent_predictions(srv, data: bytes, count: int):
    """``count`` predictions started together, each in a thread; a list of (status, headers, body)
    or the exception a request ended with."""
    results = [None] * count
    barrier = threading.Barrier(count)

    def one(i):
        request = urllib.request.Request(srv.url + "api/predict", data=data,
                                         headers={"Content-Type": "application/octet-stream",
                                                  "X-File-Name": f"p{i}.png"})
        try:
            barrier.wait(WAIT_S)
            with urllib.request.urlopen(request, timeout=120) as response:
                results[i] = (response.status, response.headers, response.read())
        except urllib.error.HTTPError as e:
            results[i] = (e.code, e.headers, e.read())
        except Exception as e:  # noqa: BLE001 - a reset or a timeout is what the test looks for
            results[i] = e

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    return results


def assert_answered(results):
    failures = [r for r in results if not isinstance(r, tuple)]
    assert not failures, f"{len(failures)} of {len(results)} requests got no HTTP answer: {failures[:3]}"
    for status, headers, body in results:
        assert status in (200, 503), (status, body[:200])
        payload = json.loads(body)
        if status == 503:
            assert int(headers["Retry-After"]) >= 1 and "busy" in payload["error"]
        else:
            assert payload["width"] == 80 and payload["height"] == 60


def test_fifty_concurrent_predictions_all_get_an_answer(server, picture):
    """Before: 21-34 of 50 concurrent predictions got a TCP reset from the ``http.server`` server."""
    results = concurrent_predictions(server, picture, 50)
    assert_answered(results)
    assert any(r[0] == 200 for r in results)
    assert get_info(server)[0] == 200


class HeldPredictor:
    """The tiny model, whose predictions wait until the test releases them."""

    def __init__(self, predictor):
        self._predictor = predictor
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def predict(self, rgb, *args, **kwargs):
        self.entered.release()
        assert self.release.wait(60), "the test never released the prediction"
        return self._predictor.predict(rgb, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._predictor, name)


def test_beyond_workers_and_queue_uploads_get_503_at_once(predictor, picture):
    """One worker and one waiting place: while the first prediction is held, a third and fourth upload
    are refused with 503 + Retry-After without waiting; the held ones then finish with 200."""
    from tfdepth.measure.server import start_in_thread

    held = HeldPredictor(predictor)
    srv, thread = start_in_thread(make_app(held), workers=1, queue=1)
    try:
        admitted = []
        first = threading.Thread(target=lambda: admitted.append(concurrent_predictions(srv, picture, 1)[0]))
        first.start()
        assert held.entered.acquire(timeout=WAIT_S), "the first prediction never started"
        second = threading.Thread(target=lambda: admitted.append(concurrent_predictions(srv, picture, 1)[0]))
        second.start()
        # The second is admitted and waits for the worker: wait (bounded) until the gate counts it.
        for _ in range(2000):
            if srv.gate.admitted == 2:
                break
            time.sleep(0.01)
        assert srv.gate.admitted == 2
        refused = concurrent_predictions(srv, picture, 2)
        assert_answered(refused)
        assert [r[0] for r in refused] == [503, 503]
        assert get_info(srv)[0] == 200  # the page still loads while the model is busy
        held.release.set()
        first.join(timeout=120)
        second.join(timeout=120)
        assert_answered(admitted)
        assert [r[0] for r in admitted] == [200, 200]
    finally:
        held.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=WAIT_S)
