"""Both arms of the merge-prior rule (README.md): the shipped MachinesCanSee classifier (HaGRID
probabilities summed) and the same graph with a uniform prior (averaged), built with
``gesture-train derive-classifier --served models --merge-prior uniform --out ARM``.

    python reports/classifier_merge/measure.py val   # the rule: validation crops and scenes
    python reports/classifier_merge/measure.py test  # after the decision: the 208 held-out
                                                     # scenes and the test crops
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from gesture_recognition.labels import load_label_map
from gesture_recognition.training.evaluate import evaluate_classifier
from gesture_recognition.training.evaluate_photos import (
    Photo,
    pipeline_for,
    scene_split,
    score_photos,
)

SCENES = Path("../shared/data/hagrid_crops")
ARMS = {"shipped": Path("models"), "uniform": Path("runs/cand/merge_uniform")}


def mcs_scenes(split: str) -> list[Photo]:
    """The scene photos of ``split``, their truth answered in the MachinesCanSee map."""
    photos, _ = scene_split(SCENES, split)
    mcs = load_label_map("mcs2021")
    out = []
    for photo in photos:
        truth = mcs.answer_for(photo.truth)
        if truth is None:
            raise ValueError(f"mcs2021 does not answer {photo.truth!r}")
        out.append(Photo(photo.key, photo.path, truth))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["val", "test"])
    args = parser.parse_args()
    photos = mcs_scenes(args.mode)
    crops_dir, crops_split = (
        ("runs/crops/hagrid_all", "val")
        if args.mode == "val"
        else ("runs/crops/hagrid_hand_crops", "test")
    )
    mcs = load_label_map("mcs2021")
    summary: dict[str, Any] = {}
    answers: dict[str, list[str]] = {}
    for arm, folder in ARMS.items():
        crops = evaluate_classifier(
            None, crops_dir, crops_split, classifier=pipeline_for("models", None, folder).classifier
        )
        scenes = score_photos(pipeline_for("models", None, folder), photos, mcs)
        rows = crops["predictions"]
        crops_right = sum(r["truth"] == r["predicted"] for r in rows)
        scenes_right = round(scenes["accuracy"] * len(photos))
        answers[arm] = [row["predicted"] for row in scenes["predictions"]]
        summary[arm] = {
            "crops": len(rows),
            "crops_right": crops_right,
            "crops_accuracy": crops["accuracy"],
            "crops_macro_f1": crops["macro_f1"],
            "crops_gesture_right": sum(
                r["truth"] == r["predicted"] for r in rows if r["truth"] != "no_gesture"
            ),
            "crops_gesture": sum(r["truth"] != "no_gesture" for r in rows),
            "scenes": len(photos),
            "scenes_right": scenes_right,
            "scenes_accuracy": scenes["accuracy"],
            "scenes_without_hand": scenes["photos_without_hand"],
        }
    changed = [
        {"photo": p.key, "truth": p.truth, "shipped": a, "uniform": b}
        for p, a, b in zip(photos, answers["shipped"], answers["uniform"], strict=True)
        if a != b
    ]
    summary["scenes_changed"] = changed
    out = Path(f"runs/merge_{args.mode}.json")
    out.write_text(json.dumps(summary, indent=1), "utf-8")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
