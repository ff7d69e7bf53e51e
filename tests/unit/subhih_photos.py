"""Real SubhiH photos with known hand boxes, shared by the pseudo-label tests."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

# Three test photos (one of them with two hands) whose VOC files give the true boxes.
PHOTOS = ["test/16_pic00008.jpg", "test/16_pic00032.jpg", "test/1528664299.56_pic00034.jpg"]


def true_boxes(root: Path, rel: str) -> list[list[float]]:
    """The photo's VOC boxes (x1, y1, x2, y2 in pixels)."""
    ann = ET.parse((root / rel).with_suffix(".xml")).getroot()
    return [
        [float(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        for o in ann.iter("object")
    ]
