"""Several hand-box datasets -> one ultralytics detector dataset (``gesture-train convert``).

    gesture-train convert --source voc:../shared/data/subhih_hands \\
        --source coco:path/to/ann.json:coco_hands:categories=hand --out runs/datasets/x

A source is ``FORMAT:PATH[:NAME][:KEY=VALUE]...``: ``NAME`` (default: the format) prefixes the
written file names and the report; ``KEY=VALUE`` are the format's options (see each
converter's docstring, e.g. ``coco:...:images=/data/train2017``, ``tvhand:...:box_order=xyxy``).

One option works for every format: ``split=train|val|test`` puts all of the source's photos in
that split, whatever the source calls its own splits: ``yolo:.../valid:rf:split=train`` trains
on a split the source meant for validation, ``split=test`` keeps a whole source held out.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import NamedTuple

from gesture_recognition.training.converters.coco import read_coco
from gesture_recognition.training.converters.common import (
    SPLITS,
    ConversionReport,
    ImageRecord,
    write_yolo_dataset,
)
from gesture_recognition.training.converters.hagrid import read_hagrid
from gesture_recognition.training.converters.oxford import read_oxford
from gesture_recognition.training.converters.tvhand import read_cocohand, read_tvhand
from gesture_recognition.training.converters.voc import read_voc_dir
from gesture_recognition.training.converters.yolo_txt import read_yolo

Reader = Callable[..., Iterable[ImageRecord]]

READERS: dict[str, Reader] = {
    "voc": read_voc_dir,
    "yolo": read_yolo,
    "coco": read_coco,
    "hagrid": read_hagrid,
    "oxford": read_oxford,
    "tvhand": read_tvhand,
    "cocohand": read_cocohand,
}


class SourceSpec(NamedTuple):
    format: str
    root: Path
    name: str | None = None
    options: Mapping[str, str] | None = None


def parse_source(text: str) -> SourceSpec:
    """``FORMAT:PATH[:NAME][:KEY=VALUE]...`` -> SourceSpec."""
    fmt, sep, rest = text.partition(":")
    if not sep or not rest:
        raise ValueError(f"--source {text!r}: expected FORMAT:PATH[:NAME][:KEY=VALUE...]")
    parts = rest.split(":")
    path, extras = parts[0], parts[1:]
    name = None
    options: dict[str, str] = {}
    for extra in extras:
        if "=" in extra:
            key, _, value = extra.partition("=")
            options[key.strip()] = value
        elif extra:
            if name is not None:
                raise ValueError(f"--source {text!r}: two names ({name!r}, {extra!r})")
            name = extra
    return SourceSpec(fmt.strip().lower(), Path(path), name, options)


# Options every source takes, handled here rather than by the format's reader.
COMMON_OPTIONS = ("split",)


def _check_source(spec: SourceSpec) -> tuple[Reader, str, dict[str, str]]:
    reader = READERS.get(spec.format)
    if reader is None:
        raise ValueError(
            f"unknown source format {spec.format!r}; use one of {', '.join(sorted(READERS))}"
        )
    if not Path(spec.root).exists():
        raise FileNotFoundError(f"source {spec.name or spec.format}: no such path {spec.root}")
    options = dict(spec.options or {})
    accepted = set(inspect.signature(reader).parameters) - {"root", "source"}
    accepted |= set(COMMON_OPTIONS)
    unknown = sorted(set(options) - accepted)
    if options.get("split", SPLITS[0]) not in SPLITS:
        raise ValueError(
            f"source {spec.name or spec.format}: split={options['split']!r} is not one of "
            f"{', '.join(SPLITS)}"
        )
    if unknown:
        raise ValueError(
            f"source {spec.name or spec.format}: unknown option(s) {', '.join(unknown)} for "
            f"{spec.format} (accepted: {', '.join(sorted(accepted)) or 'none'})"
        )
    return reader, spec.name or spec.format, options


def read_source(spec: SourceSpec) -> Iterator[ImageRecord]:
    reader, name, options = _check_source(spec)
    forced = options.pop("split", None)
    for record in reader(Path(spec.root), source=name, **options):
        if forced is not None:
            record.split = forced
            record.fixed_split = True
        yield record


def build_detector_dataset(
    sources: Sequence[SourceSpec],
    out_dir: Path,
    class_names: Sequence[str] = ("hand",),
    val_fraction: float = 0.1,
    seed: int = 0,
    copy: bool = False,
    class_map: dict[str, str] | None = None,
) -> ConversionReport:
    """Merge ``sources`` into one YOLO dataset at ``out_dir``; returns the report."""
    if not sources:
        raise ValueError("no sources given")
    checked = [_check_source(spec) for spec in sources]
    names = [name for _, name, _ in checked]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"source names must differ; give NAME for {', '.join(duplicates)}")
    records = chain.from_iterable(read_source(spec) for spec in sources)
    return write_yolo_dataset(
        records,
        Path(out_dir),
        class_names=class_names,
        class_map=class_map,
        val_fraction=val_fraction,
        seed=seed,
        copy=copy,
    )


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``gesture-train convert`` (sets ``func`` to :func:`run_convert`)."""
    parser.add_argument(
        "--source",
        action="append",
        required=True,
        metavar="FORMAT:PATH[:NAME][:KEY=VALUE]",
        help=f"a dataset to include (repeat); FORMAT is one of {', '.join(sorted(READERS))}",
    )
    parser.add_argument("--out", required=True, help="new, empty folder for the dataset")
    parser.add_argument("--classes", default="hand", help="detector classes, comma separated")
    parser.add_argument(
        "--class-map", help="JSON file {source label: class}; default: every box is a hand"
    )
    parser.add_argument("--val", type=float, default=0.1, help="validation fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copy", action="store_true", help="copy images instead of linking")
    parser.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    class_map = None
    if args.class_map:
        class_map = json.loads(Path(args.class_map).read_text(encoding="utf-8"))
        if not isinstance(class_map, dict):
            raise ValueError(f"{args.class_map} must hold a JSON object")
    report = build_detector_dataset(
        [parse_source(s) for s in args.source],
        Path(args.out),
        class_names=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
        val_fraction=args.val,
        seed=args.seed,
        copy=args.copy,
        class_map=class_map,
    )
    print(report.summary())
    print(f"dataset: {Path(args.out) / 'data.yaml'}")
    return 0


def convert_cli(argv: Sequence[str] | None = None) -> int:
    """``gesture-train convert`` on its own: user errors are one line, exit status 2."""
    parser = argparse.ArgumentParser(prog="gesture-train convert", description=__doc__)
    add_convert_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_convert(args)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"gesture-train convert: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(convert_cli())
