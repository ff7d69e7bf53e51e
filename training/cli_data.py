"""``gesture-train`` data commands: hand boxes (detect, teacher, pseudo-labels, copy-paste,
datasets) and classifier crops (cut, import, merge). Registered by ``training.cli``."""

from __future__ import annotations

import argparse
from pathlib import Path

from gesture_recognition.arguments import positive_int
from gesture_recognition.boxes import CropConfig
from gesture_recognition.labels import load_label_map
from gesture_recognition.training.near_duplicates import DEFAULT_THRESHOLD as DUPLICATE_THRESHOLD


def _cmd_detect(args: argparse.Namespace) -> int:
    from gesture_recognition.training.detect_cache import cache_detections

    root = Path(args.root)
    if args.teacher and (args.models_dir or args.conf is not None):
        raise ValueError("--teacher labels with MediaPipe: --models-dir and --conf do not apply")
    images = None
    if args.layout == "mcs2021":
        from gesture_recognition.mcs2021 import read_train_csv

        # Only the labelled frames: test frames are answered by the server, never trained on.
        frames = read_train_csv(root, Path(args.train_csv) if args.train_csv else None)
        images = [root / f.frame_path for f in frames]
    if args.teacher:
        from gesture_recognition.training.teacher import run_teacher

        cache = run_teacher(root, Path(args.out), args.teacher_padding, images)
    else:
        cache = cache_detections(
            args.models_dir, root, Path(args.out), images=images, conf_threshold=args.conf
        )
    cached = cache["images"]
    with_hand = sum(1 for e in cached.values() if e["boxes"])
    print(
        f"{len(cached)} photos cached in {args.out}: {with_hand} with at least one hand, "
        f"{len(cache['failed'])} unreadable"
    )
    return 0


def _cmd_crops(args: argparse.Namespace) -> int:
    from gesture_recognition.training.crops import (
        cut_crops,
        folder_labels,
        mcs2021_labels,
        voc_labels,
    )

    if args.no_hand == "whole" and args.layout == "voc":
        raise ValueError("--no-hand whole needs photo-level labels (--layout folders or mcs2021)")

    root = Path(args.root)
    if args.layout == "folders":
        labels = folder_labels(root, root / "manifest.csv")
        fractions = (args.val, args.test)
    elif args.layout == "mcs2021":
        # Split by video_name: a video's frames never sit on both sides.
        labels = mcs2021_labels(root, Path(args.train_csv) if args.train_csv else None)
        fractions = (args.val, args.test)
    else:
        labels = voc_labels(root)
        # VOC sets here bring their own test split; only validation is carved out.
        fractions = (args.val, 0.0)
    label_map = load_label_map(args.label_map)
    report = cut_crops(
        Path(args.cache),
        labels,
        Path(args.out),
        CropConfig(scale=args.scale, square=not args.no_square),
        source=args.source or root.name,
        fractions=fractions,
        seed=args.seed,
        label_filter=label_map.contains,
        no_hand=args.no_hand,
    )
    print(report.summary())
    return 0


def _cmd_pseudo_labels(args: argparse.Namespace) -> int:
    from gesture_recognition.training import pseudo_labels as pl
    from gesture_recognition.training import review_sheets as rs

    if args.action == "export":
        if not args.cache:
            raise ValueError("pseudo-labels export needs --cache")
        export = pl.export_pseudo_labels(
            Path(args.cache),
            Path(args.out),
            args.conf,
            low_label=args.low_label,
            dedupe_iou=args.dedupe_iou,
            max_boxes=args.max_boxes,
        )
        print(export.summary())
        return 0
    if not args.reviewed:
        raise ValueError(f"pseudo-labels {args.action} needs --reviewed EXPORT_DIR")
    exclude = []
    if args.exclude_crops:
        from gesture_recognition.training.evaluate import held_out_photos

        # The end-to-end evaluation scores these photos: the detector must not train on them.
        exclude = held_out_photos(args.exclude_crops, "test")
    if args.exclude_label_map or args.exclude_list:
        import json

        summary = json.loads((Path(args.reviewed) / pl.SUMMARY_JSON).read_text("utf-8"))
        root = Path(summary["root"])
    if args.exclude_label_map:
        from gesture_recognition.training.evaluate_photos import photo_labels

        # Photos of the classes the end-to-end evaluation scores (the MachinesCanSee ones of
        # hagrid_crops) are held out of all training.
        held_out = load_label_map(args.exclude_label_map)
        labels = photo_labels(root)
        exclude += [rel for rel, label in labels.items() if held_out.contains(label)]
    for listed in args.exclude_list or ():
        # Audited bad labels (e.g. training/reviews/sld_teacher_audit.csv): a path that names no
        # photo of the source is a wrong file or root, not a photo to skip silently.
        paths = pl.read_path_column(listed)
        missing = [p for p in paths if not (root / p).is_file()]
        if missing:
            raise ValueError(
                f"{listed}: {len(missing)} paths are not photos under {root}: {missing[:3]}"
            )
        exclude += paths
    if args.action == "sheets":
        sheets = rs.write_sheets(Path(args.reviewed), Path(args.out), skip=set(exclude))
        print(f"wrote {len(sheets)} sheets and {rs.INDEX_CSV} to {args.out}")
    elif args.action == "apply":
        if not args.decisions:
            raise ValueError("pseudo-labels apply needs --decisions CSV")
        applied = rs.apply_decisions(Path(args.reviewed), Path(args.decisions), Path(args.out))
        print(applied)
    else:
        written, imported = pl.build_finetune_dataset(
            Path(args.reviewed),
            Path(args.out),
            exclude=exclude,
            voc_dir=args.voc_dir,
            keep_empty=args.keep_empty,
        )
        print(imported.summary())
        print(written.summary())
        if args.with_data:
            combined = pl.write_combined_data_yaml(
                [*args.with_data, Path(args.out) / "data.yaml"], Path(args.out) / "combined.yaml"
            )
            print(f"wrote {combined}: train on it with `gesture-train train-detector --data`")
    return 0


