"""Copy-paste composites: real HaGRID hand crops pasted onto real boxed Roboflow scenes.

Geometry is checked exactly (quarter turns, overlaps, feathering); the composites are checked
for what a detector dataset needs: every pasted hand labelled, boxes inside the photo, the
scene's own boxes kept, and the ultralytics layout readable by the project's YOLO reader.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from gesture_recognition.labels import load_label_map
from gesture_recognition.training.cli import main
from gesture_recognition.training.converters.merge import parse_source, read_source
from gesture_recognition.training.copy_paste import (
    PasteConfig,
    PasteReport,
    Scene,
    compose,
    feather_mask,
    overlap_fraction,
    read_hand_crops,
    read_scenes,
    rotate90,
    write_composites,
)
from gesture_recognition.training.crop_import import import_crops

from .hagrid_hand_crops import link_crops, real_rows


@pytest.fixture(scope="module")
def scenes_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``images/train`` + ``labels/train`` of four real Roboflow photos (oriented boxes), one
    of them without its label file (a background photo)."""
    real = shared_data / "roboflow_hands" / "valid"
    root = tmp_path_factory.mktemp("scenes")
    photos = sorted((real / "images").iterdir())[:4]
    for i, photo in enumerate(photos):
        (root / "images" / "train").mkdir(parents=True, exist_ok=True)
        (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
        (root / "images" / "train" / photo.name).symlink_to(photo)
        if i != 3:
            label = real / "labels" / f"{photo.stem}.txt"
            (root / "labels" / "train" / label.name).symlink_to(label)
    return root / "images" / "train"


@pytest.fixture(scope="module")
def hands_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An import-crops folder of 12 real hand crops (10 train, 2 test)."""
    real, rows = real_rows(shared_data)
    rows = [r for r in rows if r["label"] in ("palm", "fist")][::50][:12]
    src = link_crops(real, rows, tmp_path_factory.mktemp("hand_src"))
    out = tmp_path_factory.mktemp("hands") / "crops"
    import_crops(src, out, load_label_map("hagrid"), "hhc", fractions=(0.0, 0.2), seed=0)
    return out


def white_box(image: Image.Image) -> list[float]:
    ys, xs = np.nonzero(np.asarray(image.convert("L")) > 128)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.mark.parametrize("turns", [0, 1, 2, 3, 4, 7])
def test_rotate90_moves_boxes_with_the_pixels(turns: int) -> None:
    canvas = np.zeros((30, 40, 3), np.uint8)
    canvas[7:20, 5:15] = 255  # box (x1, y1, x2, y2) = (5, 7, 15, 20)
    image = Image.fromarray(canvas)
    turned, boxes = rotate90(image, np.array([[5, 7, 15, 20]], np.float32), turns)
    assert turned.size == ((40, 30) if turns % 2 == 0 else (30, 40))
    assert boxes.dtype == np.float32 and boxes.tolist() == [white_box(turned)]
    # Counter-clockwise: the top-left corner ends up bottom-left after one turn.
    if turns % 4 == 1:
        assert np.asarray(turned)[-1, 0].tolist() == np.asarray(image)[0, 0].tolist()
        corner = np.zeros((30, 40, 3), np.uint8)
        corner[0, 0] = 255
        assert np.asarray(rotate90(Image.fromarray(corner), boxes, 1)[0])[-1, 0, 0] == 255


def test_overlap_fraction_is_shared_area_over_the_smaller_box() -> None:
    box = np.array([[0, 0, 10, 10]], np.float32)
    assert overlap_fraction(box, np.zeros((0, 4), np.float32)) == 0.0
    assert overlap_fraction(box, np.array([[5, 5, 15, 15]], np.float32)) == pytest.approx(0.25)
    assert overlap_fraction(box, np.array([[20, 20, 30, 30]], np.float32)) == 0.0
    # A small patch inside a big hand: a tiny IoU, but all of the patch.
    inside = np.array([[2, 2, 4, 4]], np.float32)
    assert overlap_fraction(box, inside) == pytest.approx(1.0)
    many = np.array([[20, 20, 30, 30], [0, 0, 5, 10]], np.float32)
    assert overlap_fraction(box, many) == pytest.approx(1.0)  # the largest of them


def test_feather_mask_ramps_to_the_edges() -> None:
    mask = np.asarray(feather_mask(20, 10, 0.2))  # ramp: round(10 * 0.2) = 2 px
    assert mask.shape == (10, 20) and mask.dtype == np.uint8
    assert mask[2:8, 2:18].min() == 255
    assert mask[0, 0] == 127 and mask[0, 10] == 127 and mask[5, 0] == 127
    assert np.array_equal(mask, mask[::-1, ::-1])
    assert np.asarray(feather_mask(3, 3, 0.0)).min() == 255  # ramp of at least one pixel


def test_readers(scenes_dir: Path, hands_dir: Path, tmp_path: Path) -> None:
    scenes = read_scenes(scenes_dir)
    assert len(scenes) == 4 and len(scenes[3].boxes) == 0
    assert all(len(s.boxes) >= 1 for s in scenes[:3])
    for s in scenes:
        assert ((s.boxes >= 0) & (s.boxes <= 640)).all()
    hands = read_hand_crops(hands_dir)
    with (hands_dir / "manifest.csv").open(newline="", encoding="utf-8") as f:
        train = [r for r in csv.DictReader(f) if r["split"] == "train"]
    assert 0 < len(hands) <= len(train) and all(p.is_file() for p in hands)
    assert read_hand_crops(hands_dir, min_side=10_000) == []
    # A scene whose label file cannot be parsed is left out.
    bad = tmp_path / "images" / "train"
    bad.mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(bad / "x.jpg")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "x.txt").write_text("0 0.5 0.5\n")
    assert read_scenes(bad) == []


def check_boxes(boxes: np.ndarray, width: int, height: int) -> None:
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and boxes.dtype == np.float32
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_compose_labels_every_pasted_hand(scenes_dir: Path, hands_dir: Path) -> None:
    scenes, hands = read_scenes(scenes_dir), read_hand_crops(hands_dir)
    cfg = PasteConfig(hands=(2, 2), distractors=(1, 1), rotate90=0.0)
    for seed in range(3):
        report = PasteReport()
        scene = scenes[seed]
        canvas, boxes = compose(scene, hands, scenes, cfg, random.Random(seed), report)
        with Image.open(scene.path) as img:
            original = np.asarray(img.convert("RGB"))
        assert canvas.size == (original.shape[1], original.shape[0])
        check_boxes(boxes, *canvas.size)
        # The scene's own hands first, unchanged; then one box per pasted hand.
        n = len(scene.boxes)
        assert np.array_equal(boxes[:n], scene.boxes)
        assert len(boxes) - n == report.hands and report.hands + report.no_room >= 2
        pixels = np.asarray(canvas)
        for i, (x1, y1, x2, y2) in enumerate(boxes[n:].astype(int)):
            patch, before = pixels[y1:y2, x1:x2], original[y1:y2, x1:x2]
            assert np.abs(patch.astype(int) - before).mean() > 3, "a pasted hand is visible"
            # A new hand hides at most max_overlap of a box already there (and vice versa).
            earlier = boxes[: n + i]
            assert overlap_fraction(boxes[n + i : n + i + 1], earlier) <= cfg.max_overlap + 1e-6


def test_turned_composites_keep_their_boxes(scenes_dir: Path, hands_dir: Path) -> None:
    scenes, hands = read_scenes(scenes_dir), read_hand_crops(hands_dir)
    plain_cfg = PasteConfig(hands=(1, 2), distractors=(0, 1), rotate90=0.0)
    turn_cfg = PasteConfig(hands=(1, 2), distractors=(0, 1), rotate90=1.0)
    plain, plain_boxes = compose(
        scenes[0], hands, scenes, plain_cfg, random.Random(5), PasteReport()
    )
    report = PasteReport()
    turned, boxes = compose(scenes[0], hands, scenes, turn_cfg, random.Random(5), report)
    assert report.rotated == 1
    check_boxes(boxes, *turned.size)
    # Same draws up to the turn: the turned composite is the plain one turned 1-3 times.
    matches = [
        k
        for k in (1, 2, 3)
        if np.array_equal(np.asarray(rotate90(plain, plain_boxes, k)[0]), np.asarray(turned))
        and np.allclose(rotate90(plain, plain_boxes, k)[1], boxes)
    ]
    assert len(matches) == 1


def test_write_composites_is_a_readable_detector_dataset(
    scenes_dir: Path, hands_dir: Path, tmp_path: Path
) -> None:
    scenes, hands = read_scenes(scenes_dir), read_hand_crops(hands_dir)
    out = tmp_path / "paste"
    cfg = PasteConfig(images=6, rotate90=0.5, seed=1)
    report = write_composites(scenes, hands, out, cfg)
    assert report.images == 6 and report.backgrounds == 4 and report.hand_sources == len(hands)
    data = yaml.safe_load((out / "data.yaml").read_text(encoding="utf-8"))
    assert data["train"] == "images/train" and data["names"] == {0: "hand"}
    images = sorted((out / "images" / "train").iterdir())
    labels = sorted((out / "labels" / "train").iterdir())
    assert (
        [p.stem for p in images] == [p.stem for p in labels] == [f"paste_{i:05d}" for i in range(6)]
    )
    rows = [line.split() for p in labels for line in p.read_text().splitlines()]
    values = np.array([[float(v) for v in r[1:]] for r in rows])
    assert {r[0] for r in rows} == {"0"} and values.shape[1] == 4
    assert (values >= 0).all() and (values <= 1).all()
    # Every row is a scene's own box or a pasted hand. The first four composites use each
    # scene once, the last two a scene drawn at random.
    counts = [len(s.boxes) for s in scenes]
    from_scenes = len(rows) - report.hands
    assert from_scenes - sum(counts) in {a + b for a in counts for b in counts}
    assert "6 composites from 4 scenes" in (out / "copy_paste_report.txt").read_text()
    # The project's YOLO reader takes it as a training-only source.
    records = list(read_source(parse_source(f"yolo:{out}:paste:split=train")))
    assert len(records) == 6 and {r.split for r in records} == {"train"}
    assert sum(len(r.boxes) for r in records) == len(rows)
    assert all(r.problem is None for r in records)
    with pytest.raises(FileExistsError):
        write_composites(scenes, hands, out, cfg)
    with pytest.raises(ValueError, match="scenes and hand crops"):
        write_composites([], hands, tmp_path / "none", cfg)


def test_copy_paste_cli(
    scenes_dir: Path, hands_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    argv = ["copy-paste", "--scenes", str(scenes_dir), "--hands", str(hands_dir)]
    assert main([*argv, "--images", "2", "--out", str(out)]) == 0
    assert len(list((out / "images" / "train").iterdir())) == 2
    assert "2 composites" in capsys.readouterr().out


def test_scene_without_boxes_is_a_valid_background(hands_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "bg.jpg"
    Image.new("RGB", (200, 150), (90, 120, 60)).save(path)
    scene = Scene(path, np.zeros((0, 4), np.float32))
    cfg = PasteConfig(hands=(1, 1), distractors=(0, 0), rotate90=0.0, size=(0.3, 0.3))
    canvas, boxes = compose(
        scene, read_hand_crops(hands_dir), [scene], cfg, random.Random(0), PasteReport()
    )
    assert canvas.size == (200, 150) and len(boxes) == 1
    check_boxes(boxes, 200, 150)
    x1, y1, x2, y2 = boxes[0]
    # The patch's longer side is 0.3 of the scene's short side; its label grows 10 % a side.
    assert max(x2 - x1, y2 - y1) == pytest.approx(0.3 * 150 * 1.2, abs=1.5)
