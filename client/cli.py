"""``gesture-client``: classify photos on the running ``gesture-serve``.

    gesture-client photos/ 'more/**/*.jpg' one.png            # table on stdout
    gesture-client photos/ --json > answers.jsonl             # one JSON object per line
    gesture-client photos/ --protocol http --save-annotated out/
    gesture-client submit DATA_ROOT --out answers.csv         # MachinesCanSee 2021 answers.csv
    gesture-client stream clip.mp4 --out annotated.mp4        # video, camera, URL, frames

Exit codes: 0 all files classified; 1 some file failed (or an argument matched no photo);
2 bad usage or nothing to classify; 3 the server is down or the model is not ready (a one-line
message, no traceback); 130 interrupted; 141 stdout closed early (``| head``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from gesture_recognition.arguments import non_negative_int, positive_float, positive_int
from gesture_recognition.images import load_image
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES

from .annotate import annotated_name, save_annotated
from .clients import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    PROTOCOLS,
    SHARED_MEMORY_MODES,
    AsyncGestureClient,
    FileResult,
    GestureClient,
    default_url,
)
from .errors import GestureClientError
from .files import expand_inputs

PROG = "gesture-client"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a killed writer
DEFAULT_CONCURRENCY = 4
# Fewer files than this finish before a progress bar would tell anything.
PROGRESS_MIN_FILES = 8
TABLE_COLUMNS = ("file", "gesture", "score", "hands", "boxes (x1,y1,x2,y2)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Classify hand gestures in photos on the running gesture-serve (Triton). "
            "Inputs are files, folders (searched recursively for jpg/jpeg/png/bmp/webp) or "
            "globs ('**' recurses; quote them)."
        ),
        epilog="Exit codes: 0 ok, 1 some file failed, 2 usage, 3 server down / model not ready. "
        "`gesture-client submit --help`: a MachinesCanSee 2021 answers.csv from test.csv. "
        "`gesture-client stream --help`: gestures of every frame of a video, camera or URL.",
    )
    parser.add_argument("inputs", nargs="+", help="photo files, folders or globs")
    parser.add_argument(
        "--url",
        help="server host:port (default 127.0.0.1:8001 for grpc, 127.0.0.1:8000 for http)",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    parser.add_argument(
        "--raw",
        action="store_true",
        help=f"decode here and send pixels to {ENSEMBLE} (default: send the file's bytes to "
        f"{ENSEMBLE_BYTES}, decoded on the server)",
    )
    parser.add_argument("--model", help="entry point name, if the server renamed it")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per line instead of a table"
    )
    parser.add_argument(
        "--save-annotated",
        type=Path,
        metavar="DIR",
        help="write each photo with its boxes and labels drawn as DIR/<name>.png",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        help="requests in flight at once (1: the blocking client, one at a time)",
    )
    parser.add_argument(
        "--shared-memory",
        choices=SHARED_MEMORY_MODES,
        default="none",
        help="'system': pass inputs through /dev/shm (the server must run on this host)",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds to wait for each answer",
    )
    parser.add_argument(
        "--retries",
        type=non_negative_int,
        default=DEFAULT_RETRIES,
        help="retries while the server is unreachable (backoff doubles each time)",
    )
    parser.add_argument("--backoff", type=float, default=DEFAULT_BACKOFF_S, help="first wait, s")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _fmt_box(box: Sequence[float]) -> str:
    return ",".join(str(round(float(v))) for v in box)


class Reporter:
    """Prints each file's outcome as it arrives and saves annotated photos."""

    def __init__(
        self,
        files: Sequence[Path],
        as_json: bool,
        annotate_dir: Path | None,
        out: TextIO,
        err: TextIO,
        progress: bool,
    ):
        self.as_json = as_json
        self.annotate_dir = annotate_dir
        self.out, self.err = out, err
        self.failed = 0
        self.done = 0
        self._names: set[str] = set()
        self._width = max([len(TABLE_COLUMNS[0]), *(len(str(f)) for f in files)])
        self._bar = tqdm(
            total=len(files),
            file=err,
            unit="photo",
            # None: tqdm's own test, off when stderr is not a terminal (logs, CI).
            disable=True if not progress or len(files) < PROGRESS_MIN_FILES else None,
            leave=False,
        )
        # Written with the first row, so a run that fails before any answer prints nothing.
        self._header_due = not as_json

    def _write(self, line: str) -> None:
        # Through tqdm so the bar on stderr is redrawn below the line, not through it.
        tqdm.write(line, file=self.out)

    def _row(self, file: str, gesture: str, score: str, hands: str, boxes: str) -> str:
        return f"{file:<{self._width}}  {gesture:<12} {score:>6}  {hands:>5}  {boxes}".rstrip()

    def error(self, message: str) -> None:
        tqdm.write(f"{PROG}: error: {message}", file=self.err)

    def __call__(self, outcome: FileResult) -> None:
        self.done += 1
        self._bar.update(1)
        if outcome.error is not None or outcome.result is None:
            self.failed += 1
            message = str(outcome.error) or type(outcome.error).__name__
            if self.as_json:
                self._write(json.dumps({"file": str(outcome.path), "error": message}))
            self.error(f"{outcome.path}: {message}")
            return
        result = outcome.result
        if self.as_json:
            self._write(json.dumps({"file": str(outcome.path), **result.to_dict()}))
        else:
            if self._header_due:
                self._header_due = False
                self._write(self._row(*TABLE_COLUMNS))
            self._write(
                self._row(
                    str(outcome.path),
                    result.gesture,
                    f"{result.score:.3f}",
                    str(len(result.hand_boxes)),
                    " ".join(_fmt_box(box) for box in result.hand_boxes),
                )
            )
        if self.annotate_dir is not None:
            try:
                save_annotated(
                    load_image(outcome.path),
                    result,
                    self.annotate_dir,
                    annotated_name(outcome.path, self._names),
                )
            except (OSError, ValueError) as exc:
                self.failed += 1
                self.error(f"{outcome.path}: could not save the annotated photo: {exc}")

    def close(self) -> None:
        self._bar.close()


