"""Where the served time goes: per-model averages from Triton's statistics extension
(``GET /v2/models/stats``), as the difference between two snapshots around a measurement."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ModelTime:
    model: str
    requests: int
    executions: int
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float

    @property
    def total_ms(self) -> float:
        return (
            self.queue_ms + self.compute_input_ms + self.compute_infer_ms + self.compute_output_ms
        )


Snapshot = dict[str, dict[str, int]]


def snapshot(http_url: str, timeout_s: float = 10.0) -> Snapshot:
    """Cumulative counters per model: ``success`` count and nanoseconds per phase."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/stats", timeout=timeout_s) as resp:
        body = json.load(resp)
    return parse_stats(body)


def parse_stats(body: dict[str, Any]) -> Snapshot:
    """Triton's ``/v2/models/stats`` JSON (parsed) as counters per model."""
    out: Snapshot = {}
    for entry in body.get("model_stats", []):
        stats = entry["inference_stats"]
        counters = {
            "requests": int(stats["success"]["count"]),
            "executions": int(entry.get("execution_count", 0)),
        }
        for phase in PHASES:
            counters[phase] = int(stats[phase]["ns"])
        out[entry["name"]] = counters
    return out


def difference(before: Snapshot, after: Snapshot) -> list[ModelTime]:
    """Average milliseconds per request of each model that served requests in between."""
    rows = []
    for model, end in after.items():
        start = before.get(model, {k: 0 for k in end})
        requests = end["requests"] - start["requests"]
        if requests <= 0:
            continue
        per = {p: (end[p] - start[p]) / requests / 1e6 for p in PHASES}
        rows.append(
            ModelTime(
                model=model,
                requests=requests,
                executions=end["executions"] - start["executions"],
                queue_ms=per["queue"],
                compute_input_ms=per["compute_input"],
                compute_infer_ms=per["compute_infer"],
                compute_output_ms=per["compute_output"],
            )
        )
    return sorted(rows, key=lambda r: r.model)
