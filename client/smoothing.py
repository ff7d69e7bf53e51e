"""Temporal smoothing of a stream's answers: the mean of the last N class distributions.

The rule (``gesture-client stream --smooth N``): after each answered frame, the smoothed
distribution is the arithmetic mean of the ``GESTURE_PROBS`` vectors of that frame and the
N - 1 answered frames before it (fewer at the start of the stream); the smoothed gesture is its
most probable class and the smoothed score that class's mean probability. Ties go to the lower
class index (``numpy.argmax``), so the result does not depend on anything but the window.

Why the mean of distributions and not a vote over labels: a hand held still between two
gestures flips the per-frame label back and forth, while the mean keeps the margin of each frame
and changes its answer only when the evidence of the window has moved. A frame with no hand
counts with its own distribution (a certain ``no_gesture`` on the served models), so a hand that
leaves the picture takes over after about N/2 frames instead of being held for ever. Frames that
got no answer (lost to a server outage) do not enter the window: there is nothing to average.
``N = 1`` is no smoothing: the smoothed values are the frame's own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Smoothed:
    gesture: str
    score: float
    probabilities: NDArray[np.float32]  # [K], the window's mean distribution
    frames: int  # how many answered frames the window held (<= N)

    def to_dict(self) -> dict[str, object]:
        return {
            "gesture": self.gesture,
            "score": round(float(self.score), 6),
            "frames": self.frames,
        }


class ProbabilitySmoother:
    """The running mean of the last ``window`` distributions over ``labels``."""

    def __init__(self, window: int, labels: Sequence[str]):
        if window < 1:
            raise ValueError(f"the smoothing window must be at least 1 frame, got {window}")
        if not labels:
            raise ValueError("smoothing needs the class labels")
        self.window = int(window)
        self.labels = tuple(labels)
        self._recent: deque[NDArray[np.float64]] = deque(maxlen=self.window)
        # Kept as a running float64 sum so a long stream costs O(K) per frame, recomputed from
        # the window now and then so rounding errors cannot pile up.
        self._sum = np.zeros(len(self.labels), np.float64)
        self._updates = 0

    def update(self, probabilities: Sequence[float] | NDArray[np.floating]) -> Smoothed:
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
        if probs.size != len(self.labels):
            raise ValueError(
                f"a distribution over {len(self.labels)} classes was expected, got {probs.size} "
                "values"
            )
        if not np.all(np.isfinite(probs)):
            raise ValueError("the distribution holds a NaN or infinite value")
        if len(self._recent) == self.window:
            self._sum -= self._recent[0]
        self._recent.append(probs)
        self._sum += probs
        self._updates += 1
        if self._updates % 1024 == 0:
            self._sum = np.sum(np.stack(self._recent), axis=0)
        mean = self._sum / len(self._recent)
        best = int(np.argmax(mean))
        return Smoothed(
            gesture=self.labels[best],
            score=float(mean[best]),
            probabilities=mean.astype(np.float32),
            frames=len(self._recent),
        )

    def reset(self) -> None:
        """Forget the window (a new scene, or a gap in the stream)."""
        self._recent.clear()
        self._sum[:] = 0.0
