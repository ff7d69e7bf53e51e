"""End-to-end evaluation on whole photos: detect -> crop -> classify -> decide, through the
served pipeline (``GesturePipeline`` on the exported ONNX files).

- :func:`evaluate_end_to_end_fingers`: SubhiH test photos, the finger count of the topmost hand.
- :func:`evaluate_end_to_end_mcs`: held-out HaGRID photos against the MachinesCanSee classes.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from gesture_recognition.boxes import as_boxes, select_topmost
from gesture_recognition.images import InvalidImageError, load_image
from gesture_recognition.labels import LabelMap, load_label_map
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.training.evaluate import (
    IMAGE_SUFFIXES,
    PipelineLike,
    classification_summary,
    threads_note,
    timing,
)
from gesture_recognition.training.mistakes import MAX_PHOTOS, wrong_answer


@dataclass(frozen=True)
class Photo:
    key: str  # how the report names it (path relative to the dataset root)
    path: Path
    truth: str


def topmost_label(boxes: NDArray[np.float32], labels: Sequence[str]) -> str | None:
    """The label of the topmost box (the hand training crops are cut from), None if no box."""
    index = select_topmost(as_boxes(boxes))
    return None if index is None else labels[index]


FINGER_RULE = (
    "Photo label = the finger count of its TOPMOST ground-truth box (smallest y1, the same "
    "ordering that picks the training crop and the server's first hand)."
)


def finger_photos(
    subhih_root: str | Path, split: str, label_map: LabelMap
) -> tuple[list[Photo], Counter[str]]:
    """SubhiH photos of ``split`` labelled by their topmost box's finger count."""
    from gesture_recognition.training.converters.voc import read_voc_dir

    root = Path(subhih_root)
    fingers = load_label_map("finger_count")
    photos, excluded = [], Counter[str]()
    for record in read_voc_dir(root, "subhih"):
        if record.split != split:
            continue
        if record.problem:
            excluded[record.problem.split(" ")[0]] += 1
            continue
        boxes = np.asarray([[b.x1, b.y1, b.x2, b.y2] for b in record.boxes], np.float32)
        raw = topmost_label(boxes, [b.label for b in record.boxes])
        if raw is None:
            excluded["no_ground_truth_box"] += 1
            continue
        label = fingers.canonical(raw) if fingers.contains(raw) else raw
        if not label_map.contains(label):
            excluded[f"label_not_in_label_map:{raw}"] += 1
            continue
        key = record.image_path.resolve().relative_to(root.resolve()).as_posix()
        photos.append(Photo(key, record.image_path, label_map.canonical(label)))
    return photos, excluded


def photo_labels(hagrid_root: Path) -> dict[str, str]:
    """HaGRID photo -> source label: its ``manifest.csv`` if present, else the folder name."""
    manifest = hagrid_root / "manifest.csv"
    if manifest.is_file():
        with manifest.open(encoding="utf-8", newline="") as f:
            return {row["path"]: row["label"] for row in csv.DictReader(f)}
    return {
        p.relative_to(hagrid_root).as_posix(): p.parent.name
        for p in sorted(hagrid_root.glob("*/*"))
        if p.suffix.lower() in IMAGE_SUFFIXES
    }


def mcs_photos(
    hagrid_root: str | Path, image_paths: Iterable[str | Path], label_map: LabelMap
) -> tuple[list[Photo], Counter[str]]:
    """The given HaGRID photos whose class the label map knows (``peace`` -> ``victory``)."""
    root = Path(hagrid_root).resolve()
    labels = photo_labels(root)
    photos, excluded = [], Counter[str]()
    for item in image_paths:
        path = Path(item)
        if path.is_absolute():
            try:
                rel = path.resolve().relative_to(root).as_posix()
            except ValueError:
                excluded["outside_dataset_root"] += 1
                continue
        else:
            rel = path.as_posix()
        raw = labels.get(rel)
        if raw is None:
            excluded["not_in_dataset"] += 1
            continue
        if not label_map.contains(raw):
            excluded[f"class_not_in_label_map:{raw}"] += 1
            continue
        photos.append(Photo(rel, root / rel, label_map.canonical(raw)))
    return photos, excluded


