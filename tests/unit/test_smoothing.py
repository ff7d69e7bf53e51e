"""The stream's smoothing rule: the mean of the last N GESTURE_PROBS distributions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gesture_recognition.client.smoothing import ProbabilitySmoother

LABELS = ("no_gesture", "stop", "victory")


def test_window_of_one_is_the_frame_itself() -> None:
    smoother = ProbabilitySmoother(1, LABELS)
    for probs in ([0.1, 0.7, 0.2], [0.6, 0.1, 0.3]):
        out = smoother.update(probs)
        assert out.gesture == LABELS[int(np.argmax(probs))]
        assert out.score == pytest.approx(max(probs))
        np.testing.assert_allclose(out.probabilities, probs, atol=1e-7)
        assert out.frames == 1


def test_mean_of_the_last_n_and_the_window_slides() -> None:
    smoother = ProbabilitySmoother(3, LABELS)
    frames = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    answers = [smoother.update(p) for p in frames]
    # Start of the stream: fewer frames than the window, their mean.
    assert answers[0].gesture == "stop" and answers[0].frames == 1
    assert answers[1].frames == 2
    # Frames 0-2: stop 1/3, victory 2/3; the single "stop" frame is outvoted.
    assert answers[2].gesture == "victory"
    assert answers[2].score == pytest.approx(2 / 3)
    np.testing.assert_allclose(answers[2].probabilities, [0, 1 / 3, 2 / 3], atol=1e-6)
    # Frames 1-3 then 2-4: the first frame has left the window.
    np.testing.assert_allclose(answers[3].probabilities, [1 / 3, 0, 2 / 3], atol=1e-6)
    assert answers[4].gesture == "no_gesture"
    assert answers[4].score == pytest.approx(2 / 3)
    assert answers[4].frames == 3


def test_a_flickering_label_is_held_while_the_mean_favours_it() -> None:
    """Raw labels flip between two classes; the smoothed one follows the larger mass."""
    smoother = ProbabilitySmoother(5, LABELS)
    raw = []
    smoothed = []
    for i in range(20):
        probs = [0.0, 0.60, 0.40] if i % 3 else [0.0, 0.45, 0.55]
        raw.append(LABELS[int(np.argmax(probs))])
        smoothed.append(smoother.update(probs).gesture)
    assert len(set(raw)) == 2
    assert set(smoothed[4:]) == {"stop"}


def test_ties_go_to_the_lower_class_index() -> None:
    assert ProbabilitySmoother(2, LABELS).update([0.0, 0.5, 0.5]).gesture == "stop"


def test_reset_forgets_the_window() -> None:
    smoother = ProbabilitySmoother(4, LABELS)
    smoother.update([0.0, 1.0, 0.0])
    smoother.reset()
    out = smoother.update([0.0, 0.0, 1.0])
    assert out.frames == 1 and out.gesture == "victory"


@pytest.mark.parametrize(
    ("window", "probs", "message"),
    [
        (0, [0.1, 0.2, 0.7], "at least 1"),
        (2, [0.5, 0.5], "over 3 classes"),
        (2, [0.5, float("nan"), 0.5], "NaN"),
    ],
)
def test_bad_input_is_refused(window: int, probs: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProbabilitySmoother(window, LABELS).update(probs)


@settings(max_examples=40, deadline=None)
@given(
    window=st.integers(1, 9),
    stream=st.lists(
        st.lists(st.floats(0, 1, allow_nan=False), min_size=3, max_size=3), min_size=1, max_size=60
    ),
)
def test_equals_the_mean_of_the_window_computed_directly(
    window: int, stream: list[list[float]]
) -> None:
    smoother = ProbabilitySmoother(window, LABELS)
    for i, probs in enumerate(stream):
        out = smoother.update(probs)
        expected = np.mean(np.asarray(stream[max(0, i - window + 1) : i + 1]), axis=0)
        np.testing.assert_allclose(out.probabilities, expected, atol=1e-6)
        assert out.score == pytest.approx(float(expected.max()), abs=1e-6)


def test_no_drift_over_a_long_stream() -> None:
    rng = np.random.default_rng(0)
    stream = rng.dirichlet(np.ones(3), size=5000)
    smoother = ProbabilitySmoother(7, LABELS)
    for probs in stream:
        out = smoother.update(probs)
    np.testing.assert_allclose(out.probabilities, stream[-7:].mean(axis=0), atol=1e-7)
