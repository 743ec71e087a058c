"""End-to-end: the measuring page in headless Chromium (Selenium), against ``python -m tfdepth.measure``.

Starts the real command in a subprocess on a free loopback port, opens a picture through the page's
file input, hovers and clicks, and reads the numbers back from the page: the depth at the hovered
pixel equals ``python -m tfdepth.predict``'s ``.npy`` there, the distance between two clicked points
equals the pinhole formula with the intrinsics the page states, and the ground-truth summary equals
the evaluate protocols' metrics of the same arrays. Needs Debian's ``chromium`` and
``chromium-driver`` (CI installs them); skipped, saying so, where they are absent.
"""

from __future__ import annotations

import math
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

import helpers as deploy_support
from helpers import REPO_ROOT
from test_measure import predict_command_outputs, reference_depth, reference_inputs, sample_files

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000")
SERVER_START_TIMEOUT_S = 180
WAIT_S = 30


def find_browser():
    """(chromium binary, chromedriver) or a skip reason."""
    chromium = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and os.path.exists(p)), None)
    driver = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and os.path.exists(p)), None)
    if not chromium or not driver:
        return None, None, ("headless Chromium end-to-end test skipped: chromium and/or chromedriver not installed "
                            "(apt-get install -y chromium chromium-driver; CI installs them)")
    return chromium, driver, None


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path, reason = find_browser()
    if reason:
        pytest.skip(reason)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("headless Chromium end-to-end test skipped: selenium is not installed (pip install -e .[dev])")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="measure-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class MeasureCommand:
    """``python -m tfdepth.measure --model WORKDIR --port 0`` started in a subprocess; :meth:`url`
    waits for the address it prints (so the model loads while other fixtures are built)."""

    def __init__(self, workdir: Path):
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfdepth.measure", "--model", str(workdir), "--port", "0",
             "--max-upload-mb", "1", "--quiet"],
            cwd=str(REPO_ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.seen = []
        self._url = None
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output

    def url(self) -> str:
        while self._url is None:
            try:
                line = self.lines.get(timeout=SERVER_START_TIMEOUT_S)
            except queue.Empty:
                raise AssertionError("tfdepth.measure did not start:\n" + "".join(self.seen)) from None
            if line == "":
                raise AssertionError("tfdepth.measure exited:\n" + "".join(self.seen))
            self.seen.append(line)
            match = re.search(r"measuring page: (http://127\.0\.0\.1:\d+/)", line)
            if match:
                self._url = match.group(1)
        return self._url

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def measure_command(tmp_path_factory):
    command = MeasureCommand(deploy_support.workdir(tmp_path_factory.getbasetemp()))
    yield command
    command.stop()


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """The picture the page opens (the NYU sample when present, else a synthetic pair), its ground truth,
    and the predict command's depth and intrinsics for it."""
    from tfdepth.evaluation.files import load_depth_file

    base = tmp_path_factory.getbasetemp()
    rgb_path, gt_path, gt_m, inputs = reference_inputs(base)
    scale = 1000.0
    if "nyu" in sample_files():
        rgb_path, gt_path, scale = sample_files()["nyu"]
        gt_m = load_depth_file(str(gt_path), scale, "ground truth")
    out_dir, listing = predict_command_outputs(base, inputs)
    record = next(r for r in listing["items"] if r["input"] == str(rgb_path))
    return {"rgb": rgb_path, "gt": gt_path, "scale": scale, "gt_m": gt_m,
            "depth": reference_depth(out_dir, rgb_path), "intrinsics": record["intrinsics"]}


# --------------------------------------------------------------------------------------------------
# Page helpers
# --------------------------------------------------------------------------------------------------


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_for(driver, condition, what):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_S, poll_frequency=0.05).until(lambda d: condition())
    except Exception:
        message = by_id(driver, "message").text
        raise AssertionError(f"timed out waiting for {what}; page message: {message!r}; "
                             f"status: {by_id(driver, 'status').text!r}") from None


def page_message(driver):
    box = by_id(driver, "message")
    return box.text if box.is_displayed() else ""


