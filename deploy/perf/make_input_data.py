"""Write a perf_analyzer ``--input-data`` JSON file that sends real photos to ``gesture_ensemble``.

The ensemble's ``IMAGE`` input is a variable-size UINT8 ``[H, W, 3]`` tensor, so every entry
carries its own ``shape`` and the row-major RGB bytes base64-encoded (perf_analyzer's ``b64``
form, which it copies into the request as raw tensor bytes). Random data would hold no hands
and leave the detector's later steps and the classifier idle, which measures the wrong thing.

Runs in the serving image (Pillow and NumPy only), e.g. from docker-compose.yml's
``loadtest-data`` service:

    python3 deploy/perf/make_input_data.py samples/*.jpg --out /perf/gesture_ensemble.json
"""

from __future__ import annotations

import argparse
import base64
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

INPUT_NAME = "IMAGE"


def photo_entry(path: Path) -> dict[str, dict[str, object]]:
    """One perf_analyzer data entry: the photo as the ensemble decodes it (EXIF-upright RGB)."""
    with Image.open(path) as image:
        rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    return {
        INPUT_NAME: {
            "b64": base64.b64encode(np.ascontiguousarray(rgb).tobytes()).decode("ascii"),
            "shape": list(rgb.shape),
        }
    }


def input_data(photos: Sequence[Path]) -> dict[str, list[dict[str, dict[str, object]]]]:
    if not photos:
        raise ValueError("no photos given")
    return {"data": [photo_entry(Path(p)) for p in photos]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    data = input_data(args.photos)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data), encoding="utf-8")
    print(f"{args.out}: {len(data['data'])} photo(s) for input {INPUT_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
