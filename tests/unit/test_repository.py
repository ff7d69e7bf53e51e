"""The model repository builder: rendering, ensemble wiring, checks against ONNX files, the
committed configs and the differences between flavours."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    ClassifierSpec,
    DetectorSpec,
    write_spec,
)
from gesture_recognition.labels import LabelMap, load_label_map
from gesture_recognition.serving import repository as repo
from gesture_recognition.serving.repository import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    FLAVOURS,
    GESTURE_CLASSIFIER,
    GESTURE_DECISION,
    HAND_CROPS,
    HAND_DETECTOR,
    HAND_PREPROCESS,
    MODEL_NAMES,
    RepositoryError,
    ServingOptions,
    Specs,
    Step,
    build_repository,
    check_ensembles,
    model_configs,
    render_config,
)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _specs(imgsz: int = 320, crop: int = 160, label_map: str = "mcs2021") -> Specs:
    return Specs(
        DetectorSpec(imgsz=imgsz),
        ClassifierSpec(label_map=load_label_map(label_map), input_size=crop),
    )


# ----------------------------------------------------------------- tiny ONNX stand-ins


def tiny_detector(
    path: Path,
    input_name: str = "images",
    batch: int | str = "batch",
    size: int | str = "height",
    detections: int = 300,
) -> Path:
    """``images [B, 3, H, W] -> output0 [B, D, 6]`` (zeros), enough for signature checks."""
    shape = helper.make_node("Shape", [input_name], ["shape"])
    first = helper.make_node("Slice", ["shape", "zero", "one"], ["b"])
    cat = helper.make_node("Concat", ["b", "tail"], ["out_shape"], axis=0)
    fill = helper.make_node(
        "ConstantOfShape",
        ["out_shape"],
        ["output0"],
        value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
    )
    graph = helper.make_graph(
        [shape, first, cat, fill],
        "detector",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, detections, 6])],
        initializer=[
            helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
            helper.make_tensor("one", TensorProto.INT64, [1], [1]),
            helper.make_tensor("tail", TensorProto.INT64, [2], [detections, 6]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def tiny_classifier(
    path: Path, size: int = 160, classes: int = 7, batch: int | str = "batch"
) -> Path:
    """``input [B, 3, S, S] -> logits [B, K]``: channel means times a fixed matrix."""
    mean = helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0)
    matmul = helper.make_node("MatMul", ["m", "w"], ["logits"])
    weights = np.arange(3 * classes, dtype=np.float32).reshape(3, classes) / 10
    graph = helper.make_graph(
        [mean, matmul],
        "classifier",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    specs = _specs()
    tiny_detector(folder / DETECTOR_ONNX)
    tiny_classifier(folder / CLASSIFIER_ONNX)
    write_spec(specs.detector, folder / DETECTOR_JSON)
    write_spec(specs.classifier, folder / CLASSIFIER_JSON)
    return folder


def _parse_pbtxt_fields(text: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"\s*(\w+): (.+)$", line)
        if match:
            fields.setdefault(match.group(1), []).append(match.group(2).strip('"'))
    return fields


# ----------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    ("imgsz", "crop", "label_map"), [(320, 160, "mcs2021"), (640, 224, "hagrid")]
)
def test_dims_come_from_the_specs(imgsz: int, crop: int, label_map: str) -> None:
    specs = _specs(imgsz, crop, label_map)
    k = specs.classifier.label_map.num_classes
    configs = model_configs("onnxruntime", specs)
    assert configs[HAND_DETECTOR].input("images").dims == (3, imgsz, imgsz)
    assert configs[HAND_PREPROCESS].output("DETECTOR_INPUT").dims == (1, 3, imgsz, imgsz)
    assert configs[GESTURE_CLASSIFIER].input("input").dims == (-1, 3, crop, crop)
    assert configs[HAND_CROPS].output("CLASSIFIER_INPUT").dims == (-1, 3, crop, crop)
    assert configs[GESTURE_CLASSIFIER].output("logits").dims == (-1, k)
    assert configs[GESTURE_DECISION].output("GESTURE_PROBS").dims == (k,)
    for ensemble in (ENSEMBLE, ENSEMBLE_BYTES):
        assert configs[ensemble].output("GESTURE_PROBS").dims == (k,)
    text = render_config(configs[HAND_DETECTOR])
    assert f"dims: [ 3, {imgsz}, {imgsz} ]" in text
    cpu = model_configs("cpu", specs)
    view = cpu[HAND_DETECTOR].onnx_view
    assert view is not None and view.input("images").dims == (3, imgsz, imgsz)
    assert cpu[GESTURE_CLASSIFIER].input("input").dims == (-1, 3, crop, crop)
    assert cpu[GESTURE_CLASSIFIER].output("GESTURE_PROBS").dims == (k,)


def test_tensor_names_follow_the_specs() -> None:
    specs = Specs(
        DetectorSpec(imgsz=320, input_name="pixels", output_name="rows"),
        ClassifierSpec(
            label_map=load_label_map("mcs2021"), input_name="crops", output_name="scores"
        ),
    )
    configs = model_configs("onnxruntime", specs)
    check_ensembles(configs)
    assert [t.name for t in configs[HAND_DETECTOR].inputs] == ["pixels"]
    text = render_config(configs[ENSEMBLE])
    assert 'input_map { key: "pixels" value: "detector_input" }' in text
    assert 'output_map { key: "scores" value: "logits" }' in text
    cpu = model_configs("cpu", specs)
    check_ensembles(cpu)
    assert [t.name for t in cpu[HAND_DETECTOR].onnx_view.inputs] == ["pixels"]
    text = render_config(cpu[ENSEMBLE])
    assert 'output_map { key: "rows" value: "detections" }' in text
    assert 'input_map { key: "crops" value: "classifier_input" }' in text


def test_rendering_of_a_python_model() -> None:
    configs = model_configs("cpu", _specs(), ServingOptions(max_hands=5))
    fields = _parse_pbtxt_fields(render_config(configs[HAND_CROPS]))
    assert fields["name"] == [
        "hand_crops",
        "IMAGE",
        "DETECTIONS",
        "LETTERBOX",
        "HAND_BOXES",
        "HAND_SCORES",
        "CLASSIFIER_INPUT",
    ]
    assert fields["backend"] == ["python"]
    assert fields["max_batch_size"] == ["0"]
    assert fields["kind"] == ["KIND_CPU"]
    assert fields["key"] == ["MAX_HANDS", "MAX_PIXELS"]
    assert 'value: { string_value: "5" }' in render_config(configs[HAND_CROPS])
    # BYTES is spelled TYPE_STRING in the model config proto.
    decision = render_config(model_configs("onnxruntime", _specs())[GESTURE_DECISION])
    assert "TYPE_STRING" in decision and "TYPE_BYTES" not in decision
    assert 'label_filename: "labels.txt"' in decision


def test_detector_batches_dynamically_and_classifier_does_not() -> None:
    options = ServingOptions(detector_max_batch=4, queue_delay_us=0)
    configs = model_configs("onnxruntime", _specs(), options)
    detector = render_config(configs[HAND_DETECTOR])
    assert "max_batch_size: 4" in detector
    assert "max_queue_delay_microseconds: 0" in detector
    classifier = render_config(configs[GESTURE_CLASSIFIER])
    assert "max_batch_size: 0" in classifier
    assert "dynamic_batching" not in classifier
    # The cpu flavour's detector takes whole photos (any size): Triton cannot batch them.
    cpu = render_config(model_configs("cpu", _specs(), options)[HAND_DETECTOR])
    assert "max_batch_size: 0" in cpu and "dynamic_batching" not in cpu


def test_every_model_is_described_once() -> None:
    for flavour in ("onnxruntime", "tensorrt"):
        assert tuple(model_configs(flavour, _specs())) == MODEL_NAMES
    fused = tuple(n for n in MODEL_NAMES if n not in (HAND_PREPROCESS, GESTURE_DECISION))
    assert tuple(model_configs("cpu", _specs())) == fused


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match="flavour"):
        model_configs("openvino", _specs())


# ----------------------------------------------------------------- flavours


def test_flavours_differ_only_in_the_two_networks() -> None:
    cpu = model_configs("cpu", _specs())
    ort = model_configs("onnxruntime", _specs())
    trt = model_configs("tensorrt", _specs())
    for name in MODEL_NAMES:
        if name in (HAND_DETECTOR, GESTURE_CLASSIFIER, ENSEMBLE, ENSEMBLE_BYTES):
            continue
        assert render_config(ort[name]) == render_config(trt[name])
        if name in cpu:
            assert render_config(cpu[name]) == render_config(ort[name])
    for name in (ENSEMBLE, ENSEMBLE_BYTES):
        assert render_config(ort[name]) == render_config(trt[name])
        # Same public contract whatever runs behind it.
        assert cpu[name].inputs == ort[name].inputs and cpu[name].outputs == ort[name].outputs
    for name in (HAND_DETECTOR, GESTURE_CLASSIFIER):
        assert cpu[name].backend == "python" and cpu[name].default_model_filename is None
        assert ort[name].backend == "onnxruntime"
        assert ort[name].default_model_filename == "model.onnx"
        assert ort[name].instance_kind is None  # Triton picks the GPU when there is one
        assert trt[name].platform == "tensorrt_plan" and trt[name].backend is None
        assert trt[name].default_model_filename == "model.plan"
        assert trt[name].instance_kind == "KIND_GPU"
        assert ort[name].inputs == trt[name].inputs and ort[name].outputs == trt[name].outputs
        # The cpu flavour checks its ONNX file against the very tensors the native ones serve.
        view = cpu[name].onnx_view
        assert view is not None
        assert view.inputs == ort[name].inputs and view.outputs == ort[name].outputs
    assert "ORT_THREADS" not in render_config(ort[HAND_DETECTOR])
    assert "ORT_THREADS" in render_config(cpu[HAND_DETECTOR])


def test_instance_counts_and_the_thread_gate_default_per_flavour() -> None:
    cpu = model_configs("cpu", _specs())
    ort = model_configs("onnxruntime", _specs())
    for index, name in enumerate((HAND_DETECTOR, GESTURE_CLASSIFIER)):
        assert cpu[name].instance_count == repo.CPU_INSTANCES[index]
        assert ort[name].instance_count == 1
        assert ("ORT_GATE", "1") in cpu[name].parameters
        assert "ORT_GATE" not in render_config(ort[name])
    chosen = model_configs(
        "cpu", _specs(), ServingOptions(detector_instances=3, classifier_instances=1, ort_gate=0)
    )
    assert chosen[HAND_DETECTOR].instance_count == 3
    assert chosen[GESTURE_CLASSIFIER].instance_count == 1
    assert ("ORT_GATE", "0") in chosen[GESTURE_CLASSIFIER].parameters
    for bad in ({"detector_instances": 0}, {"classifier_instances": -1}, {"ort_gate": 2}):
        with pytest.raises(ValueError):
            ServingOptions(**bad)  # type: ignore[arg-type]


def test_cpu_flavour_fuses_the_glue_steps_into_the_networks() -> None:
    cpu = model_configs("cpu", _specs())
    steps = [s.model_name for s in cpu[ENSEMBLE_BYTES].steps]
    assert steps == ["image_decoder", HAND_DETECTOR, HAND_CROPS, GESTURE_CLASSIFIER]
    assert [t.name for t in cpu[HAND_DETECTOR].inputs] == ["IMAGE"]
    assert [t.name for t in cpu[HAND_DETECTOR].outputs] == ["output0", "LETTERBOX"]
    assert [t.name for t in cpu[GESTURE_CLASSIFIER].inputs] == ["input", "HAND_BOXES"]
    assert {t.name for t in cpu[GESTURE_CLASSIFIER].outputs} >= set(repo.ENSEMBLE_OUTPUTS) - {
        "HAND_BOXES",
        "HAND_SCORES",
    }
    ort = model_configs("onnxruntime", _specs())
    steps = [s.model_name for s in ort[ENSEMBLE_BYTES].steps]
    native_steps = (
        HAND_PREPROCESS,
        HAND_DETECTOR,
        HAND_CROPS,
        GESTURE_CLASSIFIER,
        GESTURE_DECISION,
    )
    assert steps == ["image_decoder", *native_steps]


# ----------------------------------------------------------------- ensemble wiring


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_ensembles_are_wired_consistently(flavour: str) -> None:
    check_ensembles(model_configs(flavour, _specs()))


def test_ensemble_outputs_are_the_public_contract() -> None:
    configs = model_configs("cpu", _specs())
    for name, entry in ((ENSEMBLE, ("IMAGE", "UINT8")), (ENSEMBLE_BYTES, ("IMAGE_BYTES", "BYTES"))):
        config = configs[name]
        assert [(t.name, t.data_type) for t in config.inputs] == [entry]
        assert tuple(t.name for t in config.outputs) == repo.ENSEMBLE_OUTPUTS
    assert configs[ENSEMBLE].input("IMAGE").dims == (-1, -1, 3)
    assert configs[ENSEMBLE].output("HAND_BOXES").dims == (-1, 4)


def test_broken_wiring_is_reported() -> None:
    configs = model_configs("cpu", _specs())
    crops = configs[HAND_CROPS]
    bad_dtype = replace(
        crops,
        inputs=tuple(
            replace(t, data_type="FP16") if t.name == "LETTERBOX" else t for t in crops.inputs
        ),
    )
    with pytest.raises(RepositoryError, match="FP32 feeds FP16"):
        check_ensembles({**configs, HAND_CROPS: bad_dtype})

    ensemble = configs[ENSEMBLE]
    steps = list(ensemble.steps)
    assert steps[1].model_name == HAND_CROPS
    steps[1] = Step(steps[1].model_name, steps[1].input_map[:2], steps[1].output_map)
    with pytest.raises(RepositoryError, match="LETTERBOX: input not mapped"):
        check_ensembles({**configs, ENSEMBLE: replace(ensemble, steps=tuple(steps))})

    bigger = _specs(crop=224)
    mixed = {**configs, GESTURE_CLASSIFIER: model_configs("cpu", bigger)[GESTURE_CLASSIFIER]}
    with pytest.raises(RepositoryError, match="shape"):
        check_ensembles(mixed)


# ----------------------------------------------------------------- building


def test_cpu_build_layout(models_dir: Path, tmp_path: Path) -> None:
    out = build_repository("cpu", models_dir, tmp_path / "repo", ServingOptions(max_hands=4))
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert repo.read_build_info(out)["flavour"] == "cpu"
    served = sorted(n for n in MODEL_NAMES if n not in (HAND_PREPROCESS, GESTURE_DECISION))
    assert names == served
    for name in served:
        assert (out / name / "config.pbtxt").is_file()
        assert (out / name / "1").is_dir()  # ensembles need an (empty) version folder too
    assert (out / HAND_DETECTOR / "1" / "model.onnx").read_bytes() == (
        models_dir / DETECTOR_ONNX
    ).read_bytes()
    assert (out / GESTURE_CLASSIFIER / "1" / "model.onnx").is_file()
    assert (out / HAND_DETECTOR / "1" / "model.py").is_file()
    assert (out / HAND_CROPS / "1" / DETECTOR_JSON).is_file()
    assert (out / HAND_CROPS / "1" / CLASSIFIER_JSON).is_file()
    assert (out / GESTURE_CLASSIFIER / "labels.txt").read_text().split() == list(
        load_label_map("mcs2021").classes
    )
    assert 'string_value: "4"' in (out / HAND_CROPS / "config.pbtxt").read_text()


@pytest.mark.parametrize("flavour", ["onnxruntime", "tensorrt"])
def test_native_build_layout(models_dir: Path, tmp_path: Path, flavour: str) -> None:
    out = build_repository(flavour, models_dir, tmp_path / "repo")
    for name in (HAND_DETECTOR, GESTURE_CLASSIFIER):
        version = out / name / "1"
        assert not (version / "model.py").exists()
        assert (version / "model.onnx").exists() == (flavour == "onnxruntime")
        text = (out / name / "config.pbtxt").read_text()
        assert ("onnxruntime" in text) == (flavour == "onnxruntime")
        assert ("tensorrt_plan" in text) == (flavour == "tensorrt")
    assert (out / HAND_CROPS / "1" / "model.py").is_file()
    assert (out / GESTURE_DECISION / "labels.txt").is_file()


def test_build_reads_the_number_of_detections_from_the_onnx(
    models_dir: Path, tmp_path: Path
) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, detections=100)
    out = build_repository("cpu", models_dir, tmp_path / "repo")
    assert "dims: [ 1, 100, 6 ]" in (out / HAND_DETECTOR / "config.pbtxt").read_text()
    assert "dims: [ 1, 100, 6 ]" in (out / HAND_CROPS / "config.pbtxt").read_text()


def _expect_refusal(models_dir: Path, tmp_path: Path, match: str) -> None:
    out = tmp_path / "repo"
    out.mkdir(exist_ok=True)
    (out / "keep.txt").write_text("previous build")
    with pytest.raises(RepositoryError, match=match):
        build_repository("cpu", models_dir, out)
    # A refused build leaves the previous repository as it was.
    assert (out / "keep.txt").read_text() == "previous build"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert not list(tmp_path.glob(".repo.*"))


def test_mismatched_class_count_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_classifier(models_dir / CLASSIFIER_ONNX, classes=5)
    _expect_refusal(models_dir, tmp_path, "predicts 5 classes but its label map")


def test_mismatched_input_name_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, input_name="input")
    _expect_refusal(models_dir, tmp_path, r"config inputs \['images'\] but the ONNX file takes")


def test_mismatched_crop_size_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_classifier(models_dir / CLASSIFIER_ONNX, size=224)
    _expect_refusal(models_dir, tmp_path, "axis 2 is 160 in the config but 224 in the ONNX")


def test_fixed_batch_detector_is_refused(models_dir: Path, tmp_path: Path) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, batch=1)
    _expect_refusal(models_dir, tmp_path, "needs a dynamic batch dimension")


def test_fixed_size_detector_must_match_the_spec(models_dir: Path, tmp_path: Path) -> None:
    tiny_detector(models_dir / DETECTOR_ONNX, size=640)
    _expect_refusal(models_dir, tmp_path, "axis 2 is 320 in the config but 640")
    tiny_detector(models_dir / DETECTOR_ONNX, size=320)
    build_repository("cpu", models_dir, tmp_path / "ok")


def test_missing_model_files_are_refused(models_dir: Path, tmp_path: Path) -> None:
    (models_dir / CLASSIFIER_ONNX).unlink()
    with pytest.raises(RepositoryError, match=r"lacks gesture_classifier\.onnx"):
        build_repository("cpu", models_dir, tmp_path / "repo")


def test_label_map_without_no_gesture_class_still_builds(models_dir: Path, tmp_path: Path) -> None:
    labels = LabelMap.from_classes("counts", [f"{i}-fingers" for i in range(7)], "no_hand")
    write_spec(ClassifierSpec(label_map=labels, input_size=160), models_dir / CLASSIFIER_JSON)
    out = build_repository("cpu", models_dir, tmp_path / "repo")
    assert (out / GESTURE_CLASSIFIER / "labels.txt").read_text().splitlines()[0] == "0-fingers"


# ----------------------------------------------------------------- committed copy


def test_committed_configs_match_the_cpu_rendering() -> None:
    """Fails when model_repository/ drifts from the specs; fix with
    ``python -m gesture_recognition.serving.repository --write-committed``."""
    root = repo.committed_repository_dir()
    for rel, text in repo.committed_files().items():
        path = root / rel
        assert path.is_file(), f"{path} is missing: run --write-committed"
        assert path.read_text(encoding="utf-8") == text, (
            f"{path} differs from the cpu rendering: run "
            "python -m gesture_recognition.serving.repository --write-committed"
        )


def test_committed_repository_has_code_for_every_python_model() -> None:
    root = repo.committed_repository_dir()
    for flavour in FLAVOURS:
        for name, config in model_configs(flavour, repo.committed_specs()).items():
            if config.is_python:
                assert (root / name / "1" / "model.py").is_file(), (flavour, name)
    for name in (ENSEMBLE, ENSEMBLE_BYTES):
        assert not (root / name / "1" / "model.py").exists()


def test_write_committed_round_trip(tmp_path: Path) -> None:
    written = repo.write_committed(tmp_path)
    files = repo.committed_files()
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == sorted(files)
    for rel, text in files.items():
        assert (tmp_path / rel).read_text() == text


def test_cli_build_and_error(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "built"
    assert (
        repo.main(["--flavour", "onnxruntime", "--models-dir", str(models_dir), "--out", str(out)])
        == 0
    )
    assert (out / HAND_DETECTOR / "config.pbtxt").is_file()
    assert repo.main(["--models-dir", str(tmp_path / "none"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: models directory") and "Traceback" not in err
