"""The monitoring and load-test files work against a real Triton.

Starts its own server with the flags docker-compose.yml and the Kubernetes Deployment pass
(``--metrics-config=summary_latencies=true``; the session server of conftest.py runs without
it), sends photos through both ensembles, and reads /metrics: every metric the Grafana dashboard,
the prometheus-adapter rule and the unit tests' list of Triton metrics use must be there, with
per-model series for the ensembles and their steps. Then docker-compose.yml's ``loadtest``
command, pointed at the same server, with the input data its ``loadtest-data`` service writes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from PIL import Image

from gesture_recognition.benchmarks import perf_analyzer
from gesture_recognition.serving.launcher import TritonServer
from tests.conftest import sample_photos
from tests.unit.deployment_files import (
    DASHBOARD,
    DEPLOY,
    TRITON_GPU_METRICS,
    TRITON_METRICS,
    adapter_expr_to_promql,
    dashboard_exprs,
    flag_value,
    grafana_expr_to_promql,
    metric_names,
    service,
)

from .conftest import cpu_server

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
PHOTO = sample_photos()[1]  # one hand
ENSEMBLES = ("gesture_ensemble", "gesture_ensemble_bytes")
REQUESTS = 2


def compose_server_flags() -> list[str]:
    """The flags of the compose Triton command that shape /metrics."""
    return [a for a in service("triton")["command"] if a.startswith("--metrics-config")]


@pytest.fixture(scope="module")
def compose_like_server(serving_models, tmp_path_factory) -> Iterator[TritonServer]:
    work = tmp_path_factory.mktemp("triton_metrics")
    server = cpu_server(serving_models.path, work, extra_args=compose_server_flags())
    with server:
        yield server


@pytest.fixture(scope="module")
def metrics_text(compose_like_server: TritonServer) -> str:
    server = compose_like_server
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
    try:
        image = np.asarray(Image.open(PHOTO).convert("RGB"))
        pixels = httpclient.InferInput("IMAGE", list(image.shape), "UINT8")
        pixels.set_data_from_numpy(image)
        jpeg = httpclient.InferInput("IMAGE_BYTES", [1], "BYTES")
        jpeg.set_data_from_numpy(np.array([PHOTO.read_bytes()], dtype=np.object_))
        for _ in range(REQUESTS):
            client.infer("gesture_ensemble", [pixels])
            client.infer("gesture_ensemble_bytes", [jpeg])
    finally:
        client.close()
    # An ensemble's success counter moves just after its response is sent: poll briefly.
    deadline = time.monotonic() + 20
    while True:
        text = scrape(server)
        counts = successes(text)
        if all(counts.get(m, 0) >= REQUESTS for m in ENSEMBLES) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def scrape(server: TritonServer) -> str:
    with urllib.request.urlopen(server.metrics_url, timeout=30) as response:
        return response.read().decode("utf-8")


def successes(text: str) -> dict[str, int]:
    return {
        m.group(1): int(float(m.group(2)))
        for m in re.finditer(
            r'^nv_inference_request_success\{model="(\w+)",version="1"\} (\S+)$', text, flags=re.M
        )
    }


def exported(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\w+) \w+$", text, flags=re.M))


def test_the_metric_list_matches_a_live_server(metrics_text):
    missing = (TRITON_METRICS - TRITON_GPU_METRICS) - exported(metrics_text)
    assert not missing, f"Triton does not export {sorted(missing)}"


def test_every_dashboard_and_autoscaling_metric_is_exported(metrics_text):
    names = exported(metrics_text)
    used = set()
    for expr in dashboard_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8"))):
        used |= metric_names(grafana_expr_to_promql(expr))
    values = yaml.safe_load(
        (DEPLOY / "k8s" / "monitoring" / "prometheus-adapter-values.yaml").read_text()
    )
    for rule in values["rules"]["custom"]:
        used |= metric_names(rule["seriesQuery"])
        used |= metric_names(adapter_expr_to_promql(rule["metricsQuery"]))
    assert not (used - TRITON_GPU_METRICS) - names


def test_per_model_series_for_the_queries(metrics_text):
    counts = successes(metrics_text)
    for model in (*ENSEMBLES, "hand_detector", "gesture_classifier"):
        assert counts.get(model, 0) >= REQUESTS, (model, counts)
    # The p99 panel reads this quantile; it exists only with summary_latencies=true.
    p99 = [
        line
        for line in metrics_text.splitlines()
        if line.startswith("nv_inference_request_summary_us{")
        and 'model="gesture_ensemble"' in line
        and 'quantile="0.99"' in line
    ]
    assert p99 and float(p99[0].rsplit(" ", 1)[1]) > 0


def test_the_compose_loadtest_command_drives_the_ensemble(
    compose_like_server, metrics_text, tmp_path
):
    """docker-compose.yml's loadtest, pointed at this server: its input data parses and its
    photo reaches every step (the classifier runs only when the detector found a hand)."""
    server = compose_like_server
    data = service("loadtest-data")["command"]
    written = flag_value(data, "--out")
    local_data = tmp_path / Path(written).name
    subprocess.run(
        [sys.executable, str(ROOT / data[1]), str(ROOT / data[2]), "--out", str(local_data)],
        check=True,
        capture_output=True,
    )
    command = service("loadtest")["command"]
    replace = {
        written: str(local_data),
        flag_value(command, "-u"): server.grpc_url,
        flag_value(command, "--metrics-url"): server.metrics_url,
        flag_value(command, "-f"): str(tmp_path / "results.csv"),
        flag_value(command, "--concurrency-range"): "1:1",
    }
    args = [replace.get(a, a) for a in command[1:]]
    # Bounded: on two shared cores the default time windows may never call the numbers
    # stable, and stability is not what this test is about.
    args += ["--measurement-mode", "count_windows", "--measurement-request-count", "5"]
    args += ["--max-trials", "3"]
    before = successes(scrape(server))
    result = subprocess.run(
        [str(perf_analyzer.find_binary()), *args],
        env=perf_analyzer.environment(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = result.stdout + result.stderr
    assert "Successfully read data" in log, log[-2000:]
    after = successes(scrape(server))
    for model in ("gesture_ensemble", "hand_detector", "gesture_classifier"):
        assert after[model] - before.get(model, 0) >= 5, (model, log[-2000:])
    # Stable or not, perf_analyzer must not have failed on the data or the server.
    assert result.returncode == 0 or "Failed to obtain stable measurement" in log, log[-2000:]
