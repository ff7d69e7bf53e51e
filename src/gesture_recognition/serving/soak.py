"""A bounded soak of a running server: steady load, zero failed requests, bounded memory.

Worker threads send real photos over gRPC and HTTP to both entry points for a fixed time and
check every answer against the first answer for the same photo (the models are deterministic).
Meanwhile the resident memory of ``tritonserver`` and each of its Python-backend stub
processes is sampled from ``/proc``. After a warm-up (allocator pools, ONNX Runtime arenas and
Triton's request pools settle there), memory must stay within a bound; a per-request leak
grows linearly with the request count and crosses it.

The functional suite runs it briefly (``GESTURE_SOAK_S``, default 60 s) against its server;
``python -m gesture_recognition.serving.soak`` (``scripts/soak.sh``) starts a server of its
own, runs for minutes and writes a markdown report under ``reports/reliability/``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gesture_recognition.images import decode_image
from gesture_recognition.serving.build import default_repository_dir, ensure_repository
from gesture_recognition.serving.contract import ENSEMBLE, ENSEMBLE_BYTES
from gesture_recognition.serving.launcher import TritonServer, free_port
from gesture_recognition.serving.processes import process_tree_rss, stub_processes

MIB = 1024 * 1024
DEFAULT_CONCURRENCY = 4
DEFAULT_SAMPLE_S = 1.0
# Memory may grow this much after the warm-up (whichever is larger) before it counts as a leak.
DEFAULT_MAX_GROWTH_MIB = 64.0
DEFAULT_MAX_GROWTH_FRACTION = 0.10
CLIENT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SoakPhoto:
    name: str
    encoded: bytes
    pixels: np.ndarray


@dataclass
class MemorySample:
    t: float  # seconds since the soak started
    by_process: dict[str, int]  # "tritonserver" / model name of a stub -> RSS bytes

    @property
    def total(self) -> int:
        return sum(self.by_process.values())


@dataclass
class SoakResult:
    duration_s: float
    concurrency: int
    ok: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, verbatim
    latencies_s: list[float] = field(default_factory=list)
    samples: list[MemorySample] = field(default_factory=list)
    warmup_s: float = 0.0
    max_growth_bytes: int = 0

    @property
    def requests(self) -> int:
        return self.ok + self.failed

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_s), q) * 1000.0)

    def _settled(self) -> list[MemorySample]:
        return [s for s in self.samples if s.t >= self.warmup_s]

    def memory_window(self) -> tuple[MemorySample, MemorySample] | None:
        """(first, last) samples after the warm-up, each the median of three to damp noise."""
        settled = self._settled()
        if len(settled) < 6:
            return None

        def median_of(group: list[MemorySample]) -> MemorySample:
            keys = set().union(*(s.by_process for s in group))
            return MemorySample(
                t=group[len(group) // 2].t,
                by_process={
                    k: int(statistics.median(s.by_process.get(k, 0) for s in group)) for k in keys
                },
            )

        return median_of(settled[:3]), median_of(settled[-3:])

    def growth_bytes(self) -> int | None:
        window = self.memory_window()
        return None if window is None else window[1].total - window[0].total

    def problems(self) -> list[str]:
        """Why this soak failed; empty when it passed."""
        found = []
        if self.failed:
            found.append(f"{self.failed} of {self.requests} requests failed: {self.errors[:3]}")
        if self.ok == 0:
            found.append("no request succeeded")
        growth = self.growth_bytes()
        if growth is None:
            found.append(f"too few memory samples after the {self.warmup_s:.0f} s warm-up")
        elif growth > self.max_growth_bytes:
            found.append(
                f"memory grew {growth / MIB:.1f} MiB after the warm-up, more than the bound "
                f"of {self.max_growth_bytes / MIB:.1f} MiB (a leak)"
            )
        if self.samples and len({frozenset(s.by_process) for s in self._settled()}) > 1:
            found.append("the set of server processes changed during the soak (a crash?)")
        return found


def load_photos(folder: Path) -> list[SoakPhoto]:
    photos = []
    for path in sorted(folder.glob("*.jpg")):
        data = path.read_bytes()
        photos.append(SoakPhoto(path.name, data, decode_image(data)))
    if not photos:
        raise FileNotFoundError(f"no *.jpg photos in {folder}")
    return photos


def sample_memory(server_pid: int) -> dict[str, int]:
    rss = process_tree_rss(server_pid)
    names = stub_processes(server_pid)
    out: dict[str, int] = {}
    for pid, value in rss.items():
        name = "tritonserver" if pid == server_pid else names.get(pid)
        if name is not None:
            out[name] = out.get(name, 0) + value
    return out


def _summary(protocol: str, result: object) -> tuple[str, int]:
    gesture = result.as_numpy("GESTURE").reshape(-1)[0]  # type: ignore[attr-defined]
    boxes = result.as_numpy("HAND_BOXES")  # type: ignore[attr-defined]
    text = gesture.decode() if isinstance(gesture, bytes) else str(gesture)
    return text, int(boxes.shape[0])


def _worker(
    index: int,
    urls: dict[str, str],
    photos: Sequence[SoakPhoto],
    deadline: float,
    result: SoakResult,
    expected: dict[tuple[str, str], tuple[str, int]],
    lock: threading.Lock,
) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    # Every combination of protocol and entry point is kept busy by some worker.
    protocol = ("grpc", "http")[index % 2]
    entry = (ENSEMBLE_BYTES, ENSEMBLE)[(index // 2) % 2]
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(urls[protocol])
    i = index
    try:
        while time.monotonic() < deadline:
            photo = photos[i % len(photos)]
            i += 1
            if entry == ENSEMBLE:
                tensor = module.InferInput("IMAGE", list(photo.pixels.shape), "UINT8")
                tensor.set_data_from_numpy(photo.pixels)
            else:
                tensor = module.InferInput("IMAGE_BYTES", [1], "BYTES")
                tensor.set_data_from_numpy(np.array([photo.encoded], dtype=np.object_))
            start = time.monotonic()
            try:
                if protocol == "grpc":
                    answer = client.infer(entry, [tensor], client_timeout=CLIENT_TIMEOUT_S)
                else:
                    answer = client.infer(entry, [tensor], timeout=int(CLIENT_TIMEOUT_S))
                summary = _summary(protocol, answer)
                error = None
            except Exception as exc:  # every failure is counted, none ends the soak
                summary, error = None, f"{protocol} {entry} {photo.name}: {exc}"
            elapsed = time.monotonic() - start
            with lock:
                if summary is not None:
                    first = expected.setdefault((photo.name, entry), summary)
                    if summary != first:
                        error = f"{protocol} {entry} {photo.name}: answer {summary} != {first}"
                if error is None:
                    result.ok += 1
                    result.latencies_s.append(elapsed)
                else:
                    result.failed += 1
                    if len(result.errors) < 10:
                        result.errors.append(error)
    finally:
        client.close()


def run_soak(
    server_pid: int,
    grpc_url: str,
    http_url: str,
    photos: Sequence[SoakPhoto],
    duration_s: float,
    concurrency: int = DEFAULT_CONCURRENCY,
    sample_s: float = DEFAULT_SAMPLE_S,
    warmup_s: float | None = None,
    max_growth_mib: float = DEFAULT_MAX_GROWTH_MIB,
    max_growth_fraction: float = DEFAULT_MAX_GROWTH_FRACTION,
) -> SoakResult:
    """Load the server for ``duration_s`` and measure; ``result.problems()`` says if it held."""
    if concurrency < 1 or duration_s <= 0:
        raise ValueError("concurrency must be >= 1 and duration positive")
    result = SoakResult(duration_s=duration_s, concurrency=concurrency)
    result.warmup_s = warmup_s if warmup_s is not None else max(10.0, 0.25 * duration_s)
    urls = {"grpc": grpc_url, "http": http_url}
    expected: dict[tuple[str, str], tuple[str, int]] = {}
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + duration_s
    threads = [
        threading.Thread(
            target=_worker,
            args=(i, urls, photos, deadline, result, expected, lock),
            daemon=True,
        )
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    while time.monotonic() < deadline:
        result.samples.append(MemorySample(time.monotonic() - start, sample_memory(server_pid)))
        time.sleep(sample_s)
    for thread in threads:
        thread.join(timeout=CLIENT_TIMEOUT_S + 5)
    result.samples.append(MemorySample(time.monotonic() - start, sample_memory(server_pid)))
    window = result.memory_window()
    baseline = window[0].total if window else 0
    result.max_growth_bytes = int(max(max_growth_mib * MIB, max_growth_fraction * baseline))
    return result


def _sensitivity_kib(result: SoakResult) -> float:
    """The per-request leak that would just cross the bound over the post-warm-up requests."""
    after = result.requests * max(0.0, 1.0 - result.warmup_s / result.duration_s)
    return result.max_growth_bytes / 1024 / max(after, 1.0)


def report_markdown(result: SoakResult, command: str, machine: str) -> str:
    """The measurements as a markdown report."""
    window = result.memory_window()
    problems = result.problems()
    lines = [
        "# Soak test",
        "",
        f"- Verdict: **{'PASS' if not problems else 'FAIL'}**"
        + ("" if not problems else " — " + "; ".join(problems)),
        f"- Command: `{command}`",
        f"- Machine: {machine}",
        f"- Duration {result.duration_s:.0f} s, concurrency {result.concurrency} (threads "
        "alternating gRPC/HTTP and IMAGE_BYTES/IMAGE), loopback only",
        f"- Requests: {result.requests} ({result.requests / result.duration_s:.1f}/s), "
        f"ok {result.ok}, failed {result.failed}",
        f"- Latency p50 {result.percentile_ms(50):.1f} ms, p95 {result.percentile_ms(95):.1f} "
        f"ms, p99 {result.percentile_ms(99):.1f} ms, max {result.percentile_ms(100):.1f} ms",
        f"- Memory bound after the {result.warmup_s:.0f} s warm-up: "
        f"{result.max_growth_bytes / MIB:.1f} MiB, so a leak of more than "
        f"{_sensitivity_kib(result):.0f} KiB per request fails this run",
        "",
    ]
    if result.errors:
        lines += ["## First errors", "", *[f"- `{e}`" for e in result.errors], ""]
    if window is not None:
        first, last = window
        lines += [
            f"## Resident memory (MiB): after warm-up (t={first.t:.0f} s) and at the end "
            f"(t={last.t:.0f} s)",
            "",
            "| process | after warm-up | end | growth |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name in sorted(set(first.by_process) | set(last.by_process)):
            a, b = first.by_process.get(name, 0), last.by_process.get(name, 0)
            lines.append(f"| {name} | {a / MIB:.1f} | {b / MIB:.1f} | {(b - a) / MIB:+.1f} |")
        lines.append(
            f"| **total** | {first.total / MIB:.1f} | {last.total / MIB:.1f} | "
            f"{(last.total - first.total) / MIB:+.1f} |"
        )
        lines.append("")
    if result.samples:
        step = max(1, len(result.samples) // 20)
        lines += ["## Total RSS over time", "", "| t (s) | MiB |", "| ---: | ---: |"]
        lines += [f"| {s.t:.0f} | {s.total / MIB:.1f} |" for s in result.samples[::step]]
        lines.append("")
    return "\n".join(lines)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average " + " ".join(f"{x:.1f}" for x in os.getloadavg()) + " at the end"
    return (
        f"{os.cpu_count()} CPU cores ({cpu}) shared with other work{load}, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    from gesture_recognition.artifacts import shipped_models_dir

    root = shipped_models_dir().parent
    parser = argparse.ArgumentParser(
        prog="python -m gesture_recognition.serving.soak",
        description="Start a local Triton on free loopback ports, soak it, write a report.",
    )
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    parser.add_argument("--photos", type=Path, default=root / "samples")
    parser.add_argument("--model-repository", type=Path, default=default_repository_dir())
    parser.add_argument("--models-dir", type=Path, default=shipped_models_dir())
    parser.add_argument("--max-growth-mib", type=float, default=DEFAULT_MAX_GROWTH_MIB)
    parser.add_argument("--out", type=Path, default=root / "reports" / "reliability" / "soak.md")
    args = parser.parse_args(argv)
    repository = ensure_repository(args.model_repository, args.models_dir)
    photos = load_photos(args.photos)
    server = TritonServer(
        repository, http_port=free_port(), grpc_port=free_port(), metrics_port=free_port()
    )
    with server:
        assert server.pid is not None
        print(f"soaking {server.grpc_url} / {server.http_url} for {args.duration:.0f} s ...")
        result = run_soak(
            server.pid,
            server.grpc_url,
            server.http_url,
            photos,
            args.duration,
            args.concurrency,
            max_growth_mib=args.max_growth_mib,
        )
    # Relative to the repository: reports must not carry this machine's paths.
    shown = [a if not a.startswith(str(root)) else os.path.relpath(a, root) for a in sys.argv[1:]]
    command = " ".join(["python -m gesture_recognition.serving.soak", *shown])
    text = report_markdown(result, command, machine_description())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 1 if result.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
