"""Label maps as data: which classes a classifier predicts, in which order, and their aliases.

Training, the Triton models and the clients all read label maps through this module so a class
index means the same gesture everywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def builtin_label_maps() -> tuple[str, ...]:
    """The names of the label maps shipped in ``label_maps/`` (one JSON file each)."""
    folder = resources.files("gesture_recognition") / "label_maps"
    return tuple(
        sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    )


BUILTIN_LABEL_MAPS = builtin_label_maps()

# How a finer classifier's probabilities merge into a coarser map (``LabelMap.merge_matrix``).
MERGE_PRIORS = ("training", "uniform")


def merge_weights(members: NDArray[np.bool_], prior: str) -> NDArray[np.float32]:
    """The merge matrix for ``members`` (``[K_fine, K_coarse]``, True where a fine class goes)
    under ``prior`` (see ``LabelMap.merge_matrix``)."""
    if prior not in MERGE_PRIORS:
        raise ValueError(f"merge prior must be one of {MERGE_PRIORS}, got {prior!r}")
    matrix = np.asarray(members, dtype=np.float32)
    if prior == "uniform":
        # A class nothing merges into keeps its zero column (and the served log floor).
        matrix = matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1.0)
    return matrix


class UnknownLabelError(KeyError):
    """A dataset label that the label map neither lists nor aliases."""


@dataclass(frozen=True)
class LabelMap:
    name: str
    classes: tuple[str, ...]
    # Source-dataset names that mean one of ``classes`` (HaGRID's ``peace`` is ``victory``).
    aliases: Mapping[str, str] = field(default_factory=dict)
    # Answer when a photo has no hand. It may or may not be one of ``classes``.
    no_hand_label: str = "no_gesture"
    description: str = ""
    # How a classifier of another label map answers in this one: ``{other map's name: {its
    # class: our class}}``, every class of the other map named. A classifier trained on the
    # finer map is served in this one by summing its probabilities (``merge_matrix``), e.g. the
    # HaGRID classifier as the MachinesCanSee one, where every other HaGRID gesture is
    # ``no_gesture``.
    merges: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"label map {self.name!r} lists a class twice: {self.classes}")
        if not self.classes:
            raise ValueError(f"label map {self.name!r} has no classes")
        for alias, target in self.aliases.items():
            if target not in self.classes:
                raise ValueError(f"alias {alias!r} -> {target!r} is not a class of {self.name!r}")
        for other, mapping in self.merges.items():
            for source, target in mapping.items():
                if target not in self.classes:
                    raise ValueError(
                        f"merge {other!r}: {source!r} -> {target!r} is not a class of {self.name!r}"
                    )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def canonical(self, label: str) -> str:
        """The class name for a dataset label; raises UnknownLabelError for anything else."""
        if label in self.classes:
            return label
        if label in self.aliases:
            return self.aliases[label]
        raise UnknownLabelError(f"label {label!r} is not in label map {self.name!r}")

    def contains(self, label: str) -> bool:
        return label in self.classes or label in self.aliases

    def index(self, label: str) -> int:
        return self.classes.index(self.canonical(label))

    def answer_for(self, label: str) -> str | None:
        """The class this map answers for a source label: its class or alias, else what a merge
        maps it to (the MachinesCanSee map answers HaGRID's ``palm`` with ``no_gesture``);
        None when nothing here names it."""
        if self.contains(label):
            return self.canonical(label)
        for source, mapping in self.merges.items():
            if label in mapping:
                return mapping[label]
            # The source map's own aliases first (HaGRID's ``four`` is its ``other_gesture``).
            if source in BUILTIN_LABEL_MAPS:
                other = load_label_map(source)
                if other.contains(label) and other.canonical(label) in mapping:
                    return mapping[other.canonical(label)]
        return None

    def merge_matrix(self, source: LabelMap, prior: str = "training") -> NDArray[np.float32]:
        """``[K_source, K_self]`` matrix: ``probs @ M`` answers a ``source`` classifier's
        probabilities in this map. Every source class must be named by the merge.

        ``prior`` (``MERGE_PRIORS``): ``"training"`` sums each class's members (0/1 columns),
        keeping the prior the classifier was trained with: a class that merges 8 of 14 equally
        drawn classes starts at 8/14. ``"uniform"`` averages them (columns divided by their
        member counts; renormalised, Bayes' rule under a prior of 1/K_self for each class)."""
        mapping = self.merges.get(source.name)
        if mapping is None:
            raise ValueError(
                f"label map {self.name!r} has no merge from {source.name!r} "
                f"(has: {', '.join(sorted(self.merges)) or 'none'})"
            )
        missing = [c for c in source.classes if c not in mapping]
        if missing:
            raise ValueError(
                f"the merge {source.name!r} -> {self.name!r} does not say where "
                f"{', '.join(missing)} go"
            )
        members = np.zeros((source.num_classes, self.num_classes), dtype=bool)
        for i, name in enumerate(source.classes):
            members[i, self.classes.index(mapping[name])] = True
        return merge_weights(members, prior)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name,
            "description": self.description,
            "classes": list(self.classes),
            "aliases": dict(self.aliases),
            "no_hand_label": self.no_hand_label,
        }
        if self.merges:
            data["merges"] = {k: dict(v) for k, v in self.merges.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> LabelMap:
        classes = data.get("classes")
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("a label map needs 'classes': a list of strings")
        aliases = data.get("aliases", {}) or {}
        if not isinstance(aliases, dict):
            raise ValueError("'aliases' must be a mapping of source label -> class")
        merges = data.get("merges", {}) or {}
        if not isinstance(merges, dict) or not all(isinstance(m, dict) for m in merges.values()):
            raise ValueError("'merges' must map a label map's name to {its class: class}")
        return cls(
            name=str(data.get("name", "custom")),
            classes=tuple(classes),
            aliases={str(k): str(v) for k, v in aliases.items()},
            no_hand_label=str(data.get("no_hand_label", "no_gesture")),
            description=str(data.get("description", "")),
            merges={str(k): {str(a): str(b) for a, b in v.items()} for k, v in merges.items()},
        )

    @classmethod
    def from_classes(cls, name: str, classes: Iterable[str], no_hand_label: str) -> LabelMap:
        return cls(name=name, classes=tuple(classes), no_hand_label=no_hand_label)


def load_label_map(name_or_path: str | Path) -> LabelMap:
    """A built-in label map by name (``mcs2021``, ``hagrid``, ``finger_count``) or a JSON file."""
    text: str
    if str(name_or_path) in BUILTIN_LABEL_MAPS:
        ref = resources.files("gesture_recognition") / "label_maps" / f"{name_or_path}.json"
        text = ref.read_text(encoding="utf-8")
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"no label map {str(name_or_path)!r}: use one of {', '.join(BUILTIN_LABEL_MAPS)} "
                "or the path of a JSON file"
            )
        text = path.read_text(encoding="utf-8")
    return LabelMap.from_dict(json.loads(text))