def validation_scenes(
    root: str | Path,
    label_map: LabelMap,
    held_out: LabelMap | None = None,
    exclude_photos: set[Path] | frozenset[Path] = frozenset(),
) -> list[Photo]:
    """Labelled photos of ``root`` (HaGRID layout) whose label ``label_map`` knows, minus the
    classes of the test photos (those ``held_out`` knows) and the photos a model trained on."""
    root = Path(root).resolve()
    photos = []
    for rel, raw in sorted(photo_labels(root).items()):
        path = root / rel
        if held_out is not None and held_out.contains(raw):
            continue
        if not label_map.contains(raw) or path.resolve() in exclude_photos:
            continue
        photos.append(Photo(rel, path, label_map.canonical(raw)))
    if not photos:
        raise ValueError(f"no validation scene left in {root}")
    return photos


def labelled_scenes(hagrid_root: str | Path, label_map: LabelMap) -> list[Photo]:
    """Every photo of ``hagrid_root`` (HaGRID layout) whose label ``label_map`` knows, e.g. the
    208 held-out MachinesCanSee scenes of ``hagrid_crops`` with the ``mcs2021`` map."""
    root = Path(hagrid_root)
    return mcs_photos(root, sorted(photo_labels(root.resolve())), label_map)[0]


def scene_split(
    hagrid_root: str | Path, split: str, held_out_map: str = "mcs2021"
) -> tuple[list[Photo], LabelMap]:
    """The scene photos end-to-end measurements here use, and the map they are scored with:
    ``test``, the photos of the held-out map's classes (scored with it); ``val``, those of every
    other class, scored with the HaGRID map (settings are chosen on these)."""
    held_out = load_label_map(held_out_map)
    if split == "test":
        return labelled_scenes(hagrid_root, held_out), held_out
    if split == "val":
        hagrid = load_label_map("hagrid")
        return validation_scenes(hagrid_root, hagrid, held_out), hagrid
    raise ValueError(f"scene split must be val or test, got {split!r}")


def score_photos(
    pipeline: PipelineLike,
    photos: Sequence[Photo],
    label_map: LabelMap,
    desc: str = "end to end",
) -> dict[str, Any]:
    """Run the pipeline on each photo: metrics, no-hand rate, latency and per-photo answers."""
    truth, predicted, seconds, rows = [], [], [], []
    wrong: list[dict[str, Any]] = []
    no_hand = 0
    skipped: Counter[str] = Counter()
    for photo in tqdm(photos, desc=desc, unit="photo"):
        try:
            image = load_image(photo.path)
        except (InvalidImageError, OSError):
            skipped["unreadable_image"] += 1
            continue
        start = time.perf_counter()
        result = pipeline(image)
        seconds.append(time.perf_counter() - start)
        hands = len(result.hand_boxes)
        no_hand += hands == 0
        truth.append(photo.truth)
        predicted.append(result.gesture)
        row = wrong_answer(photo.path, result, photo.truth)
        if row is not None and len(wrong) < MAX_PHOTOS:
            wrong.append(row)
        rows.append(
            {
                "path": photo.key,
                "truth": photo.truth,
                "predicted": result.gesture,
                "score": round(float(result.score), 5),
                "hands": hands,
            }
        )
    if not truth:
        raise ValueError("no photo could be scored")
    return {
        **classification_summary(truth, predicted, label_map.classes),
        "label_map": label_map.name,
        "no_hand_label": label_map.no_hand_label,
        "no_hand_rate": no_hand / len(truth),
        "photos_without_hand": no_hand,
        "latency": timing(seconds),
        "skipped": dict(skipped),
        "predictions": rows,
        "wrong_answers": wrong,
    }


