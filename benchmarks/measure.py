"""Latency/throughput series: one shape for perf_analyzer rows and in-process timings, so the
report compares like with like (milliseconds, photos per second)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TypeVar

T = TypeVar("T")
US_PER_MS = 1000.0


@dataclass(frozen=True)
class Point:
    """One measurement: a series at one concurrency."""

    series: str
    concurrency: int
    throughput: float  # photos (inferences) per second
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    requests: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (what perf_analyzer reports)."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil without float error
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def point_from_latencies(
    series: str, concurrency: int, latencies_s: Sequence[float], wall_s: float
) -> Point:
    values = sorted(v * 1000.0 for v in latencies_s)
    if wall_s <= 0:
        raise ValueError("wall time must be positive")
    return Point(
        series=series,
        concurrency=concurrency,
        throughput=len(values) / wall_s,
        p50_ms=percentile(values, 50),
        p90_ms=percentile(values, 90),
        p95_ms=percentile(values, 95),
        p99_ms=percentile(values, 99),
        avg_ms=statistics.fmean(values),
        requests=len(values),
    )


def point_from_perf_row(series: str, row: dict[str, float], requests: int) -> Point:
    """A row of perf_analyzer's CSV (microseconds) as a :class:`Point`. perf_analyzer's CSV has
    no average column: the average is the sum of its latency components."""
    parts = (
        "Client Send",
        "Network+Server Send/Recv",
        "Server Queue",
        "Server Compute Input",
        "Server Compute Infer",
        "Server Compute Output",
        "Client Recv",
    )
    return Point(
        series=series,
        concurrency=int(row["Concurrency"]),
        throughput=row["Inferences/Second"],
        p50_ms=row["p50 latency"] / US_PER_MS,
        p90_ms=row["p90 latency"] / US_PER_MS,
        p95_ms=row["p95 latency"] / US_PER_MS,
        p99_ms=row["p99 latency"] / US_PER_MS,
        avg_ms=sum(row.get(p, 0.0) for p in parts) / US_PER_MS,
        requests=requests,
    )


def measure_callable(
    series: str,
    fn: Callable[[T], object],
    inputs: Sequence[T],
    concurrency: int = 1,
    requests: int = 100,
    warmup: int = 5,
) -> Point:
    """Call ``fn`` on ``inputs`` round-robin from ``concurrency`` threads (ONNX Runtime and
    PyTorch release the GIL while they compute) and time every call."""
    if concurrency < 1 or requests < 1:
        raise ValueError("concurrency and requests must be at least 1")
    if not inputs:
        raise ValueError("no inputs to measure on")
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    latencies: list[float] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            fn(inputs[i % len(inputs)])
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return point_from_latencies(series, concurrency, latencies, time.perf_counter() - begin)
