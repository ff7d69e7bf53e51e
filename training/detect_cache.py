"""Run a hand labeller over a photo folder once and keep its boxes.

Crops can then be re-cut (other expansion, other size) without re-detecting. The labeller is
the exported ONNX detector run through the same letterbox/decode code as the server, so cached
boxes are the boxes the server would find, or a teacher (``training.teacher``: MediaPipe
Hands), whose boxes feed the same export, review and apply steps. The cache records which
labeller made it (``detector``) and how long each photo took. Interrupted runs resume: photos
already in the cache are skipped.

This module imports no model runtime at import time: the teacher's own environment (mediapipe,
no ONNX Runtime needed) writes caches with it too.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tqdm import tqdm

from gesture_recognition.images import InvalidImageError, load_image

# photo (uint8 RGB [H, W, 3]) -> boxes [N, 4] in photo pixels, scores [N]
Labeller = Callable[[NDArray[np.uint8]], tuple[NDArray[np.float32], NDArray[np.float32]]]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# Save every N photos so an interruption loses little work.
SAVE_EVERY = 50


@dataclass(frozen=True)
class CachedDetections:
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32, photo pixels
    scores: np.ndarray  # [N] float32
    seconds: float | None = None  # the labeller's time on this photo (caches since 2026-12)


def list_images(root: Path) -> list[Path]:
    return sorted(
        p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )


def cache_detections(
    models_dir: Path | None,
    root: Path,
    out_path: Path,
    images: Iterable[Path] | None = None,
    threads: int | None = None,
    conf_threshold: float | None = None,
) -> dict[str, Any]:
    """Detect hands in every photo under ``root`` (or in ``images``) into ``out_path`` (JSON).

    ``conf_threshold`` overrides the served threshold (for pseudo-labels, whose review wants the
    unsure boxes too); the cache records the threshold it was made with.
    """
    from gesture_recognition.pipeline import detect_hands, load_detector

    detector = load_detector(models_dir, threads)
    if conf_threshold is not None:
        if not 0.0 <= conf_threshold <= 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
        detector.spec = replace(detector.spec, conf_threshold=conf_threshold)
    # The spec alone does not tell two trainings apart (same size, same threshold): resuming
    # a cache of the old weights would silently keep the old boxes.
    identity = {**detector.spec.to_dict(), "onnx_sha256": _sha256(detector_onnx(models_dir))}
    return cache_boxes(
        lambda image: detect_hands(detector, image), identity, root, out_path, images
    )


def cache_boxes(
    labeller: Labeller,
    identity: Mapping[str, Any],
    root: Path,
    out_path: Path,
    images: Iterable[Path] | None = None,
    desc: str = "detecting hands",
) -> dict[str, Any]:
    """Run ``labeller`` on every photo under ``root`` not yet in the cache at ``out_path``.

    ``identity`` says what made the boxes; a cache made by anything else is refused.
    """
    root = Path(root)
    identity = dict(identity)
    cache = _load(out_path) if Path(out_path).is_file() else None
    if cache is not None and cache.get("detector") != identity:
        raise ValueError(
            f"{out_path} was made by another detector; choose a new cache file or delete it"
        )
    if cache is None:
        cache = {"detector": identity, "root": str(root), "images": {}, "failed": {}}
    done: dict[str, Any] = cache["images"]
    failed: dict[str, str] = cache["failed"]
    listed = list_images(root) if images is None else list(images)
    todo = [p for p in listed if _rel(p, root) not in done]
    for i, path in enumerate(tqdm(todo, desc=desc, unit="img")):
        rel = _rel(path, root)
        try:
            image = load_image(path)
        except (InvalidImageError, OSError) as exc:
            failed[rel] = str(exc)
            continue
        start = time.perf_counter()
        boxes, scores = labeller(image)
        seconds = time.perf_counter() - start
        done[rel] = {
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "boxes": np.asarray(boxes, np.float64).reshape(-1, 4).tolist(),
            "scores": np.asarray(scores, np.float64).reshape(-1).tolist(),
            "seconds": round(seconds, 5),
        }
        if (i + 1) % SAVE_EVERY == 0:
            _save(cache, out_path)
    _save(cache, out_path)
    return cache


def detector_onnx(models_dir: Path | None) -> Path:
    from gesture_recognition.artifacts import DETECTOR_ONNX, shipped_models_dir

    return Path(models_dir if models_dir is not None else shipped_models_dir()) / DETECTOR_ONNX


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_cache(path: Path) -> dict[str, CachedDetections]:
    """The cached photos (relative path -> detections)."""
    cache = _load(path)
    out = {}
    for rel, entry in cache["images"].items():
        out[rel] = CachedDetections(
            width=int(entry["width"]),
            height=int(entry["height"]),
            boxes=np.asarray(entry["boxes"], dtype=np.float32).reshape(-1, 4),
            scores=np.asarray(entry["scores"], dtype=np.float32).reshape(-1),
            seconds=float(entry["seconds"]) if "seconds" in entry else None,
        )
    return out


def predictions_for(
    cache_path: Path, images: Iterable[Path]
) -> tuple[list[tuple[NDArray[np.float32], NDArray[np.float32]]], list[float]]:
    """Boxes and scores of ``images`` (in order) from a cache whose root holds them, and the
    labeller's seconds per photo where the cache recorded them. A photo missing from the cache
    is an error: a test set is scored whole."""
    root = Path(_load(cache_path)["root"])
    cache = read_cache(cache_path)
    predictions, seconds = [], []
    for path in images:
        key = _rel(path, root)
        entry = cache.get(key)
        if entry is None:
            raise ValueError(f"{cache_path} has no entry for {key}: label the whole set first")
        predictions.append((entry.boxes, entry.scores))
        if entry.seconds is not None:
            seconds.append(entry.seconds)
    return predictions, seconds


def _rel(path: Path, root: Path) -> str:
    """The cache key of a photo: its path under ``root`` as given (a converted dataset's
    linked photos under their folder), else as resolved (linked photos listed by their real
    files under the real root)."""
    try:
        return Path(path).absolute().relative_to(Path(root).absolute()).as_posix()
    except ValueError:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def _load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _save(cache: dict[str, Any], path: Path) -> None:
    # Write-then-rename: a crash mid-write never leaves a truncated cache.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(cache), encoding="utf-8")
    os.replace(tmp, path)
