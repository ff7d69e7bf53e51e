"""A small folder of real ``hagrid_hand_crops`` crops, the shape ``import-crops`` reads: the
chosen files linked (never copied) under ``dest`` with a ``manifest.csv`` of their rows."""

from __future__ import annotations

import csv
from pathlib import Path


def real_rows(shared_data: Path) -> tuple[Path, list[dict[str, str]]]:
    """The real folder and its manifest's rows."""
    real = shared_data / "hagrid_hand_crops"
    with (real / "manifest.csv").open(newline="", encoding="utf-8") as f:
        return real, list(csv.DictReader(f))


def link_crops(real: Path, rows: list[dict[str, str]], dest: Path) -> Path:
    """``dest`` holding ``rows``' crops (symlinks) and their manifest."""
    for row in rows:
        (dest / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        (dest / row["path"]).symlink_to(real / row["path"])
    with (dest / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dest
