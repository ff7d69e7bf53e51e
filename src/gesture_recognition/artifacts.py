"""What the server needs to know about each trained model, stored as JSON beside its ONNX file.

Training writes these files, the export copies them into the Triton model repository, and the
serving code and the in-process pipeline read them: preprocessing parameters never live in two
places.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from gesture_recognition.boxes import CropConfig
from gesture_recognition.json_fields import (
    Fields,
    as_bool,
    as_fields,
    as_float,
    as_floats,
    as_int,
)
from gesture_recognition.labels import MERGE_PRIORS, LabelMap

DETECTOR_ONNX = "hand_detector.onnx"
DETECTOR_JSON = "hand_detector.json"
CLASSIFIER_ONNX = "gesture_classifier.onnx"
CLASSIFIER_JSON = "gesture_classifier.json"


def shipped_models_dir() -> Path:
    """The repository's ``models/`` folder (the trained models the project ships)."""
    return Path(__file__).resolve().parents[2] / "models"


def label_map_choices(models_dir: Path) -> dict[str, Path]:
    """Label map name -> the folder of the classifier that answers in it: the models folder's
    own classifier, and each sub-folder holding one (``models/hagrid/``)."""
    models_dir = Path(models_dir)
    found: dict[str, Path] = {}
    for folder in [models_dir, *sorted(p for p in models_dir.iterdir() if p.is_dir())]:
        spec_path = folder / CLASSIFIER_JSON
        if spec_path.is_file() and (folder / CLASSIFIER_ONNX).is_file():
            found.setdefault(read_classifier_spec(spec_path).label_map.name, folder)
    return found


def models_with_label_map(models_dir: Path, label_map: str | None, work_dir: Path) -> Path:
    """A models folder serving ``label_map``: ``models_dir`` itself when its own classifier
    answers in it (or none is asked for), else ``work_dir/<label_map>`` with links to the
    detector and to that label map's classifier (``label_map_choices``)."""
    models_dir = Path(models_dir)
    if label_map is None:
        return models_dir
    choices = label_map_choices(models_dir)
    folder = choices.get(label_map)
    if folder is None:
        raise ValueError(
            f"no classifier for label map {label_map!r} in {models_dir} (it has: "
            f"{', '.join(sorted(choices)) or 'none'})"
        )
    if folder == models_dir:
        return models_dir
    view = Path(work_dir) / label_map
    view.mkdir(parents=True, exist_ok=True)
    for name, source in (
        (DETECTOR_ONNX, models_dir),
        (DETECTOR_JSON, models_dir),
        (CLASSIFIER_ONNX, folder),
        (CLASSIFIER_JSON, folder),
    ):
        link = view / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to((source / name).resolve())
    return view


@dataclass(frozen=True)
class DetectorSpec:
    imgsz: int = 320
    conf_threshold: float = 0.25
    architecture: str = "yolo26n"
    input_name: str = "images"
    output_name: str = "output0"
    # 0: a square imgsz x imgsz canvas. n > 0: the smallest canvas whose sides are multiples
    # of n (the network's stride), as ultralytics predicts with a dynamic-shape model; needs
    # an ONNX file with dynamic height and width. Specs written before this field read as 0.
    letterbox_stride: int = 0
    # With a stride: no canvas side below this (0: one stride), so the detector always has as
    # many anchors as its fixed number of output rows (letterbox.min_canvas_side).
    min_canvas_side: int = 0
    # 0: one pass. n > imgsz: a photo where the pass at imgsz finds no box at conf_threshold is
    # looked at again on a canvas of n (small hands: people farther from the camera;
    # reports/small_hands/). Needs the dynamic-shape canvas (letterbox_stride).
    second_pass_imgsz: int = 0

    def __post_init__(self) -> None:
        if self.imgsz < 1:
            raise ValueError(f"detector imgsz must be positive, got {self.imgsz}")
        if self.letterbox_stride < 0:
            raise ValueError(f"letterbox_stride must be >= 0, got {self.letterbox_stride}")
        if self.letterbox_stride and self.imgsz % self.letterbox_stride:
            raise ValueError(
                f"imgsz {self.imgsz} is not a multiple of letterbox_stride {self.letterbox_stride}"
            )

        if self.min_canvas_side and (
            not self.letterbox_stride
            or self.min_canvas_side % self.letterbox_stride
            or not 0 < self.min_canvas_side <= self.imgsz
        ):
            raise ValueError(
                f"min_canvas_side {self.min_canvas_side} must be a multiple of letterbox_stride "
                f"{self.letterbox_stride} within 1..imgsz {self.imgsz}"
            )
        if self.second_pass_imgsz and (
            not self.letterbox_stride
            or self.second_pass_imgsz <= self.imgsz
            or self.second_pass_imgsz % self.letterbox_stride
        ):
            raise ValueError(
                f"second_pass_imgsz {self.second_pass_imgsz} must be larger than imgsz "
                f"{self.imgsz} and a multiple of letterbox_stride {self.letterbox_stride} "
                "(a detector with a dynamic-shape canvas)"
            )

    @property
    def second_pass(self) -> DetectorSpec | None:
        """The spec of the second pass (its canvas ``second_pass_imgsz``), or None."""
        if not self.second_pass_imgsz:
            return None
        return replace(self, imgsz=self.second_pass_imgsz, second_pass_imgsz=0)

    @property
    def min_side(self) -> int:
        """The smallest canvas side the detector is given (letterbox and shape bounds)."""
        if not self.letterbox_stride:
            return self.imgsz
        return max(self.letterbox_stride, self.min_canvas_side)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "hand_detector",
            "architecture": self.architecture,
            "imgsz": self.imgsz,
            "letterbox_stride": self.letterbox_stride,
            "min_canvas_side": self.min_canvas_side,
            "conf_threshold": self.conf_threshold,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "output_layout": "[B, D, 6]: x1 y1 x2 y2 score class, letterboxed input pixels",
            **({"second_pass_imgsz": self.second_pass_imgsz} if self.second_pass_imgsz else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DetectorSpec:
        return cls(
            imgsz=as_int(data["imgsz"], "imgsz"),
            conf_threshold=as_float(data.get("conf_threshold", 0.25), "conf_threshold"),
            architecture=str(data.get("architecture", "unknown")),
            input_name=str(data.get("input_name", "images")),
            output_name=str(data.get("output_name", "output0")),
            letterbox_stride=as_int(data.get("letterbox_stride", 0), "letterbox_stride"),
            min_canvas_side=as_int(data.get("min_canvas_side", 0), "min_canvas_side"),
            second_pass_imgsz=as_int(data.get("second_pass_imgsz", 0), "second_pass_imgsz"),
        )


@dataclass(frozen=True)
class VerifierSpec:
    """A second output of the classifier: the probability that a crop shows a hand at all
    (``gesture-train train-verifier``). Hands under ``threshold`` are dropped before the
    decision, as MediaPipe Hands drops boxes its landmark model finds no hand in."""

    threshold: float = 0.5
    output_name: str = "hand"

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"verifier threshold must be in [0, 1), got {self.threshold}")

    def to_dict(self) -> dict[str, object]:
        return {"threshold": self.threshold, "output_name": self.output_name}

    @classmethod
    def from_dict(cls, data: Fields) -> VerifierSpec:
        return cls(
            threshold=as_float(data.get("threshold", 0.5), "verifier.threshold"),
            output_name=str(data.get("output_name", "hand")),
        )


