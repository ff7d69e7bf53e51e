"""export/build_engines.py and export/trt_engines.py: optimisation profiles, trtexec command lines,
engine file names, the tensorrt dry run, the missing-TensorRT error and a cpu build. Nothing
here needs TensorRT or a GPU."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.export import build_engines, trt_engines
from gesture_recognition.export.trt_engines import (
    TensorRTUnavailableError,
    engine_profiles,
    optimization_profile,
    trtexec_command,
)
from gesture_recognition.serving.build import read_config
from gesture_recognition.serving.configs import (
    ServingOptions,
    engine_filename,
    model_configs,
    read_specs,
)
from gesture_recognition.serving.contract import (
    GESTURE_CLASSIFIER,
    GESTURE_DECISION,
    HAND_CROPS,
    HAND_DETECTOR,
    HAND_PREPROCESS,
)


@pytest.fixture(scope="module")
def specs():
    return read_specs(shipped_models_dir())


@pytest.fixture(scope="module")
def trt_configs(specs):
    return model_configs("tensorrt", specs)


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setattr(trt_engines, "find_tensorrt", lambda trtexec=None: None)
    monkeypatch.setattr(build_engines, "gpu_compute_capabilities", lambda: [])


# --------------------------------------------------------------------------- profiles


def test_detector_profile_follows_max_batch_size(trt_configs, specs):
    config = trt_configs[HAND_DETECTOR]
    assert config.max_batch_size == 8
    size, low = specs.detector.imgsz, specs.detector.min_side
    # The shipped detector letterboxes onto the photo's aspect: canvas sides from its minimum
    # (enough anchors for its 300 rows) up to imgsz.
    assert low == 128 and tuple(config.input[0].dims) == (3, -1, -1)
    spatial = (low, size)
    assert optimization_profile(config, spatial=spatial) == {
        specs.detector.input_name: ((1, 3, low, low), (4, 3, size, size), (8, 3, size, size))
    }
    assert optimization_profile(config, opt=2, spatial=spatial)["images"][1] == (2, 3, size, size)
    assert engine_profiles(trt_configs, detector=specs.detector)[HAND_DETECTOR] == (
        optimization_profile(config, spatial=spatial)
    )
    # A square-letterbox spec keeps fixed dims and a one-size profile.
    square = replace(specs, detector=replace(specs.detector, letterbox_stride=0, min_canvas_side=0))
    config = model_configs("tensorrt", square)[HAND_DETECTOR]
    assert tuple(config.input[0].dims) == (3, size, size)
    assert optimization_profile(config) == {
        specs.detector.input_name: ((1, 3, size, size), (4, 3, size, size), (8, 3, size, size))
    }


def test_detector_profile_tracks_a_changed_batch_limit(specs):
    spatial = (specs.detector.min_side, specs.detector.imgsz)
    config = model_configs("tensorrt", specs, ServingOptions(detector_max_batch=1))
    assert optimization_profile(config[HAND_DETECTOR], spatial=spatial)["images"][1][0] == 1
    config = model_configs("tensorrt", specs, ServingOptions(detector_max_batch=32))
    low, middle, high = optimization_profile(config[HAND_DETECTOR], spatial=spatial)["images"]
    assert (low[0], middle[0], high[0]) == (1, 16, 32)


def test_classifier_profile_spans_the_hand_crops(trt_configs, specs):
    config = trt_configs[GESTURE_CLASSIFIER]
    assert config.max_batch_size == 0
    size = specs.classifier.input_size
    max_hands = ServingOptions().max_hands
    assert optimization_profile(config) == {
        specs.classifier.input_name: (
            (1, 3, size, size),
            (4, 3, size, size),
            (max_hands, 3, size, size),
        )
    }
    # The limit comes from the build's options (hand_crops' MAX_HANDS parameter).
    configs = model_configs("tensorrt", specs, ServingOptions(max_hands=5))
    assert configs[HAND_CROPS].parameters["MAX_HANDS"].string_value == "5"
    profiles = engine_profiles(configs, detector=specs.detector)
    assert set(profiles) == {HAND_DETECTOR, GESTURE_CLASSIFIER}
    assert profiles[GESTURE_CLASSIFIER]["input"][2][0] == 5
    # opt never exceeds the limit.
    configs = model_configs("tensorrt", specs, ServingOptions(max_hands=2))
    assert engine_profiles(configs, detector=specs.detector)[GESTURE_CLASSIFIER]["input"][1][0] == 2


def test_profile_rejects_bad_opt_and_unbounded_dims(trt_configs, specs):
    with pytest.raises(ValueError, match="outside"):
        optimization_profile(trt_configs[HAND_DETECTOR], opt=9)
    with pytest.raises(ValueError, match="outside"):
        optimization_profile(trt_configs[GESTURE_CLASSIFIER], opt=0)
    dynamic = model_configs("tensorrt", specs)[HAND_DETECTOR]
    assert list(dynamic.input[0].dims) == [3, -1, -1]
    with pytest.raises(ValueError, match="wildcard"):
        optimization_profile(dynamic)
    with pytest.raises(ValueError, match="spatial bounds"):
        optimization_profile(dynamic, spatial=(64, 32))
    with pytest.raises(ValueError, match="not a TensorRT model"):
        optimization_profile(model_configs("cpu", read_specs(shipped_models_dir()))[HAND_CROPS])


# --------------------------------------------------------------------------- trtexec


def test_trtexec_command_fp16(trt_configs):
    profile = optimization_profile(trt_configs[HAND_DETECTOR], spatial=(32, 320))
    command = trtexec_command("det.onnx", "out/model_sm89.plan", profile, workspace_mb=2048)
    assert command[0] == "trtexec"
    assert "--onnx=det.onnx" in command
    assert "--saveEngine=out/model_sm89.plan" in command
    assert "--minShapes=images:1x3x32x32" in command
    assert "--optShapes=images:4x3x320x320" in command
    assert "--maxShapes=images:8x3x320x320" in command
    assert "--memPoolSize=workspace:2048" in command
    assert "--fp16" in command and "--int8" not in command


def test_trtexec_command_fp32_and_int8(trt_configs, specs):
    profile = optimization_profile(trt_configs[GESTURE_CLASSIFIER])
    fp32 = trtexec_command("c.onnx", "c.plan", profile, precision="fp32", trtexec="/x/trtexec")
    assert fp32[0] == "/x/trtexec"
    size = specs.classifier.input_size  # the shipped classifier's
    assert f"--maxShapes=input:16x3x{size}x{size}" in fp32
    assert not any(arg in fp32 for arg in ("--fp16", "--int8"))
    int8 = trtexec_command("c.onnx", "c.plan", profile, precision="int8", calib_cache="c.cache")
    assert "--int8" in int8 and "--calib=c.cache" in int8
    with pytest.raises(ValueError, match="calibration cache"):
        trtexec_command("c.onnx", "c.plan", profile, precision="int8")
    with pytest.raises(ValueError, match="only applies to int8"):
        trtexec_command("c.onnx", "c.plan", profile, calib_cache="c.cache")
    with pytest.raises(ValueError, match="unknown precision"):
        trtexec_command("c.onnx", "c.plan", profile, precision="bf16")


def test_multi_input_profile_joins_shapes():
    profile = {"a": ((1, 2), (2, 2), (4, 2)), "b": ((1,), (1,), (1,))}
    command = trtexec_command("m.onnx", "m.plan", profile)
    assert "--minShapes=a:1x2,b:1" in command
    assert "--maxShapes=a:4x2,b:1" in command


# --------------------------------------------------------------------------- engine names


def test_engine_filenames_per_compute_capability():
    assert engine_filename("8.9") == "model_sm89.plan"
    assert engine_filename("9.0") == "model_sm90.plan"
    assert engine_filename("10.0") == "model_sm100.plan"
    for bad in ("89", "sm_89", "8.x", ""):
        with pytest.raises(ValueError):
            engine_filename(bad)
    # The tensorrt configs name one engine per compute capability, each once.
    specs = read_specs(shipped_models_dir())
    options = ServingOptions(compute_capabilities=("8.9", "8.6", "8.9"))
    detector = model_configs("tensorrt", specs, options)[HAND_DETECTOR]
    assert dict(detector.cc_model_filenames) == {
        "8.6": "model_sm86.plan",
        "8.9": "model_sm89.plan",
    }
    plain = model_configs("tensorrt", specs, ServingOptions())[HAND_DETECTOR]
    assert not plain.cc_model_filenames
    with pytest.raises(ValueError):
        ServingOptions(compute_capabilities=("sm_89",))


# --------------------------------------------------------------------------- CLI


def test_tensorrt_dry_run_prints_commands_and_configs(tmp_path, capsys, no_tensorrt, specs):
    out = tmp_path / "trt"
    code = build_engines.main(
        ["--target", "tensorrt", "--dry-run", "--compute-capability", "8.9", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert not out.exists()  # a dry run builds nothing
    assert list(tmp_path.iterdir()) == []  # and leaves no staging folder
    assert printed.count("trtexec --onnx=") == 2
    assert f"--saveEngine={out}/hand_detector/1/model_sm89.plan" in printed
    size = specs.classifier.input_size
    assert f"--maxShapes=input:16x3x{size}x{size}" in printed
    assert 'platform: "tensorrt_plan"' in printed
    assert 'cc_model_filenames {\n  key: "8.9"\n  value: "model_sm89.plan"\n}' in printed
    assert "--fp16" in printed


def test_tensorrt_dry_run_without_gpu_keeps_default_name(tmp_path, capsys, no_tensorrt, specs):
    code = build_engines.main(
        [
            *("--target", "tensorrt", "--dry-run", "--precision", "fp32", "--max-hands", "6"),
            *("--out", str(tmp_path / "trt")),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "/1/model.plan" in printed and "cc_model_filenames" not in printed
    size = specs.classifier.input_size
    assert f"--maxShapes=input:6x3x{size}x{size}" in printed and "--fp16" not in printed


def test_missing_tensorrt_exits_2_with_the_container(tmp_path, capsys, no_tensorrt):
    code = build_engines.main(["--target", "tensorrt", "--out", str(tmp_path / "trt")])
    err = capsys.readouterr().err
    assert code == 2
    assert "NGC Triton container" in err
    assert "nvcr.io/nvidia/tritonserver:" in err and "docker run" in err
    assert "Traceback" not in err
    assert not (tmp_path / "trt").exists()
    assert "NGC" in str(TensorRTUnavailableError())


def test_find_tensorrt_is_none_here(monkeypatch):
    monkeypatch.setattr(trt_engines.shutil, "which", lambda name: None)
    monkeypatch.setattr(trt_engines.importlib.util, "find_spec", lambda name: None)
    assert trt_engines.find_tensorrt() is None
    monkeypatch.setattr(trt_engines.shutil, "which", lambda name: f"/opt/{name}")
    assert trt_engines.find_tensorrt() == "/opt/trtexec"


def test_user_errors_exit_2(tmp_path, capsys):
    assert build_engines.main(["--precision", "fp16", "--out", str(tmp_path / "r")]) == 2
    assert "only apply to --target tensorrt" in capsys.readouterr().err
    code = build_engines.main(
        [
            *("--target", "tensorrt", "--dry-run", "--compute-capability", "sm89"),
            *("--out", str(tmp_path / "r")),
        ]
    )
    assert code == 2
    assert "compute capability" in capsys.readouterr().err
    code = build_engines.main(["--models-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err


def test_default_out_dirs():
    assert build_engines.default_out("cpu").parts[-2:] == ("build", "model_repository")
    assert build_engines.default_out("tensorrt").name == "model_repository_tensorrt"


def test_cpu_build_writes_repository_and_report(tmp_path, capsys):
    out = tmp_path / "repo"
    assert build_engines.main(["--out", str(out), "--max-hands", "3"]) == 0
    for name in model_configs("onnxruntime", read_specs(shipped_models_dir())):
        # The cpu flavour runs the letterbox and the decision inside the two networks' models.
        inside = name in (HAND_PREPROCESS, GESTURE_DECISION)
        assert (out / name / "config.pbtxt").is_file() != inside, name
    crops = read_config(out / HAND_CROPS / "config.pbtxt")
    assert crops.parameters["MAX_HANDS"].string_value == "3"
    report = (out / build_engines.REPORT_NAME).read_text()
    assert report.startswith("# Model repository build (cpu)")
    assert "| hand_detector | 1/model.onnx |" in report
    assert "MiB" in report
    assert "| gesture_classifier | config.pbtxt |" in report
    assert report.strip() in capsys.readouterr().out


def test_script_runs_standalone(tmp_path):
    import subprocess
    import sys

    script = Path(build_engines.__file__)
    result = subprocess.run(
        [
            *(sys.executable, str(script), "--target", "tensorrt", "--dry-run"),
            *("--compute-capability", "9.0", "--out", str(tmp_path / "t")),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "model_sm90.plan" in result.stdout