def _cmd_import_crops(args: argparse.Namespace) -> int:
    from gesture_recognition.labels import load_label_map
    from gesture_recognition.training.crop_import import (
        import_crops,
        read_mapping,
        read_test_list,
    )
    from gesture_recognition.training.near_duplicates import find_near_duplicates, write_matches

    out = Path(args.out)
    excluded: set[str] = set()
    if args.held_out_cache:
        if not args.held_out_photos:
            raise ValueError("--held-out-cache needs --held-out-photos (the photos it was made on)")
        matches = find_near_duplicates(
            Path(args.root),
            Path(args.held_out_photos),
            [Path(c) for c in args.held_out_cache],
            args.duplicate_threshold,
        )
        excluded = {m.group for m in matches}
        write_matches(matches, out / "near_duplicates.csv")
        print(f"{len(matches)} crops match a held-out photo's hand: {len(excluded)} groups dropped")
    report = import_crops(
        Path(args.root),
        out,
        load_label_map(args.label_map),
        source=args.source or Path(args.root).name,
        label_column=args.label_column,
        mapping=read_mapping(Path(args.mapping)) if args.mapping else None,
        fractions=(args.val, args.test),
        seed=args.seed,
        split=args.split,
        exclude_groups=excluded,
        test_items=read_test_list(Path(args.test_list)) if args.test_list else None,
    )
    print(report.summary())
    return 0


def _cmd_merge_crops(args: argparse.Namespace) -> int:
    from gesture_recognition.training.crop_import import merge_crop_folders

    rows = merge_crop_folders([Path(f) for f in args.folders], Path(args.out))
    print(f"{rows} crops listed in {Path(args.out) / 'manifest.csv'}")
    return 0


def _cmd_copy_paste(args: argparse.Namespace) -> int:
    from gesture_recognition.training.copy_paste import (
        PasteConfig,
        read_hand_crops,
        read_scenes,
        write_composites,
    )

    scenes = [s for folder in args.scenes for s in read_scenes(Path(folder))]
    hands = read_hand_crops(Path(args.hands), split=args.split)
    report = write_composites(
        scenes, hands, Path(args.out), PasteConfig(images=args.images, seed=args.seed)
    )
    print(report.summary())
    print(f"dataset: {Path(args.out) / 'data.yaml'} (merge with convert --source yolo:...)")
    return 0


def _cmd_zoom_out(args: argparse.Namespace) -> int:
    from gesture_recognition.training.zoomed_sets import write_zoomed_set

    report = write_zoomed_set(args.data, args.split, args.zoom, Path(args.out), seed=args.seed)
    print(report.summary())
    print(f"dataset: {Path(args.out) / 'data.yaml'} (evaluate --detector-data NAME=...)")
    return 0


def _cmd_combine_datasets(args: argparse.Namespace) -> int:
    from gesture_recognition.training.pseudo_labels import write_combined_data_yaml

    path = write_combined_data_yaml([Path(d) for d in args.datasets], Path(args.out))
    print(f"wrote {path}: train on it with `gesture-train train-detector --data`")
    return 0


