"""Command-line inputs (files, folders, globs) -> the photo files to classify."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass(frozen=True)
class Expansion:
    files: list[Path]  # in argument order, folders sorted, no duplicates
    unmatched: list[str]  # arguments that named nothing usable


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def expand_inputs(args: Iterable[str]) -> Expansion:
    """Existing files are taken as given (any suffix: the user named them); folders are searched
    recursively for photos; anything else is a glob (``**`` recurses) whose photo matches count.
    """
    files: list[Path] = []
    seen: set[Path] = set()
    unmatched: list[str] = []

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(path)

    for arg in args:
        path = Path(arg)
        if path.is_file():
            add(path)
            continue
        if path.is_dir():
            found = _folder_images(path)
        else:
            found = []
            for match in sorted(glob.glob(arg, recursive=True)):
                hit = Path(match)
                if hit.is_dir():
                    found += _folder_images(hit)
                elif hit.is_file() and is_image_file(hit):
                    found.append(hit)
        if not found:
            unmatched.append(arg)
        for hit in found:
            add(hit)
    return Expansion(files, unmatched)
