"""``gesture-train pack-dataset`` on real SubhiH photos laid out as the project's datasets are:
images linked into ../shared/data, a data.yaml of absolute paths, a repeated entry, a list."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

from gesture_recognition.training.cli import main
from gesture_recognition.training.evaluate import label_path_for, split_images
from gesture_recognition.training.pack_dataset import pack_dataset

from .subhih_photos import PHOTOS, true_boxes

EXIF_ORIENTATION = 0x0112


def _yolo_line(box: list[float], width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"0 {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"


def _linked_dataset(shared: Path, root: Path) -> Path:
    """Two linked photos with their true boxes in images/train, one in images/val, one more
    (with no label: a background) reached through a list file; train lists images/train twice."""
    subhih = shared / "subhih_hands"
    for split, rels in (("train", PHOTOS[:2]), ("val", PHOTOS[2:])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for rel in rels:
            link = root / "images" / split / Path(rel).name
            link.symlink_to(subhih / rel)
            with Image.open(subhih / rel) as img:
                w, h = img.size
            lines = [_yolo_line(b, w, h) for b in true_boxes(subhih, rel)]
            label_path_for(link).write_text("".join(lines))
    extra = root / "extra" / "images"
    extra.mkdir(parents=True)
    other = sorted((subhih / "train").glob("*.jpg"))[0]
    (extra / other.name).symlink_to(other)
    (root / "extra.txt").write_text(f"{extra / other.name}\n{extra / 'gone.jpg'}\n")
    data = root / "data.yaml"
    data.write_text(
        yaml.safe_dump(
            {
                "path": str(root),
                "train": ["images/train", "images/train", str(root / "extra.txt")],
                "val": "images/val",
                "names": {0: "hand"},
            }
        )
    )
    return data


def test_pack_keeps_repeats_shrinks_and_moves(shared_data: Path, tmp_path: Path) -> None:
    data = _linked_dataset(shared_data, tmp_path / "orig")
    report = pack_dataset(data, tmp_path / "pack", max_side=256, progress=False)

    packed = yaml.safe_load(report.data_yaml.read_text())
    # The repeated entry is stored once and listed twice; paths are relative.
    assert packed["train"] == ["train0/images", "train0/images", "train1/images"]
    assert packed["val"] == ["val0/images"] and packed["names"] == {0: "hand"}
    assert [(e.images, e.labels, e.skipped) for e in report.entries] == [
        (2, 2, 0),
        (2, 2, 0),
        (1, 0, 1),  # the background photo packed without a label; the missing one counted
        (1, 1, 0),
    ]
    assert "packed 4 images" in report.summary()

    # Moved elsewhere (as to a GPU host), the dataset still resolves, with real files only.
    moved = shutil.move(str(tmp_path / "pack"), str(tmp_path / "elsewhere"))
    moved_yaml = Path(moved) / "data.yaml"
    train = split_images(moved_yaml, "train")
    assert len(train) == 5 and all(p.is_file() and not p.is_symlink() for p in train)
    for image in split_images(moved_yaml, "val") + train[:2]:
        original = next((tmp_path / "orig" / "images").rglob(image.name))
        with Image.open(image) as small, Image.open(original) as big:
            assert max(small.size) == 256
            assert abs(small.width / small.height - big.width / big.height) < 0.01
        # Normalised labels hold for the smaller photo unchanged.
        assert label_path_for(image).read_text() == label_path_for(original).read_text()

    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    from ultralytics.data.utils import check_det_dataset

    resolved = check_det_dataset(str(moved_yaml))
    assert all(Path(p).is_dir() for p in resolved["train"])


def test_pack_turns_exif_rotated_photos_upright(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "subhih_hands" / PHOTOS[0]
    (tmp_path / "d" / "images" / "train").mkdir(parents=True)
    rotated = tmp_path / "d" / "images" / "train" / "turned.jpg"
    with Image.open(src) as img:
        exif = img.getexif()
        exif[EXIF_ORIENTATION] = 6  # shown turned by 90 degrees
        img.save(rotated, exif=exif.tobytes())
        stored = img.size
    (tmp_path / "d" / "data.yaml").write_text("train: images/train\nnames:\n  0: hand\n")

    report = pack_dataset(
        tmp_path / "d" / "data.yaml", tmp_path / "p", splits=["train"], max_side=200, progress=False
    )
    with Image.open(tmp_path / "p" / "train0" / "images" / "turned.jpg") as out:
        # Upright (the labels describe the photo as shown) and no orientation left to apply.
        assert out.width < out.height and stored[0] > stored[1]
        assert out.getexif().get(EXIF_ORIENTATION) in (None, 1)
    assert report.entries[0].resized == 1


def test_pack_refuses_what_it_cannot_do(shared_data: Path, tmp_path: Path) -> None:
    data = _linked_dataset(shared_data, tmp_path / "orig")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    argv = ["pack-dataset", str(data), "--no-progress"]
    # Nothing lost: a non-empty folder is refused (exit 2) and left as it was.
    assert main([*argv, "--out", str(tmp_path / "full")]) == 2
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--splits", "test"]) == 2
    with pytest.raises(SystemExit):
        main([*argv, "--out", str(tmp_path / "b"), "--max-side", "0"])
    assert main([*argv, "--out", str(tmp_path / "c"), "--max-side", "16"]) == 2
    # Two listed photos with one name would overwrite each other: refused.
    extra = tmp_path / "orig" / "extra.txt"
    twin = tmp_path / "twin" / "images"
    twin.mkdir(parents=True)
    first = Path(extra.read_text().split()[0])
    (twin / first.name).symlink_to(first.resolve())
    extra.write_text(f"{first}\n{twin / first.name}\n")
    assert main([*argv, "--out", str(tmp_path / "d")]) == 2
    assert main([*argv, "--out", str(tmp_path / "e"), "--splits", "val"]) == 0
