"""Prometheus, Grafana, prometheus-adapter and the Kubernetes manifests, checked without a
cluster: every query parsed by a real PromQL parser and its metric names checked against
Triton's, every manifest validated strictly against the Kubernetes schemas."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .deployment_files import (
    DASHBOARD,
    DASHBOARD_MUST_SHOW,
    DEPLOY,
    K8S_BASE,
    K8S_MONITORING,
    ROOT,
    TRITON_ALIAS,
    TRITON_METRICS,
    TRITON_PORTS,
    adapter_expr_to_promql,
    by_kind,
    dashboard_exprs,
    flag_value,
    grafana_expr_to_promql,
    k8s_versions,
    kustomization,
    metric_names,
    render,
    service,
    validate_k8s,
    volume_for,
)

# --------------------------------------------------------------------------- Prometheus, Grafana


def test_prometheus_scrapes_triton_metrics_port():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "triton"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"{TRITON_ALIAS}:{TRITON_PORTS['metrics']}"]
    prometheus = service("prometheus")
    config_path = flag_value(prometheus["command"], "--config.file")
    mount = volume_for(prometheus, config_path)
    assert Path(mount["source"]) == DEPLOY / "prometheus" / "prometheus.yml"
    # The monitoring stack comes up with every serving profile.
    for name in ("prometheus", "grafana"):
        assert {"gpu", "cpu", "tensorrt"} <= set(service(name)["profiles"])


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard():
    grafana = service("grafana")
    provisioning = volume_for(grafana, "/etc/grafana/provisioning")
    assert Path(provisioning["source"]) == DEPLOY / "grafana" / "provisioning"
    [datasource] = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert {int(p["target"]) for p in service("prometheus")["ports"]} == {9090}
    [provider] = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/dashboards.yml").read_text(encoding="utf-8")
    )["providers"]
    mount = volume_for(grafana, provider["options"]["path"])
    assert Path(mount["source"]) == DASHBOARD.parent

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    uids |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"]}
    assert uids == {datasource["uid"]}
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_dashboard_structure():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}
        assert panel["targets"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24
    # Panels must not overlap on Grafana's 24-column grid.
    cells = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine


def test_every_dashboard_query_parses_and_names_triton_metrics():
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    used: set[str] = set()
    for expr in dashboard_exprs(dashboard):
        names = metric_names(grafana_expr_to_promql(expr))
        assert names, expr
        assert names <= TRITON_METRICS, f"not a Triton metric: {names - TRITON_METRICS}"
        used |= names
    variable = dashboard["templating"]["list"][0]["query"]["query"]
    assert re.fullmatch(r"label_values\((\w+), model\)", variable).group(1) in TRITON_METRICS
    assert used >= DASHBOARD_MUST_SHOW
    p99 = [e for e in dashboard_exprs(dashboard) if 'quantile="0.99"' in e]
    assert any("nv_inference_request_summary_us" in e for e in p99)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum(rate(nv_inference_queue_duration[1m]))", "unknown"),
        ("sum(rate(nv_inference_request_success[1m])", "syntax"),
    ],
)
def test_a_bad_query_is_caught(expr, problem):
    if problem == "syntax":
        with pytest.raises(ValueError):
            metric_names(expr)
    else:
        assert not metric_names(expr) <= TRITON_METRICS


# --------------------------------------------------------------------------- Kubernetes


def test_kustomization_lists_every_manifest():
    for folder in (K8S_BASE, K8S_MONITORING):
        listed = set(kustomization(folder)["resources"])
        present = {p.name for p in folder.glob("*.yaml")} - {
            "kustomization.yaml",
            "prometheus-adapter-values.yaml",
        }
        assert listed == present, folder


@pytest.mark.parametrize("version", k8s_versions())
def test_k8s_manifests_match_the_kubernetes_schemas(version):
    docs = render(K8S_BASE)
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "ConfigMap",
    }
    for doc in docs:
        validate_k8s(doc, version)


def _deployment() -> dict[str, Any]:
    return by_kind(render(K8S_BASE), "Deployment")


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["spec"]["template"]["spec"]["containers"][0].update(readinessprobe={}),
        lambda d: d["spec"].update(replicas="one"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
            containerPort="http"
        ),
        lambda d: d["spec"].pop("selector"),
    ],
    ids=["misspelt-field", "wrong-type", "port-not-a-number", "missing-required"],
)
def test_a_broken_manifest_fails_validation(break_it):
    deployment = copy.deepcopy(_deployment())
    validate_k8s(deployment, k8s_versions()[-1])
    break_it(deployment)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(deployment, k8s_versions()[-1])


def test_triton_deployment_gpu_probes_and_model_repository():
    docs = render(K8S_BASE)
    deployment = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    resources = container["resources"]
    assert int(resources["requests"]["nvidia.com/gpu"]) == 1
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == TRITON_PORTS
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    # The startup probe, not liveness, covers the model download and load.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300

    args = container["args"]
    assert args[0] == "tritonserver"
    assert flag_value(args, "--model-repository") == "$(MODEL_REPOSITORY)"
    assert "--metrics-config=summary_latencies=true" in args
    [env] = [e for e in container["env"] if e["name"] == "MODEL_REPOSITORY"]
    ref = env["valueFrom"]["configMapKeyRef"]
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    assert ref["name"] in configmaps, "kustomize did not point the Deployment at its ConfigMap"
    repository = configmaps[ref["name"]]["data"][ref["key"]]
    # Triton reads S3 and GCS itself.
    assert re.match(r"(s3|gs)://", repository)

    [shm] = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    [volume] = [v for v in pod["volumes"] if v["name"] == shm["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"


def test_service_exposes_the_triton_ports_of_the_pods():
    docs = render(K8S_BASE)
    svc, deployment = by_kind(docs, "Service"), by_kind(docs, "Deployment")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == TRITON_PORTS
    container_ports = {
        p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= container_ports
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def _adapter_rule() -> dict[str, Any]:
    values = yaml.safe_load((K8S_MONITORING / "prometheus-adapter-values.yaml").read_text())
    [rule] = values["rules"]["custom"]
    return rule


def test_hpa_scales_the_deployment_on_the_adapters_queue_metric():
    docs = render(K8S_BASE)
    hpa, deployment = by_kind(docs, "HorizontalPodAutoscaler"), by_kind(docs, "Deployment")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    [metric] = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods"

    rule = _adapter_rule()
    assert metric["pods"]["metric"]["name"] == rule["name"]["as"]
    assert rule["resources"]["overrides"]["pod"]["resource"] == "pod"
    assert rule["resources"]["overrides"]["namespace"]["resource"] == "namespace"
    series = metric_names(rule["seriesQuery"])
    assert series == {"nv_inference_queue_duration_us"}
    assert re.fullmatch(rule["name"]["matches"], "nv_inference_queue_duration_us")
    query = rule["metricsQuery"]
    assert "<<.LabelMatchers>>" in query and "<<.GroupBy>>" in query
    names = metric_names(adapter_expr_to_promql(query))
    assert names == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    for model in re.findall(r'model=~"([^"]+)"', query)[0].split("|"):
        assert (ROOT / "model_repository" / model / "config.pbtxt").is_file(), model


def test_servicemonitor_scrapes_the_services_metrics_port():
    [monitor] = [d for d in render(K8S_MONITORING) if d["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    # A CRD: kubernetes-validate has no schema for it, so it is checked against the Service.
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_k8s(monitor, k8s_versions()[-1])
    svc = by_kind(render(K8S_BASE), "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert endpoint["port"] == "metrics" and endpoint.get("path", "/metrics") == "/metrics"
    assert monitor["metadata"]["namespace"] == svc["metadata"]["namespace"]
