"""Run the hand detector over a photo folder once and keep its boxes.

Crops can then be re-cut (other expansion, other size) without re-detecting. The detector is
the exported ONNX model run through the same letterbox/decode code as the server, so cached
boxes are the boxes the server would find. Interrupted runs resume: photos already in the
cache are skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from gesture_recognition.images import InvalidImageError, load_image
from gesture_recognition.pipeline import detect_hands, load_detector

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# Save every N photos so an interruption loses little work.
SAVE_EVERY = 50


@dataclass(frozen=True)
class CachedDetections:
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32, photo pixels
    scores: np.ndarray  # [N] float32


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
    root = Path(root)
    detector = load_detector(models_dir, threads)
    if conf_threshold is not None:
        if not 0.0 <= conf_threshold <= 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
        detector.spec = replace(detector.spec, conf_threshold=conf_threshold)
    # The spec alone does not tell two trainings apart (same size, same threshold): resuming
    # a cache of the old weights would silently keep the old boxes.
    identity = {**detector.spec.to_dict(), "onnx_sha256": _sha256(detector_onnx(models_dir))}
    cache = _load(out_path) if Path(out_path).is_file() else None
    if cache is not None and cache.get("detector") != identity:
        raise ValueError(
            f"{out_path} was made by another detector; choose a new cache file or delete it"
        )
    if cache is None:
        cache = {"detector": identity, "root": str(root), "images": {}, "failed": {}}
    done: dict[str, Any] = cache["images"]
    failed: dict[str, str] = cache["failed"]
    todo = [p for p in (images or list_images(root)) if _rel(p, root) not in done]
    for i, path in enumerate(tqdm(todo, desc="detecting hands", unit="img")):
        rel = _rel(path, root)
        try:
            image = load_image(path)
        except (InvalidImageError, OSError) as exc:
            failed[rel] = str(exc)
            continue
        boxes, scores = detect_hands(detector, image)
        done[rel] = {
            "width": int(image.shape[1]),
            "height": int(image.shape[0]),
            "boxes": boxes.astype(float).tolist(),
            "scores": scores.astype(float).tolist(),
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
        )
    return out


def _rel(path: Path, root: Path) -> str:
    return Path(path).resolve().relative_to(root.resolve()).as_posix()


def _load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _save(cache: dict[str, Any], path: Path) -> None:
    # Write-then-rename: a crash mid-write never leaves a truncated cache.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(cache), encoding="utf-8")
    os.replace(tmp, path)