def open_file(driver, input_id, path):
    by_id(driver, input_id).send_keys(str(path))


def open_picture(driver, path):
    old = driver.execute_script("document.getElementById('message').hidden = true; "
                                "return document.body.dataset.pictureId || ''")
    open_file(driver, "image-input", path)
    wait_for(driver, lambda: driver.execute_script("return document.body.dataset.pictureId || ''") not in ("", old)
             or page_message(driver), f"the prediction of {path.name}")
    assert page_message(driver) == "", page_message(driver)


def expect_error(driver, input_id, path, text):
    driver.execute_script("document.getElementById('message').hidden = true;")
    open_file(driver, input_id, path)
    wait_for(driver, lambda: text in page_message(driver), f"the message {text!r} for {path.name}")


def pointer_to(driver, element, fx, fy, click=False):
    """Move the pointer to about the fraction (fx, fy) of ``element`` (0..1 from its top-left corner);
    returns the picture pixel (u, v) under the pointer, computed here from where the browser reports
    the pointer and where the element is (independently of the page's own code)."""
    from selenium.webdriver.common.action_chains import ActionChains

    rect = element.rect
    dx = int(round((fx - 0.5) * rect["width"]))
    dy = int(round((fy - 0.5) * rect["height"]))
    chain = ActionChains(driver).move_to_element_with_offset(element, dx, dy)
    if click:
        chain = chain.click()
    chain.perform()
    x, y, left, top, w, h = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect(); const p = window.__pointer;"
        "return [p[0], p[1], r.left, r.top, r.width, r.height];", element)
    width, height = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight];", element)
    return int(math.floor((x - left) / w * width)), int(math.floor((y - top) / h * height))


def track_pointer(driver):
    driver.execute_script("window.__pointer = [NaN, NaN]; document.addEventListener('mousemove', "
                          "(e) => { window.__pointer = [e.clientX, e.clientY]; }, true);")


def hovered_pixel(driver):
    pixel = by_id(driver, "hover-pixel")
    return int(pixel.get_attribute("data-u")), int(pixel.get_attribute("data-v"))


def number(element, attribute="data-value"):
    value = element.get_attribute(attribute)
    assert value is not None, f"#{element.get_attribute('id')} has no {attribute}: {element.text!r}"
    return float(value)


def shown_metres(element):
    match = re.search(r"(-?\d+\.\d+) m", element.text)
    assert match, element.text
    return float(match.group(1))


def distance_formula(depth, a, b, fx, fy, cx, cy):
    def point(u, v):
        z = float(depth[v, u])
        return np.array([(u - cx) * z / fx, (v - cy) * z / fy, z])

    return float(np.linalg.norm(point(*a) - point(*b)))


# --------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------


