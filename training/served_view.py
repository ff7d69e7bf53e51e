"""The served crop geometry for a hand's tight box (training and evaluation of tight crops).

Imports no torch at import time: evaluation uses the deterministic view; only training's random
draws take torch's generator (seeded per epoch and per DataLoader worker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from gesture_recognition.boxes import CropConfig

if TYPE_CHECKING:
    from gesture_recognition.training.scene_context import SceneContext


class ServedView:
    """A hand's tight box -> the crop the server cuts around it: grown, squared, room around.

    The server's crop is the detector box grown ×1.2 and squared (``boxes.expand_boxes``), with
    the photo around the hand in the margin; a dataset of tight boxes (HaGRID's hand crops, the
    hand touching the edges) has no such margin. Trained on tight boxes alone, the classifier
    would meet a hand a third smaller inside its input, with background it never saw. This puts
    the crop on a square canvas of ``scale`` times its longer side and fills the margin with
    what the crop itself offers: its border pixels stretched outwards (``edge``), a blurred,
    enlarged copy of it (``blur``), or its mean border colour (``colour``). Given a
    :class:`~scene_context.SceneContext`, a share ``context_share`` of the draws instead puts
    the crop over a real hand of a real photo, so the margin shows an arm, a body and a room.

    Training draws the scale from ``scales`` (detector boxes are not HaGRID's boxes: a few per
    cent larger or smaller), shifts the crop by up to ``shift`` of the canvas and picks a fill
    at random, from torch's generator (seeded per epoch and per DataLoader worker).
    ``deterministic()`` is the evaluation view: ×scale of the served ``CropConfig``, centred,
    ``edge`` fill.
    """

    FILLS = ("edge", "blur", "colour")

    def __init__(
        self,
        scales: tuple[float, float] = (1.05, 1.4),
        shift: float = 0.08,
        fills: Sequence[str] = FILLS,
        random: bool = True,
        square: bool = True,
        context: SceneContext | None = None,
        context_share: float = 0.5,
    ) -> None:
        if not 1.0 <= scales[0] <= scales[1]:
            raise ValueError(f"scales must be 1 <= low <= high, got {scales}")
        unknown = set(fills) - set(self.FILLS)
        if unknown or not fills:
            raise ValueError(f"fills must be among {self.FILLS}, got {tuple(fills)}")
        self.scales, self.shift, self.fills, self.random = scales, shift, tuple(fills), random
        self.square = square  # CropConfig.square: False grows each side and keeps the aspect
        if not 0.0 <= context_share <= 1.0:
            raise ValueError(f"context_share must be in [0, 1], got {context_share}")
        self.context, self.context_share = context, context_share

    @classmethod
    def deterministic(cls, config: CropConfig) -> ServedView:
        return cls((config.scale, config.scale), 0.0, ("edge",), random=False, square=config.square)

    def _uniform(self, low: float, high: float) -> float:
        if not self.random or high <= low:
            return (low + high) / 2
        import torch

        return low + (high - low) * float(torch.rand(()))

    def _draw_context(self) -> bool:
        return self._uniform(0.0, 1.0) < self.context_share

    def _fill(self) -> str:
        if not self.random:
            return self.fills[0]
        import torch

        return self.fills[int(torch.randint(len(self.fills), ()))]

    def __call__(self, crop: NDArray[np.uint8]) -> NDArray[np.uint8]:
        h, w = crop.shape[:2]
        scale = self._uniform(*self.scales)
        if self.square:
            width = height = max(h, w, round(max(h, w) * scale))
        else:
            width, height = max(w, round(w * scale)), max(h, round(h * scale))
        room_x, room_y = width - w, height - h
        left = round(room_x / 2 + self._uniform(-self.shift, self.shift) * width)
        top = round(room_y / 2 + self._uniform(-self.shift, self.shift) * height)
        left, top = min(max(left, 0), room_x), min(max(top, 0), room_y)
        if self.context is not None and self.context_share > 0 and self._draw_context():
            canvas = self.context.canvas(width, height, (left, top, w, h), self._uniform(0.0, 1.0))
            canvas[top : top + h, left : left + w] = crop
            return canvas
        fill = self._fill()
        if fill == "edge":
            return np.pad(crop, ((top, room_y - top), (left, room_x - left), (0, 0)), mode="edge")
        if fill == "blur":
            back = Image.fromarray(np.ascontiguousarray(crop)).resize((width, height))
            radius = max(1, max(width, height) // 12)
            canvas = np.array(back.filter(ImageFilter.GaussianBlur(radius=radius)))
        else:
            border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
            canvas = np.empty((height, width, 3), np.uint8)
            canvas[:] = border.mean(axis=0).astype(np.uint8)
        canvas[top : top + h, left : left + w] = crop
        return canvas
