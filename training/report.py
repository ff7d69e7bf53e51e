"""Evaluation report: ``report.md`` with PNG plots, ``metrics.json`` and per-item CSVs.

Takes the dicts returned by ``training.evaluate`` (any subset, any order) so the model card
can quote ``metrics.json`` and link the plots.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gesture_recognition.training.mistakes import draw_answers, draw_gallery

METRICS_JSON = "metrics.json"
REPORT_MD = "report.md"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "result"


def plot_confusion(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str
) -> Path:
    """Confusion matrix PNG: counts in the cells, colour = share of the true class (row)."""
    from matplotlib.figure import Figure

    m = np.asarray(matrix, dtype=np.int64)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape, np.float64), where=rows > 0)
    side = max(4.0, 0.55 * len(labels) + 2.5)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            if m[i, j]:
                ax.text(
                    j,
                    i,
                    str(m[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[i, j] > 0.5 else "black",
                )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_pr_curve(
    recall: Sequence[float],
    precision: Sequence[float],
    path: Path,
    title: str,
    point: tuple[float, float] | None = None,
    point_label: str = "served threshold",
) -> Path:
    """Precision-recall curve PNG, with the served operating point marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.5))
    ax = fig.subplots()
    ax.plot(recall, precision, lw=1.5, label="all detections")
    if point is not None:
        ax.plot([point[0]], [point[1]], "o", color="C3", label=point_label)
    ax.set_xlim(0.0, 1.01)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_pr_compare(ours: Mapping[str, Any], peer: Mapping[str, Any] | None, out: Path) -> Path:
    """One detector set's precision-recall curves (IoU 0.5): the served detector and the peer,
    each with its operating point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 4.5))
    ax = fig.subplots()
    for i, (result, who) in enumerate(((ours, "served detector"), (peer, "MediaPipe Hands"))):
        if result is None:
            continue
        curve, served = result["pr_curve_iou50"], result["served"]
        ax.plot(
            curve["recall"],
            curve["precision"],
            lw=1.5,
            color=f"C{i}",
            label=f"{who} (mAP50 {result['map50']:.3f})",
        )
        ax.plot([served["recall"]], [served["precision"]], "o", color=f"C{i}")
    ax.set_xlim(0.0, 1.01)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"{ours.get('set', ours['name'])} {ours['split']}: IoU 0.5")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path = out / f"pr_compare_{_slug(ours['name'])}.png"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _latency_line(latency: Mapping[str, float], what: str) -> str:
    return (
        f"| {what} latency (mean / median / p95) | {latency['mean_ms']:.1f} / "
        f"{latency['median_ms']:.1f} / {latency['p95_ms']:.1f} ms |"
    )


def _detector_section(result: Mapping[str, Any], out: Path) -> list[str]:
    name = result["name"]
    served = result["served"]
    lines = [
        f"## {name}: hand detector",
        "",
        f"Data: `{result['data_yaml']}`, split `{result['split']}` — {result['images']} images, "
        f"{result['gt_boxes']} ground-truth boxes.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| mAP50 | {_f(result['map50'])} |",
        f"| mAP50-95 | {_f(result['map50_95'])} |",
        f"| mAP75 | {_f(result['map75'])} |",
        f"| mAP50 at the served threshold ({served['conf_threshold']:g}) | {_f(served['map50'])} |",
        f"| mAP50-95 at the served threshold | {_f(served['map50_95'])} |",
        f"| precision / recall at the served threshold (IoU 0.5) | "
        f"{_f(served['precision'])} / {_f(served['recall'])} |",
        _latency_line(result["latency"], "detector"),
    ]
    val = result.get("ultralytics_val")
    if val:
        lines.append(
            f"| ultralytics val on the .pt: mAP50 / mAP50-95 | {_f(val['map50'])} / "
            f"{_f(val['map50_95'])} |"
        )
    curve = result.get("pr_curve_iou50")
    if curve and curve["recall"]:
        png = out / f"pr_{_slug(name)}.png"
        plot_pr_curve(
            curve["recall"],
            curve["precision"],
            png,
            f"{name}: PR at IoU 0.5 (AP50 {result['map50']:.3f})",
            point=(served["recall"], served["precision"]),
            point_label=f"served threshold {served['conf_threshold']:g}",
        )
        lines += ["", f"![PR curve]({png.name})"]
    errors = result.get("errors")
    if errors:
        lines += [
            "",
            f"At the served threshold: {errors['false_boxes']} false boxes on "
            f"{errors['photos_with_false_boxes']} photos, {errors['missed_hands']} missed hands "
            f"on {errors['photos_with_missed_hands']} photos (rows in `metrics.json`).",
        ]
        lines += _gallery_lines(
            draw_gallery(errors, out / f"errors_{_slug(name)}.png"),
            "Photos with the most mistakes: true boxes green, false boxes red (score top left), "
            "missed hands orange.",
        )
    return lines


def _gallery_lines(gallery: Path | None, caption: str) -> list[str]:
    return [] if gallery is None else ["", caption, "", f"![{caption}]({gallery.name})"]


def _classification_section(result: Mapping[str, Any], out: Path) -> list[str]:
    name = result["name"]
    e2e = result["kind"] == "end_to_end"
    heading = "end to end on whole photos" if e2e else "gesture classifier on crops"
    where = result.get("dataset") or result.get("crops_dir")
    lines = [
        f"## {name}: {heading}",
        "",
        f"Data: `{where}`, split `{result['split']}` — {result['n']} "
        f"{'photos' if e2e else 'crops'}; label map `{result['label_map']}`.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {_f(result['accuracy'])} |",
        f"| macro-F1 | {_f(result['macro_f1'])} |",
    ]
    if e2e:
        lines.append(
            f"| photos with no detected hand | {result['photos_without_hand']} "
            f"({result['no_hand_rate']:.1%}) |"
        )
        lines.append(_latency_line(result["latency"], "per-photo"))
    elif "latency_per_crop" in result:
        lines.append(_latency_line(result["latency_per_crop"], "classifier per-crop (batched)"))
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for cls, m in result["per_class"].items():
        lines.append(
            f"| {cls} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    cm = result["confusion_matrix"]
    png = out / f"confusion_{_slug(name)}.png"
    plot_confusion(
        cm["rows_true_cols_predicted"],
        cm["labels"],
        png,
        f"{name}: accuracy {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f}",
    )
    lines += ["", f"![confusion matrix]({png.name})"]
    wrong = result.get("wrong_answers")
    if wrong:
        lines += _gallery_lines(
            draw_answers(wrong, out / f"wrong_{_slug(name)}.png"),
            "Photos answered wrong: truth -> answer top left, each hand found in red with its "
            "gesture and score.",
        )
    return lines


def write_report(
    results: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]],
    out_dir: str | Path,
    title: str = "Evaluation report",
    preamble: Sequence[str] = (),
) -> Path:
    """Write ``report.md``, plots, ``metrics.json`` and ``predictions_<name>.csv``; returns the
    path of ``report.md``. ``preamble`` lines (a summary) go before the sections."""
    items = list(results.values()) if isinstance(results, Mapping) else list(results)
    names = [r["name"] for r in items]
    if len(set(names)) != len(names):
        raise ValueError(f"result names must be unique, got {names}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    generated = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [
        f"# {title}",
        "",
        f"Generated {generated}. Each section names the data and split it was measured on.",
        "",
        *preamble,
    ]
    metrics: dict[str, Any] = {}
    for result in items:
        kind = result["kind"]
        if kind == "detector":
            section = _detector_section(result, out)
        elif kind in ("classifier", "end_to_end"):
            section = _classification_section(result, out)
        else:
            raise ValueError(f"unknown result kind {kind!r}")
        for key in ("excluded", "skipped"):
            if result.get(key):
                counts = ", ".join(f"{k}: {v}" for k, v in sorted(result[key].items()))
                section += ["", f"{key.capitalize()}: {counts}."]
        if result.get("notes"):
            section += ["", *[f"- {note}" for note in result["notes"]]]
        predictions = result.get("predictions")
        if predictions:
            csv_path = out / f"predictions_{_slug(result['name'])}.csv"
            _write_csv(predictions, csv_path)
            wrong = sum(p["truth"] != p["predicted"] for p in predictions)
            section += [
                "",
                f"Per-item answers: [{csv_path.name}]({csv_path.name}) ({wrong} wrong).",
            ]
        lines += [*section, ""]
        metrics[result["name"]] = {k: v for k, v in result.items() if k != "predictions"}
    (out / METRICS_JSON).write_text(
        json.dumps({"generated": generated, "results": metrics}, indent=2) + "\n",
        encoding="utf-8",
    )
    report = out / REPORT_MD
    report.write_text("\n".join(lines), encoding="utf-8")
    return report


def _write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
