"""Photos with the answer drawn on them: hand boxes, each hand's gesture and score, and the
photo's gesture in a banner at the top left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from gesture_recognition.images import check_image_array
from gesture_recognition.pipeline import GestureResult

# Distinct, readable on photos; the winning hand (topmost first, as the server orders them)
# is not special-cased: colour only tells boxes apart.
PALETTE = ((255, 64, 64), (64, 200, 64), (64, 128, 255), (255, 200, 0), (200, 64, 255))
TEXT_COLOUR = (255, 255, 255)
BANNER_COLOUR = (0, 0, 0)

FontType = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> FontType:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


def _label(
    draw: ImageDraw.ImageDraw,
    size: tuple[int, int],
    xy: tuple[float, float],
    text: str,
    font: FontType,
    fill: tuple[int, int, int],
) -> None:
    """Text on a filled box, kept inside the photo of ``size`` (width, height)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 4, bottom - top + 4
    x = min(max(0.0, xy[0]), max(0.0, size[0] - width))
    y = min(max(0.0, xy[1]), max(0.0, size[1] - height))
    draw.rectangle((x, y, x + width, y + height), fill=fill)
    draw.text((x + 2 - left, y + 2 - top), text, font=font, fill=TEXT_COLOUR)


def annotate(image: NDArray[np.uint8], result: GestureResult) -> Image.Image:
    """A copy of the RGB photo with the result drawn on it, same size."""
    canvas = Image.fromarray(check_image_array(image))
    draw = ImageDraw.Draw(canvas)
    short_side = min(canvas.size)
    font = _font(max(10, short_side // 28))
    line = max(2, short_side // 200)
    for i, (box, gesture, score) in enumerate(
        zip(result.hand_boxes, result.hand_gestures, result.hand_gesture_scores, strict=True)
    ):
        colour = PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        text = f"{gesture} {float(score):.2f}"
        text_height = draw.textbbox((0, 0), text, font=font)[3] + 4
        # Above the box when there is room, else inside its top edge.
        _label(
            draw,
            canvas.size,
            (x1, y1 - text_height if y1 >= text_height else y1),
            text,
            font,
            colour,
        )
    hands = len(result.hand_boxes)
    banner = f"{result.gesture} {result.score:.2f} ({hands} hand{'' if hands == 1 else 's'})"
    _label(draw, canvas.size, (0, 0), banner, _font(max(12, short_side // 20)), BANNER_COLOUR)
    return canvas


def annotated_name(source: Path, taken: set[str]) -> str:
    """``<stem>.png``, with ``_2``, ``_3``... when photos from different folders share a stem."""
    name = f"{source.stem}.png"
    n = 1
    while name in taken:
        n += 1
        name = f"{source.stem}_{n}.png"
    taken.add(name)
    return name


def save_annotated(
    image: NDArray[np.uint8], result: GestureResult, out_dir: str | Path, name: str
) -> Path:
    """Write the annotated photo as PNG into ``out_dir`` (created if needed)."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    annotate(image, result).save(path, format="PNG")
    return path