def test_page_end_to_end(browser, measure_command, picture, tmp_path):
    from selenium.webdriver.support.ui import Select

    from tfdepth.geometry import Intrinsics
    from tfdepth.metrics import MetricAccumulator, get_protocol, image_metrics

    driver = browser
    driver.get(measure_command.url())
    wait_for(driver, lambda: by_id(driver, "model-info").text.startswith("Model:"), "the model information")
    depth, gt_m = picture["depth"], picture["gt_m"]
    height, width = depth.shape

    # Bad uploads get a message on the page and the server keeps serving.
    not_image = tmp_path / "notes.txt"
    not_image.write_text("not a picture")
    expect_error(driver, "image-input", not_image, "cannot decode image")
    too_big = tmp_path / "huge.jpg"
    too_big.write_bytes(b"\xff\xd8" + os.urandom(1_100_000))
    expect_error(driver, "image-input", too_big, "over the upload limit")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(picture["rgb"].read_bytes()[:3000] if picture["rgb"].suffix == ".jpg" else b"\xff\xd8\xff\xe0")
    expect_error(driver, "image-input", broken, "broken.jpg")

    open_picture(driver, picture["rgb"])
    assert f"{width}×{height}" in by_id(driver, "image-name").text
    labels = by_id(driver, "colorbar-labels")
    assert number(labels, "data-min") < number(labels, "data-max")

    # Hover: the depth shown at the pixel is the predict command's depth at that pixel.
    view = by_id(driver, "depth-view")
    track_pointer(driver)
    for fx, fy in ((0.3, 0.4), (0.71, 0.22), (0.5, 0.83)):
        expected_pixel = pointer_to(driver, view, fx, fy)
        wait_for(driver, lambda: by_id(driver, "hover-pixel").get_attribute("data-u") is not None, "the hover readout")
        u, v = hovered_pixel(driver)
        assert (u, v) == expected_pixel and abs(u - fx * width) <= 3 and abs(v - fy * height) <= 3
        shown = by_id(driver, "hover-depth")
        assert abs(number(shown) - float(depth[v, u])) < 1e-6
        assert abs(shown_metres(shown) - float(depth[v, u])) < 1e-3

    # The default camera is the model's training camera, scaled as the predict command scales it.
    statement = by_id(driver, "intrinsics-statement")
    assert statement.get_attribute("data-source") == "model" and "training camera" in statement.text
    for key, value in zip(("data-fx", "data-fy", "data-cx", "data-cy"), picture["intrinsics"]):
        assert number(statement, key) == pytest.approx(value, abs=1e-9)

    # Field-of-view guess: the page states it, and the clicked distance follows the pinhole formula.
    by_id(driver, "camera-fov").click()
    fov = by_id(driver, "fov")
    fov.clear()
    fov.send_keys("70")
    wait_for(driver, lambda: "Assuming 70° horizontal field of view" in by_id(driver, "intrinsics-statement").text,
             "the field-of-view statement")
    guess = Intrinsics.from_fov(70.0, (height, width))
    assert number(statement, "data-fx") == pytest.approx(guess.fx, rel=1e-12)
    assert number(statement, "data-cy") == pytest.approx(guess.cy, abs=1e-12)
    clicked_a = pointer_to(driver, view, 0.2, 0.3, click=True)
    clicked_b = pointer_to(driver, by_id(driver, "image-view"), 0.8, 0.75, click=True)  # either view takes clicks
    point_a, point_b = by_id(driver, "point-a"), by_id(driver, "point-b")
    a = (int(point_a.get_attribute("data-u")), int(point_a.get_attribute("data-v")))
    b = (int(point_b.get_attribute("data-u")), int(point_b.get_attribute("data-v")))
    assert (a, b) == (clicked_a, clicked_b)
    distance = by_id(driver, "distance")
    expected = distance_formula(depth, a, b, guess.fx, guess.fy, guess.cx, guess.cy)
    assert number(distance) == pytest.approx(expected, rel=1e-9)
    assert abs(shown_metres(distance) - expected) < 1e-3
    assert number(point_a, "data-z") == pytest.approx(float(depth[a[1], a[0]]), abs=1e-7)

    # Given intrinsics: typing them switches the camera and recomputes the distance.
    given = (420.5, 415.25, 300.0, 250.5)
    for key, value in zip(("fx", "fy", "cx", "cy"), given):
        field = by_id(driver, key)
        field.clear()
        field.send_keys(str(value))
    wait_for(driver, lambda: statement.get_attribute("data-source") == "given"
             and number(statement, "data-cy") == given[3], "the given intrinsics")
    assert number(distance) == pytest.approx(distance_formula(depth, a, b, *given), rel=1e-9)

    # Ground truth: a PNG without its scale is refused on the page; with it, the summary is the
    # evaluate protocol's metrics of the same arrays, and hovering shows the ground truth.
    expect_error(driver, "gt-input", picture["gt"], "needs its scale")
    by_id(driver, "gt-scale").send_keys(f"{picture['scale']:g}")
    open_file(driver, "gt-input", picture["gt"])
    wait_for(driver, lambda: by_id(driver, "summary").is_displayed(), "the ground-truth summary")
    summary = by_id(driver, "summary")

    def check_summary(protocol_name):
        wait_for(driver, lambda: summary.get_attribute("data-protocol") == protocol_name
                 and driver.execute_script("return document.body.dataset.inFlight") == "0", f"protocol {protocol_name}")
        protocol = get_protocol(protocol_name)
        expected = image_metrics(depth, gt_m, protocol)
        accumulator = MetricAccumulator(protocol, per_range=True)
        accumulator.update(depth, gt_m)
        per_range = accumulator.result()["per_range"]
        rows = driver.execute_script(  # read the whole table at once
            "return Array.from(document.querySelectorAll('#summary-body tr')).map((tr) => [tr.dataset.range, "
            "Object.fromEntries(Array.from(tr.querySelectorAll('td')).map((td) => "
            "[td.dataset.metric, [td.dataset.value === undefined ? null : td.dataset.value, td.textContent]]))]);")
        assert [r[0] for r in rows] == ["all", "[0,1)", "[1,3)", "[3,5)", "[5,inf)"]
        for range_key, cells in rows:
            reference = expected if range_key == "all" else per_range[range_key]
            for key in ("abs_rel", "rmse", "d1"):
                value, text = cells[key]
                if reference["count"] == 0 or not math.isfinite(reference[key]):
                    assert value is None and text == "—"
                else:
                    assert float(value) == pytest.approx(reference[key], rel=1e-9), (protocol_name, range_key, key)
                    assert abs(float(text) - reference[key]) <= 0.5 * 10 ** -(4 if key == "abs_rel" else 3) + 1e-12
        return expected

    nyu = check_summary("nyu")
    assert nyu["count"] > 0
    Select(by_id(driver, "protocol")).select_by_value("none")
    check_summary("none")
    assert by_id(driver, "gt-figure").is_displayed()

    for fx, fy in ((0.5, 0.5), (0.4, 0.6), (0.62, 0.45), (0.3, 0.7)):
        u, v = pointer_to(driver, view, fx, fy)
        assert hovered_pixel(driver) == (u, v)
        if gt_m[v, u] > 0:
            break
    assert gt_m[v, u] > 0, "no hovered pixel had ground truth"
    wait_for(driver, lambda: by_id(driver, "hover-gt").get_attribute("data-value") is not None, "the ground truth")
    g = float(np.float32(gt_m[v, u]))
    assert number(by_id(driver, "hover-gt")) == pytest.approx(g, abs=1e-6)
    assert number(by_id(driver, "hover-relerr")) == pytest.approx(abs(float(depth[v, u]) - g) / g, rel=1e-5)

    # Colour range: by default each map has its own range and its own bar in metres; "shared" puts both
    # in their union with one bar; the maps shown are those of the chosen range.
    from tfdepth.io.colormap import depth_range

    pred_range, gt_range = depth_range(depth), depth_range(gt_m)
    union = (min(pred_range[0], gt_range[0]), max(pred_range[1], gt_range[1]))

    def bar(labels_id):
        element = by_id(driver, labels_id)
        return number(element, "data-min"), number(element, "data-max")

    assert by_id(driver, "range-control").is_displayed() and by_id(driver, "range-own").is_selected()
    assert driver.execute_script("return document.body.dataset.colorRange") == "own"
    assert by_id(driver, "colorbar-gt").is_displayed()
    assert bar("colorbar-labels") == pytest.approx(pred_range) and bar("colorbar-gt-labels") == pytest.approx(gt_range)
    assert "range=own" in by_id(driver, "gt-view").get_attribute("src")
    for mode, pred_bar in (("shared", union), ("own", pred_range)):
        by_id(driver, f"range-{mode}").click()
        wait_for(driver, lambda: driver.execute_script("return document.body.dataset.colorRange") == mode,
                 f"the {mode} colour range")
        assert bar("colorbar-labels") == pytest.approx(pred_bar)
        assert by_id(driver, "colorbar-gt").is_displayed() is (mode == "own")
        for view in ("depth-view", "gt-view"):
            assert f"range={mode}" in by_id(driver, view).get_attribute("src")
            assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                         by_id(driver, view)) == width

    screenshot = tmp_path / "measure_page.png"
    driver.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    assert page_message(driver) == ""