def _cmd_pack_dataset(args: argparse.Namespace) -> int:
    from gesture_recognition.training.pack_dataset import pack_dataset

    report = pack_dataset(
        Path(args.data_yaml),
        Path(args.out),
        splits=args.splits,
        max_side=args.max_side,
        quality=args.quality,
        progress=not args.no_progress,
    )
    print(report.summary())
    return 0


def _cmd_teacher_sweep(args: argparse.Namespace) -> int:
    from gesture_recognition.training.detector_sets import load_set, padding_sweep, write_sweep

    sets = []
    for item in args.set:
        name, _, rest = item.partition("=")
        source, _, cache = rest.rpartition(":")
        if not name or not source or not cache:
            raise ValueError(f"--set {item!r}: expected NAME=PHOTOS_OR_DATA_YAML:PADDING0_CACHE")
        sets.append((load_set(name, Path(source)), Path(cache)))
    paddings = [float(p) for p in args.paddings.split(",")]
    rows = padding_sweep(sets, paddings)
    print(write_sweep(rows, Path(args.out)).read_text(encoding="utf-8"))
    return 0


def add_data_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The data commands' sub-parsers."""
    p = sub.add_parser("detect", help="cache detector boxes for every photo under a folder")
    p.add_argument("root")
    p.add_argument("--out", required=True, help="cache file (JSON); resumes if it exists")
    p.add_argument("--models-dir", default=None, help="folder with hand_detector.onnx/.json")
    p.add_argument(
        "--layout",
        choices=["folders", "mcs2021"],
        default="folders",
        help="folders: every photo under root; mcs2021: the frames of <root>/train.csv",
    )
    p.add_argument("--train-csv", help="mcs2021: train.csv elsewhere than <root>/train.csv")
    p.add_argument(
        "--conf",
        type=float,
        default=None,
        help="keep boxes down to this score instead of the served threshold (for pseudo-labels)",
    )
    p.add_argument(
        "--teacher",
        choices=["mediapipe"],
        help="label with a pretrained teacher (MediaPipe Hands, its own .venv-teacher) instead",
    )
    p.add_argument(
        "--teacher-padding",
        type=float,
        default=0.1,
        help="teacher box: landmark rectangle grown by this fraction of its size a side",
    )
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("crops", help="cut topmost-hand crops from a detection cache")
    p.add_argument("root", help="the photo folder the cache was made from")
    p.add_argument("--cache", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--layout",
        choices=["folders", "voc", "mcs2021"],
        default="folders",
        help="folders: <root>/<label>/<photo> (grouped by a manifest's group/video_name/user_id "
        "column if any); voc: photos with VOC box labels; mcs2021: <root>/train.csv "
        "(frame_path,video_name,label), split by video",
    )
    p.add_argument("--train-csv", help="mcs2021: train.csv elsewhere than <root>/train.csv")
    p.add_argument("--label-map", default="mcs2021")
    p.add_argument("--scale", type=float, default=CropConfig().scale)
    p.add_argument("--no-square", action="store_true")
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default=None)
    p.add_argument(
        "--no-hand",
        choices=["skip", "whole"],
        default="skip",
        help="photos without a detected hand: skip, or use the whole photo "
        "(only for datasets framed around one hand)",
    )
    p.set_defaults(func=_cmd_crops)

    p = sub.add_parser("pseudo-labels", help="detector pseudo-labels: export for review, rebuild")
    p.add_argument(
        "action",
        choices=["export", "sheets", "apply", "dataset"],
        help="export: cache -> VOC/YOLO for review; sheets: numbered contact sheets to review "
        "by eye; apply: a decisions CSV -> corrected VOC folder; dataset: reviewed labels -> "
        "fine-tuning dataset",
    )
    p.add_argument("--cache", help="detection cache (export)")
    p.add_argument("--reviewed", help="the export folder (sheets, apply, dataset)")
    p.add_argument("--decisions", help="apply: CSV path,keep or tile,keep (see review_sheets)")
    p.add_argument("--voc-dir", help="dataset: corrected VOC folder (default <reviewed>/voc)")
    p.add_argument(
        "--with-data",
        action="append",
        default=[],
        help="dataset: also write combined.yaml training on this data.yaml too (repeatable)",
    )
    p.add_argument("--conf", type=float, default=0.5, help="boxes below go to the review list")
    p.add_argument(
        "--low-label",
        help="also write boxes below --conf into the VOC files under this name, for the reviewer "
        "to rename to 'hand' or delete (left unrenamed, they are dropped at import)",
    )
    p.add_argument(
        "--dedupe-iou",
        type=float,
        default=None,
        help="export: drop a box overlapping a better one by more than this IoU",
    )
    p.add_argument("--max-boxes", type=int, default=None, help="export: at most N boxes a photo")
    p.add_argument(
        "--exclude-crops", help="crop folder whose test photos are left out (sheets, dataset)"
    )
    p.add_argument(
        "--exclude-label-map",
        help="leave out the photos whose label this map knows (sheets, dataset), e.g. mcs2021",
    )
    p.add_argument(
        "--exclude-list",
        action="append",
        metavar="CSV",
        help="leave out the photos of this CSV's path column (sheets, dataset; repeatable), e.g. "
        "training/reviews/sld_teacher_audit.csv",
    )
    p.add_argument(
        "--keep-empty",
        action="store_true",
        help="keep photos with no box (only after review confirmed they show no hand)",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_pseudo_labels)

    p = sub.add_parser(
        "import-crops",
        help="a folder of labelled hand crops (manifest + group key, or label folders) -> crops",
    )
    p.add_argument("root", help="the crop folder: manifest.csv (path, label, group) or <label>/*")
    p.add_argument("--out", required=True, help="new folder for the crops manifest")
    p.add_argument("--label-map", default="hagrid", help="labels the crops must belong to")
    p.add_argument("--label-column", default="label", help="manifest column holding the label")
    p.add_argument("--mapping", help="JSON {source label: label}, e.g. digits -> gestures")
    p.add_argument("--source", help="name for the report and the group keys (default: folder)")
    p.add_argument("--split", choices=["train", "val", "test"], help="all crops into one split")
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.1)
    p.add_argument(
        "--test-list",
        help="file of crop paths (relative to root) whose groups form the test split, "
        "e.g. an earlier model's held-out crops; the rest is split by --val",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out-photos", help="photos kept for tests (e.g. hagrid_crops)")
    p.add_argument(
        "--held-out-cache",
        action="append",
        help="detection cache(s) of those photos: crops showing one of their hands are dropped",
    )
    p.add_argument("--duplicate-threshold", type=float, default=DUPLICATE_THRESHOLD)
    p.set_defaults(func=_cmd_import_crops)

    p = sub.add_parser("merge-crops", help="several crops folders -> one manifest")
    p.add_argument("folders", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_merge_crops)

    p = sub.add_parser(
        "copy-paste", help="hand crops pasted onto boxed scenes -> an extra detector dataset"
    )
    p.add_argument(
        "--scenes", action="append", required=True, help="an images/train folder of a dataset"
    )
    p.add_argument("--hands", required=True, help="import-crops folder (its --split is pasted)")
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="train",
        help="which crops to paste (val: composites to validate on, with val scenes)",
    )
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_copy_paste)

    p = sub.add_parser(
        "zoom-out",
        help="a labelled split with every photo shrunk onto a grey canvas of its size "
        "(smaller hands, true boxes) -> a detector set to evaluate on",
    )
    p.add_argument("data", help="data.yaml of the set")
    p.add_argument("--split", default="test")
    p.add_argument("--zoom", type=float, required=True, help="shrink each photo to 1/ZOOM")
    p.add_argument("--seed", type=int, default=0, help="where on the canvas each photo goes")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_zoom_out)

    p = sub.add_parser(
        "combine-datasets",
        help="one data.yaml training on several detector datasets (the first gives the test split)",
    )
    p.add_argument("datasets", nargs="+", help="data.yaml files")
    p.add_argument("--out", required=True, help="the combined data.yaml")
    p.set_defaults(func=_cmd_combine_datasets)

    p = sub.add_parser(
        "pack-dataset",
        help="a detector data.yaml's photos and labels in one folder that moves to a GPU host",
    )
    p.add_argument("data_yaml", help="data.yaml (folders, .txt lists, repeated entries)")
    p.add_argument("--out", required=True, help="new or empty folder")
    p.add_argument("--splits", nargs="+", default=["train", "val"])
    p.add_argument(
        "--max-side",
        type=positive_int,
        default=None,
        help="shrink larger photos to this long side (JPEG); train at an imgsz no larger",
    )
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of shrunk photos")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_pack_dataset)

    p = sub.add_parser(
        "teacher-sweep",
        help="choose the teacher's box padding: bare landmark boxes grown, scored on true boxes",
    )
    p.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="NAME=PHOTOS:CACHE",
        help="photos with true boxes (images folder or data.yaml) and a --teacher-padding 0 cache",
    )
    p.add_argument("--paddings", default="0,0.05,0.1,0.15,0.2,0.25")
    p.add_argument("--out", required=True, help="markdown table (also printed)")
    p.set_defaults(func=_cmd_teacher_sweep)
