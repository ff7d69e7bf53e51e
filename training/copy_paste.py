"""Copy-paste for the detector: many people's hands pasted onto real scenes.

The boxed photos come from few people and rooms; HaGRID's 35,000 hand crops come from thousands
of people, lights and cameras, but without their photos. Pasting crops onto boxed scenes
(Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for Instance
Segmentation", CVPR 2021; Dwibedi et al., "Cut, Paste and Learn", ICCV 2017) shows the detector
those hands in scenes. The crops are tight boxes without masks, so each is pasted as a
rectangle with feathered edges; so that a rectangle's edge cannot itself mean "hand", every
composite also gets pasted patches of *other* scenes, cut and blended the same way, without a
label (Dwibedi et al. found blending matters; the distractor patches are this project's answer
to the missing masks).

Written as an ultralytics dataset (``images/train``, ``labels/train``, ``data.yaml``) that
``gesture-train convert --source yolo:...:split=train`` merges with the real photos. A quarter
of the composites are turned by 90, 180 or 270 degrees (phones held sideways); boxes turn
exactly with them.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from numpy.typing import NDArray
from PIL import Image, ImageEnhance
from tqdm import tqdm

from gesture_recognition.images import shown_size, upright
from gesture_recognition.training.converters.yolo_txt import label_path_for, parse_label_file
from gesture_recognition.training.crops import MANIFEST

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class PasteConfig:
    images: int = 3000
    hands: tuple[int, int] = (1, 3)  # pasted hands per composite
    distractors: tuple[int, int] = (1, 2)  # unlabelled patches of other scenes per composite
    # Pasted hand's longer side as a fraction of the scene's shorter side (log-uniform).
    size: tuple[float, float] = (0.08, 0.45)
    feather: float = 0.08  # edge ramp, fraction of the patch's shorter side
    rotate90: float = 0.25  # share of composites turned by a multiple of 90 degrees
    # Share of a pasted patch, or of a box already there, that the two may have in common: a
    # small patch inside a big hand has a tiny IoU but hides a part of it.
    max_overlap: float = 0.1
    min_hand_side: int = 24  # smaller crops are too blurry once scaled up
    # HaGRID's boxes touch the hand; the other sources' boxes (people's, and the teacher's,
    # whose padding was chosen to match them: reports/teacher/padding_sweep.md) leave about a
    # tenth of the hand a side. A pasted hand's label is its patch grown by this much, into the
    # scene around it, so that every source teaches one box convention.
    box_padding: float = 0.1
    seed: int = 0


@dataclass
class PasteReport:
    images: int = 0
    hands: int = 0
    distractors: int = 0
    rotated: int = 0
    no_room: int = 0
    backgrounds: int = 0
    hand_sources: int = 0
    labels: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.images} composites from {self.backgrounds} scenes: {self.hands} hands pasted "
            f"(from {self.hand_sources} crops), {self.distractors} distractor patches, "
            f"{self.rotated} turned by 90/180/270, {self.no_room} pastes without room skipped"
        )


@dataclass(frozen=True)
class Scene:
    path: Path
    boxes: NDArray[np.float32]  # [N, 4] pixels


def read_scenes(image_dir: Path) -> list[Scene]:
    """Photos of an ultralytics split folder (``.../images/train``) with their boxes."""
    scenes = []
    for path in sorted(Path(image_dir).iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        with Image.open(path) as img:
            width, height = shown_size(img)
        label = label_path_for(path)
        boxes = []
        if label.is_file():
            parsed, problem = parse_label_file(label, width, height, None)
            if problem:
                continue
            boxes = [[b.x1, b.y1, b.x2, b.y2] for b in parsed]
        scenes.append(Scene(path, np.asarray(boxes, np.float32).reshape(-1, 4)))
    return scenes


def read_hand_crops(crops_dir: Path, split: str = "train", min_side: int = 24) -> list[Path]:
    """The crop files of one split of an ``import-crops`` manifest, at least ``min_side`` px."""
    out = []
    with (Path(crops_dir) / MANIFEST).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["split"] != split:
                continue
            path = Path(crops_dir) / row["path"]
            with Image.open(path) as img:
                if min(img.size) >= min_side:
                    out.append(path)
    return out


def feather_mask(width: int, height: int, feather: float) -> Image.Image:
    """An ``L`` mask, 255 inside, ramping linearly to 0 over the outer ``feather`` share."""
    ramp = max(1, round(min(width, height) * feather))
    x = np.minimum(np.arange(width), np.arange(width)[::-1]) + 1
    y = np.minimum(np.arange(height), np.arange(height)[::-1]) + 1
    alpha = np.minimum(np.minimum.outer(y, x) / ramp, 1.0)
    return Image.fromarray((alpha * 255).astype(np.uint8), "L")


def overlap_fraction(box: NDArray[np.float32], others: NDArray[np.float32]) -> float:
    """The largest intersection of ``box`` ``[1, 4]`` with any of ``others`` ``[M, 4]``, as a
    fraction of the smaller of the two areas (0 when there are none)."""
    if len(others) == 0:
        return 0.0
    x1 = np.maximum(box[0, 0], others[:, 0])
    y1 = np.maximum(box[0, 1], others[:, 1])
    x2 = np.minimum(box[0, 2], others[:, 2])
    y2 = np.minimum(box[0, 3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[0, 2] - box[0, 0]) * (box[0, 3] - box[0, 1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    smaller = np.maximum(np.minimum(area, areas), 1e-6)
    return float((inter / smaller).max())


def _place(
    rng: random.Random,
    scene_w: int,
    scene_h: int,
    w: int,
    h: int,
    taken: NDArray[np.float32],
    max_overlap: float,
) -> NDArray[np.float32] | None:
    for _ in range(20):
        x = rng.uniform(0, scene_w - w)
        y = rng.uniform(0, scene_h - h)
        box = np.array([[x, y, x + w, y + h]], np.float32)
        if overlap_fraction(box, taken) <= max_overlap:
            return box
    return None


def _grow(box: NDArray[np.float32], padding: float, width: int, height: int) -> NDArray[np.float32]:
    x1, y1, x2, y2 = (float(v) for v in box[0])
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    grown = [
        max(0.0, x1 - pad_x),
        max(0.0, y1 - pad_y),
        min(width, x2 + pad_x),
        min(height, y2 + pad_y),
    ]
    return np.array([grown], np.float32)


def _jitter(patch: Image.Image, rng: random.Random) -> Image.Image:
    # Mild photometric change: a pasted hand should not differ from the scene by colour alone.
    patch = ImageEnhance.Brightness(patch).enhance(rng.uniform(0.75, 1.25))
    patch = ImageEnhance.Contrast(patch).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Color(patch).enhance(rng.uniform(0.8, 1.2))


def rotate90(
    image: Image.Image, boxes: NDArray[np.float32], turns: int
) -> tuple[Image.Image, NDArray[np.float32]]:
    """Turn the image ``turns`` x 90 degrees counter-clockwise; boxes follow exactly."""
    b = boxes.copy()
    for _ in range(turns % 4):
        width = image.width
        image = image.transpose(Image.Transpose.ROTATE_90)
        # (x, y) -> (y, width - x) for a counter-clockwise quarter turn.
        b = np.stack([b[:, 1], width - b[:, 2], b[:, 3], width - b[:, 0]], axis=1)
    return image, b.astype(np.float32)


def compose(
    scene: Scene,
    hands: Sequence[Path],
    others: Sequence[Scene],
    cfg: PasteConfig,
    rng: random.Random,
    report: PasteReport,
) -> tuple[Image.Image, NDArray[np.float32]]:
    """One composite: the scene with pasted hands (labelled) and distractor patches (not)."""
    with Image.open(scene.path) as img:
        canvas = upright(img).convert("RGB")
    taken = scene.boxes.copy()
    labelled = [scene.boxes]
    short = min(canvas.size)
    lo, hi = (math.log(s * short) for s in cfg.size)
    for kind in ["hand"] * rng.randint(*cfg.hands) + ["patch"] * rng.randint(*cfg.distractors):
        side = math.exp(rng.uniform(lo, hi))
        if kind == "hand":
            with Image.open(rng.choice(hands)) as src:
                patch = upright(src).convert("RGB")
            if rng.random() < 0.5:
                patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        else:
            other = rng.choice(others)
            with Image.open(other.path) as src:
                source = upright(src).convert("RGB")
            w = h = max(8, round(min(side, *source.size)))
            x, y = rng.randint(0, source.width - w), rng.randint(0, source.height - h)
            cut = np.array([[x, y, x + w, y + h]], np.float32)
            if overlap_fraction(cut, other.boxes) > 0:
                continue  # a patch with a hand in it would be an unlabelled hand
            patch = source.crop((x, y, x + w, y + h))
            aspect = rng.uniform(0.6, 1.6)
            patch = patch.resize((max(8, round(w * aspect)), w))
        scale = side / max(patch.size)
        w, h = max(8, round(patch.width * scale)), max(8, round(patch.height * scale))
        if w >= canvas.width or h >= canvas.height:
            report.no_room += 1
            continue
        box = _place(rng, canvas.width, canvas.height, w, h, taken, cfg.max_overlap)
        if box is None:
            report.no_room += 1
            continue
        patch = _jitter(patch.resize((w, h), Image.Resampling.BILINEAR), rng)
        x, y = round(float(box[0, 0])), round(float(box[0, 1]))
        canvas.paste(patch, (x, y), feather_mask(w, h, cfg.feather))
        placed = np.array([[x, y, x + w, y + h]], np.float32)
        taken = np.concatenate([taken, placed])
        if kind == "hand":
            labelled.append(_grow(placed, cfg.box_padding, canvas.width, canvas.height))
            report.hands += 1
        else:
            report.distractors += 1
    boxes = np.concatenate(labelled).astype(np.float32)
    if rng.random() < cfg.rotate90:
        canvas, boxes = rotate90(canvas, boxes, rng.randint(1, 3))
        report.rotated += 1
    return canvas, boxes


def write_composites(
    scenes: Sequence[Scene], hands: Sequence[Path], out_dir: Path, cfg: PasteConfig
) -> PasteReport:
    """``cfg.images`` composites into an ultralytics dataset at ``out_dir`` (train split)."""
    if not scenes or not hands:
        raise ValueError(
            f"copy-paste needs scenes and hand crops (got {len(scenes)}, {len(hands)})"
        )
    out_dir = Path(out_dir)
    if (out_dir / "data.yaml").exists():
        raise FileExistsError(f"{out_dir / 'data.yaml'} exists: choose a new folder")
    images, labels = out_dir / "images" / "train", out_dir / "labels" / "train"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    rng = random.Random(cfg.seed)
    report = PasteReport(backgrounds=len(scenes), hand_sources=len(hands))
    for i in tqdm(range(cfg.images), desc="copy-paste composites", unit="img"):
        scene = scenes[i % len(scenes)] if i < len(scenes) else rng.choice(scenes)
        canvas, boxes = compose(scene, hands, scenes, cfg, rng, report)
        name = f"paste_{i:05d}"
        canvas.save(images / f"{name}.jpg", quality=92)
        width, height = canvas.size
        rows = [
            f"0 {(b[0] + b[2]) / 2 / width:.6f} {(b[1] + b[3]) / 2 / height:.6f} "
            f"{(b[2] - b[0]) / width:.6f} {(b[3] - b[1]) / height:.6f}"
            for b in boxes
        ]
        (labels / f"{name}.txt").write_text("\n".join(rows) + ("\n" if rows else ""), "utf-8")
        report.images += 1
    data = {"path": ".", "train": "images/train", "names": {0: "hand"}}
    (out_dir / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (out_dir / "copy_paste_report.txt").write_text(report.summary() + "\n", encoding="utf-8")
    return report
