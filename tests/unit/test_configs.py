"""The configs: one pipeline declaration, the native and cpu flavours derived from it, the
ensembles' wiring, the protobuf text Triton reads."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from gesture_recognition.artifacts import ClassifierSpec, DetectorSpec
from gesture_recognition.labels import load_label_map
from gesture_recognition.serving import configs as cf
from gesture_recognition.serving.configs import ServingOptions, Specs, model_configs
from gesture_recognition.serving.contract import (
    ENSEMBLE,
    ENSEMBLE_BYTES,
    ENSEMBLE_OUTPUTS,
    FLAVOURS,
    GESTURE_CLASSIFIER,
    GESTURE_DECISION,
    HAND_CROPS,
    HAND_DETECTOR,
    HAND_PREPROCESS,
    IMAGE_DECODER,
)

NATIVE_MODELS = (
    IMAGE_DECODER,
    HAND_PREPROCESS,
    HAND_DETECTOR,
    HAND_CROPS,
    GESTURE_CLASSIFIER,
    GESTURE_DECISION,
    ENSEMBLE,
    ENSEMBLE_BYTES,
)


def _specs(imgsz: int = 320, crop: int = 160, label_map: str = "mcs2021") -> Specs:
    return Specs(
        DetectorSpec(imgsz=imgsz),
        ClassifierSpec(label_map=load_label_map(label_map), input_size=crop),
    )


def _tensor(config: pb.ModelConfig, kind: str, name: str) -> Any:
    for tensor in getattr(config, kind):
        if tensor.name == name:
            return tensor
    raise KeyError(f"{config.name} has no {kind} {name}")


def _dims(config: pb.ModelConfig, kind: str, name: str) -> tuple[int, ...]:
    return tuple(_tensor(config, kind, name).dims)


def _names(tensors: Any) -> list[str]:
    return [t.name for t in tensors]


def _steps(config: pb.ModelConfig) -> list[str]:
    return [s.model_name for s in config.ensemble_scheduling.step]


# ----------------------------------------------------------------- the declaration


@pytest.mark.parametrize(
    ("imgsz", "crop", "label_map"), [(320, 160, "mcs2021"), (640, 224, "hagrid")]
)
def test_dims_come_from_the_specs(imgsz: int, crop: int, label_map: str) -> None:
    specs = _specs(imgsz, crop, label_map)
    k = specs.classifier.label_map.num_classes
    configs = model_configs("onnxruntime", specs)
    assert _dims(configs[HAND_DETECTOR], "input", "images") == (3, imgsz, imgsz)
    assert _dims(configs[HAND_PREPROCESS], "output", "DETECTOR_INPUT") == (1, 3, imgsz, imgsz)
    assert _dims(configs[GESTURE_CLASSIFIER], "input", "input") == (-1, 3, crop, crop)
    assert _dims(configs[HAND_CROPS], "output", "CLASSIFIER_INPUT") == (-1, 3, crop, crop)
    assert _dims(configs[GESTURE_CLASSIFIER], "output", "logits") == (-1, k)
    assert _dims(configs[GESTURE_DECISION], "output", "GESTURE_PROBS") == (k,)
    for ensemble in (ENSEMBLE, ENSEMBLE_BYTES):
        assert _dims(configs[ensemble], "output", "GESTURE_PROBS") == (k,)
    cpu = model_configs("cpu", specs)
    assert _dims(cpu[GESTURE_CLASSIFIER], "input", "input") == (-1, 3, crop, crop)
    assert _dims(cpu[GESTURE_CLASSIFIER], "output", "GESTURE_PROBS") == (k,)


def test_a_detector_on_the_photos_aspect_takes_any_canvas() -> None:
    specs = Specs(
        DetectorSpec(imgsz=320, letterbox_stride=32, min_canvas_side=128), _specs().classifier
    )
    configs = model_configs("onnxruntime", specs)
    assert _dims(configs[HAND_DETECTOR], "input", "images") == (3, -1, -1)
    assert _dims(configs[HAND_PREPROCESS], "output", "DETECTOR_INPUT") == (1, 3, -1, -1)


def test_tensor_names_follow_the_specs() -> None:
    specs = Specs(
        DetectorSpec(imgsz=320, input_name="pixels", output_name="rows"),
        ClassifierSpec(
            label_map=load_label_map("mcs2021"), input_name="crops", output_name="scores"
        ),
    )
    native = model_configs("onnxruntime", specs)
    assert _names(native[HAND_DETECTOR].input) == ["pixels"]
    steps = {s.model_name: s for s in native[ENSEMBLE].ensemble_scheduling.step}
    assert dict(steps[HAND_DETECTOR].input_map) == {"pixels": "detector_input"}
    assert dict(steps[GESTURE_CLASSIFIER].output_map) == {"scores": "logits"}
    cpu = model_configs("cpu", specs)
    steps = {s.model_name: s for s in cpu[ENSEMBLE].ensemble_scheduling.step}
    assert dict(steps[HAND_DETECTOR].output_map) == {"rows": "detections", "LETTERBOX": "letterbox"}
    assert dict(steps[GESTURE_CLASSIFIER].input_map) == {
        "crops": "classifier_input",
        "CROP_BOXES": "crop_boxes",
        "CROP_SCORES": "crop_scores",
    }


def test_every_model_is_described_once() -> None:
    for flavour in ("onnxruntime", "tensorrt"):
        assert tuple(model_configs(flavour, _specs())) == NATIVE_MODELS
    fused = tuple(n for n in NATIVE_MODELS if n not in (HAND_PREPROCESS, GESTURE_DECISION))
    assert tuple(model_configs("cpu", _specs())) == fused


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match="flavour"):
        model_configs("openvino", _specs())


# ----------------------------------------------------------------- flavours


def test_flavours_differ_only_in_the_two_networks() -> None:
    cpu = model_configs("cpu", _specs())
    ort = model_configs("onnxruntime", _specs())
    trt = model_configs("tensorrt", _specs())
    for name in (IMAGE_DECODER, HAND_PREPROCESS, HAND_CROPS, GESTURE_DECISION):
        assert ort[name] == trt[name]
        if name in cpu:
            assert cpu[name] == ort[name]
    for name in (ENSEMBLE, ENSEMBLE_BYTES):
        assert ort[name] == trt[name]
        # Same public contract whatever runs behind it.
        assert cpu[name].input == ort[name].input and cpu[name].output == ort[name].output
    for name in (HAND_DETECTOR, GESTURE_CLASSIFIER):
        assert cpu[name].backend == "python" and not cpu[name].default_model_filename
        assert ort[name].backend == "onnxruntime"
        assert ort[name].default_model_filename == "model.onnx"
        # Triton picks the GPU when there is one.
        assert ort[name].instance_group[0].kind == pb.ModelInstanceGroup.KIND_AUTO
        assert trt[name].platform == "tensorrt_plan" and not trt[name].backend
        assert trt[name].default_model_filename == "model.plan"
        assert trt[name].instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
        assert ort[name].input == trt[name].input and ort[name].output == trt[name].output
    assert "ORT_THREADS" not in ort[HAND_DETECTOR].parameters
    assert "ORT_THREADS" in cpu[HAND_DETECTOR].parameters


def test_engines_are_named_per_compute_capability() -> None:
    trt = model_configs("tensorrt", _specs(), ServingOptions(compute_capabilities=("8.9", "7.5")))
    assert dict(trt[HAND_DETECTOR].cc_model_filenames) == {
        "7.5": "model_sm75.plan",
        "8.9": "model_sm89.plan",
    }
    with pytest.raises(ValueError, match="compute capability"):
        ServingOptions(compute_capabilities=("sm89",))


def test_instance_counts_and_the_thread_gate_default_per_flavour() -> None:
    cpu = model_configs("cpu", _specs())
    ort = model_configs("onnxruntime", _specs())
    for index, name in enumerate((HAND_DETECTOR, GESTURE_CLASSIFIER)):
        assert cpu[name].instance_group[0].count == cf.CPU_INSTANCES[index]
        assert ort[name].instance_group[0].count == 1
        assert cpu[name].parameters["ORT_GATE"].string_value == "1"
        assert "ORT_GATE" not in ort[name].parameters
    chosen = model_configs(
        "cpu", _specs(), ServingOptions(detector_instances=3, classifier_instances=1, ort_gate=0)
    )
    assert chosen[HAND_DETECTOR].instance_group[0].count == 3
    assert chosen[GESTURE_CLASSIFIER].instance_group[0].count == 1
    assert chosen[GESTURE_CLASSIFIER].parameters["ORT_GATE"].string_value == "0"
    for bad in ({"detector_instances": 0}, {"classifier_instances": -1}, {"ort_gate": 2}):
        with pytest.raises(ValueError):
            ServingOptions(**bad)  # type: ignore[arg-type]


def test_detector_batches_dynamically_and_classifier_does_not() -> None:
    options = ServingOptions(detector_max_batch=4, queue_delay_us=0)
    configs = model_configs("onnxruntime", _specs(), options)
    detector = configs[HAND_DETECTOR]
    assert detector.max_batch_size == 4
    # Present although the delay is zero: the detector batches whatever already waits.
    assert detector.HasField("dynamic_batching")
    assert detector.dynamic_batching.max_queue_delay_microseconds == 0
    classifier = configs[GESTURE_CLASSIFIER]
    assert classifier.max_batch_size == 0 and not classifier.HasField("dynamic_batching")
    # The cpu flavour's detector takes whole photos (any size): Triton cannot batch them.
    cpu = model_configs("cpu", _specs(), options)[HAND_DETECTOR]
    assert cpu.max_batch_size == 0 and not cpu.HasField("dynamic_batching")
    assert _dims(cpu, "output", "output0") == (1, 300, 6)


def test_cpu_flavour_runs_the_glue_steps_inside_the_networks() -> None:
    cpu = model_configs("cpu", _specs())
    assert _steps(cpu[ENSEMBLE_BYTES]) == [
        IMAGE_DECODER,
        HAND_DETECTOR,
        HAND_CROPS,
        GESTURE_CLASSIFIER,
    ]
    assert _names(cpu[HAND_DETECTOR].input) == ["IMAGE"]
    assert _names(cpu[HAND_DETECTOR].output) == ["output0", "LETTERBOX"]
    assert _names(cpu[GESTURE_CLASSIFIER].input) == ["input", "CROP_BOXES", "CROP_SCORES"]
    assert set(_names(cpu[GESTURE_CLASSIFIER].output)) == {"logits", *ENSEMBLE_OUTPUTS}
    # The logits stay inside the classifier's model: the ensemble does not map them. The
    # hands it answers are the decision's (after a verifier, when there is one).
    classify = cpu[ENSEMBLE].ensemble_scheduling.step[-1]
    assert "logits" not in classify.output_map
    assert set(classify.output_map.values()) == set(ENSEMBLE_OUTPUTS)
    ort = model_configs("onnxruntime", _specs())
    assert _steps(ort[ENSEMBLE_BYTES]) == list(NATIVE_MODELS[:6])


def _with_step_before(steps: list[cf.Step], before: str, wire: str) -> list[cf.Step]:
    """``steps`` with one more Python step that reads ``wire`` and feeds its copy to the step
    named ``before`` (in place of ``wire``)."""
    index = next(i for i, s in enumerate(steps) if s.name == before)
    source = next(t for t in steps[index].inputs if t.wire == wire)
    extra = cf.Step(
        "extra_step",
        inputs=(replace(source, name="IN"),),
        outputs=(replace(source, name="OUT", wire="extra_out"),),
    )
    moved = tuple(
        replace(t, wire="extra_out") if t.wire == wire else t for t in steps[index].inputs
    )
    return [*steps[:index], extra, replace(steps[index], inputs=moved), *steps[index + 1 :]]


def test_the_rule_covers_a_step_added_to_the_pipeline() -> None:
    """One more Python step between the crops and the classifier: one entry, and both
    flavours and both ensembles follow."""
    specs, opts = _specs(), ServingOptions()
    native = _with_step_before(
        list(cf.pipeline(specs, opts, "cpu")), GESTURE_CLASSIFIER, "classifier_input"
    )
    entry = cf.Tensor("IMAGE", "UINT8", (-1, -1, 3), "IMAGE")
    ensemble = cf.ensemble_config(ENSEMBLE, native, entry, specs)
    assert _steps(ensemble)[-4:] == [HAND_CROPS, "extra_step", GESTURE_CLASSIFIER, GESTURE_DECISION]
    cpu = cf.fuse_for_cpu(native, opts)
    assert [s.name for s in cpu] == [HAND_DETECTOR, HAND_CROPS, "extra_step", GESTURE_CLASSIFIER]
    cpu_ensemble = cf.ensemble_config(ENSEMBLE, cpu, entry, specs)
    classify = cpu_ensemble.ensemble_scheduling.step[-1]
    assert dict(classify.input_map) == {
        "input": "extra_out",
        "CROP_BOXES": "crop_boxes",
        "CROP_SCORES": "crop_scores",
    }


def test_a_step_between_a_network_and_a_step_inside_it_is_refused() -> None:
    """The decision runs inside the classifier on cpu: a step between the two cannot."""
    specs, opts = _specs(), ServingOptions()
    native = _with_step_before(list(cf.pipeline(specs, opts, "cpu")), GESTURE_DECISION, "logits")
    entry = cf.Tensor("IMAGE", "UINT8", (-1, -1, 3), "IMAGE")
    cf.check_wiring(native, entry)
    with pytest.raises(ValueError, match="'extra_out': not made before this step"):
        cf.check_wiring(cf.fuse_for_cpu(native, opts), entry)


# ----------------------------------------------------------------- ensemble wiring


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_the_ensembles_of_every_flavour_are_wired(flavour: str) -> None:
    specs, opts = _specs(), ServingOptions()
    steps = cf.flavour_steps(flavour, specs, opts)
    cf.check_wiring(steps, cf.Tensor("IMAGE", "UINT8", (-1, -1, 3), "IMAGE"))


def test_ensemble_outputs_are_the_public_contract() -> None:
    configs = model_configs("cpu", _specs())
    for name, entry, dtype in (
        (ENSEMBLE, "IMAGE", pb.TYPE_UINT8),
        (ENSEMBLE_BYTES, "IMAGE_BYTES", pb.TYPE_STRING),
    ):
        config = configs[name]
        assert [(t.name, t.data_type) for t in config.input] == [(entry, dtype)]
        assert tuple(_names(config.output)) == ENSEMBLE_OUTPUTS
        assert config.parameters["labels"].string_value.startswith('["no_gesture", "stop"')
    assert _dims(configs[ENSEMBLE], "input", "IMAGE") == (-1, -1, 3)
    assert _dims(configs[ENSEMBLE], "output", "HAND_BOXES") == (-1, 4)


def test_broken_wiring_is_reported() -> None:
    specs, opts = _specs(), ServingOptions()
    steps = list(cf.flavour_steps("cpu", specs, opts))
    entry = cf.Tensor("IMAGE", "UINT8", (-1, -1, 3), "IMAGE")
    crops = steps[1]
    assert crops.name == HAND_CROPS
    fp16 = tuple(replace(t, data_type="FP16") if t.name == "LETTERBOX" else t for t in crops.inputs)
    with pytest.raises(ValueError, match=r"FP32\[3\] feeds FP16\[3\]"):
        cf.check_wiring([steps[0], replace(crops, inputs=fp16), *steps[2:]], entry)
    unmade = tuple(replace(t, wire="nowhere") if t.name == "LETTERBOX" else t for t in crops.inputs)
    with pytest.raises(ValueError, match="'nowhere': not made before this step"):
        cf.check_wiring([steps[0], replace(crops, inputs=unmade), *steps[2:]], entry)
    with pytest.raises(ValueError, match="ensemble output GESTURE is never made"):
        cf.check_wiring(steps[:2], entry)


# ----------------------------------------------------------------- text


def test_config_text_is_what_triton_reads() -> None:
    configs = model_configs("onnxruntime", _specs(), ServingOptions(max_hands=5))
    for name, config in configs.items():
        text = cf.config_text(config, "onnxruntime")
        assert text.startswith("# Generated by gesture_recognition.serving.configs")
        assert text_format.Parse(text, pb.ModelConfig()) == config, name
    crops = cf.config_text(configs[HAND_CROPS], "onnxruntime")
    assert 'string_value: "5"' in crops
    # text_format leaves out a zero; Triton would then auto-complete a batch size.
    assert crops.rstrip().endswith("max_batch_size: 0")
    assert "max_batch_size: 0" not in cf.config_text(configs[HAND_DETECTOR], "onnxruntime")
    # BYTES is spelled TYPE_STRING in the model config proto.
    decision = cf.config_text(configs[GESTURE_DECISION], "onnxruntime")
    assert "TYPE_STRING" in decision and "TYPE_BYTES" not in decision
    assert 'label_filename: "labels.txt"' in decision
