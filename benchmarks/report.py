"""The benchmark report: markdown tables, throughput-vs-latency plots (PNG) and the target
ratios, from the ``results.json`` that ``gesture-bench run`` writes (so a report can be redrawn
without re-measuring: ``gesture-bench report DIR``)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .measure import Point

RESULTS_JSON = "results.json"
REPORT_MD = "REPORT.md"
LATENCY_TARGET = 1.15  # served c=1 p50 / in-process c=1 p50, at most
THROUGHPUT_TARGET = 3.0  # best served throughput / naive PyTorch throughput, at least

# Series names the targets are computed from (written by the runner).
INPROCESS = "in-process ONNX (IMAGE)"
SERVED_GRPC = "served gesture_ensemble gRPC"
SERVED_PREFIX = "served gesture_ensemble"
NAIVE = "naive PyTorch"


def points(results: dict[str, Any]) -> list[Point]:
    return [Point(**p) for p in results["series"]]


def at(series: Sequence[Point], name: str, concurrency: int) -> Point | None:
    for p in series:
        if p.series == name and p.concurrency == concurrency:
            return p
    return None


def best(series: Sequence[Point], prefix: str) -> Point | None:
    """The highest-throughput point of every series whose name starts with ``prefix``."""
    matching = [p for p in series if p.series.startswith(prefix)]
    return max(matching, key=lambda p: p.throughput) if matching else None


@dataclass(frozen=True)
class Ratio:
    """A target ratio of two measured points, and whether it meets its target."""

    served: Point
    baseline: Point
    value: float
    met: bool


def latency_ratio(series: Sequence[Point]) -> Ratio | None:
    """Served gRPC p50 / in-process p50, both at concurrency 1 (target: at most 1.15x)."""
    served, local = at(series, SERVED_GRPC, 1), at(series, INPROCESS, 1)
    if served is None or local is None:
        return None
    value = served.p50_ms / local.p50_ms
    return Ratio(served, local, value, value <= LATENCY_TARGET)


def throughput_ratio(series: Sequence[Point]) -> Ratio | None:
    """Best served photos/s / naive PyTorch photos/s (target: at least 3x)."""
    top, naive = best(series, SERVED_PREFIX), at(series, NAIVE, 1)
    if top is None or naive is None:
        return None
    value = top.throughput / naive.throughput
    return Ratio(top, naive, value, value >= THROUGHPUT_TARGET)


def target_lines(series: Sequence[Point]) -> list[str]:
    lines = []
    latency = latency_ratio(series)
    if latency is not None:
        lines.append(
            f"- Latency at concurrency 1, served gRPC / in-process (p50): "
            f"{latency.served.p50_ms:.1f} / {latency.baseline.p50_ms:.1f} ms = "
            f"**{latency.value:.2f}x** (target <= {LATENCY_TARGET}x: "
            f"{'met' if latency.met else 'NOT met'})"
        )
    throughput = throughput_ratio(series)
    if throughput is not None:
        lines.append(
            f"- Throughput, best served ({throughput.served.series}, concurrency "
            f"{throughput.served.concurrency}) / naive PyTorch: "
            f"{throughput.served.throughput:.1f} / {throughput.baseline.throughput:.1f} "
            f"photos/s = **{throughput.value:.2f}x** (target >= {THROUGHPUT_TARGET}x: "
            f"{'met' if throughput.met else 'NOT met'})"
        )
    return lines


def table(series: Sequence[Point]) -> list[str]:
    rows = [
        "| series | concurrency | photos/s | p50 ms | p90 ms | p99 ms | avg ms | requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in series:
        rows.append(
            f"| {p.series} | {p.concurrency} | {p.throughput:.1f} | {p.p50_ms:.1f} | "
            f"{p.p90_ms:.1f} | {p.p99_ms:.1f} | {p.avg_ms:.1f} | {p.requests} |"
        )
    return rows


def breakdown_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    out = [
        "| model | requests | queue ms | compute input ms | compute infer ms | "
        "compute output ms | total ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        total = sum(
            float(r[k])
            for k in ("queue_ms", "compute_input_ms", "compute_infer_ms", "compute_output_ms")
        )
        out.append(
            f"| {r['model']} | {r['requests']} | {r['queue_ms']:.2f} | "
            f"{r['compute_input_ms']:.2f} | {r['compute_infer_ms']:.2f} | "
            f"{r['compute_output_ms']:.2f} | {total:.2f} |"
        )
    return out


def plot(series: Sequence[Point], path: Path, latency: str = "p50_ms") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[Point]] = defaultdict(list)
    for p in series:
        groups[p.series].append(p)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, pts in groups.items():
        pts.sort(key=lambda p: p.concurrency)
        xs = [p.throughput for p in pts]
        ys = [getattr(p, latency) for p in pts]
        ax.plot(xs, ys, marker="o", label=name)
        for p, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(str(p.concurrency), (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("throughput (photos/s)")
    ax.set_ylabel(f"{latency.removesuffix('_ms')} latency (ms)")
    ax.set_title(f"Throughput vs {latency.removesuffix('_ms')} latency (labels: concurrency)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: Path) -> Path:
    results = json.loads((out_dir / RESULTS_JSON).read_text())
    series = points(results)
    host = results["host"]
    lines = [
        f"# {results.get('title', 'Load test')}",
        "",
        f"Measured {results['date']} by `{results['command']}` (commit {host['commit']}).",
        "",
        "## Machine",
        "",
        f"- CPU: {host['cpu']}, {host['cores']} cores; memory {host['memory_gib']} GiB; "
        f"{host['os']}; Python {host['python']}",
        *(f"- GPU: {gpu}" for gpu in host.get("gpus") or ["none"]),
        "- " + ", ".join(f"{k} {v}" for k, v in host["packages"].items()),
        f"- Photos: {results['photos']['count']} from `{results['photos']['folder']}` "
        f"({results['photos']['hands']} hands in all by the in-process pipeline); every series "
        "runs on the same photos.",
        f"- Serving options: `{json.dumps(results['options'])}`",
        "",
    ]
    targets = target_lines(series)
    if targets:
        lines += ["## Targets", "", *targets, ""]
    for note in results.get("notes", []):
        lines.append(f"> {note}")
    lines += ["", "## Results", "", *table(series), ""]
    if series:
        plot(series, out_dir / "throughput_latency_p50.png", "p50_ms")
        plot(series, out_dir / "throughput_latency_p99.png", "p99_ms")
        lines += [
            "![throughput vs p50](throughput_latency_p50.png)",
            "",
            "![throughput vs p99](throughput_latency_p99.png)",
            "",
        ]
    if results.get("breakdown"):
        lines += [
            "## Where the served time goes",
            "",
            "Triton's per-model statistics during the gRPC `gesture_ensemble` run at "
            "concurrency 1 (averages per request):",
            "",
            *breakdown_table(results["breakdown"]),
            "",
        ]
    lines += ["## Commands", "", "```"]
    lines += [f"# {name}\n{cmd}" for name, cmd in results.get("commands", {}).items()]
    lines += ["```", ""]
    path = out_dir / REPORT_MD
    path.write_text("\n".join(lines))
    return path
