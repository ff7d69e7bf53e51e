"""Export both trained models to ONNX with a dynamic batch axis, simplified and verified.

The detector is exported through ultralytics from its checkpoint (YOLO26 end-to-end head, or
in-graph NMS for NMS-based families), the classifier with ``torch.onnx.export``. Each ONNX file
is written beside the JSON spec the server reads (see ``gesture_recognition.artifacts``).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    ClassifierSpec,
    DetectorSpec,
    write_spec,
)
from gesture_recognition.labels import load_label_map
from gesture_recognition.letterbox import min_canvas_side

OPSET = 17
# Lowest confidence the exported detector keeps (mAP needs the low-confidence tail).
EXPORT_CONF = 0.001


class VerificationError(RuntimeError):
    """The exported ONNX does not reproduce the PyTorch model."""


@dataclass(frozen=True)
class Verification:
    max_abs_diff: float
    top1_agreement: float
    samples: int

    def check(self, atol: float, min_agreement: float = 1.0) -> None:
        if self.max_abs_diff > atol or self.top1_agreement < min_agreement:
            raise VerificationError(
                f"ONNX differs from PyTorch: max |diff| {self.max_abs_diff:.2e} (limit {atol:.0e}),"
                f" top-1 agreement {self.top1_agreement:.3f} (need {min_agreement:.3f})"
            )


def export_detector(
    checkpoint: str | Path,
    out_dir: str | Path,
    imgsz: int = 320,
    max_batch: int = 8,
    conf_threshold: float = 0.25,
    second_pass_imgsz: int = 0,
) -> Path:
    """Ultralytics checkpoint -> ``hand_detector.onnx`` + ``hand_detector.json`` in out_dir.

    Output ``output0`` is ``[B, 300, 6]`` (x1 y1 x2 y2 score class, letterboxed pixels). The
    export batch is ``max_batch``: with a dynamic axis ultralytics traces its top-k at that
    batch, and a smaller traced batch leaves images 2..N without boxes.
    """
    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics import YOLO

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "detector.pt"
        shutil.copyfile(checkpoint, local)
        model = YOLO(str(local))
        # ``end2end`` is a switch a checkpoint may carry as False; the one-to-one branch is
        # what makes a head NMS-free (YOLO26, YOLOv10).
        nms_free = getattr(model.model.model[-1], "one2one_cv2", None) is not None  # type: ignore[union-attr]
        exported = model.export(
            format="onnx",
            imgsz=imgsz,
            dynamic=True,
            batch=max_batch,
            simplify=True,
            device="cpu",
            # nms=False keeps an NMS-free head's one-to-one branch; other families get NMS in
            # the graph, so every detector has the same [B, 300, 6] output.
            nms=not nms_free,
            # In-graph NMS would bake ultralytics' default 0.25 cut into the file; keep every
            # box and let the spec's conf_threshold filter at serving time.
            conf=EXPORT_CONF,
        )
        # The network's largest stride: the serving letterbox makes canvases of its multiples
        # (ultralytics' own rectangular inference), which the dynamic export accepts.
        strides = [int(s) for s in model.model.stride]  # type: ignore[union-attr]
        stride = max(strides)
        # Verified before anything lands in out_dir: a broken export never replaces a good one.
        rows = _check_detector_output(Path(exported), imgsz, max_batch)
        min_side = min_canvas_side(imgsz, strides, rows)
        _check_canvas(Path(exported), (min_side, imgsz), rows)
        _check_canvas(Path(exported), (imgsz, min_side), rows)
        if second_pass_imgsz:
            _check_canvas(Path(exported), (second_pass_imgsz, second_pass_imgsz), rows)
        scrub_paths(Path(exported))
        shutil.copyfile(exported, out / DETECTOR_ONNX)
    spec = DetectorSpec(
        imgsz=imgsz,
        conf_threshold=conf_threshold,
        architecture=_yolo_arch(model),
        letterbox_stride=stride,
        min_canvas_side=min_side,
        second_pass_imgsz=second_pass_imgsz,
    )
    write_spec(spec, out / DETECTOR_JSON)
    return out / DETECTOR_ONNX


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s'\",:}]+/)+([^\s'\",:}/]+)")


def scrub_paths(onnx_path: Path) -> None:
    """Replace absolute paths in the file's metadata by their last component.

    ultralytics records the training machine's dataset path; shipped files must not carry
    the paths of the machine that built them.
    """
    import onnx

    model = onnx.load(str(onnx_path))
    changed = False
    for prop in model.metadata_props:
        cleaned = _ABSOLUTE_PATH.sub(r"\1", prop.value)
        if cleaned != prop.value:
            prop.value, changed = cleaned, True
    if changed:
        onnx.save(model, str(onnx_path))


def _yolo_arch(model: object) -> str:
    yaml_cfg = getattr(getattr(model, "model", None), "yaml", {}) or {}
    return Path(str(yaml_cfg.get("yaml_file", "yolo"))).stem or "yolo"


def _check_detector_output(path: Path, imgsz: int, max_batch: int) -> int:
    """Every image of a batch must get the same rows as when run alone; returns the number of
    output rows per image."""
    from gesture_recognition.runtime import make_session

    session = make_session(path)
    rng = np.random.default_rng(0)
    batch = rng.random((min(max_batch, 3), 3, imgsz, imgsz), dtype=np.float32)
    (together,) = session.run(None, {"images": batch})
    if together.ndim != 3 or together.shape[2] != 6:
        raise VerificationError(f"detector output must be [B, D, 6], got {together.shape}")
    for i in range(len(batch)):
        (alone,) = session.run(None, {"images": batch[i : i + 1]})
        diff = float(np.abs(alone[0] - together[i]).max())
        if diff > 1e-3:
            raise VerificationError(f"batched detector output differs for image {i}: {diff:.2e}")
    return int(together.shape[1])


def _check_canvas(path: Path, shape: tuple[int, int], rows: int) -> None:
    """The detector must run on the smallest canvas the serving letterbox makes."""
    from gesture_recognition.runtime import make_session

    session = make_session(path)
    canvas = np.random.default_rng(1).random((1, 3, *shape), dtype=np.float32)
    try:
        (out,) = session.run(None, {"images": canvas})
    except Exception as exc:  # ORT raises its own types (fixed shapes, a TopK too large)
        raise VerificationError(f"the detector does not run on a {shape} canvas: {exc}") from exc
    if out.shape != (1, rows, 6):
        raise VerificationError(f"detector output for a {shape} canvas is {out.shape}")


def export_classifier(
    model: object,
    spec: ClassifierSpec,
    out_dir: str | Path,
    max_batch: int = 16,
    verify_inputs: np.ndarray | None = None,
    atol: float = 1e-4,
    verify: bool = True,
) -> tuple[Path, Verification]:
    """timm model -> ``gesture_classifier.onnx`` + ``gesture_classifier.json``, verified.

    ``verify_inputs`` (``[N, 3, S, S]``, e.g. real crops) are run through both PyTorch and ONNX
    Runtime; the files are only written when they agree within ``atol`` on every logit.
    """
    import onnx
    import onnxslim
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net = model.eval().cpu()  # type: ignore[attr-defined]
    size = spec.input_size
    example = torch.zeros(2, 3, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "classifier.onnx"
        torch.onnx.export(
            net,
            (example,),
            str(raw),
            input_names=[spec.input_name],
            output_names=[spec.output_name],
            dynamic_axes={spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        slim = onnxslim.slim(onnx.load(str(raw)))
        onnx.checker.check_model(slim)
        candidate = Path(tmp) / CLASSIFIER_ONNX
        onnx.save(slim, str(candidate))
        if verify_inputs is None:
            verify_inputs = np.random.default_rng(0).standard_normal((max_batch, 3, size, size))
        verification = verify_classifier(net, candidate, spec, verify_inputs.astype(np.float32))
        if verify:
            verification.check(atol)
        shutil.copyfile(candidate, out / CLASSIFIER_ONNX)
    write_spec(spec, out / CLASSIFIER_JSON)
    return out / CLASSIFIER_ONNX, verification


def verify_classifier(
    model: object, onnx_path: Path, spec: ClassifierSpec, inputs: np.ndarray, chunk: int = 16
) -> Verification:
    import torch

    from gesture_recognition.runtime import make_session

    session = make_session(onnx_path)
    diffs, agree = [], 0
    for start in range(0, len(inputs), chunk):
        x = inputs[start : start + chunk]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()  # type: ignore[operator]
        (got,) = session.run([spec.output_name], {spec.input_name: x})
        diffs.append(float(np.abs(ref - got).max()))
        agree += int((ref.argmax(1) == got.argmax(1)).sum())
    return Verification(max(diffs), agree / max(len(inputs), 1), len(inputs))


def one_class_yaml(model_yaml: str, folder: Path) -> Path:
    """A copy of an ultralytics model definition with ``nc: 1`` (the definitions say 80).

    The file name is kept: ultralytics reads the model scale (n/s/m/l/x) from it.
    """
    import yaml
    from ultralytics.nn.tasks import yaml_model_load

    cfg = dict(yaml_model_load(model_yaml))
    cfg["nc"] = 1
    cfg.pop("yaml_file", None)
    # ultralytics maps "yolov5xu" to "yolov5x" before looking for the file (the anchor-free
    # "u" head is what its yolov5.yaml defines), so a copy must carry the name without the "u".
    name = re.sub(r"^(yolov\d+[nslmx])u(\.ya?ml)$", r"\1\2", Path(model_yaml).name)
    path = folder / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def make_untrained_models(
    out_dir: str | Path,
    label_map: str = "mcs2021",
    imgsz: int = 320,
    detector_yaml: str = "yolo26n.yaml",
    classifier_arch: str = "tf_efficientnet_lite0",
    classifier_size: int = 160,
    max_hands: int = 4,
    verify: bool = True,
) -> Path:
    """Random-weight detector and classifier, exported like the real ones.

    For shape and plumbing tests, and for speed-only benchmarks of architectures nobody trained
    here (the original 2021 YOLOv5x + EfficientNetV2-M): their answers mean nothing. The
    detector keeps every box (``conf_threshold`` 0), so a server built on it always classifies
    ``max_hands`` crops per photo. ``verify=False`` skips the PyTorch comparison of the
    classifier: a deep random network such as EfficientNetV2-M has logits of ~1e6 that differ
    only in their last bits, where ONNX and PyTorch rounding disagree (speed rows only).
    """
    import timm

    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics import YOLO

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "untrained.pt"
        yolo = YOLO(str(one_class_yaml(detector_yaml, Path(tmp))))
        yolo.model.names = {0: "hand"}  # type: ignore[union-attr]
        yolo.save(str(ckpt))
        export_detector(ckpt, out, imgsz=imgsz, conf_threshold=0.0)
    labels = load_label_map(label_map)
    net = timm.create_model(classifier_arch, pretrained=False, num_classes=labels.num_classes)
    spec = ClassifierSpec(
        label_map=labels, input_size=classifier_size, architecture=classifier_arch
    )
    export_classifier(net, spec, out, max_batch=max_hands, verify=verify)
    return out
