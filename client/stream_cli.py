"""``gesture-client stream SRC``: gestures from a video file, a camera, an RTSP/HTTP URL or a
folder/glob of frames, one JSON line per frame, in order.

    gesture-client stream clip.mp4 --out clip_annotated.mp4 --smooth 5
    gesture-client stream 0 --max-fps 10 --jsonl camera.jsonl        # webcam 0, Ctrl-C to stop
    gesture-client stream 'frames/*.jpg' --fps 25

Exit codes: 0 every frame answered (or skipped on purpose); 1 some frame unreadable or refused;
2 bad usage, or a source / output that cannot be opened; 3 the server is down, or went away
mid-stream (the frames lost are counted); 130 interrupted (the summary is still printed); 141
stdout closed early (``| head``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from gesture_recognition.arguments import non_negative_int, positive_float, positive_int
from gesture_recognition.pipeline import GestureResult
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES

from .annotated_video import AnnotatedVideo, VideoOutputError, check_video_path
from .clients import (
    DEFAULT_BACKOFF_S,
    DEFAULT_TIMEOUT_S,
    PROTOCOLS,
    AsyncGestureClient,
    default_url,
)
from .errors import GestureClientError
from .frame_sources import DEFAULT_FRAMES_FPS, FrameSource, SourceError, open_source
from .stream import DEFAULT_IN_FLIGHT, DEFAULT_JPEG_QUALITY, FrameStream, Outcome, StreamSettings

PROG = "gesture-client stream"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141
# A stream outlives a short server restart: 0.25 + 0.5 + 1 + 2 + 4 s of retries per request.
STREAM_RETRIES = 5
STREAM_TIMEOUT_S = 10.0


SEND_MODES = ("auto", "pixels", "jpeg")


def sends_jpeg(send: str, url: str) -> bool:
    """``--send auto``: pixels to a server on this host, JPEG bytes to any other."""
    if send != "auto":
        return send == "jpeg"
    host = url.rsplit(":", 1)[0].strip("[]") if ":" in url else url
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def jpeg_quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 1-100, got {value}")
    return value


def silence_stdout(out: TextIO) -> None:
    # Python flushes stdout at exit and would raise again on the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file (tests)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Classify the hand gestures of every frame of a video, camera, RTSP/HTTP "
        "stream or folder/glob of frames on the running gesture-serve. One JSON line per frame "
        "(frame, time_s, gesture, score, hands, probabilities, smoothed, latency_ms) in order; "
        "frames are decoded in memory and never written to disk.",
        epilog="Exit codes: 0 ok, 1 some frame unreadable or refused, 2 usage or source, "
        "3 server down or gone mid-stream (frames lost), 130 interrupted.",
    )
    parser.add_argument(
        "source",
        metavar="SRC",
        help="video file, camera index (0) or /dev/videoN, rtsp:// or http(s):// URL, or a "
        "folder / quoted glob of frame files (taken in natural name order)",
    )
    parser.add_argument("--url", help="server host:port (default 127.0.0.1:8001 for grpc)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    parser.add_argument(
        "--send",
        choices=SEND_MODES,
        default="auto",
        help="pixels: decoded frames to gesture_ensemble; jpeg: JPEG bytes to "
        "gesture_ensemble_bytes (~21x less data for 640x480 frames); auto (default): pixels "
        "when the server is on this host (loopback), where they were measured faster, jpeg "
        "otherwise",
    )
    parser.add_argument(
        "--jpeg-quality",
        type=jpeg_quality,
        default=DEFAULT_JPEG_QUALITY,
        help="quality of the JPEG a decoded frame is sent as (frame files the server can "
        "decode are sent as they are)",
    )
    parser.add_argument("--jsonl", type=Path, metavar="FILE", help="JSON lines here, not stdout")
    parser.add_argument(
        "--out", type=Path, metavar="FILE.mp4", help="write the annotated video (mp4/avi/mkv/mov)"
    )
    parser.add_argument(
        "--smooth",
        type=positive_int,
        default=1,
        metavar="N",
        help="smoothed gesture = most probable class of the mean GESTURE_PROBS of the last N "
        "answered frames (reported beside the raw one; the video shows the smoothed one)",
    )
    parser.add_argument(
        "--every", type=positive_int, default=1, metavar="K", help="send every K-th frame only"
    )
    parser.add_argument(
        "--max-fps",
        type=positive_float,
        metavar="F",
        help="send at most F frames per second of source time (cameras faster than the server)",
    )
    parser.add_argument(
        "--max-frames", type=positive_int, metavar="N", help="stop after reading N frames"
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
        default=DEFAULT_FRAMES_FPS,
        help="frame rate of a frame folder or glob (time_s and the annotated video)",
    )
    parser.add_argument(
        "--in-flight",
        type=positive_int,
        default=DEFAULT_IN_FLIGHT,
        help="requests on the wire at once; answers still come out in frame order",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=STREAM_TIMEOUT_S,
        help=f"seconds to wait for each answer (default {STREAM_TIMEOUT_S:g}; gesture-client's "
        f"photo default is {DEFAULT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        default=STREAM_RETRIES,
        help="retries of a request while the server is unreachable (backoff doubles each time)",
    )
    parser.add_argument("--backoff", type=positive_float, default=DEFAULT_BACKOFF_S)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


class StreamReport:
    """Writes each outcome: its JSON line, its annotated frame, the progress bar."""

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        video: AnnotatedVideo | None,
        total: int | None,
        progress: bool,
        show_smoothed: bool,
    ):
        self.out, self.err, self.video = out, err, video
        self.show_smoothed = show_smoothed
        self._shown: GestureResult | None = None  # what the video draws on unsent frames
        self._bar = tqdm(
            total=total,
            file=err,
            unit="frame",
            disable=True if not progress else None,  # None: only on a terminal
            leave=False,
        )

    def __call__(self, outcome: Outcome) -> None:
        if not outcome.skipped:
            line = json.dumps(outcome.to_dict())
            tqdm.write(line, file=self.out)
        if outcome.result is not None:
            shown = outcome.result
            if self.show_smoothed and outcome.smoothed is not None:
                shown = replace(
                    shown, gesture=outcome.smoothed.gesture, score=outcome.smoothed.score
                )
            self._shown = shown
            self._bar.set_postfix_str(f"{shown.gesture} {shown.score:.2f}", refresh=False)
        if self.video is not None and outcome.frame.pixels is not None:
            # Lost or refused frames go in plain; skipped ones with the latest answer.
            drawn = self._shown if outcome.result is not None or outcome.skipped else None
            self.video.write(outcome.frame.pixels, drawn)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


async def _run(
    args: argparse.Namespace,
    source: FrameSource,
    report: StreamReport,
    stream_box: list[FrameStream],
) -> None:
    encoded = sends_jpeg(args.send, args.url)
    settings = StreamSettings(
        encoded=encoded,
        jpeg_quality=args.jpeg_quality,
        in_flight=args.in_flight,
        smooth=args.smooth,
        every=args.every,
        max_fps=args.max_fps,
        max_frames=args.max_frames,
    )
    async with AsyncGestureClient(
        url=args.url,
        protocol=args.protocol,
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        max_in_flight=args.in_flight,
    ) as client:
        await client.check_ready([ENSEMBLE_BYTES if encoded else ENSEMBLE])
        stream = FrameStream(source, client, settings)
        stream_box.append(stream)
        async for outcome in stream.outcomes():
            report(outcome)


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    args.url = args.url or default_url(args.protocol)
    try:
        if args.out is not None:
            check_video_path(args.out)
        if args.jsonl is not None and not args.jsonl.parent.is_dir():
            raise VideoOutputError(f"{args.jsonl.parent} does not exist")
        source = open_source(args.source, frames_fps=args.fps)
    except (SourceError, VideoOutputError) as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_USAGE
    lines = args.jsonl.open("w", encoding="utf-8") if args.jsonl is not None else out
    video = AnnotatedVideo(args.out, source.fps) if args.out is not None else None
    total = source.frame_count
    if total is not None and args.max_frames is not None:
        total = min(total, args.max_frames)
    report = StreamReport(
        lines, err, video, total, progress=not args.no_progress, show_smoothed=args.smooth > 1
    )
    box: list[FrameStream] = []
    code = EXIT_OK
    try:
        asyncio.run(_run(args, source, report, box))
    except GestureClientError as exc:  # down before the first frame: nothing was lost
        report.close()
        print(f"{PROG}: error: {exc}", file=err)
        code = EXIT_SERVER
    except VideoOutputError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        code = EXIT_USAGE
    except SourceError as exc:  # the source broke mid-stream (a decoder error)
        print(f"{PROG}: error: {exc}", file=err)
        code = EXIT_FAILED
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as a shell pipeline expects.
        silence_stdout(out)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        code = EXIT_INTERRUPTED
    finally:
        report.close()
        source.close()
        if video is not None:
            video.close()
        if lines is not out:
            lines.close()
    if not box:
        return code
    stats = box[0].stats
    print(f"{PROG}: {stats.summary()}", file=err)
    if video is not None:
        print(f"{PROG}: annotated video {args.out} ({video.frames} frames)", file=err)
    if stats.stopped_by_server is not None:
        print(
            f"{PROG}: error: the server went away: {stats.lost} frames lost, stopped after "
            f"{stats.frames} frames ({stats.stopped_by_server})",
            file=err,
        )
        return EXIT_SERVER
    if code != EXIT_OK:
        return code
    return EXIT_FAILED if stats.failed or stats.unreadable else EXIT_OK
