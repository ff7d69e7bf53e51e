"""The models' report: every held-out number in one command, MediaPipe Hands side by side.

``gesture-train evaluate`` builds a :class:`ReportPlan` and runs it:

* every detector set (``--detector-data NAME=DATA_YAML``, its ``--split``), the served ONNX
  detector and, with ``--peer mediapipe``, MediaPipe Hands on the same photos, both scored by
  the same matching code (``evaluate_detector``; the peer's boxes come from a teacher cache in
  ``peer_cache``, which a re-run resumes);
* every classifier (``--classifier-dir``, repeatable) on the held-out crops (``--crops``);
* end to end (``--scenes``: whole photos whose label each classifier's map knows, e.g. the
  MachinesCanSee-class photos of ``hagrid_crops``, which the recipe keeps out of all training;
  ``--fingers``: SubhiH test photos with a finger-count classifier);
* a summary table at the top, one precision-recall plot per detector set with both detectors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gesture_recognition.artifacts import CLASSIFIER_JSON, read_classifier_spec, shipped_models_dir
from gesture_recognition.pipeline import GesturePipeline
from gesture_recognition.training import evaluate as ev
from gesture_recognition.training import evaluate_photos as ep
from gesture_recognition.training.report import write_report
from gesture_recognition.training.teacher import DEFAULT_PADDING
from gesture_recognition.training.verifier import served_hands

PEERS = ("mediapipe",)


@dataclass(frozen=True)
class DetectorSetSpec:
    name: str
    data_yaml: Path
    split: str = "test"

    @classmethod
    def parse(cls, text: str, split: str) -> DetectorSetSpec:
        """``NAME=DATA_YAML`` or ``DATA_YAML`` (named after its folder)."""
        name, sep, path = text.partition("=")
        if not sep:
            name, path = Path(text).resolve().parent.name, text
        if not name.strip():
            raise ValueError(f"--detector-data {text!r}: the set needs a name (NAME=DATA_YAML)")
        return cls(name.strip(), Path(path), split)


# The peer's per-photo boxes: a working cache a re-run resumes, kept out of the report folder
# (it names the machine's photo paths, and reports are committed).
DEFAULT_PEER_CACHE = Path("runs/cache/peer")


@dataclass
class ReportPlan:
    out: Path
    models_dir: Path | None = None
    detector_sets: list[DetectorSetSpec] = field(default_factory=list)
    peer: str | None = None
    peer_cache: Path = DEFAULT_PEER_CACHE
    classifier_dirs: list[Path | None] = field(default_factory=list)
    crops: Path | None = None
    scenes: Path | None = None
    scene_photos: list[str] | None = None  # relative to scenes; None: all its photos
    fingers: Path | None = None
    split: str = "test"
    threads: int | None = None
    checkpoint: Path | None = None
    title: str = "Evaluation report"


def _peer_result(spec: DetectorSetSpec, plan: ReportPlan) -> dict[str, Any]:
    from gesture_recognition.training.teacher import run_teacher

    images = ev.split_images(spec.data_yaml, spec.split)
    # Converted datasets link their photos: label the real files, keyed under their common root.
    resolved = [p.resolve() for p in images]
    root = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    cache = plan.peer_cache / f"{spec.name}_{spec.split}.json"
    run_teacher(root, cache, padding=DEFAULT_PADDING, images=resolved)
    result = ev.evaluate_detector(
        None,
        spec.data_yaml,
        spec.split,
        cache=cache,
        served_conf=0.0,
        name=f"{spec.name} — MediaPipe Hands",
    )
    return {**result, "set": spec.name}


def _has_verifier(models_dir: Path | None) -> bool:
    spec = read_classifier_spec((models_dir or shipped_models_dir()) / CLASSIFIER_JSON)
    return spec.verifier is not None


def _classifier_label(directory: Path | None, models_dir: Path | None) -> str:
    return str(directory or models_dir or "models")


def run_plan(plan: ReportPlan) -> Path:
    """Evaluate everything the plan names; returns the report's path."""
    results: list[dict[str, Any]] = []
    detector_pairs: list[DetectorRows] = []
    for spec in plan.detector_sets:
        ours = ev.evaluate_detector(
            plan.models_dir,
            spec.data_yaml,
            spec.split,
            threads=plan.threads,
            checkpoint=plan.checkpoint,
            name=f"{spec.name} — served detector",
        )
        ours["set"] = spec.name
        results.append(ours)
        hands: dict[str, Any] | None = None
        if _has_verifier(plan.models_dir):
            detect, served_conf = served_hands(
                plan.models_dir or shipped_models_dir(), plan.threads
            )
            hands = ev.evaluate_detector(
                plan.models_dir,
                spec.data_yaml,
                spec.split,
                detect=detect,
                served_conf=served_conf,
                name=f"{spec.name} — served hands (detector + verifier)",
                served_only=True,
            )
            hands["set"] = spec.name
            hands["notes"].append(
                "Served hands: the detector's boxes at its threshold that the classifier's hand "
                "verifier keeps."
            )
            results.append(hands)
        peer = _peer_result(spec, plan) if plan.peer else None
        if peer is not None:
            results.append(peer)
        detector_pairs.append((ours, peer, hands))
    classifier_dirs = plan.classifier_dirs or [None]
    classifier_results, e2e_results = [], []
    skipped: list[str] = []
    for directory in classifier_dirs:
        label = _classifier_label(directory, plan.models_dir)
        if plan.crops is not None and _answers_crops(directory or plan.models_dir, plan):
            result = ev.evaluate_classifier(
                directory or plan.models_dir,
                plan.crops,
                plan.split,
                threads=plan.threads,
                name=f"classifier {label}",
            )
            classifier_results.append(result)
        elif plan.crops is not None:
            skipped.append(f"{label} on the crops {plan.crops}")
        if plan.scenes is not None or plan.fingers is not None:
            pipe = ep.pipeline_for(plan.models_dir, plan.threads, directory)
            e2e_results += _end_to_end(plan, pipe, label, skipped)
    results += classifier_results + e2e_results
    if not results:
        raise ValueError(
            "nothing to evaluate: give --detector-data, --crops, --scenes or --fingers"
        )
    summary = summary_lines(detector_pairs, classifier_results, e2e_results, plan.out)
    if skipped:
        summary += ["Not scored (the classifier's label map has no class of that set):", ""]
        summary += [f"- {line}" for line in skipped] + [""]
    return write_report(results, plan.out, title=plan.title, preamble=summary)


