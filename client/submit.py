"""``gesture-client submit``: a MachinesCanSee 2021 ``answers.csv`` from the running server.

    gesture-client submit DATA_ROOT                      # DATA_ROOT/test.csv -> answers.csv
    gesture-client submit DATA_ROOT --out run1/answers.csv --concurrency 8 --protocol http
    gesture-client submit DATA_ROOT --max-frames 5000    # a time-boxed chunk; rerun continues

Every test frame goes through the served ensemble (file bytes to ``gesture_ensemble_bytes``,
or pixels to ``gesture_ensemble`` with ``--raw``) with a bounded window of requests in flight;
its ``GESTURE_PROBS`` become the row. Rows are appended to ``<out>.partial`` as they finish;
an interrupted run (Ctrl-C, a crash, ``--max-frames``) resumes on the next call without
redoing them. ``<out>`` is written, in test.csv order, once every frame has a row.

Exit codes: 0 done (or the --max-frames chunk done); 1 some frames failed (no answers.csv yet;
a rerun retries just those); 2 bad usage, layout or partial file; 3 server down, model not
ready, or the served classes are not the competition's; 130 interrupted (progress kept).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from gesture_recognition.arguments import (
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from gesture_recognition.mcs2021 import ANSWERS_CSV, read_test_csv
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES

from .clients import (
    DEFAULT_BACKOFF_S,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    PROTOCOLS,
    AsyncGestureClient,
    backoff_delays,
    default_url,
)
from .errors import GestureClientError, is_retryable, translate
from .results import OutputError, labels_from_config, probs_size_from_config
from .submission import (
    ServedLabelsError,
    SubmissionFileError,
    answer_row,
    column_order,
    open_partial,
    partial_path,
    read_rows,
    write_answers,
)

PROG = "gesture-client submit"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SERVER, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class SubmitConfig:
    root: Path
    out: Path = Path(ANSWERS_CSV)
    test_csv: Path | None = None
    url: str | None = None
    protocol: str = "grpc"
    raw: bool = False
    model: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF_S
    max_frames: int | None = None
    restart: bool = False
    progress: bool = True

    @property
    def entry_model(self) -> str:
        return self.model or (ENSEMBLE if self.raw else ENSEMBLE_BYTES)


@dataclass
class SubmitOutcome:
    total: int  # frames in test.csv
    resumed: int  # frames already answered before this run
    classified: int = 0  # frames answered in this run
    failures: list[tuple[str, str]] = field(default_factory=list)  # (frame, message)
    seconds: float = 0.0  # from the first request to the last answer
    written: Path | None = None  # the answers file, once complete

    @property
    def photos_per_second(self) -> float:
        attempted = self.classified + len(self.failures)
        return attempted / self.seconds if self.seconds > 0 else 0.0

    @property
    def remaining(self) -> int:
        return self.total - self.resumed - self.classified


def _config_json(protocol: str, reply: Any) -> dict[str, Any]:
    # gRPC wraps the config in {"config": ...}; HTTP returns it bare.
    return dict(reply.get("config", {})) if protocol == "grpc" else dict(reply)


def served_labels(
    url: str,
    protocol: str,
    model: str,
    timeout: float = DEFAULT_TIMEOUT_S,
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF_S,
) -> tuple[str, ...]:
    """The class order of ``GESTURE_PROBS`` as the served model's config states it.

    No fallback: a guessed order would put probabilities under the wrong columns.
    """

    def fetch() -> Any:
        if protocol == "grpc":
            import tritonclient.grpc as tc

            with tc.InferenceServerClient(url) as client:
                return client.get_model_config(model, as_json=True, client_timeout=timeout)
        import tritonclient.http as tc

        with tc.InferenceServerClient(
            url, connection_timeout=timeout, network_timeout=timeout
        ) as client:
            return client.get_model_config(model)

    # The first call of a run: retried like the clients' calls while the server (re)starts.
    for delay in [*backoff_delays(retries, backoff), None]:
        try:
            reply = fetch()
            break
        except Exception as exc:
            if delay is None or not is_retryable(exc):
                raise translate(exc, url, protocol, model) from exc
            time.sleep(delay)
    config = _config_json(protocol, reply)
    try:
        labels = labels_from_config(config, probs_size_from_config(config))
    except OutputError as exc:
        raise ServedLabelsError(f"model {model!r} at {url}: {exc}") from exc
    if labels is None:
        raise ServedLabelsError(
            f"model {model!r} at {url} does not name its classes (no 'labels' parameter "
            f"matching GESTURE_PROBS in its config); rebuild the model repository"
        )
    return labels


def _print(line: str, stream: TextIO) -> None:
    # Through tqdm so the progress bar is redrawn below the line, not through it.
    tqdm.write(line, file=stream)


async def run_submission(
    cfg: SubmitConfig, err: TextIO | None = None, outcome: SubmitOutcome | None = None
) -> SubmitOutcome:
    """Answer the test frames not answered yet; write ``cfg.out`` when none is left.

    ``outcome`` (optional) is filled in as the run goes, so a caller sees the progress made
    even when the run is interrupted.
    """
    err = err or sys.stderr
    frames = read_test_csv(cfg.root, cfg.test_csv)
    partial = partial_path(cfg.out)
    if cfg.restart:
        partial.unlink(missing_ok=True)
    done: dict[str, list[str]] = {}
    if not cfg.restart:
        # A finished answers.csv counts as done too: rerunning a complete submission is free.
        for path in (cfg.out, partial):
            if path.is_file():
                done.update(read_rows(path, frames))
    todo = [frame for frame in frames if frame not in done]
    outcome = outcome or SubmitOutcome(total=len(frames), resumed=0)
    outcome.total, outcome.resumed = len(frames), len(frames) - len(todo)
    if todo:
        await _classify(cfg, todo, done, outcome, err)
    if all(frame in done for frame in frames):
        outcome.written = write_answers(cfg.out, frames, done)
    return outcome


async def _classify(
    cfg: SubmitConfig,
    todo: list[str],
    done: dict[str, list[str]],
    outcome: SubmitOutcome,
    err: TextIO,
) -> None:
    url = cfg.url or default_url(cfg.protocol)
    labels = await asyncio.to_thread(
        served_labels, url, cfg.protocol, cfg.entry_model, cfg.timeout, cfg.retries, cfg.backoff
    )
    order = column_order(labels)
    batch = todo if cfg.max_frames is None else todo[: cfg.max_frames]
    frame_of = {cfg.root / frame: frame for frame in batch}
    model_kwargs = {"model" if cfg.raw else "bytes_model": cfg.model} if cfg.model else {}
    async with AsyncGestureClient(
        url=url,
        protocol=cfg.protocol,
        timeout=cfg.timeout,
        retries=cfg.retries,
        backoff=cfg.backoff,
        labels=labels,
        max_in_flight=cfg.concurrency,
        **model_kwargs,
    ) as client:
        await client.check_ready([cfg.entry_model])
        writer = open_partial(partial_path(cfg.out))
        bar = tqdm(
            total=outcome.total,
            initial=outcome.resumed,
            file=err,
            unit="photo",
            desc="answers",
            disable=True if not cfg.progress else None,
        )
        start = time.perf_counter()
        try:
            # Unordered: a slow frame must not hold the window; the file is ordered at the end.
            async for result in client.classify_many(
                list(frame_of), ordered=False, encoded=not cfg.raw
            ):
                frame = frame_of[result.path]
                if result.result is None:
                    message = str(result.error) or type(result.error).__name__
                    outcome.failures.append((frame, message))
                    _print(f"{PROG}: error: {frame}: {message}", err)
                else:
                    row = answer_row(frame, result.result.probabilities, order)
                    writer.write(row)
                    done[frame] = row
                    outcome.classified += 1
                bar.update(1)
                outcome.seconds = time.perf_counter() - start
        finally:
            writer.close()
            bar.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Write a MachinesCanSee 2021 answers.csv (no_gesture,stop,victory,mute,ok,like,"
            "dislike,frame_path) for the frames of DATA_ROOT/test.csv, classified by the "
            "running gesture-serve. Interrupted runs resume where they stopped."
        ),
        epilog="Exit codes: 0 ok, 1 some frames failed, 2 usage or bad files, "
        "3 server down / model not ready / wrong classes, 130 interrupted.",
    )
    parser.add_argument("root", type=Path, help="data root: test.csv's frame_path are below it")
    parser.add_argument("--test-csv", type=Path, help="default: DATA_ROOT/test.csv")
    parser.add_argument("--out", type=Path, default=Path(ANSWERS_CSV), help="answers file")
    parser.add_argument("--url", help="host:port (default 127.0.0.1:8001 grpc, :8000 http)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="grpc")
    parser.add_argument(
        "--raw", action="store_true", help=f"decode here, send pixels to {ENSEMBLE}"
    )
    parser.add_argument("--model", help="entry point name, if the server renamed it")
    parser.add_argument(
        "--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY, help="requests in flight"
    )
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--retries", type=non_negative_int, default=DEFAULT_RETRIES)
    parser.add_argument(
        "--backoff", type=non_negative_float, default=DEFAULT_BACKOFF_S, help="first wait, s"
    )
    parser.add_argument(
        "--max-frames",
        type=positive_int,
        help="answer at most this many frames in this run (a chunk; the next run continues)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="ignore earlier progress and answer every frame"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _report(outcome: SubmitOutcome, cfg: SubmitConfig, out: TextIO) -> None:
    attempted = outcome.classified + len(outcome.failures)
    if attempted:
        print(
            f"{attempted} frames in {outcome.seconds:.1f} s: {outcome.photos_per_second:.1f} "
            f"photos/s (concurrency {cfg.concurrency}, {cfg.protocol}); "
            f"{outcome.resumed} answered by an earlier run",
            file=out,
        )
    if outcome.written is not None:
        print(f"wrote {outcome.written} ({outcome.total} frames)", file=out)
    else:
        print(
            f"{outcome.total - outcome.remaining} of {outcome.total} frames answered; "
            f"progress kept in {partial_path(cfg.out)}: rerun the same command to continue",
            file=out,
        )


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    cfg = SubmitConfig(
        root=args.root,
        out=args.out,
        test_csv=args.test_csv,
        url=args.url,
        protocol=args.protocol,
        raw=args.raw,
        model=args.model,
        concurrency=args.concurrency,
        timeout=args.timeout,
        retries=args.retries,
        backoff=args.backoff,
        max_frames=args.max_frames,
        restart=args.restart,
        progress=not args.no_progress,
    )
    outcome = SubmitOutcome(total=0, resumed=0)
    try:
        asyncio.run(run_submission(cfg, err, outcome))
    except (FileNotFoundError, SubmissionFileError, ValueError) as exc:
        # LayoutError is a ValueError: a CSV or partial file that cannot be used as it is.
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_USAGE
    except GestureClientError as exc:
        print(f"{PROG}: error: {exc}", file=err)
        return EXIT_SERVER
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted after {outcome.classified} new frames; progress kept in "
            f"{partial_path(cfg.out)}: rerun the same command to continue",
            file=err,
        )
        return EXIT_INTERRUPTED
    _report(outcome, cfg, out)
    if outcome.failures:
        print(
            f"{PROG}: {len(outcome.failures)} of {outcome.total} frames failed; "
            f"rerun to retry them (answers.csv needs every frame)",
            file=err,
        )
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
