"""The end-to-end rule: one gesture per photo from the classified hands."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gesture_recognition.decision import decide, softmax
from gesture_recognition.labels import load_label_map

MCS = load_label_map("mcs2021")


def probs(rows: list[dict[str, float]]) -> np.ndarray:
    """Per-hand distributions from {class: probability}, the rest spread evenly."""
    out = np.zeros((len(rows), MCS.num_classes), np.float32)
    for i, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (MCS.num_classes - len(row))
        out[i] = rest
        for name, p in row.items():
            out[i, MCS.classes.index(name)] = p
    return out


def test_no_hand_is_a_certain_no_gesture() -> None:
    decision = decide(np.zeros((0, MCS.num_classes), np.float32), MCS)
    assert decision.gesture == "no_gesture" and decision.score == 1.0
    assert decision.hand_gestures == [] and decision.hand_scores.shape == (0,)
    expected = np.zeros(MCS.num_classes, np.float32)
    expected[MCS.classes.index("no_gesture")] = 1.0
    np.testing.assert_array_equal(decision.probabilities, expected)


def test_no_hand_label_outside_the_classes() -> None:
    fingers = load_label_map("finger_count")
    decision = decide(np.zeros((0, fingers.num_classes), np.float32), fingers)
    assert decision.gesture == "no_hand" and decision.score == 1.0
    assert not decision.probabilities.any()


def test_the_most_confident_hand_wins() -> None:
    p = probs([{"like": 0.6}, {"stop": 0.9}, {"ok": 0.4}])
    decision = decide(p, MCS)
    assert decision.gesture == "stop" and decision.score == pytest.approx(0.9)
    assert decision.hand_gestures == ["like", "stop", "ok"]
    np.testing.assert_allclose(decision.hand_scores, [0.6, 0.9, 0.4], rtol=1e-6)
    np.testing.assert_array_equal(decision.probabilities, p[1])


def test_no_gesture_can_be_the_best_answer() -> None:
    decision = decide(probs([{"ok": 0.5}, {"no_gesture": 0.95}]), MCS)
    assert decision.gesture == "no_gesture" and decision.score == pytest.approx(0.95)
    assert decision.hand_gestures == ["ok", "no_gesture"]


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.just(MCS.num_classes)),
        elements=st.floats(0, 1, width=32),
    )
)
def test_answer_is_the_overall_maximum(p) -> None:
    decision = decide(p, MCS)
    assert decision.score == pytest.approx(float(p.max()))
    assert p[:, MCS.classes.index(decision.gesture)].max() == pytest.approx(float(p.max()))
    assert len(decision.hand_gestures) == len(p)


def test_wrong_number_of_classes_is_refused() -> None:
    with pytest.raises(ValueError):
        decide(np.zeros((2, MCS.num_classes + 1), np.float32), MCS)


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 5), st.integers(1, 9)),
        elements=st.floats(-80, 80, width=32),
    )
)
def test_softmax_rows_are_distributions(logits) -> None:
    out = softmax(logits)
    assert out.dtype == np.float32 and out.shape == logits.shape
    assert np.all(out >= 0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    # The largest logit gets the largest probability (ties after rounding allowed).
    rows = np.arange(len(logits))
    np.testing.assert_array_equal(out[rows, logits.argmax(axis=1)], out.max(axis=1))
    # Shifted far past exp overflow; float32 rounding of the shift costs ~1e-4.
    np.testing.assert_allclose(softmax(logits + 1000.0), out, atol=2e-4)


def test_softmax_refuses_bad_logits() -> None:
    with pytest.raises(ValueError):
        softmax(np.zeros(3, np.float32))
    with pytest.raises(ValueError):
        softmax(np.array([[0.0, np.nan]], np.float32))