def _answers_crops(classifier_dir: Path | None, plan: ReportPlan) -> bool:
    """Whether the classifier's label map answers any crop of the plan's split."""
    assert plan.crops is not None
    folder = Path(classifier_dir) if classifier_dir is not None else shipped_models_dir()
    label_map = read_classifier_spec(folder / CLASSIFIER_JSON).label_map
    rows = ev.read_crop_manifest(plan.crops, plan.split)
    return any(label_map.answer_for(row["label"]) is not None for row in rows)


def _end_to_end(
    plan: ReportPlan, pipe: GesturePipeline, label: str, skipped: list[str]
) -> list[dict[str, Any]]:
    """The end-to-end sets this classifier can answer: a gesture classifier the scenes, a
    finger-count classifier the SubhiH photos."""
    label_map = pipe.classifier.spec.label_map
    out = []
    if plan.scenes is not None:
        photos = plan.scene_photos or sorted(ep.photo_labels(Path(plan.scenes)))
        if ep.mcs_photos(plan.scenes, photos, label_map)[0]:
            out.append(
                ep.evaluate_end_to_end_mcs(
                    None, plan.scenes, photos, pipeline=pipe, name=f"end to end {label}"
                )
            )
        else:
            skipped.append(f"{label} ({label_map.name}) on the scenes {plan.scenes}")
    if plan.fingers is not None:
        if ep.finger_photos(plan.fingers, plan.split, label_map)[0]:
            out.append(
                ep.evaluate_end_to_end_fingers(
                    None, plan.fingers, plan.split, pipeline=pipe, name=f"fingers {label}"
                )
            )
        else:
            skipped.append(f"{label} ({label_map.name}) on the finger-count photos {plan.fingers}")
    return out


# One detector set's results: the served detector, the peer, and (with a classifier that has a
# hand verifier) the served hands; the last may be left out.
DetectorRows = (
    tuple[dict[str, Any], dict[str, Any] | None]
    | tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]
)


def _pct(value: float) -> str:
    return f"{value:.3f}"


def summary_lines(
    detector_pairs: Sequence[DetectorRows],
    classifiers: Sequence[dict[str, Any]],
    e2e: Sequence[dict[str, Any]],
    out: Path,
) -> list[str]:
    """The report's first section: one table per kind, the peer beside the served detector."""
    from gesture_recognition.training.report import plot_pr_compare

    lines: list[str] = []
    if detector_pairs:
        lines += [
            "## Summary: hand detectors (IoU 0.5)",
            "",
            "Recall and precision at each detector's operating point (the served detector's "
            "confidence threshold; MediaPipe Hands' own, 0.5), mAP50 over all its boxes, median "
            "milliseconds per photo (the peer's from its labelling run).",
            "",
            "| set | photos | hands | detector | recall | precision | mAP50 | ms/photo |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for ours, peer, *verified in detector_pairs:
            hands = verified[0] if verified else None
            rows = (
                (ours, "served" if hands is None else "served detector"),
                (hands, "served hands (+ verifier)"),
                (peer, "MediaPipe Hands"),
            )
            for result, who in rows:
                if result is None:
                    continue
                served = result["served"]
                lines.append(
                    f"| {result.get('set', result['name'])} {result['split']} | "
                    f"{result['images']} | {result['gt_boxes']} | {who} | "
                    f"{_pct(served['recall'])} | {_pct(served['precision'])} | "
                    f"{_pct(result['map50'])} | {result['latency']['median_ms']:.1f} |"
                )
            png = plot_pr_compare(ours, peer, out)
            lines.append("")
            lines.append(f"![{ours['name']}]({png.name})")
            lines.append("")
    if classifiers:
        lines += [
            "## Summary: classifiers on held-out crops",
            "",
            "| classifier | label map | crops | accuracy | macro-F1 |",
            "|---|---|---|---|---|",
        ]
        for r in classifiers:
            lines.append(
                f"| {r['name']} | {r['label_map']} | {r['n']} | {_pct(r['accuracy'])} | "
                f"{_pct(r['macro_f1'])} |"
            )
        lines.append("")
    if e2e:
        lines += [
            "## Summary: end to end on whole photos",
            "",
            "| run | label map | photos | accuracy | macro-F1 | no hand found | ms/photo |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in e2e:
            lines.append(
                f"| {r['name']} | {r['label_map']} | {r['n']} | {_pct(r['accuracy'])} | "
                f"{_pct(r['macro_f1'])} | {r['photos_without_hand']} | "
                f"{r['latency']['median_ms']:.1f} |"
            )
        lines.append("")
    return lines
