"""``gesture-client stream`` without a server: opening sources, frame order, sampling, the
summary's numbers, the annotated video's path, and bad input (exit 2, one line)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.client.annotated_video import (
    AnnotatedVideo,
    VideoOutputError,
    check_video_path,
)
from gesture_recognition.client.frame_sources import (
    SourceError,
    natural_key,
    open_source,
)
from gesture_recognition.client.stream import Outcome, Sampler, StreamSettings, StreamStats
from gesture_recognition.client.stream_cli import main as stream_main
from gesture_recognition.images import load_image


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "subhih_hands" / "test").glob("*.jpg"))[:3]


def test_natural_order() -> None:
    names = ["f10.jpg", "f2.jpg", "f1.jpg", "g0.jpg"]
    assert sorted(names, key=lambda n: natural_key(Path(n))) == [
        "f1.jpg",
        "f2.jpg",
        "f10.jpg",
        "g0.jpg",
    ]


def test_frame_folder_in_order_with_its_own_bytes(tmp_path: Path, photos: list[Path]) -> None:
    # Links, not copies: the frames are the shared photos, named so that natural order differs
    # from plain string order.
    for i, photo in zip((10, 2, 1), photos, strict=True):
        (tmp_path / f"frame{i}.jpg").symlink_to(photo)
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_source(str(tmp_path), frames_fps=5.0)
    assert not source.live and source.frame_count == 3
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.time_s for f in frames] == [0.0, 0.2, 0.4]
    expected = [photos[2], photos[1], photos[0]]  # frame1, frame2, frame10
    for frame, photo in zip(frames, expected, strict=True):
        assert frame.data == photo.read_bytes()
        np.testing.assert_array_equal(frame.pixels, load_image(photo))


def test_an_unreadable_frame_is_reported_not_fatal(tmp_path: Path, photos: list[Path]) -> None:
    (tmp_path / "a1.jpg").symlink_to(photos[0])
    (tmp_path / "a2.jpg").write_bytes(b"\xff\xd8 truncated")
    frames = list(open_source(str(tmp_path)).frames())
    assert [f.ok for f in frames] == [True, False]
    assert "a2.jpg: not a decodable image" in (frames[1].error or "")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{tmp}/missing.mp4", "no such video file, frame folder, camera or URL"),
        ("{tmp}/empty", "no frame files"),
        ("{tmp}/*.png", "no frame files"),
        ("{tmp}/text.mp4", "cannot open video"),
        ("ftp://example/video", "unsupported URL scheme"),
        ("/dev/video99", "no camera at /dev/video99"),
    ],
)
def test_sources_that_do_not_open(tmp_path: Path, spec: str, message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    with pytest.raises(SourceError, match=message):
        open_source(spec.format(tmp=tmp_path))


def test_missing_source_exits_2_with_one_line(tmp_path: Path) -> None:
    """The installed command, as a user runs it: no server is needed to refuse the source."""
    cli = Path(sys.executable).with_name("gesture-client")
    run = subprocess.run(
        [str(cli), "stream", str(tmp_path / "nope.mp4"), "--url", "127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.mp4: no such video file" in lines[0], run.stderr


def test_bad_output_path_exits_2_before_reading(tmp_path: Path, photos: list[Path]) -> None:
    err = io.StringIO()
    code = stream_main([str(photos[0]), "--out", str(tmp_path / "x.gif")], io.StringIO(), err)
    assert code == 2 and "must end in one of" in err.getvalue()
    code = stream_main([str(photos[0]), "--out", str(tmp_path / "no" / "x.mp4")], None, err)
    assert code == 2 and "does not exist" in err.getvalue()


def test_server_down_at_start_exits_3(photos: list[Path]) -> None:
    err = io.StringIO()
    out = io.StringIO()
    code = stream_main(
        [str(photos[0]), "--url", "127.0.0.1:9", "--retries", "0", "--no-progress"], out, err
    )
    assert code == 3
    assert out.getvalue() == ""
    assert "no Triton server answers at 127.0.0.1:9" in err.getvalue()


def test_sampler_every_and_max_fps() -> None:
    every = Sampler(every=3, max_fps=None)
    assert [i for i in range(10) if every(i, i / 30)] == [0, 3, 6, 9]
    rate = Sampler(every=1, max_fps=10)
    assert [i for i in range(10) if rate(i, i / 30)] == [0, 3, 6, 9]
    both = Sampler(every=2, max_fps=5)  # even frames, and at most one per 0.2 s
    assert [i for i in range(13) if both(i, i / 30)] == [0, 6, 12]


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        StreamSettings(in_flight=0)
    with pytest.raises(ValueError):
        StreamSettings(jpeg_quality=101)


def test_stats_percentiles_and_summary() -> None:
    stats = StreamStats(read=5, sent=4, answered=3, skipped=1, lost=1)
    stats.latencies_s = [0.010, 0.020, 0.030]
    stats.finished = stats.started + 2.0
    assert stats.latency_ms(50) == pytest.approx(20.0)
    assert stats.latency_ms(95) == pytest.approx(29.0)
    assert stats.frames_per_s == pytest.approx(1.5)
    text = stats.summary()
    assert text.startswith("5 frames (3 answered, 1 skipped, 1 lost) in 2.0 s: 1.5 frames/s")
    assert "p50 20 ms, p95 29 ms" in text


def test_a_lost_frame_has_a_line_of_its_own() -> None:
    from gesture_recognition.client.frame_sources import Frame

    frame = Frame(7, 0.7, np.zeros((8, 8, 3), np.uint8))
    line = Outcome(frame, sent=True, error="no server", lost=True).to_dict()
    assert line == {"frame": 7, "time_s": 0.7, "error": "no server", "lost": True}


def test_video_path_checks(tmp_path: Path) -> None:
    check_video_path(tmp_path / "ok.mp4")
    with pytest.raises(VideoOutputError):
        check_video_path(tmp_path)
    with pytest.raises(VideoOutputError):
        check_video_path(tmp_path / "x.txt")


def test_annotated_video_scales_odd_sized_frames(tmp_path: Path, photos: list[Path]) -> None:
    import cv2

    video = AnnotatedVideo(tmp_path / "v.avi", fps=5)
    first = load_image(photos[0])
    video.write(first, None)
    video.write(np.ascontiguousarray(first[: first.shape[0] // 2]), None)
    video.close()
    capture = cv2.VideoCapture(str(tmp_path / "v.avi"))
    sizes = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        sizes.append(bgr.shape)
    assert sizes == [first.shape, first.shape]


def test_send_auto_is_pixels_on_loopback_only() -> None:
    from gesture_recognition.client.stream_cli import sends_jpeg

    for url in ("127.0.0.1:8001", "localhost:8001", "[::1]:8001", "127.0.0.2:8001"):
        assert sends_jpeg("auto", url) is False, url
    for url in ("10.0.0.2:8001", "triton.internal:8001", "[2001:db8::1]:8001"):
        assert sends_jpeg("auto", url) is True, url
    assert sends_jpeg("jpeg", "127.0.0.1:8001") is True
    assert sends_jpeg("pixels", "10.0.0.2:8001") is False
