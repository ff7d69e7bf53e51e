"""Detector sets shown smaller (``gesture-train zoom-out``): the photos shrink, the boxes stay
on their hands; on real Roboflow test photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gesture_recognition.training.cli import main
from gesture_recognition.training.detector_sets import load_set
from gesture_recognition.training.zoomed_sets import GREY, write_zoomed_set, zoom_out

PHOTOS = 4


def test_the_boxes_move_with_their_pixels() -> None:
    image = np.zeros((90, 120, 3), np.uint8)
    image[30:60, 60:90] = 255  # the "hand": x 60-90, y 30-60
    box = np.array([[60, 30, 90, 60]], np.float32)
    canvas, moved = zoom_out(image, box, 3, np.random.default_rng(1))
    assert canvas.shape == image.shape
    x1, y1, x2, y2 = moved[0]
    assert (x2 - x1, y2 - y1) == pytest.approx((10, 10), abs=0.01)
    # Resampling softens the edges: the inside is bright, and the bright pixels centre on it.
    assert (canvas[round(y1) + 1 : round(y2) - 1, round(x1) + 1 : round(x2) - 1] > 200).all()
    ys, xs = np.nonzero((canvas > 128).all(axis=2))
    assert (xs.mean() + 0.5, ys.mean() + 0.5) == pytest.approx(
        ((x1 + x2) / 2, (y1 + y2) / 2), abs=0.5
    )
    assert (canvas == GREY).all(axis=2).sum() == 120 * 90 - 40 * 30  # around the photo


def test_zoom_one_is_the_photo_and_less_is_refused() -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    box = np.array([[1, 2, 3, 4]], np.float32)
    out, same = zoom_out(image, box, 1, np.random.default_rng(0))
    assert out is image and same is box
    with pytest.raises(ValueError, match="at least 1"):
        zoom_out(image, box, 0.5, np.random.default_rng(0))


@pytest.fixture(scope="module")
def roboflow_yaml(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real Roboflow test photos with their (converted) labels, linked."""
    src = shared_data / "roboflow_hands" / "test"
    root = tmp_path_factory.mktemp("rf")
    for photo in sorted((src / "images").iterdir())[:PHOTOS]:
        for kind, name in (("images", photo.name), ("labels", f"{photo.stem}.txt")):
            (root / kind / "test").mkdir(parents=True, exist_ok=True)
            (root / kind / "test" / name).symlink_to(src / kind / name)
    (root / "data.yaml").write_text("path: .\ntest: images/test\nnames:\n  0: hand\n")
    return root / "data.yaml"


def test_a_real_split_zoomed_out_keeps_every_hand_at_its_new_size(
    roboflow_yaml: Path, tmp_path: Path
) -> None:
    report = write_zoomed_set(roboflow_yaml, "test", 4, tmp_path / "z4")
    source = load_set("rf", roboflow_yaml, "test")
    zoomed = load_set("rf_z4", tmp_path / "z4" / "data.yaml", "test")
    assert report.photos == len(zoomed.images) == PHOTOS
    assert report.boxes == sum(len(t) for t in zoomed.truths) == source.boxes > 0
    assert zoomed.sizes == source.sizes  # same canvas: the same letterbox for the detector
    for before, after, (width, height) in zip(
        source.truths, zoomed.truths, zoomed.sizes, strict=True
    ):
        np.testing.assert_allclose(
            after[:, 2:] - after[:, :2], (before[:, 2:] - before[:, :2]) / 4, atol=0.5
        )
        assert (after >= 0).all() and (after[:, [0, 2]] <= width).all()
        assert (after[:, [1, 3]] <= height).all()
    with pytest.raises(FileExistsError):
        write_zoomed_set(roboflow_yaml, "test", 4, tmp_path / "z4")


def test_the_command_writes_a_set_evaluate_can_read(
    roboflow_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "z3"
    assert main(["zoom-out", str(roboflow_yaml), "--zoom", "3", "--out", str(out)]) == 0
    assert f"{PHOTOS} photos" in capsys.readouterr().out
    assert len(load_set("z3", out / "data.yaml", "test").images) == PHOTOS
