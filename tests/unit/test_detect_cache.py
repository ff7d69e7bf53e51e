"""The detection cache: resumes an interrupted run, refuses a cache of other weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.training.detect_cache import cache_detections, read_cache


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    shipped = shipped_models_dir()
    if not (shipped / "hand_detector.onnx").is_file():
        pytest.skip("no shipped models")
    folder = tmp_path / "models"
    folder.mkdir()
    for name in ("hand_detector.onnx", "hand_detector.json"):
        shutil.copy(shipped / name, folder / name)
    return folder


def test_resume_skips_cached_photos_and_other_weights_are_refused(
    models: Path, shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "subhih_hands"
    photos = sorted((root / "test").glob("*.jpg"))[:3]
    out = tmp_path / "cache.json"
    cache_detections(models, root, out, images=photos[:2])
    first = read_cache(out)
    assert sorted(first) == sorted(p.relative_to(root).as_posix() for p in photos[:2])
    cache_detections(models, root, out, images=photos)
    assert len(read_cache(out)) == 3
    assert json.loads(out.read_text())["detector"]["onnx_sha256"]

    # Same spec (size, threshold), other weights: resuming would mix two detectors' boxes.
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(models / "hand_detector.onnx"))
    model.doc_string = "retrained"
    onnx.save(model, str(models / "hand_detector.onnx"))
    with pytest.raises(ValueError, match="another detector"):
        cache_detections(models, root, out, images=photos)


def test_a_lower_threshold_is_recorded_and_keeps_more_boxes(
    models: Path, shared_data: Path, tmp_path: Path
) -> None:
    root = shared_data / "subhih_hands"
    photos = sorted((root / "test").glob("*.jpg"))[:4]
    served = cache_detections(models, root, tmp_path / "a.json", images=photos)
    low = cache_detections(models, root, tmp_path / "b.json", images=photos, conf_threshold=0.01)
    assert low["detector"]["conf_threshold"] == 0.01
    count = lambda c: sum(len(e["boxes"]) for e in c["images"].values())  # noqa: E731
    assert count(low) >= count(served)
    with pytest.raises(ValueError, match="conf_threshold"):
        cache_detections(models, root, tmp_path / "c.json", images=photos, conf_threshold=1.5)
