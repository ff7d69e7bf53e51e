"""Contact sheets for reviewing pseudo-labels by eye, and applying the reviewer's decisions.

A labelling tool (LabelImg, CVAT) is the way to correct boxes; for a few hundred photos whose
boxes only need a yes/no, a grid of numbered thumbnails is much faster. :func:`write_sheets`
draws every exported photo with its boxes numbered in file order (``hand`` green, the export's
``low_label`` orange) and writes ``sheets/index.csv`` (tile id -> photo). The reviewer writes a
decisions CSV::

    path,keep
    call/hagrid_..._00002.jpg,2        # box 2 is a hand; every other box goes
    call/hagrid_..._00003.jpg,         # no box is a hand: the photo leaves the dataset
    call/hagrid_..._00006.jpg,0 1

:func:`apply_decisions` writes the corrected VOC files (kept boxes renamed ``hand``, the rest
deleted) to a new folder, which ``pseudo-labels dataset --voc-dir`` reads like a labelling
tool's output. Photos the CSV does not name keep their ``hand`` boxes and lose the unsure ones
(what the import does anyway), so the CSV only needs the photos the reviewer changed.
"""

from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from tqdm import tqdm

from gesture_recognition.images import upright
from gesture_recognition.training.converters.common import resolve_inside
from gesture_recognition.training.pseudo_labels import HAND, SUMMARY_JSON

TILE = 300
COLUMNS = 5
ROWS = 4
# One colour per box number, so overlapping boxes stay tellable apart on a thumbnail.
COLOURS = ((0, 230, 0), (255, 140, 0), (230, 0, 230), (0, 200, 255), (255, 255, 0))
INDEX_CSV = "index.csv"


@dataclass(frozen=True)
class VocBox:
    label: str
    box: tuple[int, int, int, int]


def read_voc_boxes(xml_path: Path) -> list[VocBox]:
    """The boxes of a VOC file in file order: the numbers drawn on the sheets."""
    root = ET.parse(xml_path).getroot()
    out = []
    for obj in root.iter("object"):
        bnd = obj.find("bndbox")
        if bnd is None:
            continue
        box = tuple(int(float(bnd.findtext(k, "0"))) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append(VocBox((obj.findtext("name") or "").strip(), box))  # type: ignore[arg-type]
    return out


def _summary(export_dir: Path) -> dict[str, Any]:
    return json.loads((export_dir / SUMMARY_JSON).read_text(encoding="utf-8"))


def write_sheets(
    export_dir: str | Path,
    out_dir: str | Path | None = None,
    skip: set[str] | None = None,
    columns: int = COLUMNS,
    rows: int = ROWS,
) -> list[Path]:
    """PNG grids of the exported photos with numbered boxes; ``skip``: photos not to show."""
    export_dir = Path(export_dir)
    summary = _summary(export_dir)
    root = Path(str(summary["root"]))
    photos = [p for p in summary["images"] if p not in (skip or set())]
    out = Path(out_dir) if out_dir is not None else export_dir / "sheets"
    out.mkdir(parents=True, exist_ok=True)
    per_sheet = columns * rows
    sheets: list[Path] = []
    with (out / INDEX_CSV).open("w", newline="", encoding="utf-8") as f:
        index = csv.writer(f)
        index.writerow(["tile", "sheet", "path", "boxes"])
        for s in tqdm(range(math.ceil(len(photos) / per_sheet)), desc="review sheets"):
            sheet = Image.new("RGB", (columns * TILE, rows * TILE), "white")
            for i, rel in enumerate(photos[s * per_sheet : (s + 1) * per_sheet]):
                tile_id = s * per_sheet + i
                boxes = read_voc_boxes(export_dir / "voc" / Path(rel).with_suffix(".xml"))
                tile = _tile(resolve_inside(root, rel), boxes, tile_id)
                sheet.paste(tile, ((i % columns) * TILE, (i // columns) * TILE))
                index.writerow([tile_id, s, rel, len(boxes)])
            path = out / f"sheet_{s:03d}.png"
            sheet.save(path)
            sheets.append(path)
    return sheets


def _tile(image_path: Path, boxes: list[VocBox], tile_id: int) -> Image.Image:
    with Image.open(image_path) as im:
        photo = upright(im).convert("RGB")  # the boxes are the upright photo's
    scale = (TILE - 4) / max(photo.size)
    photo = photo.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))))
    draw = ImageDraw.Draw(photo)
    for n, vb in enumerate(boxes):
        colour = COLOURS[n % len(COLOURS)]
        x1, y1, x2, y2 = (v * scale for v in vb.box)
        # A solid frame is a box the detector was sure of; a thin one an unsure one.
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=3 if vb.label == HAND else 1)
        draw.rectangle((x1 + 2, y1 + 2, x1 + 16, y1 + 16), fill=colour)
        draw.text((x1 + 5, y1 + 3), str(n), fill=(0, 0, 0))
    tile = Image.new("RGB", (TILE, TILE), (40, 40, 40))
    tile.paste(photo, (2, 2))
    ImageDraw.Draw(tile).rectangle((0, TILE - 14, 40, TILE), fill=(255, 255, 255))
    ImageDraw.Draw(tile).text((2, TILE - 13), f"#{tile_id}", fill=(0, 0, 0))
    return tile