@dataclass(frozen=True)
class ClassifierSpec:
    label_map: LabelMap
    input_size: int = 224
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop: CropConfig = field(default_factory=CropConfig)
    architecture: str = "tf_efficientnet_lite0"
    input_name: str = "input"
    output_name: str = "logits"
    verifier: VerifierSpec | None = None
    # The graph averages each crop with its mirror image (training/flip_tta.py). Recorded
    # for people and reports; the ONNX graph is what serves it.
    test_time_flip: bool = False
    # A classifier of a finer map served in this one: how its probabilities merge
    # (``labels.MERGE_PRIORS``); None when it is not merged. For people, like the flip.
    merge_prior: str | None = None

    @property
    def output_names(self) -> tuple[str, ...]:
        """What one run of the classifier returns: the logits, and the verifier's output."""
        if self.verifier is None:
            return (self.output_name,)
        return (self.output_name, self.verifier.output_name)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "kind": "gesture_classifier",
            "architecture": self.architecture,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "crop": self.crop.to_dict(),
            "label_map": self.label_map.to_dict(),
            "input_name": self.input_name,
            "output_name": self.output_name,
        }
        if self.verifier is not None:
            data["verifier"] = self.verifier.to_dict()
        if self.test_time_flip:
            data["test_time_flip"] = True
        if self.merge_prior is not None:
            data["merge_prior"] = self.merge_prior
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClassifierSpec:
        mean = as_floats(data.get("mean", (0.5, 0.5, 0.5)), "mean")
        std = as_floats(data.get("std", (0.5, 0.5, 0.5)), "std")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError("classifier mean/std need three values each, std > 0")
        return cls(
            label_map=LabelMap.from_dict(as_fields(data["label_map"], "label_map")),
            input_size=as_int(data["input_size"], "input_size"),
            mean=(mean[0], mean[1], mean[2]),
            std=(std[0], std[1], std[2]),
            crop=CropConfig.from_dict(as_fields(data.get("crop", {}), "crop")),
            architecture=str(data.get("architecture", "unknown")),
            input_name=str(data.get("input_name", "input")),
            output_name=str(data.get("output_name", "logits")),
            verifier=(
                VerifierSpec.from_dict(as_fields(data["verifier"], "verifier"))
                if data.get("verifier") is not None
                else None
            ),
            test_time_flip=as_bool(data.get("test_time_flip", False), "test_time_flip"),
            merge_prior=_merge_prior(data.get("merge_prior")),
        )


def _merge_prior(value: object) -> str | None:
    if value is None:
        return None
    if value not in MERGE_PRIORS:
        raise ValueError(f"merge_prior must be one of {MERGE_PRIORS}, got {value!r}")
    return str(value)


def write_spec(spec: DetectorSpec | ClassifierSpec, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")


def read_detector_spec(path: Path) -> DetectorSpec:
    return DetectorSpec.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def read_classifier_spec(path: Path) -> ClassifierSpec:
    return ClassifierSpec.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
