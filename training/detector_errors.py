"""A detector's mistakes photo by photo: the rows ``evaluate`` stores and the gallery it draws.

Precision and recall say how many boxes are wrong, not which; looking at them is what told
red objects and unboxed background hands apart from real misses (``models/MODEL_CARD.md``).
At the served threshold, a false box is a detection that matches no true box and a missed
hand a true box that no detection matches, by ``detection_metrics``' matching rule.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from gesture_recognition.training.detection_metrics import image_errors

# Photos kept in the results (metrics.json) and drawn in the gallery, most mistakes first.
MAX_PHOTOS = 200
GALLERY_TILES = 24
TILE = 220
TRUE, FALSE, MISSED = (40, 200, 40), (230, 30, 30), (255, 150, 0)


def collect_errors(
    images: Sequence[Path],
    predictions: Sequence[tuple[NDArray[np.float32], NDArray[np.float32]]],
    truths: Sequence[NDArray[np.float32]],
) -> dict[str, Any]:
    """Counts and per-photo rows (boxes in photo pixels) of the false boxes and missed hands.

    Photo paths are stored relative to the working folder, as the report's other paths are.
    """
    rows = []
    false_total = missed_total = 0
    for path, (boxes, scores), truth in zip(images, predictions, truths, strict=True):
        false, missed = image_errors(boxes, scores, truth)
        false_total += len(false)
        missed_total += len(missed)
        if len(false) or len(missed):
            rows.append(
                {
                    "image": os.path.relpath(path),
                    "false": [[*map(_r, boxes[i]), _r(scores[i])] for i in false],
                    "missed": [[*map(_r, truth[i])] for i in missed],
                    "true": [[*map(_r, box)] for box in truth],
                }
            )
    rows.sort(key=lambda r: (-(len(r["false"]) + len(r["missed"])), r["image"]))
    return {
        "false_boxes": false_total,
        "photos_with_false_boxes": sum(1 for r in rows if r["false"]),
        "missed_hands": missed_total,
        "photos_with_missed_hands": sum(1 for r in rows if r["missed"]),
        "photos": rows[:MAX_PHOTOS],
    }


def draw_gallery(errors: Mapping[str, Any], out: Path, tiles: int = GALLERY_TILES) -> Path | None:
    """The first ``tiles`` photos with mistakes, boxes drawn (true green, false red with its
    score, missed orange), in a grid PNG; None when there is nothing to draw."""
    photos = [p for p in errors.get("photos", []) if Path(p["image"]).is_file()][:tiles]
    if not photos:
        return None
    cols = min(4, len(photos))
    grid = Image.new("RGB", (cols * TILE, -(-len(photos) // cols) * TILE), "white")
    for k, row in enumerate(photos):
        with Image.open(row["image"]) as img:
            photo = img.convert("RGB")
        draw = ImageDraw.Draw(photo)
        width = max(2, max(photo.size) // 150)
        for box in row["true"]:
            draw.rectangle(box[:4], outline=TRUE, width=width)
        for box in row["missed"]:
            draw.rectangle(box[:4], outline=MISSED, width=width)
        for box in row["false"]:
            draw.rectangle(box[:4], outline=FALSE, width=width)
        photo.thumbnail((TILE, TILE))
        x, y = (k % cols) * TILE, (k // cols) * TILE
        grid.paste(photo, (x, y))
        label = " ".join(f"{b[4]:.2f}" for b in row["false"]) or "missed"
        ImageDraw.Draw(grid).text((x + 3, y + 3), label[:40], fill=(255, 255, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def _r(value: Any) -> float:
    return round(float(value), 2)
