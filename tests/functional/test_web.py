"""``gesture-web`` as a user runs it, in front of the live server: the API, its refusals, and
the page in Debian's headless Chromium fed by a fake camera playing a real video."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline

from .conftest import BOX_ATOL, SCORE_ATOL, RunningServer, hand_count
from .session_video import session_frames, write_y4m

pytestmark = pytest.mark.functional

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MAX_UPLOAD_MB = 1
# The palette's first colour (web_static/app.js), the box of the topmost hand.
BOX_RGB = np.array([255, 64, 64])
# Photos 49-58 of the capture session: a V sign, little of the face.
PAGE_FRAMES = (49, 10)


@dataclass
class WebApp:
    host: str
    port: int
    cwd: Path
    tmp: Path
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def web_app(
    triton_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebApp]:
    root = tmp_path_factory.mktemp("web")
    cwd, tmp = root / "cwd", root / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    cli = Path(sys.executable).with_name("gesture-web")
    process = subprocess.Popen(
        [str(cli), "--port", "0", "--triton-grpc", triton_server.grpc_url,
         "--max-upload-mb", str(MAX_UPLOAD_MB)],
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    try:
        first = lines.get(timeout=60)
        assert "gesture-web: serving http://127.0.0.1:" in first, first
        port = int(first.split("http://127.0.0.1:")[1].split("/")[0])
        yield WebApp("127.0.0.1", port, cwd, tmp, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_page_and_health(web_app: WebApp) -> None:
    status, headers, body = web_app.request("GET", "/")
    assert status == 200 and b'<canvas id="view"' in body
    assert "default-src 'self'" in headers["content-security-policy"]
    status, headers, body = web_app.request("GET", "/app.js")
    assert status == 200 and headers["content-type"].startswith("text/javascript")
    status, _, body = web_app.request("GET", "/api/health")
    assert status == 200 and json.loads(body)["ready"] is True


def test_classify_answers_the_contract(
    web_app: WebApp, reference: GesturePipeline, shared_data: Path
) -> None:
    photo = sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))[0]
    status, _, body = web_app.request(
        "POST", "/api/classify", photo.read_bytes(), {"Content-Type": "image/jpeg"}
    )
    assert status == 200, body
    answer = json.loads(body)
    local = reference(load_image(photo))
    assert answer["gesture"] == local.gesture
    assert answer["score"] == pytest.approx(local.score, abs=SCORE_ATOL)
    assert [h["gesture"] for h in answer["hands"]] == local.hand_gestures
    boxes = np.array([h["box"] for h in answer["hands"]], np.float32).reshape(-1, 4)
    np.testing.assert_allclose(boxes, local.hand_boxes, atol=BOX_ATOL)
    assert list(answer["probabilities"]) == list(local.labels)
    assert answer["latency_ms"] > 0


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_bad_uploads_get_a_reason(web_app: WebApp, shared_data: Path) -> None:
    jpeg = {"Content-Type": "image/jpeg"}
    cases = [
        (b"not an image at all", jpeg, 400, "not a usable image"),
        (b"", jpeg, 400, "empty upload"),
        (b"x", {"Content-Type": "text/plain"}, 400, "not text/plain"),
        (b"\0" * (MAX_UPLOAD_MB * 2**20 + 1), jpeg, 413, "over the 1048576 byte limit"),
    ]
    for body, headers, status, reason in cases:
        got, _, answer = web_app.request("POST", "/api/classify", body, headers)
        assert got == status, (reason, answer)
        assert reason in json.loads(answer)["error"]
    # No Content-Length to trust: the app stops reading at the limit all the same.
    conn = http.client.HTTPConnection(web_app.host, web_app.port, timeout=30)
    try:
        big = b"\xff" * (3 * MAX_UPLOAD_MB * 2**20)
        conn.request("POST", "/api/classify", body=_chunks(big), headers=jpeg, encode_chunked=True)
        response = conn.getresponse()
        assert response.status == 413
        assert "over the" in json.loads(response.read())["error"]
    finally:
        conn.close()
    # Another site's name for this address (DNS rebinding) is refused.
    status, _, _ = web_app.request("GET", "/", headers={"Host": "attacker.example"})
    assert status == 400
    # Still serving after all that.
    photo = sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))[1]
    status, _, _ = web_app.request("POST", "/api/classify", photo.read_bytes(), jpeg)
    assert status == 200


def test_the_app_writes_no_file(web_app: WebApp, shared_data: Path) -> None:
    photo = sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))[2]
    for _ in range(3):
        web_app.request("POST", "/api/classify", photo.read_bytes(), {"Content-Type": "image/jpeg"})
    assert list(web_app.cwd.iterdir()) == [] and list(web_app.tmp.iterdir()) == []


SAMPLE_PAGE = """
const answer = window.lastAnswer;
if (Number(document.body.dataset.answered || 0) < 5 || !answer || !answer.hands.length) {
  return null;
}
const [x1, y1, , y2] = answer.hands[0].box;
const ctx = document.getElementById('view').getContext('2d');
const edge = [];
for (let y = Math.round(y1) + 10; y < Math.round(y2) - 10; y += 5) {
  const row = ctx.getImageData(Math.floor(x1) - 1, y, 3, 1).data;
  edge.push([0, 1, 2].map((i) => Array.from(row.slice(4 * i, 4 * i + 3))));
}
return {answer, edge, shown: document.getElementById('gesture').textContent};
"""


def subhih_test_photos(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))


def chromium_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file():
            return (
                f"{path} is not installed: scripts/install_browser.sh installs Debian's chromium "
                "and chromium-driver (it needs root and apt-get)"
            )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    return None


def test_page_in_chromium_with_a_fake_camera(
    web_app: WebApp, shared_data: Path, tmp_path: Path
) -> None:
    reason = chromium_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    start, count = PAGE_FRAMES
    camera = write_y4m(session_frames(shared_data, count, start=start), tmp_path / "camera.y4m")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        # The machine's network is closed: without these Chromium hangs on its own connections.
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=960,760",
        # The camera: a real video made from real photos, permission granted without a prompt.
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(web_app.url)
        driver.find_element(By.ID, "camera").click()
        # Sampled in one synchronous script, once the page has answered a few frames and the
        # latest answer has a hand: the page cannot draw the next answer while the script
        # runs, so the answer, the label shown and the canvas belong to the same frame.
        seen = WebDriverWait(driver, 90).until(lambda d: d.execute_script(SAMPLE_PAGE))
        answer, edge, shown = seen["answer"], seen["edge"], seen["shown"]
        assert shown == answer["gesture"] and shown in answer["probabilities"], shown
        assert float(driver.find_element(By.ID, "fps").text) > 0
        # The box of the first hand on the canvas: along its left edge (the stroke is 2 px
        # wide, so the best of 3 columns), the pixels are the palette's colour.
        distance = np.abs(np.array(edge) - BOX_RGB).max(axis=-1).min(axis=-1)
        assert (distance < 40).mean() > 0.8, edge
        shot = tmp_path / "web.png"
        assert driver.save_screenshot(str(shot))
        keep = os.environ.get("GESTURE_WEB_SCREENSHOT")
        if keep:  # how docs/web.png is made
            shutil.copyfile(shot, keep)
        print(f"screenshot: {shot}")
        # A chosen photo instead: the camera stops, the photo is drawn at its own size with
        # its hands boxed (two hands in this one).
        photo = next(p for p in subhih_test_photos(shared_data) if hand_count(p) == 2)
        driver.find_element(By.ID, "photo").send_keys(str(photo))
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "status").text == photo.name
        )
        shown = driver.execute_script(
            """const view = document.getElementById('view');
            return {answer: window.lastAnswer, size: [view.width, view.height],
                    camera: document.getElementById('camera').disabled};"""
        )
        assert shown["size"] == [640, 480] and shown["camera"] is False
        assert len(shown["answer"]["hands"]) == 2
    finally:
        driver.quit()
