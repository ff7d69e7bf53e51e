"""Pack a detector dataset into one self-contained folder that can move to a GPU host.

The project's detector datasets point into ``../shared/data`` through symbolic links and
absolute paths (nothing is copied into the repository), so neither they nor a data.yaml that
lists several of them survive a move to another machine. :func:`pack_dataset` copies what the
chosen splits use -- each entry's images (optionally shrunk) and their YOLO labels -- into one
folder with a ``data.yaml`` of relative paths, which ultralytics and this project resolve from
the yaml's own folder wherever it lands. An entry listed several times (a source drawn four
times as often) is stored once and listed as often as before, so the packed dataset trains
exactly like the original. Shrinking is for transfers with a size limit: labels are normalised,
so they hold for the smaller image; train at an ``imgsz`` no larger than ``max_side``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, UnidentifiedImageError

from gesture_recognition.images import upright as shown_upright
from gesture_recognition.training.evaluate import (
    entry_images,
    label_path_for,
    read_data_yaml,
    split_entries,
)

MANIFEST = "pack.json"


@dataclass(frozen=True)
class PackedEntry:
    split: str
    folder: str  # relative to the pack's root; its images/ and labels/ hold the files
    source: str  # the entry the original data.yaml resolved to
    images: int
    labels: int  # images without a label file are backgrounds (no hand), as in ultralytics
    resized: int
    skipped: int  # listed images that are missing or unreadable, reported and left out


@dataclass(frozen=True)
class PackReport:
    data_yaml: Path
    entries: list[PackedEntry]
    total_bytes: int

    def summary(self) -> str:
        stored = {e.folder: e for e in self.entries}.values()
        lines = [
            f"{e.split}: {e.folder} <- {e.source}: {e.images} images ({e.labels} with labels, "
            f"{e.resized} shrunk, {e.skipped} skipped)"
            for e in self.entries
        ]
        images = sum(e.images for e in stored)
        lines.append(f"packed {images} images, {self.total_bytes / 1e6:.1f} MB -> {self.data_yaml}")
        return "\n".join(lines)


def pack_dataset(
    data_yaml: Path,
    out: Path,
    splits: Sequence[str] = ("train", "val"),
    max_side: int | None = None,
    quality: int = 90,
    progress: bool = True,
) -> PackReport:
    """Copy ``splits`` of ``data_yaml`` into ``out`` (new or empty) with a relative data.yaml."""
    if max_side is not None and max_side < 32:
        raise ValueError(f"max_side {max_side}: a detector image needs at least 32 pixels")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality {quality}: JPEG quality is 1-100")
    _, cfg = read_data_yaml(data_yaml)
    if "names" not in cfg:
        raise ValueError(f"{data_yaml} has no names: not a YOLO detector data.yaml")
    # Absolute but not resolved: an images folder reached through a link keeps its labels
    # beside it. The same folder listed twice is packed once.
    plan = [
        (split, Path(os.path.abspath(path)))
        for split in splits
        for path in split_entries(data_yaml, split)
    ]
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: pack into a new folder")
    out.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    packed: dict[Path, tuple[str, int, int, int, int]] = {}
    entries: list[PackedEntry] = []
    folders_of: Counter[str] = Counter()
    for split, source in plan:
        if source not in packed:
            folder = f"{split}{folders_of[split]}"
            folders_of[split] += 1
            images = entry_images(source)
            bar = tqdm(images, desc=f"{split} {source.name}", unit="img", disable=not progress)
            counts = _pack_entry(source, out / folder, max_side, quality, bar)
            packed[source] = (folder, *counts)
        folder, n, labels, resized, skipped = packed[source]
        entries.append(PackedEntry(split, folder, str(source), n, labels, resized, skipped))
    listing: dict[str, Any] = {
        split: [f"{e.folder}/images" for e in entries if e.split == split] for split in splits
    }
    listing["names"] = cfg["names"]
    target = out / "data.yaml"
    target.write_text(yaml.safe_dump(listing, sort_keys=False), encoding="utf-8")
    settings = {"source": str(data_yaml), "max_side": max_side, "quality": quality}
    manifest = {**settings, "entries": [asdict(e) for e in entries]}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return PackReport(target, entries, total)


def _pack_entry(
    source: Path, dest: Path, max_side: int | None, quality: int, bar: Any
) -> tuple[int, int, int, int]:
    """Pack the images ``bar`` (a tqdm over the entry's images) yields; the counts."""
    written: set[Path] = set()
    n = labels = resized = skipped = 0
    for image in bar:
        # A folder keeps its layout; a list's images (from anywhere) go side by side.
        rel = image.relative_to(source) if source.is_dir() else Path(image.name)
        target = dest / "images" / rel
        try:
            shrunk = _write_image(image, target, max_side, quality, written)
        except FileExistsError:
            raise
        except (UnidentifiedImageError, OSError) as exc:  # missing, unreadable, truncated
            skipped += 1
            bar.write(f"skipped {image}: {exc}")
            continue
        n += 1
        resized += shrunk
        label = label_path_for(image)
        if label.is_file():
            out_label = (dest / "labels" / rel).with_suffix(".txt")
            out_label.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(label, out_label)
            labels += 1
    return n, labels, resized, skipped


def _write_image(
    image: Path, target: Path, max_side: int | None, quality: int, written: set[Path]
) -> bool:
    """Copy (following links) or shrink ``image`` to ``target``; True if shrunk."""
    with Image.open(image) as img:
        # Labels describe the upright photo (ultralytics reads with EXIF orientation applied).
        upright = shown_upright(img)
        shrink = max_side is not None and max(upright.size) > max_side
        if shrink:
            assert max_side is not None
            scale = max_side / max(upright.size)
            size = (max(1, round(upright.width * scale)), max(1, round(upright.height * scale)))
            target = target.with_suffix(".jpg")
        if target.with_suffix("") in written:
            raise FileExistsError(
                f"two images would both be packed as {target.with_suffix('')}.*: "
                "rename one (a list's images are stored side by side by file name)"
            )
        written.add(target.with_suffix(""))
        target.parent.mkdir(parents=True, exist_ok=True)
        if shrink:
            small = upright.convert("RGB").resize(size, Image.Resampling.BICUBIC)
            small.save(target, "JPEG", quality=quality)
            return True
    shutil.copyfile(image, target)
    return False
