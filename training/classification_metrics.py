"""Classification metrics from integer labels (no scikit-learn needed)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def confusion_matrix(
    targets: NDArray[np.integer], predictions: NDArray[np.integer], num_classes: int
) -> NDArray[np.int64]:
    """``[K, K]`` counts, rows = true class, columns = predicted class."""
    t = np.asarray(targets, dtype=np.int64).ravel()
    p = np.asarray(predictions, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{len(t)} targets but {len(p)} predictions")
    if len(t) and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def per_class_f1(matrix: NDArray[np.integer]) -> NDArray[np.float64]:
    """F1 of each class (0 where a class is neither present nor predicted)."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    denom = m.sum(0) + m.sum(1)  # predicted + actual = 2TP + FP + FN
    return np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)


def macro_f1(matrix: NDArray[np.integer]) -> float:
    """Mean F1 over the classes that occur in the targets or the predictions.

    Classes absent from both would score 0/0; they are left out rather than counted as 0 or 1
    (scikit-learn's ``f1_score(average="macro")`` does the same).
    """
    m = np.asarray(matrix)
    seen = (m.sum(0) + m.sum(1)) > 0
    if not seen.any():
        return 0.0
    return float(per_class_f1(m)[seen].mean())


def accuracy(matrix: NDArray[np.integer]) -> float:
    m = np.asarray(matrix)
    total = m.sum()
    return float(np.trace(m) / total) if total else 0.0
