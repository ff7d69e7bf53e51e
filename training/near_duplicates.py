"""Find training crops that show a held-out photo's hand (the same photo, cut elsewhere).

HaGRID's scene photos (``hagrid_crops``, kept for end-to-end tests) and its hand crops
(``hagrid_hand_crops``, the classifier's training data) were sampled from one pool of photos,
and a few photos are in both. Each hand box found on a held-out photo (by any detector or the
teacher; several caches add up) is compared with every training crop: both are shrunk to a
small grey thumbnail, centred and normalised, and a cosine similarity of at least ``threshold``
marks the crop's group as the held-out photo's. Measured on HaGRID (pairs checked by eye): true
copies score 0.947-0.99; from 0.93 to 0.95 some matches are other photos (another label), which
are dropped too: losing a dozen of 35,000 training crops costs nothing, a copy kept would leak.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from tqdm import tqdm

from gesture_recognition.training.crops import GROUP_COLUMNS
from gesture_recognition.training.detect_cache import read_cache

THUMBNAIL = 12
DEFAULT_THRESHOLD = 0.93


@dataclass(frozen=True)
class Match:
    photo: str  # held-out photo, relative to its root
    crop: str  # training crop, relative to its root
    group: str  # the crop's group (dropped from training)
    similarity: float


def signature(image: Image.Image) -> NDArray[np.float32]:
    """A unit vector from a small grey thumbnail, brightness and contrast removed."""
    grey = image.convert("L").resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
    v = np.asarray(grey, np.float32).ravel()
    v -= v.mean()
    return v / (float(np.linalg.norm(v)) + 1e-6)


def crop_signatures(root: Path, paths: Sequence[str]) -> NDArray[np.float32]:
    rows = []
    for rel in tqdm(paths, desc="crop signatures", unit="crop"):
        with Image.open(Path(root) / rel) as img:
            rows.append(signature(img))
    return np.stack(rows) if rows else np.zeros((0, THUMBNAIL * THUMBNAIL), np.float32)


def _held_out_hands(photos_root: Path, caches: Iterable[Path]) -> list[tuple[str, Image.Image]]:
    hands = []
    for cache_path in caches:
        for rel, det in read_cache(cache_path).items():
            with Image.open(Path(photos_root) / rel) as img:
                rgb = img.convert("RGB")
            for box in det.boxes:
                x1, y1, x2, y2 = (round(float(v)) for v in box)
                if x2 - x1 >= 4 and y2 - y1 >= 4:
                    hands.append((rel, rgb.crop((x1, y1, x2, y2))))
    return hands


def find_near_duplicates(
    crops_root: Path,
    photos_root: Path,
    caches: Sequence[Path],
    threshold: float = DEFAULT_THRESHOLD,
) -> list[Match]:
    """Crops of ``crops_root/manifest.csv`` matching a hand of the cached held-out photos."""
    with (Path(crops_root) / "manifest.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        group_column = next((c for c in GROUP_COLUMNS if c in (reader.fieldnames or [])), None)
        rows = [
            (r["path"], (r.get(group_column) or r["path"]) if group_column else r["path"])
            for r in reader
        ]
    sigs = crop_signatures(crops_root, [p for p, _ in rows])
    matches = []
    for photo, hand in _held_out_hands(photos_root, caches):
        sims = sigs @ signature(hand)
        for j in np.flatnonzero(sims >= threshold):
            matches.append(Match(photo, rows[j][0], rows[j][1], float(sims[j])))
    return sorted(matches, key=lambda m: -m.similarity)


def write_matches(matches: Sequence[Match], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["photo", "crop", "group", "similarity"])
        for m in matches:
            writer.writerow([m.photo, m.crop, m.group, f"{m.similarity:.4f}"])
