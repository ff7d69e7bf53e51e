"""Mistakes photo by photo: the rows ``evaluate`` stores and the galleries it draws.

Precision, recall and accuracy say how many answers are wrong, not which; looking at them is
what told red objects and unboxed background hands apart from real misses, and showed that the
hands missed on the held-out scenes are thumbs held against the body (``models/MODEL_CARD.md``).

- Detector: at the served threshold, a false box is a detection that matches no true box and a
  missed hand a true box that no detection matches, by ``detection_metrics``' matching rule.
- End to end: a wrong answer is drawn with every hand the pipeline found and its gesture.
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
    """The first ``tiles`` photos with detector mistakes, boxes drawn (true green, false red
    with its score, missed orange), in a grid PNG; None when there is nothing to draw."""
    drawn = []
    for row in errors.get("photos", [])[:tiles]:
        boxes = [(b, TRUE, "") for b in row["true"]] + [(b, MISSED, "") for b in row["missed"]]
        boxes += [(b, FALSE, "") for b in row["false"]]
        label = " ".join(f"{b[4]:.2f}" for b in row["false"]) or "missed"
        drawn.append((row["image"], boxes, label))
    return _grid(drawn, out)


def wrong_answer(path: Path, result: Any, truth: str) -> dict[str, Any] | None:
    """The row of a photo answered wrong (None if right): each hand the pipeline found, its
    box in photo pixels, gesture and score (``result``: a ``pipeline.GestureResult``)."""
    if result.gesture == truth:
        return None
    hands = zip(result.hand_boxes, result.hand_gestures, result.hand_gesture_scores, strict=True)
    return {
        "image": os.path.relpath(path),
        "truth": truth,
        "predicted": result.gesture,
        "hands": [[*map(_r, box), gesture, _r(score)] for box, gesture, score in hands],
    }


def draw_answers(
    rows: Sequence[Mapping[str, Any]], out: Path, tiles: int = GALLERY_TILES
) -> Path | None:
    """The first ``tiles`` wrong answers: ``truth -> answer`` on top, each hand's box with its
    gesture and score; None when there is nothing to draw."""
    drawn = [
        (
            row["image"],
            [(h[:4], FALSE, f"{h[4]} {h[5]:.2f}") for h in row["hands"]],
            f"{row['truth']} -> {row['predicted']}" + ("" if row["hands"] else " (no hand)"),
        )
        for row in rows[:tiles]
    ]
    return _grid(drawn, out)


Drawn = tuple[str, list[tuple[Sequence[float], tuple[int, int, int], str]], str]


def _grid(photos: Sequence[Drawn], out: Path) -> Path | None:
    photos = [p for p in photos if Path(p[0]).is_file()]
    if not photos:
        return None
    cols = min(4, len(photos))
    grid = Image.new("RGB", (cols * TILE, -(-len(photos) // cols) * TILE), "white")
    for k, (image, boxes, label) in enumerate(photos):
        with Image.open(image) as img:
            photo = img.convert("RGB")
        draw = ImageDraw.Draw(photo)
        width = max(2, max(photo.size) // 150)
        for box, colour, _ in boxes:
            draw.rectangle(list(box[:4]), outline=colour, width=width)
        scale = min(1.0, TILE / max(photo.size))  # thumbnail() never enlarges
        photo.thumbnail((TILE, TILE))
        x, y = (k % cols) * TILE, (k // cols) * TILE
        grid.paste(photo, (x, y))
        tile = ImageDraw.Draw(grid)
        # Text goes on the tile, not the photo: at full size it would shrink out of sight.
        for box, colour, text in boxes:
            if text:
                tile.text((x + box[0] * scale + 3, y + box[1] * scale + 3), text, fill=colour)
        tile.text((x + 3, y + 3), label[:40], fill=(255, 255, 0))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out


def _r(value: Any) -> float:
    return round(float(value), 2)