def _client_kwargs(args: argparse.Namespace) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "url": args.url,
        "protocol": args.protocol,
        "timeout": args.timeout,
        "retries": args.retries,
        "backoff": args.backoff,
        "shared_memory": args.shared_memory,
    }
    if args.model:
        kwargs["model" if args.raw else "bytes_model"] = args.model
    return kwargs


def _entry_model(args: argparse.Namespace) -> str:
    return args.model or (ENSEMBLE if args.raw else ENSEMBLE_BYTES)


def _run_sync(args: argparse.Namespace, files: Sequence[Path], report: Reporter) -> None:
    with GestureClient(**_client_kwargs(args)) as client:  # type: ignore[arg-type]
        client.check_ready([_entry_model(args)])
        for outcome in client.classify_files(files, encoded=not args.raw):
            report(outcome)


async def _run_async(args: argparse.Namespace, files: Sequence[Path], report: Reporter) -> None:
    async with AsyncGestureClient(
        **_client_kwargs(args),  # type: ignore[arg-type]
        max_in_flight=args.concurrency,
    ) as client:
        await client.check_ready([_entry_model(args)])
        async for outcome in client.classify_many(
            files, concurrency=args.concurrency, encoded=not args.raw
        ):
            report(outcome)


def _silence_stdout(out: TextIO) -> None:
    # Python flushes stdout at exit and would raise again on the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file (tests): nothing will be flushed to a pipe


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["submit"]:
        # A sub-command ahead of the photo arguments; a folder named "submit" is ./submit.
        from .submit import main as submit_main

        return submit_main(argv[1:], out, err)
    if argv[:1] == ["stream"]:
        from .stream_cli import main as stream_main

        return stream_main(argv[1:], out, err)
    args = build_parser().parse_args(argv)
    if args.backoff < 0:
        print(f"{PROG}: error: --backoff must not be negative", file=err)
        return EXIT_USAGE
    if args.url is None:
        args.url = default_url(args.protocol)

    expansion = expand_inputs(args.inputs)
    for arg in expansion.unmatched:
        print(
            f"{PROG}: error: {arg!r} names no photo file, folder with photos or glob match",
            file=err,
        )
    if not expansion.files:
        print(f"{PROG}: error: nothing to classify", file=err)
        return EXIT_USAGE

    report = Reporter(
        expansion.files,
        as_json=args.json,
        annotate_dir=args.save_annotated,
        out=out,
        err=err,
        progress=not args.no_progress,
    )
    try:
        if args.concurrency == 1:
            _run_sync(args, expansion.files, report)
        else:
            asyncio.run(_run_async(args, expansion.files, report))
    except GestureClientError as exc:
        # Per-file failures are reported as they come; what reaches here concerns every file:
        # the server down or the model not ready (or the label lookup failing).
        report.close()
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_SERVER
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as a shell pipeline expects.
        report.close()
        _silence_stdout(out)
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        report.close()
        print(f"{PROG}: interrupted after {report.done} of {len(expansion.files)} files", file=err)
        return EXIT_INTERRUPTED
    report.close()
    failed = report.failed + len(expansion.unmatched)
    if failed:
        print(
            f"{PROG}: {report.failed} of {len(expansion.files)} files failed"
            + (
                f", {len(expansion.unmatched)} arguments matched nothing"
                if expansion.unmatched
                else ""
            ),
            file=err,
        )
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
