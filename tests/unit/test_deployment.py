"""docker-compose.yml, the Dockerfile and the load-test input, checked without a Docker engine:
the real compose binary resolves the file, then the services are checked for what the
serving stack relies on (health checks, /dev/shm, GPUs, one Triton release, the paths and
names that connect the services)."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from tritonclient.grpc import model_config_pb2

from gesture_recognition.export import trt_engines
from gesture_recognition.serving.build import read_config

from .deployment_files import (
    DEPLOY,
    GPU_SERVICES,
    K8S_BASE,
    ROOT,
    TRITON_ALIAS,
    TRITON_PORTS,
    TRITON_SERVICES,
    by_kind,
    compose_model,
    flag_value,
    kustomization,
    load_yaml_docs,
    read_env_file,
    run_compose,
    service,
    volume_for,
)

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
