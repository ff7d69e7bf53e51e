"""export/quantize.py, export/verify_export.py and the ``--int8-classifier`` /
``--int8-detector`` / ``--detector-checkpoint`` paths of export/build_engines.py: static QOperator
INT8 of a small model, its verification against FP32 (which must be able to fail), the
adopt/not-adopt decision, the detector ONNX-vs-checkpoint check on real photos, and the build
refusing to write a repository that fails. No timing assertions: speed is measured by
export/cpu_speedups.py, not tested."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    ClassifierSpec,
    read_classifier_spec,
    read_detector_spec,
    shipped_models_dir,
)
from gesture_recognition.export import build_engines
from gesture_recognition.export.onnx_export import VerificationError
from gesture_recognition.export.quantize import (
    CalibrationDataError,
    DetectorVerification,
    QuantSettings,
    QuantVerification,
    compare_classifiers,
    detector_head_nodes,
    edge_nodes,
    int8_decision,
    manifest_crops,
    quantize_classifier_verified,
    quantize_model,
    split_inputs,
)
from gesture_recognition.export.verify_export import compare_outputs
from gesture_recognition.labels import load_label_map
from tests.unit.tiny_yolo_data import tiny_yolo_data
from tests.unit.yolo26n_export import write_yolo26n_detector

SIZE = 16
REAL_CROPS = shipped_models_dir().parent / "runs" / "crops" / "hagrid_mcs2021"
REAL_DATA = shipped_models_dir().parent / "runs" / "datasets" / "subhih_hands" / "data.yaml"


# ------------------------------------------------------------------------------ fixtures


def tiny_classifier(path: Path, num_classes: int = 7, seed: int = 0) -> Path:
    """Conv -> Relu -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm, random weights."""
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:])) or 1
        return numpy_helper.from_array(
            (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32), name
        )

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1] * 4),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", num_classes])],
        [
            init("w1", 16, 3, 3, 3),
            init("b1", 16),
            init("w2", 32, 16, 3, 3),
            init("b2", 32),
            init("wf", num_classes, 32),
            init("bf", num_classes),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def spec() -> ClassifierSpec:
    return ClassifierSpec(label_map=load_label_map("mcs2021"), input_size=SIZE)


def write_crops(root: Path, per_split: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """A crop folder like ``gesture-train crops`` writes: PNGs + manifest.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    classes = load_label_map("mcs2021").classes
    for split, n in per_split.items():
        for i in range(n):
            label = classes[i % len(classes)]
            rel = f"{split}/{label}/{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            # Smooth blobs rather than white noise: closer to what activations see in photos.
            base = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
            Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR).save(root / rel)
            rows.append({"path": rel, "label": label, "split": split})
    with (root / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    return write_crops(tmp_path_factory.mktemp("crops"), {"train": 24, "val": 8, "test": 8})


def op_types(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


# ------------------------------------------------------------------------------ quantisation


def test_quantized_model_is_qoperator_and_close_to_fp32(tmp_path, spec, crops):
    fp32 = tiny_classifier(tmp_path / "fp32.onnx")
    calibration = split_inputs(crops, spec, ("train",))
    held_out = split_inputs(crops, spec, ("val", "test"))
    assert calibration.shape == (24, 3, SIZE, SIZE) and held_out.shape == (16, 3, SIZE, SIZE)

    int8 = quantize_model(fp32, tmp_path / "int8.onnx", "input", calibration, QuantSettings())
    ops = op_types(int8)
    # QOperator format: integer ops, no QuantizeLinear/DequantizeLinear pairs around each op.
    assert "QLinearConv" in ops
    assert "DequantizeLinear" in ops and ops.count("QuantizeLinear") < len(ops) // 2
    # float_edges keeps the first conv and the Gemm float.
    assert ops.count("Conv") == 1 and "Gemm" in ops
    assert set(edge_nodes(fp32)) == {"conv1", "fc"}

    result = compare_classifiers(fp32, int8, spec, held_out)
    assert result.samples == 16
    assert result.top1_agreement >= 0.8
    assert 0.0 < result.max_prob_diff < 0.2
    assert result.mean_prob_diff <= result.max_prob_diff


def test_all_layers_setting_quantizes_the_edges_too(tmp_path, spec, crops):
    fp32 = tiny_classifier(tmp_path / "fp32.onnx")
    calibration = split_inputs(crops, spec, ("train",))
    settings = QuantSettings(float_edges=False)
    int8 = quantize_model(fp32, tmp_path / "int8.onnx", "input", calibration, settings)
    ops = op_types(int8)
    assert "Conv" not in ops and ops.count("QLinearConv") == 2
    assert "all layers" in settings.describe() and "QOperator" in settings.describe()


def test_verification_catches_a_broken_model(tmp_path, spec, crops):
    fp32 = tiny_classifier(tmp_path / "fp32.onnx", seed=0)
    other = tiny_classifier(tmp_path / "other.onnx", seed=1)  # same graph, other weights
    held_out = split_inputs(crops, spec, ("val", "test"))
    same = compare_classifiers(fp32, fp32, spec, held_out)
    assert same.top1_agreement == 1.0 and same.max_prob_diff == 0.0
    same.check()
    broken = compare_classifiers(fp32, other, spec, held_out)
    assert broken.top1_agreement < 0.9
    with pytest.raises(VerificationError, match="top-1 agreement"):
        broken.check()


def test_verified_quantization_refuses_to_write_on_failure(tmp_path, spec, crops):
    fp32 = tiny_classifier(tmp_path / "fp32.onnx")
    calibration = split_inputs(crops, spec, ("train",))
    held_out = split_inputs(crops, spec, ("val", "test"))
    out = tmp_path / "out" / "int8.onnx"
    with pytest.raises(VerificationError, match="max softmax difference"):
        # INT8 never reproduces FP32 softmax exactly: a zero tolerance must fail.
        quantize_classifier_verified(
            fp32, out, spec, calibration, held_out, min_agreement=0.0, max_prob_diff=0.0
        )
    assert not out.exists()
    result = quantize_classifier_verified(
        fp32, out, spec, calibration, held_out, min_agreement=0.5, max_prob_diff=0.5
    )
    assert out.is_file() and result.samples == len(held_out)


def test_check_needs_samples_and_limits():
    with pytest.raises(VerificationError, match="no input"):
        QuantVerification(1.0, 0.0, 0.0, 0.0, 0).check()
    QuantVerification(0.95, 0.25, 0.01, 1.0, 62).check(0.95, 0.25)  # limits are inclusive
    with pytest.raises(VerificationError):
        QuantVerification(0.949, 0.1, 0.01, 1.0, 62).check(0.95, 0.25)
    with pytest.raises(VerificationError):
        QuantVerification(1.0, 0.251, 0.01, 1.0, 62).check(0.95, 0.25)


def test_calibration_data_errors(tmp_path, spec, crops):
    with pytest.raises(FileNotFoundError):
        manifest_crops(tmp_path, ("train",))
    with pytest.raises(CalibrationDataError, match="no crop in split"):
        split_inputs(crops, spec, ("nope",))
    assert len(manifest_crops(crops, ("train",), limit=5)) == 5
    with pytest.raises(CalibrationDataError):
        quantize_model(
            tiny_classifier(tmp_path / "m.onnx"),
            tmp_path / "q.onnx",
            "input",
            np.zeros((0, 3, SIZE, SIZE), np.float32),
        )


# ------------------------------------------------------------------------------ decision

FP32 = {"accuracy": 0.774, "macro_f1": 0.674}


def test_decision_adopts_only_faster_and_not_worse():
    good = int8_decision(FP32, FP32, 6.0, 4.0, agreement=1.0)
    assert good.adopt and any("1.50x" in r for r in good.reasons)

    slow = int8_decision(FP32, FP32, 6.0, 5.8, agreement=1.0)
    assert not slow.adopt and any("below the required" in r for r in slow.reasons)

    worse = int8_decision(FP32, {"accuracy": 0.774, "macro_f1": 0.650}, 6.0, 4.0, agreement=1.0)
    assert not worse.adopt and any("macro_f1 drops" in r for r in worse.reasons)

    flips = int8_decision(FP32, FP32, 6.0, 4.0, agreement=0.90)
    assert not flips.adopt and any("agreement 0.900 is below" in r for r in flips.reasons)

    # A better INT8 score is no drop; a tolerance can allow a small loss.
    better = int8_decision(FP32, {"accuracy": 0.8, "macro_f1": 0.7}, 6.0, 4.0, agreement=0.96)
    assert better.adopt
    tolerated = int8_decision(
        FP32, {"accuracy": 0.76, "macro_f1": 0.67}, 6.0, 4.0, 0.96, max_metric_drop=0.02
    )
    assert tolerated.adopt


# ------------------------------------------------------------------------------ build path


def shipped_copy(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    shutil.copytree(shipped_models_dir(), models, ignore=shutil.ignore_patterns("finger_count"))
    return models


def yolo26n_copy(tmp_path: Path) -> Path:
    """The shipped models with the last YOLO26n detector: the detector INT8 is measured on."""
    models = shipped_copy(tmp_path)
    write_yolo26n_detector(models)
    return models


@pytest.mark.slow  # quantises the shipped classifier (~6 s)
def test_build_int8_classifier_writes_a_verified_repository(tmp_path, capsys):
    crops = write_crops(tmp_path / "crops", {"train": 6, "val": 3, "test": 3}, size=64)
    out = tmp_path / "repo"
    code = build_engines.main(
        [
            "--int8-classifier",
            "--calib-crops",
            str(crops),
            # Six random-blob crops calibrate poorly: these limits test the wiring, not accuracy.
            "--int8-min-agreement",
            "0",
            "--int8-max-prob-diff",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    served = out / "gesture_classifier" / "1" / "model.onnx"
    assert "QLinearConv" in op_types(served)
    # The detector and the spec are the shipped ones, untouched.
    assert (out / "hand_detector" / "1" / "model.onnx").read_bytes() == (
        shipped_models_dir() / "hand_detector.onnx"
    ).read_bytes()
    assert read_classifier_spec(out / "gesture_classifier" / "1" / CLASSIFIER_JSON) == (
        read_classifier_spec(shipped_models_dir() / CLASSIFIER_JSON)
    )
    report = (out / build_engines.REPORT_NAME).read_text(encoding="utf-8")
    assert "INT8" in report and "top-1 agreement" in report and "6 train crops" in report


def test_build_refuses_a_repository_that_fails_int8_verification(tmp_path, capsys):
    crops = write_crops(tmp_path / "crops", {"train": 4, "val": 2, "test": 2}, size=64)
    out = tmp_path / "repo"
    code = build_engines.main(
        [
            *("--int8-classifier", "--calib-crops", str(crops)),
            *("--int8-max-prob-diff", "0", "--out", str(out)),
        ]
    )
    assert code == 1
    assert "no repository was written" in capsys.readouterr().err
    assert not out.exists()
    assert not any(p.name.startswith(".repo") for p in tmp_path.iterdir())


def test_build_int8_user_errors_exit_2(tmp_path, capsys):
    missing = ["--int8-classifier", "--calib-crops", str(tmp_path / "none")]
    assert build_engines.main([*missing, "--out", str(tmp_path / "r")]) == 2
    assert "manifest.csv" in capsys.readouterr().err
    assert build_engines.main(["--calib-crops", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert "only applies with --int8-classifier" in capsys.readouterr().err
    code = build_engines.main(
        ["--target", "tensorrt", "--int8-classifier", "--dry-run", "--out", str(tmp_path / "t")]
    )
    assert code == 2 and "--precision int8" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_engines.main(["--int8-classifier", "--int8-min-agreement", "1.5"])
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # quantises and verifies the shipped classifier (~15-30 s)
@pytest.mark.skipif(
    not (REAL_CROPS / "manifest.csv").is_file(),
    reason="needs the MCS crops (gesture-train crops -> runs/crops/hagrid_mcs2021)",
)
def test_shipped_classifier_int8_passes_default_limits_on_real_crops(tmp_path):
    """The default limits hold for the shipped classifier and the real held-out crops."""
    models = shipped_copy(tmp_path)
    out = tmp_path / "repo"
    assert (
        build_engines.main(["--int8-classifier", "--models-dir", str(models), "--out", str(out)])
        == 0
    )
    served = out / "gesture_classifier" / "1" / "model.onnx"
    assert "QLinearConv" in op_types(served)
    assert (models / CLASSIFIER_ONNX).stat().st_size > 2 * served.stat().st_size


# ------------------------------------------------------------------------------ detector


def test_detector_head_is_the_last_ultralytics_module(tmp_path):
    head = detector_head_nodes(write_yolo26n_detector(tmp_path / "yolo26n"))
    assert len(head) > 50 and all(n.startswith("/model.23/") for n in head)
    # yolo26n-lite0: six backbone rows instead of eleven, the head is module 18.
    head = detector_head_nodes(shipped_models_dir() / "hand_detector.onnx")
    assert len(head) > 50 and all(n.startswith("/model.18/") for n in head)
    with pytest.raises(ValueError, match="not an ultralytics export"):
        detector_head_nodes(tiny_classifier(tmp_path / "m.onnx"))


def test_detector_verification_limits():
    DetectorVerification(0.979, 0.979, 0.822, 0.815, 153).check(0.01)
    DetectorVerification(0.9, 0.95, 0.7, 0.75, 153).check(0.0)  # better is fine
    with pytest.raises(VerificationError, match=r"mAP50-95 drops by 0\.020"):
        DetectorVerification(0.979, 0.979, 0.822, 0.802, 153).check(0.01)
    with pytest.raises(VerificationError, match="mAP50 drops"):
        DetectorVerification(0.979, 0.5, 0.822, 0.822, 153).check(0.01)
    with pytest.raises(VerificationError, match="no photo"):
        DetectorVerification(0.0, 0.0, 0.0, 0.0, 0).check(0.01)


@pytest.mark.slow  # quantises the shipped detector and runs it over photos (~15 s)
def test_build_refuses_an_int8_detector_that_loses_map(tmp_path, capsys, monkeypatch):
    data = tiny_yolo_data(tmp_path / "data")
    calls = []

    def worse(fp32_dir, int8_dir, data_yaml, split):
        calls.append((Path(fp32_dir), Path(int8_dir), split))
        return DetectorVerification(0.95, 0.90, 0.75, 0.70, 2)

    monkeypatch.setattr(build_engines, "verify_detector", worse)
    out = tmp_path / "repo"
    models = yolo26n_copy(tmp_path)
    argv = ["--int8-detector", "--calib-data", str(data), "--models-dir", str(models)]
    code = build_engines.main([*argv, "--out", str(out)])
    assert code == 1 and "mAP50 drops by 0.050" in capsys.readouterr().err
    assert not out.exists()
    # It compared the FP32 detector with a quantised candidate, on the val split.
    ((fp32_dir, int8_dir, split),) = calls
    assert fp32_dir == models and split == "val" and int8_dir != fp32_dir

    monkeypatch.setattr(
        build_engines, "verify_detector", lambda *a: DetectorVerification(0.95, 0.95, 0.75, 0.75, 2)
    )
    assert build_engines.main([*argv, "--out", str(out)]) == 0
    served = out / "hand_detector" / "1" / "model.onnx"
    ops = op_types(served)
    assert "QLinearConv" in ops and "TopK" in ops  # backbone quantised, head decoding float
    assert "Hand detector: INT8" in (out / build_engines.REPORT_NAME).read_text(encoding="utf-8")


@pytest.mark.slow  # calibrates the shipped detector on two photos (~15 s)
def test_int8_of_the_lite0_detector_is_refused_clearly(tmp_path, capsys):
    """onnxruntime's quantiser cannot order the Lite0 graph: a user error, not a traceback."""
    data = tiny_yolo_data(tmp_path / "data")
    out = tmp_path / "repo"
    models = shipped_copy(tmp_path)
    argv = ["--int8-detector", "--calib-data", str(data), "--models-dir", str(models)]
    assert build_engines.main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot quantise hand_detector.onnx (yolo26n-lite0)" in err and "FP32" in err
    assert not out.exists()


def test_build_int8_detector_user_errors_exit_2(tmp_path, capsys):
    code = build_engines.main(
        ["--int8-detector", "--calib-data", str(tmp_path / "no.yaml"), "--out", str(tmp_path / "r")]
    )
    assert code == 2 and "labelled real photos" in capsys.readouterr().err
    code = build_engines.main(["--calib-data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and "only applies with --int8-detector" in capsys.readouterr().err


@pytest.mark.slow  # quantises the shipped detector, mAP on 153 photos twice (~20 s)
@pytest.mark.skipif(not REAL_DATA.is_file(), reason="needs runs/datasets/subhih_hands (convert)")
def test_shipped_detector_int8_keeps_map_on_real_photos(tmp_path):
    """The default mAP limit holds for the last YOLO26n detector on the SubhiH val photos."""
    models = yolo26n_copy(tmp_path)
    out = tmp_path / "repo"
    args = ["--int8-detector", "--models-dir", str(models), "--out", str(out)]
    assert build_engines.main(args) == 0
    report = (out / build_engines.REPORT_NAME).read_text(encoding="utf-8")
    assert "Hand detector: INT8" in report and "val photos" in report
    served = out / "hand_detector" / "1" / "model.onnx"
    assert served.stat().st_size < (models / "hand_detector.onnx").stat().st_size / 2


# ------------------------------------------------------------------------------ export check

CHECKPOINT = (
    shipped_models_dir().parent / "runs" / "detector" / "yolo26n_320_ft" / "weights" / "best.pt"
)


def detector_rows(*rows: tuple[float, ...]) -> np.ndarray:
    out = np.zeros((1, 5, 6), np.float32)
    out[0, : len(rows)] = rows
    return out


def test_compare_outputs_matches_served_boxes_only():
    ref = detector_rows((10, 10, 50, 50, 0.9, 0), (60, 60, 90, 90, 0.1, 0))
    same = compare_outputs(ref, ref.copy(), conf=0.25)
    assert same.agreement == 1.0 and same.served_boxes == 1 and same.max_box_diff_px == 0.0
    same.check()

    # Rows under the served threshold may differ freely.
    low = ref.copy()
    low[0, 1, :4] += 30
    assert compare_outputs(ref, low, conf=0.25).agreement == 1.0

    moved = ref.copy()
    moved[0, 0, 0] += 2.0
    result = compare_outputs(ref, moved, conf=0.25)
    assert result.agreement == 0.0 and result.max_box_diff_px == pytest.approx(2.0)
    with pytest.raises(VerificationError, match="1 of 1 real photos"):
        result.check()

    extra = ref.copy()
    extra[0, 1, 4] = 0.3  # a second box crosses the threshold on one side only
    assert compare_outputs(ref, extra, conf=0.25).agreement == 0.0
    rescored = ref.copy()
    rescored[0, 0, 4] = 0.8
    assert compare_outputs(ref, rescored, conf=0.25).agreement == 0.0


def test_detector_export_check_fails_when_pytorch_disagrees(monkeypatch):
    from gesture_recognition.export import verify_export
    from gesture_recognition.runtime import make_session

    photos = verify_export.real_photos(build_engines.default_verify_photos(), 4)
    if not photos:
        pytest.skip("needs SubhiH photos in ../shared/data/subhih_hands/test")
    spec = read_detector_spec(shipped_models_dir() / "hand_detector.json")
    onnx_path = shipped_models_dir() / "hand_detector.onnx"

    def shifted(checkpoint, inputs, chunk=8):
        (out,) = make_session(onnx_path).run(None, {"images": inputs})
        out[..., :4] += 1.0  # a checkpoint whose boxes sit one pixel elsewhere
        return out

    monkeypatch.setattr(verify_export, "torch_detector_outputs", shifted)
    result = verify_export.verify_detector_export("unused.pt", onnx_path, spec, photos)
    assert result.photos == 4 and result.served_boxes > 0
    with pytest.raises(VerificationError, match="differs from its checkpoint"):
        result.check()


@pytest.mark.skipif(not CHECKPOINT.is_file(), reason="needs the trained detector checkpoint")
def test_build_verifies_detector_onnx_against_checkpoint(tmp_path, capsys):
    if not verify_export_photos():
        pytest.skip("needs SubhiH photos in ../shared/data/subhih_hands/test")
    out = tmp_path / "repo"
    args = ["--detector-checkpoint", str(CHECKPOINT), "--verify-count", "8", "--out", str(out)]
    assert build_engines.main(args) == 0, capsys.readouterr().err
    report = (out / build_engines.REPORT_NAME).read_text(encoding="utf-8")
    assert "served boxes equal on 8 of 8" in report
    code = build_engines.main(
        ["--detector-checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "r")]
    )
    assert code == 2 and not (tmp_path / "r").exists()


def verify_export_photos() -> list[Path]:
    from gesture_recognition.export.verify_export import real_photos

    return real_photos(build_engines.default_verify_photos(), 1)
