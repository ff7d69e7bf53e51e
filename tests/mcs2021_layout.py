"""A small MachinesCanSee 2021 data root written from real HaGRID photos (never committed).

HaGRID crops stand in for video frames: each class's photos are cut into pseudo-videos of
``FRAMES_PER_VIDEO`` frames, and some videos mix ``no_gesture`` frames with a gesture, as
real recordings do before and after the hand moves.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

# Competition label -> HaGRID folder.
CLASS_FOLDERS = {
    "no_gesture": "no_gesture",
    "stop": "stop",
    "victory": "peace",
    "mute": "mute",
    "ok": "ok",
    "like": "like",
    "dislike": "dislike",
}
FRAMES_PER_VIDEO = 3


@dataclass(frozen=True)
class McsLayout:
    root: Path
    train: list[tuple[str, str, str]]  # frame_path, video_name, label
    test: list[str]  # frame_path, in test.csv order


def _photos(shared_data: Path, label: str) -> list[Path]:
    return sorted((shared_data / "hagrid_crops" / CLASS_FOLDERS[label]).glob("*.jpg"))


def write_mcs_layout(
    shared_data: Path, root: Path, videos_per_class: int = 2, test_per_class: int = 2
) -> McsLayout:
    """``root/train.csv``, ``root/test.csv`` and their frames, copied from hagrid_crops."""
    root.mkdir(parents=True, exist_ok=True)
    train: list[tuple[str, str, str]] = []
    test: list[str] = []
    # One distinct resting-hand photo per gesture, from the end of no_gesture's list.
    spare_no_gesture = _photos(shared_data, "no_gesture")[-(len(CLASS_FOLDERS) - 1) :]
    for k, label in enumerate(CLASS_FOLDERS):
        photos = _photos(shared_data, label)
        n_train = videos_per_class * FRAMES_PER_VIDEO
        for v in range(videos_per_class):
            video = f"{label}_{v:02d}"
            frames = [(p, label) for p in photos[v * FRAMES_PER_VIDEO : (v + 1) * FRAMES_PER_VIDEO]]
            if label != "no_gesture" and v == 0:
                # The hand at rest before the gesture: a mixed video.
                frames.insert(0, (spare_no_gesture[k - 1], "no_gesture"))
            for i, (photo, frame_label) in enumerate(frames):
                rel = f"train/{video}/frame_{i:03d}.jpg"
                _copy(photo, root / rel)
                train.append((rel, video, frame_label))
        for i, photo in enumerate(photos[n_train : n_train + test_per_class]):
            rel = f"test/{label}_{i}.jpg"
            _copy(photo, root / rel)
            test.append(rel)
    # Not sorted by name or class: answers.csv must keep this order, not invent one.
    test = test[1::2] + test[0::2]
    with (root / "train.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["frame_path", "video_name", "label"])
        writer.writerows(train)
    with (root / "test.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["frame_path"])
        writer.writerows([t] for t in test)
    return McsLayout(root, train, test)


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
