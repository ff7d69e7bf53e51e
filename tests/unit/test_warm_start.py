"""Warm start: a shipped detector ONNX rebuilt into an ultralytics checkpoint.

The YOLO26n detector shipped until 2026-12-03, read from git: one rebuild
(``gesture-train rebuild-detector --model yolo26n.yaml``, about 25 s on two real SubhiH photos);
the saved checkpoint is loaded back by ultralytics and must still give the ONNX file's outputs.
The shipped ``yolo26n-lite0`` detector, whose timm backbone the exporter folded under anonymous
names, is rebuilt too (the default ``--model``): a fresh checkout can continue training it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gesture_recognition.images import load_image
from gesture_recognition.letterbox import letterbox, to_detector_tensor
from gesture_recognition.training import warm_start
from gesture_recognition.training.cli import main
from gesture_recognition.training.warm_start import (
    MAX_ABS_DIFF,
    RebuildReport,
    _one2one_name,
    _scope_module,
    rebuild_detector,
)
from tests.conftest import REPO
from tests.unit.subhih_photos import PHOTOS
from tests.unit.yolo26n_export import write_yolo26n_detector


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The YOLO26n detector shipped until 2026-12-03, as the repository's history holds it."""
    return write_yolo26n_detector(tmp_path_factory.mktemp("yolo26n"))


@pytest.fixture(scope="module")
def photos(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("calib")
    for rel in PHOTOS[:2]:
        shutil.copy(shared_data / "subhih_hands" / rel, folder / Path(rel).name)
    return folder


@pytest.fixture(scope="module")
def checkpoint(
    onnx_file: Path, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, RebuildReport]:
    """``gesture-train rebuild-detector`` once; the report its rebuild returned."""
    out = tmp_path_factory.mktemp("warm") / "warm.pt"
    argv = ["rebuild-detector", "--onnx", str(onnx_file), "--photos", str(photos)]
    argv += ["--model", "yolo26n.yaml", "--limit", "2", "--out", str(out)]
    reports: list[RebuildReport] = []
    original = warm_start.rebuild_detector

    def spy(*args: Any, **kwargs: Any) -> tuple[torch.nn.Module, RebuildReport]:
        model, report = original(*args, **kwargs)
        reports.append(report)
        return model, report

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(warm_start, "rebuild_detector", spy)
        assert main(argv) == 0
    assert len(reports) == 1
    return out, reports[0]


def test_one2one_names() -> None:
    assert _one2one_name("model.23.cv2.0.1.conv") == "model.23.one2one_cv2.0.1.conv"
    assert _one2one_name("model.23.cv3.2.2") == "model.23.one2one_cv3.2.2"
    assert _one2one_name("model.2.cv2.conv") == "model.2.one2one_cv2.conv"  # any numbered module
    assert _one2one_name("model.0.conv") is None


def test_scope_module_names() -> None:
    assert _scope_module("/model.0/m.1/m.1.0/conv_dw/Conv") == "model.0.m.1.0.conv_dw"
    assert _scope_module("/model.0/m.0/m.0.1/Conv") == "model.0.m.0.1"
    head = "/model.18/one2one_cv3.2/one2one_cv3.2.1/one2one_cv3.2.1.0/conv/Conv"
    assert _scope_module(head) == "model.18.one2one_cv3.2.1.0.conv"


def test_the_shipped_lite0_detector_is_rebuilt(
    photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped yolo26n-lite0 ONNX back to a checkpoint (backbone weights found by scope)."""
    out = tmp_path / "lite0.pt"
    argv = ["rebuild-detector", "--onnx", str(REPO / "models" / "hand_detector.onnx")]
    assert main([*argv, "--photos", str(photos), "--limit", "2", "--out", str(out)]) == 0
    saved = torch.load(out, map_location="cpu", weights_only=False)
    assert saved["train_args"]["model"].endswith("yolo26n-lite0.yaml")
    printed = capsys.readouterr().out
    loaded = int(printed.split(": ", 1)[1].split(" parameters")[0])
    diff = float(printed.rsplit("ONNX| ", 1)[1].split(" on ")[0])
    # Neck and head (named) plus the backbone's 48 anonymous convolutions, weight and bias each.
    assert loaded >= 2 * (48 + 60) and diff <= MAX_ABS_DIFF


def test_rebuild_reports_what_it_loaded(checkpoint: tuple[Path, RebuildReport]) -> None:
    path, report = checkpoint
    assert path.is_file() and report.photos == 2
    assert report.loaded > 100 and report.loaded % 2 == 0  # weight and bias of each conv
    assert report.copied_heads > 0  # the one-to-many head, not in the export
    assert 0.0 <= report.max_abs_diff <= MAX_ABS_DIFF


def test_the_saved_checkpoint_is_the_onnx_network(
    checkpoint: tuple[Path, RebuildReport], photos: Path, onnx_file: Path
) -> None:
    import onnxruntime as ort
    from ultralytics import YOLO

    path, _ = checkpoint
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert saved["train_args"] == {"model": "yolo26n.yaml", "imgsz": 320, "task": "detect"}
    model = YOLO(str(path))  # what `train-detector --model warm.pt` starts from
    net: Any = model.model
    net.eval()
    head = net.model[-1]
    head.end2end = True
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for photo in sorted(photos.iterdir()):
        canvas, _ = letterbox(load_image(photo), 320, stride=32)
        x = to_detector_tensor(canvas)
        with torch.no_grad():
            ours = net(torch.from_numpy(x))
        ours = (ours[0] if isinstance(ours, (list, tuple)) else ours).numpy()
        theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
        keep = theirs[0, :, 4] >= 0.05
        assert ours.shape == theirs.shape
        if keep.any():
            assert np.abs(ours[0, keep] - theirs[0, keep]).max() <= MAX_ABS_DIFF


def test_another_architecture_is_refused(photos: Path, onnx_file: Path) -> None:
    images = sorted(photos.iterdir())
    with pytest.raises(ValueError, match=r"ONNX weight|no weights"):
        rebuild_detector(onnx_file, "yolo26s.yaml", images)
    with pytest.raises(ValueError, match="real photos"):
        rebuild_detector(onnx_file, "yolo26n.yaml", [])
