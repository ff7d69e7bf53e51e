"""``gesture-train``: every training step of the product as one command-line tool.

Models
gesture-train train-detector    train (or --resume) the YOLO hand detector
gesture-train rebuild-detector  a shipped detector ONNX -> a checkpoint to fine-tune (checked)
gesture-train export-detector   checkpoint -> hand_detector.onnx/.json (verified)
gesture-train train-classifier  train the timm classifier on crops, export ONNX (verified)
gesture-train derive-classifier a classifier served in a coarser label map (mcs2021 from hagrid)
gesture-train train-verifier    a hand / not-a-hand output on a classifier's features (fitted on
                                the detector's boxes on its training photos)
gesture-train flip-classifier   the classifier's graph averages a crop and its mirror image
gesture-train evaluate          detectors (MediaPipe side by side), classifiers, end to end
Data (training/cli_data.py)
gesture-train convert           hand-box datasets -> one YOLO detector dataset
gesture-train detect            the ONNX detector or the MediaPipe teacher over photos -> cache
                                (--layout mcs2021: the frames of a MachinesCanSee train.csv)
gesture-train teacher-sweep     choose the teacher's box padding on true boxes
gesture-train pseudo-labels     export / review sheets / apply / dataset of cached boxes
gesture-train copy-paste        hand crops pasted onto boxed scenes -> an extra dataset
gesture-train combine-datasets  one data.yaml over several detector datasets
gesture-train pack-dataset      a data.yaml's photos + labels in one folder (for a GPU host)
gesture-train crops             cut classifier crops (topmost hand, expanded) from a cache,
                                split train/val/test by group (video, person) when known
gesture-train import-crops      ready-made labelled crops (manifest + group key, or folders)
gesture-train merge-crops       several crops folders -> one manifest
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gesture_recognition.arguments import non_negative_int, positive_int
from gesture_recognition.labels import MERGE_PRIORS, load_label_map


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
                workers=args.workers,
                augment=parse_augmentation(args.aug),
                lr0=args.lr0,
                warmup_epochs=args.warmup_epochs,
                freeze=args.freeze,
                freeze_blocks=args.freeze_blocks,
            )
        )
    print(f"best checkpoint: {best}")
    return 0


def _cmd_rebuild_detector(args: argparse.Namespace) -> int:
    from gesture_recognition.training.detect_cache import list_images
    from gesture_recognition.training.detector_backbones import project_model
    from gesture_recognition.training.warm_start import rebuild_detector, save_checkpoint

    model_yaml = project_model(args.model)  # yolo26n-lite0.yaml: the project's own YAML
    photos = list_images(Path(args.photos))
    if not photos:
        raise FileNotFoundError(f"no photos under {args.photos}")
    step = max(1, len(photos) // args.limit)
    chosen = photos[::step][: args.limit]
    model, report = rebuild_detector(Path(args.onnx), model_yaml, chosen, args.imgsz)
    path = save_checkpoint(model, Path(args.out), model_yaml, args.imgsz)
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
        second_pass_imgsz=args.second_pass_imgsz,
    )
    print(f"wrote {path}")
    return 0


def _cmd_derive_classifier(args: argparse.Namespace) -> int:
    from gesture_recognition.training.classifier_merge import export_merged, remerge_served

    if args.served:
        path = remerge_served(Path(args.served), args.merge_prior, Path(args.out))
        print(f"wrote {path} ({args.served} with a {args.merge_prior} merge prior)")
        return 0
    path = export_merged(
        Path(args.checkpoint),
        load_label_map(args.label_map),
        Path(args.out),
        prior=args.merge_prior,
    )
    print(
        f"wrote {path} (label map {args.label_map}, merged from the checkpoint's classes, "
        f"{args.merge_prior} prior)"
    )
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
            context_scenes=args.context_scenes or [],
            context_share=args.context_share,
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


def _cmd_train_verifier(args: argparse.Namespace) -> int:
    import json

    from gesture_recognition.pipeline import load_detector
    from gesture_recognition.training.evaluate import split_images
    from gesture_recognition.training.verifier import VerifierConfig, train_verifier

    def photos(data_yaml: str | None, split: str) -> list[Path]:
        # A split may name a folder several times (drawn more often): each photo once here.
        return list(dict.fromkeys(split_images(data_yaml, split))) if data_yaml else []

    cfg = VerifierConfig(
        min_score=args.min_score,
        l2=args.l2,
        threshold=args.threshold,
        seed=args.seed,
        crops_per_class=args.crops_per_class,
    )
    report = train_verifier(
        Path(args.classifier_dir),
        load_detector(args.models_dir, args.threads),
        photos(args.data, "train"),
        Path(args.out),
        cfg,
        photos(args.data, "val") if args.validate else [],
        args.threads,
        Path(args.crops) if args.crops else None,
        [Path(d) for d in args.context_scenes or ()],
    )
    print(json.dumps(report, indent=2))
    return 0


def _cmd_flip_classifier(args: argparse.Namespace) -> int:
    from gesture_recognition.training.flip_tta import flip_classifier

    print(f"wrote {flip_classifier(Path(args.classifier_dir), Path(args.out))}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from gesture_recognition.training import evaluate as ev
    from gesture_recognition.training import evaluate_photos as ep
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
        chosen = ep.labelled_scenes(scenes, load_label_map(args.scenes_label_map))
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
        **({"peer_cache": Path(args.peer_cache)} if args.peer_cache else {}),
    )
    print(f"wrote {run_plan(plan)}")
    return 0


def _cmd_threshold_sweep(args: argparse.Namespace) -> int:
    from gesture_recognition.pipeline import load_detector
    from gesture_recognition.training import evaluate_photos as ep
    from gesture_recognition.training import threshold_sweep as ts
    from gesture_recognition.training.detector_sets import load_set
    from gesture_recognition.training.evaluate import load_classifier

    thresholds = ts.parse_thresholds(args.thresholds)
    detector = load_detector(args.models_dir, args.threads)
    classifier = load_classifier(args.classifier_dir or args.models_dir, args.threads)
    scenes = ep.validation_scenes(
        args.scenes,
        classifier.spec.label_map,
        load_label_map(args.exclude_label_map) if args.exclude_label_map else None,
        ts.trained_photos(args.exclude_trained or ()),
    )
    verifier = ts.parse_verifier_thresholds(args.verifier_thresholds)
    detector_rows = []
    for item in args.detector_data or ():
        name, _, source = item.rpartition("=")
        data = load_set(name or Path(source).name, Path(source), args.split)
        detector_rows += ts.sweep_detector_set(detector, data, thresholds, classifier, verifier)
    scene_rows = ts.sweep_scenes(detector, classifier, scenes, thresholds, verifier)
    kept = ts.sweep_crops(classifier, Path(args.crops), verifier) if args.crops else {}
    result = ts.SweepResult(thresholds, detector_rows, scene_rows, len(scenes), verifier, kept)
    chosen = ts.choose(result, args.min_precision, args.min_crops_kept)
    out = ts.write_report(
        result, chosen, args.min_precision, Path(args.out), args.title, args.min_crops_kept
    )
    print(out.read_text(encoding="utf-8"))
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
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=2,
        help="data-loading processes per GPU (ultralytics loads in the main process on the CPU)",
    )
    p.add_argument("--resume", metavar="LAST_PT", help="continue an interrupted run")
    p.add_argument(
        "--aug",
        action="append",
        metavar="KEY=VALUE",
        help="an ultralytics augmentation setting (repeat), e.g. degrees=10 flipud=0.2",
    )
    p.add_argument(
        "--lr0",
        type=float,
        default=None,
        help="initial learning rate, with AdamW (ultralytics' automatic optimiser ignores lr0)",
    )
    p.add_argument(
        "--warmup-epochs", type=float, default=None, help="ultralytics' warm-up (0: fine-tuning)"
    )
    p.add_argument(
        "--freeze",
        type=non_negative_int,
        default=None,
        help="keep the first N layers of the model YAML fixed (1: yolo26n-lite0's backbone)",
    )
    p.add_argument(
        "--freeze-blocks",
        type=non_negative_int,
        default=None,
        help="yolo26n-lite0: keep the backbone's stem + first N of its 7 stages fixed, "
        "fine-tune the rest (instead of --freeze)",
    )
    p.set_defaults(func=_cmd_train_detector)

    p = sub.add_parser(
        "rebuild-detector",
        help="a shipped detector ONNX -> an ultralytics checkpoint to fine-tune (checked)",
    )
    p.add_argument("--onnx", default="models/hand_detector.onnx")
    p.add_argument(
        "--model",
        default="yolo26n-lite0.yaml",
        help="the architecture it was exported from (yolo26n.yaml for detectors before 2026-12-03)",
    )
    p.add_argument("--photos", required=True, help="real photos to calibrate and check on")
    p.add_argument("--limit", type=positive_int, default=32, help="photos to check on")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--out", required=True, help="checkpoint path (.pt)")
    p.set_defaults(func=_cmd_rebuild_detector)

    p = sub.add_parser(
        "derive-classifier",
        help="a trained classifier served in a coarser label map (probabilities summed)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="best.pt of the finer classifier")
    source.add_argument(
        "--served",
        help="a served merged classifier folder (verifier kept): only its merge prior changes",
    )
    p.add_argument("--label-map", default="mcs2021", help="the coarser map (with a merge)")
    p.add_argument(
        "--merge-prior",
        choices=MERGE_PRIORS,
        default="training",
        help="training: probabilities summed (the balanced training prior: a class merging 8 "
        "of 14 starts at 8/14); uniform: averaged, each served class starting equal",
    )
    p.add_argument("--out", required=True, help="where gesture_classifier.onnx/.json go")
    p.set_defaults(func=_cmd_derive_classifier)

    p = sub.add_parser("export-detector", help="checkpoint -> verified ONNX + spec JSON")
    p.add_argument("checkpoint")
    p.add_argument("--out", default="models")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--conf", type=float, default=0.25, help="serving confidence threshold")
    p.add_argument(
        "--second-pass-imgsz",
        type=int,
        default=0,
        help="look again at this input size at photos where imgsz finds no box (0: never; "
        "served in-process and on the cpu flavour: reports/small_hands/)",
    )
    p.set_defaults(func=_cmd_export_detector)

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
    p.add_argument(
        "--context-scenes",
        action="append",
        metavar="DIR",
        help="images/train folder of boxed photos: tight crops are also shown over their hands, "
        "the photo around as margin (repeatable)",
    )
    p.add_argument(
        "--context-share",
        type=float,
        default=0.5,
        help="share of served views drawn over --context-scenes (default 0.5)",
    )
    p.add_argument("--samples-per-epoch", type=int, default=None, help="balanced draws an epoch")
    p.add_argument("--freeze-blocks", type=int, default=0, help="keep stem + N blocks pretrained")
    p.add_argument("--no-channels-last", action="store_true", help="NCHW instead of NHWC")
    p.set_defaults(func=_cmd_train_classifier)

    p = sub.add_parser(
        "train-verifier", help="a hand / not-a-hand output on a classifier's features"
    )
    p.add_argument("--classifier-dir", required=True, help="the classifier (ONNX + JSON)")
    p.add_argument("--models-dir", default="models", help="the detector whose boxes it checks")
    p.add_argument(
        "--data", required=True, help="the detector's data.yaml: its train photos fit the verifier"
    )
    p.add_argument(
        "--validate", action="store_true", help="also report the separation on its val photos"
    )
    p.add_argument(
        "--crops", help="labelled hand crops (import-crops folder): its train split are hands too"
    )
    p.add_argument("--crops-per-class", type=int, default=300)
    p.add_argument(
        "--context-scenes",
        action="append",
        help="images/train folder of boxed photos: tight crops are shown over their hands",
    )
    p.add_argument("--out", required=True, help="folder for the classifier with the verifier")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="the served verifier threshold (the one threshold-sweep chose on validation data)",
    )
    p.add_argument("--min-score", type=float, default=0.01, help="detector boxes mined down to")
    p.add_argument("--l2", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_cmd_train_verifier)

    p = sub.add_parser(
        "flip-classifier",
        help="a classifier whose graph averages each crop with its mirror image",
    )
    p.add_argument("--classifier-dir", required=True, help="the classifier (ONNX + JSON)")
    p.add_argument("--out", required=True, help="folder for the flipped classifier")
    p.set_defaults(func=_cmd_flip_classifier)

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
    p.add_argument(
        "--peer-cache",
        help="where the peer's boxes are cached, a re-run resumes them (default runs/cache/peer)",
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

    p = sub.add_parser(
        "threshold-sweep", help="choose the served detector threshold on validation data"
    )
    p.add_argument("--models-dir", default="models", help="the detector (and classifier)")
    p.add_argument("--classifier-dir", help="the classifier for the scenes (default: models-dir)")
    p.add_argument(
        "--detector-data",
        action="append",
        metavar="[NAME=]SOURCE",
        help="a validation detector set: data.yaml (its --split) or images folder (repeat)",
    )
    p.add_argument("--split", default="val")
    p.add_argument("--scenes", required=True, help="labelled photos (HaGRID layout)")
    p.add_argument(
        "--exclude-label-map",
        help="leave out the scenes of this map's classes (the held-out test photos)",
    )
    p.add_argument(
        "--exclude-trained",
        action="append",
        help="a training images folder: leave out the scenes it links to (repeat)",
    )
    p.add_argument("--thresholds", default=",".join(map(str, _default_thresholds())))
    p.add_argument(
        "--verifier-thresholds",
        default="off",
        help="with a classifier that has a hand verifier: e.g. off,0.3,0.5 (pairs with each "
        "threshold)",
    )
    p.add_argument("--min-precision", type=float, default=0.95)
    p.add_argument(
        "--crops",
        help="import-crops folder: the share of each label's val crops each verifier threshold "
        "keeps (the guard: --min-crops-kept)",
    )
    p.add_argument("--min-crops-kept", type=float, default=0.98)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--title", default="Detector threshold on validation data")
    p.add_argument("--out", required=True, help="markdown report")
    p.set_defaults(func=_cmd_threshold_sweep)

    from gesture_recognition.training.cli_data import add_data_commands

    add_data_commands(sub)
    return parser


def _default_thresholds() -> tuple[float, ...]:
    from gesture_recognition.training.threshold_sweep import DEFAULT_THRESHOLDS

    return DEFAULT_THRESHOLDS


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"gesture-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
