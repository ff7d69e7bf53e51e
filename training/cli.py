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
from typing import TYPE_CHECKING

from gesture_recognition.boxes import CropConfig
from gesture_recognition.labels import load_label_map

if TYPE_CHECKING:  # the commands import their heavy modules (ONNX Runtime, torch) when run
    from gesture_recognition.pipeline import GesturePipeline


def _cmd_train_detector(args: argparse.Namespace) -> int:
    from gesture_recognition.training.detector import (
        DetectorTrainConfig,
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
            )
        )
    print(f"best checkpoint: {best}")
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
    images = None
    if args.layout == "mcs2021":
        from gesture_recognition.mcs2021 import read_train_csv

        # Only the labelled frames: test frames are answered by the server, never trained on.
        frames = read_train_csv(root, Path(args.train_csv) if args.train_csv else None)
        images = [root / f.frame_path for f in frames]
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
        )
    )
    print(f"best checkpoint: {result.checkpoint_path}")
    if result.onnx_path is not None:
        print(f"wrote {result.onnx_path}")
    if result.test_metrics:
        t = result.test_metrics
        print(f"test split: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}")
    return 0


def _pipeline(
    detector_dir: str, classifier_dir: str | None, threads: int | None
) -> GesturePipeline:
    from gesture_recognition.artifacts import CLASSIFIER_JSON, CLASSIFIER_ONNX, read_classifier_spec
    from gesture_recognition.pipeline import GesturePipeline, load_detector
    from gesture_recognition.runtime import ClassifierRunner

    cdir = Path(classifier_dir or detector_dir)
    classifier = ClassifierRunner(
        cdir / CLASSIFIER_ONNX, read_classifier_spec(cdir / CLASSIFIER_JSON), threads
    )
    return GesturePipeline(load_detector(detector_dir, threads), classifier)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from gesture_recognition.training import evaluate as ev
    from gesture_recognition.training import evaluate_photos as ep
    from gesture_recognition.training.report import write_report

    results = []
    if args.detector_data:
        results.append(
            ev.evaluate_detector(
                args.models_dir,
                args.detector_data,
                args.split,
                threads=args.threads,
                checkpoint=args.checkpoint,
            )
        )
    classifier_dir = args.classifier_dir or args.models_dir
    if args.crops:
        results.append(
            ev.evaluate_classifier(classifier_dir, args.crops, args.split, threads=args.threads)
        )
    if args.fingers:
        pipe = _pipeline(args.models_dir, classifier_dir, args.threads)
        results.append(
            ep.evaluate_end_to_end_fingers(None, args.fingers, args.split, pipeline=pipe)
        )
    if args.hagrid:
        if not args.crops:
            raise ValueError("--hagrid needs --crops: only its held-out photos are scored")
        pipe = _pipeline(args.models_dir, classifier_dir, args.threads)
        photos = ev.held_out_photos(args.crops, args.split)
        results.append(ep.evaluate_end_to_end_mcs(None, args.hagrid, photos, pipeline=pipe))
    if not results:
        raise ValueError(
            "nothing to evaluate: give --detector-data, --crops, --fingers or --hagrid"
        )
    report = write_report(results, args.out, title=args.title)
    print(f"wrote {report}")
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
    p.set_defaults(func=_cmd_train_detector)

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
    p.set_defaults(func=_cmd_train_classifier)

    p = sub.add_parser("evaluate", help="metrics and a markdown/PNG report")
    p.add_argument("--models-dir", default="models", help="detector (and default classifier)")
    p.add_argument("--classifier-dir", default=None, help="classifier from another folder")
    p.add_argument("--detector-data", help="data.yaml: detector mAP on --split")
    p.add_argument("--checkpoint", help="detector .pt: add ultralytics' own val as a cross-check")
    p.add_argument("--crops", help="crop folder: classifier metrics on its --split")
    p.add_argument("--fingers", help="SubhiH root: end-to-end finger-count accuracy")
    p.add_argument("--hagrid", help="HaGRID crops root: end-to-end on the held-out photos")
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