def read_index(sheets_dir: str | Path) -> dict[int, str]:
    """Tile id -> photo, from the index written with the sheets."""
    with (Path(sheets_dir) / INDEX_CSV).open(newline="", encoding="utf-8") as f:
        return {int(row["tile"]): row["path"] for row in csv.DictReader(f)}


def read_decisions(path: str | Path, tiles: dict[int, str] | None = None) -> dict[str, set[int]]:
    """``path,keep`` (or ``tile,keep`` with the sheets' ``tiles`` index) rows -> photo ->
    indices of the boxes that are hands."""
    out: dict[str, set[int]] = {}
    with Path(path).open(newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.DictReader(f), start=2):
            rel = (row.get("path") or "").strip()
            tile = (row.get("tile") or "").strip()
            if not rel and tile:
                if tiles is None:
                    raise ValueError(f"{path}:{line_no}: tile ids need the sheets' {INDEX_CSV}")
                if not tile.isdigit() or int(tile) not in tiles:
                    raise ValueError(f"{path}:{line_no}: no tile {tile!r} on the sheets")
                rel = tiles[int(tile)]
            if not rel:
                raise ValueError(f"{path}:{line_no}: a row without a path or tile")
            if rel in out:
                raise ValueError(f"{path}:{line_no}: {rel} decided twice")
            try:
                out[rel] = {int(v) for v in (row.get("keep") or "").split()}
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: keep must be box numbers: {exc}") from exc
    return out


@dataclass
class DecisionReport:
    photos: int = 0
    changed: int = 0
    boxes_kept: int = 0
    boxes_deleted: int = 0
    photos_without_box: int = 0


def apply_decisions(
    export_dir: str | Path,
    decisions_csv: str | Path,
    out_voc: str | Path,
    sheets_dir: str | Path | None = None,
) -> DecisionReport:
    """Corrected copies of the export's VOC files under ``out_voc`` (see module doc)."""
    export_dir = Path(export_dir)
    sheets = Path(sheets_dir) if sheets_dir is not None else export_dir / "sheets"
    tiles = read_index(sheets) if (sheets / INDEX_CSV).is_file() else None
    decisions = read_decisions(decisions_csv, tiles)
    summary = _summary(export_dir)
    images = set(summary["images"])
    unknown = sorted(set(decisions) - images)
    if unknown:
        raise ValueError(f"{len(unknown)} decided photos are not in the export, e.g. {unknown[0]}")
    out = Path(out_voc)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new folder")
    # Check every decision before writing anything: a typo must not leave half a folder.
    for rel, chosen in decisions.items():
        n_boxes = len(read_voc_boxes(export_dir / "voc" / Path(rel).with_suffix(".xml")))
        bad = sorted(k for k in chosen if not 0 <= k < n_boxes)
        if bad:
            raise ValueError(f"{rel}: no box {bad[0]} (it has {n_boxes})")
    report = DecisionReport()
    for rel in sorted(images):
        src = export_dir / "voc" / Path(rel).with_suffix(".xml")
        tree = ET.parse(src)
        root = tree.getroot()
        objects = list(root.iter("object"))
        keep = decisions.get(rel)
        report.changed += keep is not None
        for n, obj in enumerate(objects):
            is_hand = (obj.findtext("name") or "").strip() == HAND
            if (n in keep) if keep is not None else is_hand:
                name = obj.find("name")
                assert name is not None
                name.text = HAND
                report.boxes_kept += 1
            else:
                root.remove(obj)
                report.boxes_deleted += 1
        report.photos += 1
        report.photos_without_box += not root.findall("object")
        dst = out / Path(rel).with_suffix(".xml")
        dst.parent.mkdir(parents=True, exist_ok=True)
        tree.write(dst, encoding="utf-8", xml_declaration=False)
    return report