def _no_hand_note(label_map: LabelMap) -> str:
    if label_map.no_hand_label in label_map.classes:
        return (
            f"A photo with no detected hand is answered {label_map.no_hand_label!r} (the serving "
            "rule): right when that is its label, wrong otherwise."
        )
    return (
        f"A photo with no detected hand is answered {label_map.no_hand_label!r}, which is not a "
        "class: it counts as wrong (its own confusion-matrix column, not part of macro-F1)."
    )


def pipeline_for(
    models_dir: str | Path | None,
    threads: int | None,
    classifier_dir: str | Path | None = None,
) -> GesturePipeline:
    """The in-process pipeline: the detector of ``models_dir``, the classifier of
    ``classifier_dir`` (default: the same folder)."""
    if classifier_dir is None:
        return GesturePipeline.from_dir(models_dir, threads=threads)
    from gesture_recognition.pipeline import load_detector
    from gesture_recognition.training.evaluate import load_classifier

    return GesturePipeline(
        load_detector(models_dir, threads), load_classifier(classifier_dir, threads)
    )


def evaluate_end_to_end_fingers(
    models_dir: str | Path | None,
    subhih_root: str | Path,
    split: str = "test",
    *,
    threads: int | None = None,
    pipeline: GesturePipeline | None = None,
    name: str = "end_to_end_fingers",
) -> dict[str, Any]:
    """Finger-count accuracy on whole SubhiH photos (needs a finger-count classifier)."""
    pipe = pipeline if pipeline is not None else pipeline_for(models_dir, threads)
    label_map = pipe.classifier.spec.label_map
    photos, excluded = finger_photos(subhih_root, split, label_map)
    if not photos:
        raise ValueError(
            f"no {split!r} photo of {subhih_root} has a label the classifier's label map "
            f"{label_map.name!r} knows (excluded: {dict(excluded)}); evaluate a classifier "
            "trained with the finger_count label map"
        )
    result = score_photos(pipe, photos, label_map, desc=f"end to end, SubhiH {split}")
    return {
        "kind": "end_to_end",
        "name": name,
        "models_dir": str(models_dir) if models_dir is not None else None,
        "dataset": str(subhih_root),
        "split": split,
        **result,
        "excluded": dict(excluded),
        "notes": [FINGER_RULE, _no_hand_note(label_map), threads_note(threads)],
    }


def evaluate_end_to_end_mcs(
    models_dir: str | Path | None,
    hagrid_root: str | Path,
    image_paths: Iterable[str | Path],
    *,
    threads: int | None = None,
    pipeline: GesturePipeline | None = None,
    name: str = "end_to_end_mcs",
) -> dict[str, Any]:
    """MachinesCanSee accuracy on HaGRID photos (only ``image_paths``, i.e. held-out ones)."""
    pipe = pipeline if pipeline is not None else pipeline_for(models_dir, threads)
    label_map = pipe.classifier.spec.label_map
    photos, excluded = mcs_photos(hagrid_root, image_paths, label_map)
    if not photos:
        raise ValueError(
            f"none of the given photos of {hagrid_root} has a class of the label map "
            f"{label_map.name!r} (excluded: {dict(excluded)})"
        )
    result = score_photos(pipe, photos, label_map, desc="end to end, HaGRID photos")
    notes = [
        f"HaGRID photos scored whole, labels mapped through the label map {label_map.name!r} "
        f"(aliases: {dict(label_map.aliases)}); photos of other HaGRID classes are excluded.",
        "Only the photos passed in (the held-out split of the crop manifest) are scored.",
        _no_hand_note(label_map),
        threads_note(threads),
    ]
    if label_map.name != "mcs2021":
        notes.insert(0, f"WARNING: the classifier's label map is {label_map.name!r}, not mcs2021.")
    return {
        "kind": "end_to_end",
        "name": name,
        "models_dir": str(models_dir) if models_dir is not None else None,
        "dataset": str(hagrid_root),
        "split": "given photos",
        **result,
        "excluded": dict(excluded),
        "notes": notes,
    }
