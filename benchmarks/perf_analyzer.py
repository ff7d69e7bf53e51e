"""Finding, invoking and reading Triton's ``perf_analyzer``.

The binary comes from the ``tritonclient==2.50.0`` wheel (newer wheels need glibc 2.38; PyPI's
``perf-analyzer`` is an empty placeholder). It links ``libcudart.so.12`` even for CPU-only
servers and ``libb64.so.0d``: ``scripts/install_perf_analyzer.sh`` puts the first in the venv
(``nvidia-cuda-runtime-cu12``) and unpacks Debian's ``libb64-0d`` into ``.venv/opt/libb64``
without needing root; this module points ``LD_LIBRARY_PATH`` at both.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

INSTALL_HINT = "install it with: scripts/install_perf_analyzer.sh"
# Where the install script unpacks libb64 (relative to the venv root, sys.prefix).
LIBB64_SUBDIR = Path("opt/libb64/usr/lib/x86_64-linux-gnu")
PROTOCOL_PORT_KEYS = ("grpc", "http")


class PerfAnalyzerError(RuntimeError):
    """perf_analyzer is missing, cannot start, or a run failed."""


class UnstableMeasurementError(PerfAnalyzerError):
    """perf_analyzer found no stable windows (a noisy host): retry with a looser tolerance."""


def find_binary() -> Path:
    """``perf_analyzer`` from the active venv first, then ``PATH``."""
    here = Path(sys.prefix) / "bin" / "perf_analyzer"
    if here.is_file():
        return here
    found = shutil.which("perf_analyzer")
    if found is None:
        raise PerfAnalyzerError(f"perf_analyzer not found; {INSTALL_HINT}")
    return Path(found)


def library_dirs() -> list[Path]:
    """Folders holding the shared libraries the wheel's binary needs but does not ship."""
    dirs: list[Path] = []
    try:
        import nvidia.cuda_runtime

        for root in nvidia.cuda_runtime.__path__:
            lib = Path(root) / "lib"
            if (lib / "libcudart.so.12").is_file():
                dirs.append(lib)
    except ImportError:
        pass
    libb64 = Path(sys.prefix) / LIBB64_SUBDIR
    if (libb64 / "libb64.so.0d").is_file():
        dirs.append(libb64)
    return dirs


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    extra = [str(d) for d in library_dirs()]
    if env.get("LD_LIBRARY_PATH"):
        extra.append(env["LD_LIBRARY_PATH"])
    if extra:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(extra)
    return env


def check_runs(binary: Path | None = None) -> str:
    """Start the binary once; a missing library becomes one clear error, not a loader trace."""
    exe = binary or find_binary()
    proc = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, env=environment(), check=False
    )
    text = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "error while loading shared libraries" in text:
        raise PerfAnalyzerError(f"{exe} does not start ({text.splitlines()[-1]}); {INSTALL_HINT}")
    return text


@dataclass(frozen=True)
class PerfRun:
    """One perf_analyzer invocation: a model, a protocol and a concurrency range."""

    model: str
    url: str  # host:port of the protocol's endpoint
    protocol: str  # grpc | http
    input_data: Path | None
    concurrency: tuple[int, int, int]  # start, end, step
    csv_path: Path
    request_count: int = 50  # requests per measurement window (count_windows mode)
    stability_percentage: int = 10
    max_trials: int = 10
    shape: tuple[str, ...] = ()  # "NAME:d1,d2" for inputs perf_analyzer cannot infer
    shared_memory: str = "none"  # none | system
    output_shared_memory_size: int = 0
    verbose_csv: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOL_PORT_KEYS:
            raise ValueError(f"protocol must be grpc or http, got {self.protocol!r}")
        start, end, step = self.concurrency
        if start < 1 or end < start or step < 1:
            raise ValueError(f"bad concurrency range {self.concurrency}")
        if self.request_count < 1:
            raise ValueError("request_count must be at least 1")
        if self.shared_memory not in ("none", "system"):
            raise ValueError("shared_memory must be none or system")

    def arguments(self) -> list[str]:
        """The command line after the binary name (count_windows: steady on noisy hosts)."""
        start, end, step = self.concurrency
        args = [
            "-m",
            self.model,
            "-u",
            self.url,
            "-i",
            self.protocol,
            "--concurrency-range",
            f"{start}:{end}:{step}",
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            str(self.request_count),
            "--stability-percentage",
            str(self.stability_percentage),
            "--max-trials",
            str(self.max_trials),
            "-f",
            str(self.csv_path),
        ]
        if self.verbose_csv:
            args.append("--verbose-csv")
        if self.input_data is not None:
            args += ["--input-data", str(self.input_data)]
        for shape in self.shape:
            args += ["--shape", shape]
        if self.shared_memory != "none":
            args += ["--shared-memory", self.shared_memory]
            if self.output_shared_memory_size:
                args += ["--output-shared-memory-size", str(self.output_shared_memory_size)]
        return args


