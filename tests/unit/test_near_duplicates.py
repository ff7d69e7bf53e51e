"""Near-duplicates: a training crop that shows a held-out photo's hand is found and dropped.

The held-out "photo" is a real HaGRID scene with a real hand crop pasted into it at a known
place; the detection cache names that box, as a detector or the teacher would.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gesture_recognition.training.cli import main
from gesture_recognition.training.near_duplicates import (
    find_near_duplicates,
    signature,
    write_matches,
)

from .hagrid_hand_crops import link_crops, real_rows

PASTE_AT = (40, 30)  # (x, y) of the pasted crop in the held-out photo


@pytest.fixture()
def crops(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    real, rows = real_rows(shared_data)
    rows = [r for r in rows if r["label"] in ("like", "ok")][::200][:20]
    return link_crops(real, rows, tmp_path / "crops"), rows


@pytest.fixture()
def held_out(
    shared_data: Path, crops: tuple[Path, list[dict[str, str]]], tmp_path: Path
) -> tuple[Path, Path, dict[str, str]]:
    """A scene with crop #3 pasted in, and a cache with its box, a tiny box and a background box."""
    root, rows = crops
    copied = rows[3]
    background = shared_data / "hagrid_crops" / "like" / "hagrid_380_resize336__like_00000.jpg"
    scene = Image.open(background).convert("RGB")
    hand = Image.open(root / copied["path"]).convert("RGB")
    scene.paste(hand, PASTE_AT)
    photos = tmp_path / "photos"
    (photos / "like").mkdir(parents=True)
    scene.save(photos / "like" / "scene.png")
    x, y = PASTE_AT
    boxes = [
        [x, y, x + hand.width, y + hand.height],
        [0, 0, 3, 3],  # too small to compare: ignored
        [200, 200, 260, 300],  # background
    ]
    cache = tmp_path / "cache.json"
    entry = {"width": scene.width, "height": scene.height, "boxes": boxes, "scores": [0.9] * 3}
    cache.write_text(
        json.dumps(
            {"detector": {}, "root": str(photos), "images": {"like/scene.png": entry}, "failed": {}}
        ),
        encoding="utf-8",
    )
    return photos, cache, copied


def test_signature_ignores_brightness_and_contrast(shared_data: Path) -> None:
    path = next((shared_data / "hagrid_hand_crops" / "like").iterdir())
    image = Image.open(path).convert("RGB")
    pixels = np.asarray(image, np.float32)
    dimmer = Image.fromarray((pixels * 0.7 + 20).astype(np.uint8))
    a, b = signature(image), signature(dimmer)
    assert a.shape == (144,) and abs(float(np.linalg.norm(a)) - 1) < 1e-3
    assert float(a @ b) > 0.99
    assert float(a @ signature(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM))) < 0.9


def test_the_pasted_hand_is_found(
    crops: tuple[Path, list[dict[str, str]]], held_out: tuple[Path, Path, dict[str, str]]
) -> None:
    root, _ = crops
    photos, cache, copied = held_out
    matches = find_near_duplicates(root, photos, [cache], threshold=0.93)
    assert matches, "the very crop pasted into the held-out photo must match"
    best = matches[0]
    assert (best.photo, best.crop, best.group) == (
        "like/scene.png",
        copied["path"],
        copied["image_id"],
    )
    assert best.similarity > 0.99
    assert [m.similarity for m in matches] == sorted((m.similarity for m in matches), reverse=True)
    # Two caches of the same photo find it twice; a threshold above 1 finds nothing.
    assert len(find_near_duplicates(root, photos, [cache, cache], 0.93)) == 2 * len(matches)
    assert find_near_duplicates(root, photos, [cache], threshold=1.01) == []


def test_matches_csv(
    crops: tuple[Path, list[dict[str, str]]],
    held_out: tuple[Path, Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    root, _ = crops
    photos, cache, copied = held_out
    path = tmp_path / "out" / "near_duplicates.csv"
    write_matches(find_near_duplicates(root, photos, [cache]), path)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["group"] == copied["image_id"] and float(rows[0]["similarity"]) > 0.99


def test_import_crops_drops_the_held_out_group(
    crops: tuple[Path, list[dict[str, str]]],
    held_out: tuple[Path, Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    root, rows = crops
    photos, cache, copied = held_out
    out = tmp_path / "imported"
    argv = ["import-crops", str(root), "--out", str(out), "--source", "hhc"]
    argv += ["--held-out-photos", str(photos), "--held-out-cache", str(cache)]
    assert main(argv) == 0
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as f:
        kept = list(csv.DictReader(f))
    same_photo = [r for r in rows if r["image_id"] == copied["image_id"]]
    assert len(kept) == len(rows) - len(same_photo)
    assert f"hhc:{copied['path']}" not in {r["source"] for r in kept}
    assert (out / "near_duplicates.csv").is_file()
    assert "near_duplicate_of_held_out_photo" in (out / "import_report.txt").read_text()
    # A cache without the photos it was made on is a user error.
    other = tmp_path / "other"
    assert (
        main(["import-crops", str(root), "--out", str(other), "--held-out-cache", str(cache)]) == 2
    )
