"""Train / validation / test assignment by group: the one splitting rule of the training side.

Neighbouring frames of one video (or photos of one person, one capture session) are
near-duplicates; a split that puts them on both sides measures memory, not recognition. Every
item therefore carries a group, and whole groups are assigned. Items without a group key are
their own group, which is the plain per-item split.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Mapping

SPLITS = ("train", "val", "test")
# Stratum of items without a label (box-labelled photos): all of them share one.
UNLABELLED = "?"


def group_stratum(labels: list[str | None]) -> str:
    """The label a group is stratified by: its most frequent, ties to the first by name.

    A video of a gesture usually also holds ``no_gesture`` frames before and after; counting
    keeps such a video with its gesture as long as the gesture fills most of it.
    """
    counts = Counter(label if label is not None else UNLABELLED for label in labels)
    top = max(counts.values())
    return min(label for label, n in counts.items() if n == top)


def grouped_split(
    labels: Mapping[str, str | None],
    groups: Mapping[str, str | None],
    fractions: tuple[float, float],
    seed: int,
) -> dict[str, str]:
    """``train``/``val``/``test`` for each item of ``labels``, whole groups at a time.

    ``groups[item]`` is the item's group (missing or None: the item alone). Within each stratum
    (a group's :func:`group_stratum`) the sorted groups are shuffled with ``seed`` and the first
    ``round(n * test)`` go to test, the next ``round(n * val)`` to validation. The result depends
    only on the arguments, never on their order.
    """
    val_frac, test_frac = fractions
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise ValueError(f"val and test fractions must be >= 0 and sum below 1, got {fractions}")
    group_of = {item: groups.get(item) or item for item in labels}
    members: dict[str, list[str | None]] = defaultdict(list)
    for item in sorted(labels):
        members[group_of[item]].append(labels[item])
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for group, group_labels in members.items():
        by_stratum[group_stratum(group_labels)].append(group)
    rng = random.Random(seed)
    side: dict[str, str] = {}
    for stratum in sorted(by_stratum):
        ordered = sorted(by_stratum[stratum])
        rng.shuffle(ordered)
        n_test = round(len(ordered) * test_frac)
        n_val = round(len(ordered) * val_frac)
        for i, group in enumerate(ordered):
            side[group] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return {item: side[group_of[item]] for item in labels}


def groups_on_several_sides(
    splits: Mapping[str, str], groups: Mapping[str, str | None]
) -> set[str]:
    """Groups whose items were given different splits (should be empty: a leak)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for item, split in splits.items():
        seen[groups.get(item) or item].add(split)
    return {group for group, sides in seen.items() if len(sides) > 1}