def run(spec: PerfRun, timeout_s: float, log_path: Path | None = None) -> list[dict[str, float]]:
    """Run perf_analyzer; its rows (one per concurrency) as numbers. Failures raise with the
    tail of its output."""
    exe = find_binary()
    spec.csv_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [str(exe), *spec.arguments()],
            capture_output=True,
            text=True,
            env=environment(),
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PerfAnalyzerError(
            f"perf_analyzer on {spec.model} ({spec.protocol}) ran past {timeout_s:.0f} s"
        ) from exc
    output = proc.stdout + proc.stderr
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(output)
    if proc.returncode != 0 and "Failed to obtain stable measurement" in output:
        raise UnstableMeasurementError(
            f"perf_analyzer on {spec.model} ({spec.protocol}) found no stable measurement within "
            f"{spec.stability_percentage}% over {spec.max_trials} windows"
        )
    if proc.returncode != 0 or not spec.csv_path.is_file():
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise PerfAnalyzerError(
            f"perf_analyzer on {spec.model} ({spec.protocol}) exited {proc.returncode}:\n{tail}"
        )
    rows = read_csv(spec.csv_path)
    start, end, step = spec.concurrency
    measured = [int(r.get("Concurrency", 0)) for r in rows]
    if measured != list(range(start, end + 1, step)):
        # perf_analyzer may end a sweep early, exit 0, and leave only the stable levels.
        tail = "\n".join(output.strip().splitlines()[-8:])
        raise UnstableMeasurementError(
            f"perf_analyzer on {spec.model} ({spec.protocol}) measured concurrency {measured} "
            f"of {start}:{end}:{step}:\n{tail}"
        )
    return rows


def run_until_stable(
    spec: PerfRun, timeout_s: float, log_path: Path | None = None, max_percentage: int = 40
) -> tuple[list[dict[str, float]], PerfRun]:
    """:func:`run`, doubling the stability tolerance (10 -> 20 -> 40 %) while a noisy host
    gives no stable windows. Returns the rows and the settings that produced them."""
    while True:
        try:
            return run(spec, timeout_s, log_path=log_path), spec
        except UnstableMeasurementError:
            if spec.stability_percentage >= max_percentage:
                raise
            loosened = min(spec.stability_percentage * 2, max_percentage)
            spec = replace(spec, stability_percentage=loosened)


def read_csv(path: Path) -> list[dict[str, float]]:
    """perf_analyzer's ``-f`` CSV: one row per concurrency, every column numeric, times in us."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise PerfAnalyzerError(f"{path} holds no measurement")
    out = []
    for row in rows:
        try:
            out.append({key: float(value) for key, value in row.items() if key and value != ""})
        except ValueError as exc:
            raise PerfAnalyzerError(f"{path}: non-numeric value in {row}") from exc
    return out


def client_request_count(log: str) -> int:
    """Requests the client completed in the final (reported) measurement, from the log; the
    CSV does not carry it."""
    counts = [int(m) for m in re.findall(r"Client:\s*\n\s*Request count: (\d+)", log)]
    return counts[-1] if counts else 0


def command_line(spec: PerfRun) -> str:
    """How to repeat a run by hand (written into the report)."""
    return " ".join(["perf_analyzer", *spec.arguments()])


def passthrough(argv: Sequence[str]) -> int:
    """``gesture-bench perf-analyzer -- ARGS``: the binary with its libraries found."""
    exe = find_binary()
    return subprocess.call([str(exe), *argv], env=environment())
