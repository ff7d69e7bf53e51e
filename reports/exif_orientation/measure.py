"""End to end on the held-out scenes stored as phone cameras store them: the pixels as the
sensor saw them and an EXIF Orientation tag that tells viewers how to turn them upright.

    python reports/exif_orientation/measure.py            # the shipped models, in process

Each of the 208 held-out MachinesCanSee scenes is re-encoded once per tag: 1 (stored upright:
the baseline), 6 (a phone held upright: viewers turn it 90 degrees clockwise), 3 (upside down)
and 8 (turned the other way); as JPEG (quality 95, what cameras write) and as PNG (lossless, so
that once turned upright every copy holds exactly the baseline's pixels). Every copy shows the
same upright photo in a photo viewer or browser. Prints a JSON summary (``same_as_upright``: the
photos answered as the tag-1 copy of the same format was); per-photo answers go to ``--out``.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image

from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.training.evaluate_photos import Photo, scene_split, score_photos

ORIENTATION = 0x0112
# What a camera stores for each tag, given the upright photo: the inverse of the turn that
# viewers (and PIL's ImageOps.exif_transpose) apply to show it.
STORED = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def tagged(path: Path, tag: int, fmt: str) -> bytes:
    with Image.open(path) as img:
        upright = img.convert("RGB")
    turn = STORED[tag]
    stored = upright if turn is None else upright.transpose(turn)
    exif = Image.Exif()
    exif[ORIENTATION] = tag
    buf = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    stored.save(buf, fmt, exif=exif.tobytes(), **options)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="runs/exif_orientation.json")
    args = parser.parse_args()
    photos, label_map = scene_split(Path("../shared/data/hagrid_crops"), "test")  # the 208
    pipeline = GesturePipeline.from_dir("models")
    summary: dict[str, Any] = {}
    answers: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("JPEG", "PNG"):
            for tag in STORED:
                copies = []
                for n, photo in enumerate(photos):
                    target = Path(tmp) / f"{tag}_{n}.{fmt.lower()}"
                    target.write_bytes(tagged(photo.path, tag, fmt))
                    copies.append(Photo(photo.key, target, photo.truth))
                result = score_photos(pipeline, copies, label_map, desc=f"{fmt} {tag}")
                rows = result["predictions"]
                upright = answers.get(f"{fmt}_1", rows)
                summary[f"{fmt}_orientation_{tag}"] = {
                    "photos": len(copies),
                    "right": round(result["accuracy"] * len(copies)),
                    "accuracy": result["accuracy"],
                    "photos_without_hand": result["photos_without_hand"],
                    "same_as_upright": sum(
                        a["predicted"] == b["predicted"] and a["hands"] == b["hands"]
                        for a, b in zip(rows, upright, strict=True)
                    ),
                }
                answers[f"{fmt}_{tag}"] = rows
    Path(args.out).write_text(json.dumps({"summary": summary, "answers": answers}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
