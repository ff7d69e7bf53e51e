"""``gesture-client stream`` against the live server, on a real video assembled from one SubhiH
capture session: every frame answered, in order, equal to the in-process pipeline on the same
decoded frame; the annotated video; frame globs; and the server going away mid-stream."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest

from gesture_recognition.client.stream_cli import main as stream_main
from gesture_recognition.images import load_image
from gesture_recognition.pipeline import GesturePipeline, GestureResult

from .conftest import BOX_ATOL, SCORE_ATOL, RunningServer, hand_count
from .process_output import finish
from .session_video import FPS, decode_video, session_frames, write_mp4
from .tcp_relay import TcpRelay

pytestmark = pytest.mark.functional

FRAMES = 40
# The palette's first colour (client/annotate.py), the box of the topmost hand.
BOX_RGB = np.array([255, 64, 64])


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> list[Path]:
    return session_frames(shared_data, FRAMES)


@pytest.fixture(scope="module")
def video(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mp4(photos, tmp_path_factory.mktemp("stream") / "session.mp4")


def _redness(pixels: np.ndarray) -> float:
    """Mean of R - G over a patch (BOX_RGB is red: 255 - 64)."""
    rgb = pixels.reshape(-1, 3).astype(float)
    return float((rgb[:, 0] - rgb[:, 1]).mean())


def run_stream(*args: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    code = stream_main([*args, "--no-progress"], out, err)
    return code, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def assert_line_matches(line: dict, local: GestureResult, what: object) -> None:
    assert line["gesture"] == local.gesture, what
    assert line["score"] == pytest.approx(local.score, abs=SCORE_ATOL), what
    assert [h["gesture"] for h in line["hands"]] == local.hand_gestures, what
    boxes = np.array([h["box"] for h in line["hands"]], np.float32).reshape(-1, 4)
    np.testing.assert_allclose(boxes, local.hand_boxes, atol=BOX_ATOL, err_msg=str(what))
    probs = [line["probabilities"][name] for name in local.labels]
    np.testing.assert_allclose(probs, local.probabilities, atol=SCORE_ATOL, err_msg=str(what))


def test_video_every_frame_in_order_as_the_pipeline_sees_it(
    triton_server: RunningServer,
    reference: GesturePipeline,
    video: Path,
    photos: list[Path],
    tmp_path: Path,
) -> None:
    if not triton_server.trained:
        pytest.skip("needs the trained detector: untrained models find meaningless boxes")
    annotated = tmp_path / "annotated.mp4"
    jsonl = tmp_path / "frames.jsonl"
    code, _, err = run_stream(
        str(video),
        "--url", triton_server.grpc_url,
        "--send", "pixels",
        "--jsonl", str(jsonl),
        "--out", str(annotated),
        "--smooth", "5",
        "--in-flight", "3",
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    frames = decode_video(video)
    assert len(frames) == FRAMES
    # One line per frame, in order, at the video's clock.
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert [line["time_s"] for line in lines] == [round(i / FPS, 4) for i in range(FRAMES)]
    labels = None
    for i, (line, frame) in enumerate(zip(lines, frames, strict=True)):
        local = reference(frame)
        labels = local.labels
        assert_line_matches(line, local, f"frame {i}")
        assert line["latency_ms"] > 0
    # The smoothed values: the mean of the last 5 raw distributions, recomputed here.
    assert labels is not None
    raw = np.array([[line["probabilities"][n] for n in labels] for line in lines])
    for i, line in enumerate(lines):
        mean = raw[max(0, i - 4) : i + 1].mean(axis=0)
        assert line["smoothed"]["gesture"] == labels[int(mean.argmax())], f"frame {i}"
        assert line["smoothed"]["score"] == pytest.approx(mean.max(), abs=1e-5)
        assert line["smoothed"]["frames"] == min(i + 1, 5)
    # The frames are the session's photos: the hands found agree with their annotations.
    agree = sum(len(line["hands"]) == hand_count(p) for line, p in zip(lines, photos, strict=True))
    assert agree >= 0.8 * FRAMES, f"{agree} of {FRAMES} frames have the annotated hand count"
    # The annotated video: as many frames as the source, the box of each frame drawn on it.
    drawn = decode_video(annotated)
    assert len(drawn) == FRAMES
    assert drawn[0].shape == frames[0].shape
    # The first hand's left edge turns red (BOX_RGB) where it was not: measured as the gain in
    # red over green along the edge, which survives the codec's chroma subsampling of a 2 px
    # line better than an exact colour match does.
    boxed = 0
    for line, before, after in zip(lines, frames, drawn, strict=True):
        if not line["hands"]:
            continue
        x1, y1, _, y2 = (round(v) for v in line["hands"][0]["box"])
        window = (slice(y1 + 10, y2 - 10), slice(max(0, x1 - 1), x1 + 2))
        red_gain = _redness(after[window]) - _redness(before[window])
        boxed += red_gain > 40
    assert boxed >= 0.9 * sum(bool(line["hands"]) for line in lines)
    assert f"{FRAMES} frames ({FRAMES} answered) in" in err
    assert "frames/s, latency p50" in err and f"({FRAMES} frames)" in err


def test_frame_glob_sends_the_files_own_bytes(
    triton_server: RunningServer, reference: GesturePipeline, shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "subhih_hands" / "train"
    pattern = str(folder / "1528664299.56_pic000[01]*.jpg")
    # What the glob should give, in shooting order (pic00000-07, then pic00012: the session's
    # other photos are in test/).
    photos = sorted(folder.glob("1528664299.56_pic000[01]*.jpg"), key=lambda p: p.name)[:9]
    assert photos[-1].name == "1528664299.56_pic00012.jpg"
    code, lines, err = run_stream(
        pattern,
        "--url", triton_server.grpc_url,
        "--send", "jpeg",
        "--every", "2",
        "--max-frames", "9",
        "--fps", "5",
        "--out", str(tmp_path / "glob.avi"),
    )  # fmt: skip
    assert code == 0, err
    # Every second frame sent, the rest skipped.
    assert [line["frame"] for line in lines] == [0, 2, 4, 6, 8]
    assert [line["time_s"] for line in lines] == [0.0, 0.4, 0.8, 1.2, 1.6]
    for line in lines:
        photo = photos[line["frame"]]
        # The server decoded the file itself: the same pixels as the in-process decode.
        assert_line_matches(line, reference(load_image(photo)), photo.name)
    assert "9 frames (5 answered, 4 skipped)" in err
    # Skipped frames are in the video too, drawn with the latest answer.
    drawn = decode_video(tmp_path / "glob.avi")
    assert len(drawn) == 9
    source = cv2.cvtColor(cv2.imread(str(photos[1])), cv2.COLOR_BGR2RGB).astype(int)
    banner = np.abs(drawn[1][:20, :100].astype(int) - source[:20, :100]).mean()
    corner = np.abs(drawn[1][-40:, -40:].astype(int) - source[-40:, -40:]).mean()
    assert banner > 40 and corner < 15, (banner, corner)


class MjpegCamera(http.server.BaseHTTPRequestHandler):
    """An IP camera's MJPEG stream (multipart/x-mixed-replace), one photo every 0.1 s."""

    photos: ClassVar[list[Path]] = []

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        for photo in self.photos:
            data = photo.read_bytes()
            head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
            self.wfile.write(head.encode() + data + b"\r\n")
            self.wfile.flush()
            time.sleep(1 / FPS)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_camera_is_a_live_source(triton_server: RunningServer, photos: list[Path]) -> None:
    """An http:// MJPEG stream read by OpenCV's FFmpeg: a live source, so frames arrive at the
    sender's pace and, with the window full, the oldest waiting ones are dropped and counted."""
    handler = type("Camera", (MjpegCamera,), {"photos": photos})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stream.mjpg"
        code, lines, err = run_stream(url, "--url", triton_server.grpc_url, "--in-flight", "1")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, err
    frames = [line["frame"] for line in lines]
    assert frames == sorted(set(frames)) and frames[0] == 0 and frames[-1] <= FRAMES - 1
    assert all("gesture" in line for line in lines)
    # Live: time_s is when the frame arrived here, about one tenth of a second apart.
    assert lines[-1]["time_s"] >= 0.5 * (frames[-1] - frames[0]) / FPS
    match = re.search(r"(\d+) frames \((\d+) answered(?:, (\d+) dropped)?\)", err)
    assert match, err
    total, answered, dropped = (int(g or 0) for g in match.groups())
    assert total == FRAMES and answered == len(lines) and answered + dropped == FRAMES


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell (CI, nohup ... &) ignores
    # SIGINT, and Python keeps an ignored SIGINT ignored: give the command a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stream_process(video: Path, url: str, *extra: str) -> subprocess.Popen[str]:
    cli = Path(sys.executable).with_name("gesture-client")
    return subprocess.Popen(
        [str(cli), "stream", str(video), "--url", url, "--send", "pixels", "--no-progress",
         "--in-flight", "2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_default_sigint,
    )  # fmt: skip


def test_server_gone_mid_stream_bounded_and_frames_lost_reported(
    triton_server: RunningServer, video: Path
) -> None:
    relay = TcpRelay(triton_server.grpc_url)
    process = _stream_process(
        video, relay.url, "--retries", "2", "--backoff", "0.1", "--timeout", "5"
    )
    try:
        assert process.stdout is not None
        lines = [json.loads(process.stdout.readline()) for _ in range(5)]
        relay.cut()
        cut_at = time.monotonic()
        rest, err = finish(process, timeout=60)
        elapsed = time.monotonic() - cut_at
    finally:
        relay.close()
        if process.poll() is None:
            process.kill()
    lines += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == 3, err
    # Bounded: two retries of 0.1 and 0.2 s per request, not the 60 s of a hung read.
    assert elapsed < 15, f"took {elapsed:.1f} s after the cut"
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    assert len(lines) < FRAMES
    lost = [line for line in lines if line.get("lost")]
    assert lost and all("error" in line and "gesture" not in line for line in lost)
    assert all("gesture" in line for line in lines[:5])
    assert f"the server went away: {len(lost)} frames lost" in err
    assert "Traceback" not in err


def test_a_short_outage_is_ridden_out(triton_server: RunningServer, video: Path) -> None:
    relay = TcpRelay(triton_server.grpc_url)
    process = _stream_process(video, relay.url, "--retries", "6", "--backoff", "0.25")
    try:
        assert process.stdout is not None
        lines = [json.loads(process.stdout.readline()) for _ in range(5)]
        relay.cut()
        time.sleep(1.0)
        relay.restore()
        rest, err = finish(process, timeout=90)
    finally:
        relay.close()
        if process.poll() is None:
            process.kill()
    lines += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == 0, err
    assert [line["frame"] for line in lines] == list(range(FRAMES))
    assert all("gesture" in line for line in lines)
    assert f"{FRAMES} frames ({FRAMES} answered)" in err


def test_stdout_closed_early_ends_quietly(triton_server: RunningServer, video: Path) -> None:
    """``gesture-client stream clip.mp4 | head -2``: exit 141, no traceback."""
    process = _stream_process(video, triton_server.grpc_url)
    assert process.stdout is not None and process.stderr is not None
    first = [json.loads(process.stdout.readline()) for _ in range(2)]
    process.stdout.close()
    process.wait(timeout=60)
    err = process.stderr.read()
    assert [line["frame"] for line in first] == [0, 1]
    assert process.returncode == 141, err
    assert "Traceback" not in err


def test_ctrl_c_stops_with_the_summary(triton_server: RunningServer, video: Path) -> None:
    process = _stream_process(video, triton_server.grpc_url, "--in-flight", "1")
    assert process.stdout is not None
    lines = [json.loads(process.stdout.readline()) for _ in range(3)]
    process.send_signal(signal.SIGINT)
    rest, err = finish(process, timeout=30)
    lines += [json.loads(line) for line in rest.splitlines()]
    assert process.returncode == 130, err
    assert "gesture-client stream: interrupted" in err and "Traceback" not in err
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    assert len(lines) < FRAMES
    assert f"{len(lines)} answered" in err
