"""``gesture-train``: every training step of the product as one command-line tool.

gesture-train convert           hand-box datasets -> one YOLO detector dataset
gesture-train train-detector    train (or --resume) the YOLO hand detector
gesture-train export-detector   checkpoint -> hand_detector.onnx/.json (verified)
gesture-train detect            run the ONNX detector over photos, cache the boxes
                                (--layout mcs2021: the frames of a MachinesCanSee train.csv)
gesture-train crops             cut classifier crops (topmost hand, expanded) from a cache,
                                split train/val/test by group (video, person) when known
gesture-train train-classifier  train the timm classifier on crops, export ONNX (verified)
gesture-train evaluate          detector mAP, classifier and end-to-end metrics -> report
gesture-train pseudo-labels     export / import detector pseudo-labels for review
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gesture_recognition.boxes import CropConfig
from gesture_recognition.labels import load_label_map
from gesture_recognition.training.near_duplicates import DEFAULT_THRESHOLD as DUPLICATE_THRESHOLD


def _cmd_train_detector(args: argparse.Namespace) -> int:
    from gesture_recognition.training.detector import (
        DetectorTrainConfig,
        parse_augmentation,
        resume_detector,
        train_detector,
    )

    if args.resume:
        best = resume_detector(Path(args.resume))
    else:
        if args.data is None:
            raise SystemExit("train-detector needs --data DATA_YAML (or --resume LAST_PT)")
        best = train_detector(
            DetectorTrainConfig(
                data=Path(args.data),
                model=args.model,
                imgsz=args.imgsz,
                epochs=args.epochs,
                hours=args.hours,
                batch=args.batch,
                device=args.device,
                project=Path(args.project),
                name=args.name,
                seed=args.seed,
                patience=args.patience,
                fraction=args.fraction,
                augment=parse_augmentation(args.aug),
                lr0=args.lr0,
            )
        )
    print(f"best checkpoint: {best}")
    return 0


def _cmd_rebuild_detector(args: argparse.Namespace) -> int:
    from gesture_recognition.training.detect_cache import list_images
    from gesture_recognition.training.warm_start import rebuild_detector, save_checkpoint

    photos = list_images(Path(args.photos))
    if not photos:
        raise FileNotFoundError(f"no photos under {args.photos}")
    step = max(1, len(photos) // args.limit)
    chosen = photos[::step][: args.limit]
    model, report = rebuild_detector(Path(args.onnx), args.model, chosen, args.imgsz)
    path = save_checkpoint(model, Path(args.out), args.model, args.imgsz)
    print(
        f"wrote {path}: {report.loaded} parameters from {Path(args.onnx).name}, "
        f"{report.copied_heads} one-to-many head parameters copied from the one-to-one head; "
        f"max |rebuilt - ONNX| {report.max_abs_diff:.2e} on {report.photos} photos"
    )
    return 0


def _cmd_export_detector(args: argparse.Namespace) -> int:
    from gesture_recognition.export.onnx_export import export_detector

    path = export_detector(
        args.checkpoint,
        args.out,
        imgsz=args.imgsz,
        max_batch=args.max_batch,
        conf_threshold=args.conf,
    )
    print(f"wrote {path}")
    return 0


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


def _cmd_import_crops(args: argparse.Namespace) -> int:
    from gesture_recognition.labels import load_label_map
    from gesture_recognition.training.crop_import import import_crops, read_mapping
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
    )
    print(report.summary())
    return 0


def _cmd_copy_paste(args: argparse.Namespace) -> int:
    from gesture_recognition.training.copy_paste import (
        PasteConfig,
        read_hand_crops,
        read_scenes,
        write_composites,
    )

    scenes = [s for folder in args.scenes for s in read_scenes(Path(folder))]
    hands = read_hand_crops(Path(args.hands), split="train")
    report = write_composites(
        scenes, hands, Path(args.out), PasteConfig(images=args.images, seed=args.seed)
    )
    print(report.summary())
    print(f"dataset: {Path(args.out) / 'data.yaml'} (merge with convert --source yolo:...)")
    return 0


def _cmd_derive_classifier(args: argparse.Namespace) -> int:
    from gesture_recognition.training.classifier_merge import export_merged

    path = export_merged(Path(args.checkpoint), load_label_map(args.label_map), Path(args.out))
    print(f"wrote {path} (label map {args.label_map}, merged from the checkpoint's classes)")
    return 0


def _cmd_merge_crops(args: argparse.Namespace) -> int:
    from gesture_recognition.training.crop_import import merge_crop_folders

    rows = merge_crop_folders([Path(f) for f in args.folders], Path(args.out))
    print(f"{rows} crops listed in {Path(args.out) / 'manifest.csv'}")
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from gesture_recognition.training.classifier import ClassifierTrainConfig, train_classifier

    result = train_classifier(
        ClassifierTrainConfig(
            crops_dir=Path(args.crops),
            out_dir=Path(args.run_dir),
            label_map=args.label_map,
            arch=args.arch,
            pretrained=not args.no_pretrained,
            input_size=args.input_size,
            epochs=args.epochs,
            batch_size=args.batch,
            lr=args.lr,
            patience=args.patience,
            balance=args.balance,
            seed=args.seed,
            workers=args.workers,
            device=args.device,
            resume=Path(args.resume) if args.resume else None,
            export_dir=Path(args.out),
            tight_crops=args.tight_crops,
            samples_per_epoch=args.samples_per_epoch,
            freeze_blocks=args.freeze_blocks,
            channels_last=not args.no_channels_last,
        )
    )
    print(f"best checkpoint: {result.checkpoint_path}")
    if result.onnx_path is not None:
        print(f"wrote {result.onnx_path}")
    if result.test_metrics:
        t = result.test_metrics
        print(f"test split: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from gesture_recognition.training import evaluate as ev
    from gesture_recognition.training.model_report import DetectorSetSpec, ReportPlan, run_plan

    scenes, photos = None, None
    if args.hagrid and args.scenes:
        raise ValueError("give --hagrid (photos behind --crops) or --scenes, not both")
    if args.hagrid:
        if not args.crops:
            raise ValueError("--hagrid needs --crops: only its held-out photos are scored")
        scenes, photos = Path(args.hagrid), ev.held_out_photos(args.crops, args.split)
    elif args.scenes:
        scenes = Path(args.scenes)
        chosen, _ = ev.mcs_photos(
            scenes, sorted(ev.photo_labels(scenes)), load_label_map(args.scenes_label_map)
        )
        photos = [photo.key for photo in chosen]
    plan = ReportPlan(
        out=Path(args.out),
        models_dir=Path(args.models_dir),
        detector_sets=[DetectorSetSpec.parse(d, args.split) for d in args.detector_data or []],
        peer=args.peer,
        classifier_dirs=[Path(c) for c in args.classifier_dir or []],
        crops=Path(args.crops) if args.crops else None,
        scenes=scenes,
        scene_photos=photos,
        fingers=Path(args.fingers) if args.fingers else None,
        split=args.split,
        threads=args.threads,
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        title=args.title,
    )
    print(f"wrote {run_plan(plan)}")
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
    if args.exclude_label_map:
        import json

        from gesture_recognition.training.evaluate import photo_labels

        # Photos of the classes the end-to-end evaluation scores (the MachinesCanSee ones of
        # hagrid_crops) are held out of all training.
        summary = json.loads((Path(args.reviewed) / pl.SUMMARY_JSON).read_text("utf-8"))
        held_out = load_label_map(args.exclude_label_map)
        labels = photo_labels(Path(summary["root"]))
        exclude += [rel for rel, label in labels.items() if held_out.contains(label)]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gesture-train", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    from gesture_recognition.training.converters.merge import add_convert_arguments

    add_convert_arguments(
        sub.add_parser("convert", help="hand-box datasets -> one YOLO detector dataset")
    )

    p = sub.add_parser("train-detector", help="train the YOLO hand detector (offline)")
    p.add_argument("--data", help="data.yaml written by `gesture-train convert`")
    p.add_argument("--model", default="yolo26n.yaml", help="model definition (*.yaml) or local .pt")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--hours", type=float, default=None, help="wall-clock budget (fits schedule)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, 0, or 0,1,2,3 for multi-GPU DDP")
    p.add_argument("--project", default="runs/detector")
    p.add_argument("--name", default="train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=30)
    p.add_argument("--fraction", type=float, default=1.0, help="use part of the training set")
    p.add_argument("--resume", metavar="LAST_PT", help="continue an interrupted run")
    p.add_argument(
        "--aug",
        action="append",
        metavar="KEY=VALUE",
        help="an ultralytics augmentation setting (repeat), e.g. degrees=10 flipud=0.2",
    )
    p.add_argument("--lr0", type=float, default=None, help="initial learning rate (fine-tuning)")
    p.set_defaults(func=_cmd_train_detector)

    p = sub.add_parser(
        "rebuild-detector",
        help="a shipped detector ONNX -> an ultralytics checkpoint to fine-tune (checked)",
    )
    p.add_argument("--onnx", default="models/hand_detector.onnx")
    p.add_argument("--model", default="yolo26n.yaml", help="the architecture it was exported from")
    p.add_argument("--photos", required=True, help="real photos to calibrate and check on")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.set_defaults(func=_cmd_rebuild_detector)

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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--held-out-photos", help="photos kept for tests (e.g. hagrid_crops)")
    p.add_argument(
        "--held-out-cache",
        action="append",
        help="detection cache(s) of those photos: crops showing one of their hands are dropped",
    )
    p.add_argument("--duplicate-threshold", type=float, default=DUPLICATE_THRESHOLD)
    p.set_defaults(func=_cmd_import_crops)

    p = sub.add_parser(
        "copy-paste", help="hand crops pasted onto boxed scenes -> an extra detector dataset"
    )
    p.add_argument(
        "--scenes", action="append", required=True, help="an images/train folder of a dataset"
    )
    p.add_argument("--hands", required=True, help="import-crops folder (its train split is used)")
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_copy_paste)

    p = sub.add_parser(
        "derive-classifier",
        help="a trained classifier served in a coarser label map (probabilities summed)",
    )
    p.add_argument("--checkpoint", required=True, help="best.pt of the finer classifier")
    p.add_argument("--label-map", default="mcs2021", help="the coarser map (with a merge)")
    p.add_argument("--out", required=True, help="where gesture_classifier.onnx/.json go")
    p.set_defaults(func=_cmd_derive_classifier)

    p = sub.add_parser("merge-crops", help="several crops folders -> one manifest")
    p.add_argument("folders", nargs="+")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_merge_crops)

    p = sub.add_parser("export-detector", help="checkpoint -> verified ONNX + spec JSON")
    p.add_argument("checkpoint")
    p.add_argument("--out", default="models")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--conf", type=float, default=0.25, help="serving confidence threshold")
    p.set_defaults(func=_cmd_export_detector)

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

    p = sub.add_parser("train-classifier", help="train the timm classifier on crops, export ONNX")
    p.add_argument("--crops", required=True, help="folder written by `gesture-train crops`")
    p.add_argument("--run-dir", required=True, help="checkpoints and history (resumable)")
    p.add_argument("--out", required=True, help="where gesture_classifier.onnx/.json go")
    p.add_argument("--label-map", default="mcs2021", help="mcs2021, hagrid, finger_count or JSON")
    p.add_argument(
        "--arch",
        default="tf_efficientnet_lite0",
        help="timm model; the original's tf_efficientnetv2_m needs --no-pretrained",
    )
    p.add_argument("--no-pretrained", action="store_true")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--balance", choices=["sampler", "loss", "none"], default="sampler")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", help="last.pt (or its run dir) to continue from")
    p.add_argument(
        "--tight-crops",
        choices=["served", "stretch"],
        default="served",
        help="tight_box crops: shown in the served geometry (default) or stretched as they are",
    )
    p.add_argument("--samples-per-epoch", type=int, default=None, help="balanced draws an epoch")
    p.add_argument("--freeze-blocks", type=int, default=0, help="keep stem + N blocks pretrained")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW instead of NHWC")
    p.set_defaults(func=_cmd_train_classifier)

    p = sub.add_parser("evaluate", help="metrics and a markdown/PNG report")
    p.add_argument("--models-dir", default="models", help="detector (and default classifier)")
    p.add_argument(
        "--classifier-dir",
        action="append",
        help="a classifier from another folder (repeat to report several)",
    )
    p.add_argument(
        "--detector-data",
        action="append",
        metavar="[NAME=]DATA_YAML",
        help="a detector set: mAP, recall and precision on its --split (repeat)",
    )
    p.add_argument(
        "--peer",
        choices=["mediapipe"],
        help="score MediaPipe Hands on every detector set too (its own .venv-teacher)",
    )
    p.add_argument("--checkpoint", help="detector .pt: add ultralytics' own val as a cross-check")
    p.add_argument("--crops", help="crop folder: classifier metrics on its --split")
    p.add_argument("--fingers", help="SubhiH root: end-to-end finger-count accuracy")
    p.add_argument("--hagrid", help="HaGRID crops root: end-to-end on the photos behind --crops")
    p.add_argument("--scenes", help="a folder of labelled photos scored whole, end to end")
    p.add_argument(
        "--scenes-label-map",
        default="mcs2021",
        help="which --scenes photos are scored: those whose label this map knows",
    )
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--title", default="Evaluation report")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_evaluate)

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
        "--keep-empty",
        action="store_true",
        help="keep photos with no box (only after review confirmed they show no hand)",
    )
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_pseudo_labels)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"gesture-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
