"""Check an exported ONNX hand detector against its ultralytics checkpoint on real photos.

``onnx_export.export_detector`` checks the ONNX file's batching on random inputs; this compares
what the file answers with what the PyTorch model answers on real photos (the serving letterbox,
the end-to-end head of both), so a repository is never built from an ONNX file that does not
reproduce the trained detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from gesture_recognition.artifacts import DetectorSpec
from gesture_recognition.export.onnx_export import VerificationError
from gesture_recognition.export.quantize import detector_inputs

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# Float rounding between PyTorch and ONNX Runtime moves boxes by ~1e-4 px and scores by ~1e-6
# (measured 3e-5 on SubhiH photos); these limits are far above that and far below a real error.
DEFAULT_MAX_BOX_DIFF_PX = 0.5
DEFAULT_MAX_SCORE_DIFF = 1e-3


@dataclass(frozen=True)
class DetectorExportCheck:
    photos: int
    photos_agreeing: int  # same served boxes (count, coordinates and scores within the limits)
    max_box_diff_px: float
    max_score_diff: float
    served_boxes: int

    @property
    def agreement(self) -> float:
        return self.photos_agreeing / self.photos if self.photos else 0.0

    def check(self) -> None:
        if self.photos == 0 or self.photos_agreeing < self.photos:
            raise VerificationError(
                f"ONNX detector differs from its checkpoint on {self.photos - self.photos_agreeing}"
                f" of {self.photos} real photos (max box difference {self.max_box_diff_px:.2e} "
                f"px, max score difference {self.max_score_diff:.2e})"
            )

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "agreement": self.agreement}


def real_photos(folder: str | Path, limit: int) -> list[Path]:
    photos = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return photos[:limit]


def served_rows(output: NDArray[np.float32], conf: float) -> NDArray[np.float32]:
    """Rows ``[D, 6]`` of one image the server keeps (score >= conf), highest score first."""
    rows = output[output[:, 4] >= conf]
    return rows[np.argsort(-rows[:, 4], kind="stable")]


def compare_outputs(
    reference: NDArray[np.float32],
    candidate: NDArray[np.float32],
    conf: float,
    max_box_diff_px: float = DEFAULT_MAX_BOX_DIFF_PX,
    max_score_diff: float = DEFAULT_MAX_SCORE_DIFF,
) -> DetectorExportCheck:
    """Per image, the served rows of two ``[B, D, 6]`` outputs must match one for one."""
    agreeing, box_diff, score_diff, served = 0, 0.0, 0.0, 0
    for ref_image, cand_image in zip(reference, candidate, strict=True):
        ref, cand = served_rows(ref_image, conf), served_rows(cand_image, conf)
        served += len(ref)
        if len(ref) != len(cand):
            # A box near the threshold may cross it: a whole box more or less is a mismatch.
            box_diff = max(box_diff, float("inf"))
            continue
        if len(ref) == 0:
            agreeing += 1
            continue
        b = float(np.abs(ref[:, :4] - cand[:, :4]).max())
        s = float(np.abs(ref[:, 4] - cand[:, 4]).max())
        box_diff, score_diff = max(box_diff, b), max(score_diff, s)
        same_class = bool((ref[:, 5] == cand[:, 5]).all())
        agreeing += int(b <= max_box_diff_px and s <= max_score_diff and same_class)
    return DetectorExportCheck(len(reference), agreeing, box_diff, score_diff, served)


def torch_detector_outputs(
    checkpoint: str | Path, inputs: NDArray[np.float32], chunk: int = 8
) -> NDArray[np.float32]:
    """``[B, D, 6]`` from the checkpoint's end-to-end head, as the ONNX export computes it."""
    import torch

    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics import YOLO

    model = YOLO(str(checkpoint)).model.float().eval()  # type: ignore[union-attr]
    head = model.model[-1]
    if getattr(head, "one2one_cv2", None) is None:
        raise VerificationError(
            f"{checkpoint}: only NMS-free (end-to-end) heads are compared here; an NMS export "
            "adds the NMS in the graph, which PyTorch does not run"
        )
    head.end2end = True  # what export_detector's nms=False export traces
    outputs = []
    with torch.no_grad():
        for i in range(0, len(inputs), chunk):
            out = model(torch.from_numpy(inputs[i : i + chunk]))
            outputs.append((out[0] if isinstance(out, (tuple, list)) else out).numpy())
    return np.concatenate(outputs).astype(np.float32)


def verify_detector_export(
    checkpoint: str | Path,
    onnx_path: str | Path,
    spec: DetectorSpec,
    photos: Sequence[Path],
    chunk: int = 8,
) -> DetectorExportCheck:
    """Served boxes of the ONNX detector vs its checkpoint on real photos (not raising)."""
    from gesture_recognition.runtime import make_session

    if not photos:
        raise VerificationError("no real photo to verify the detector export on")
    inputs = detector_inputs(photos, spec.imgsz)
    session = make_session(onnx_path)
    onnx_out = np.concatenate(
        [
            session.run([spec.output_name], {spec.input_name: inputs[i : i + chunk]})[0]
            for i in range(0, len(inputs), chunk)
        ]
    )
    torch_out = torch_detector_outputs(checkpoint, inputs, chunk)
    return compare_outputs(torch_out, onnx_out, spec.conf_threshold)
