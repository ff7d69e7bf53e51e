"""Measure CPU speed-ups of the shipped models and write ``reports/cpu_speedups/REPORT.md``.

    python export/cpu_speedups.py                      # everything, ~5 min on 2 cores
    python export/cpu_speedups.py --rounds 10 --no-detector-int8

What it measures (shipped ``models/``, ONNX Runtime CPU, spinning off as in ``runtime.py``):

- latency of each model at batch 1 for graph optimisation basic / extended / all and 1 / 2
  intra-op threads, and of the INT8 (QOperator) classifier (and, optionally, an INT8 detector
  whose YOLO head stays float). Hosts are shared and noisy, so all variants are timed
  INTERLEAVED: every round runs each variant (in a new random order) ``--runs`` times and keeps
  the median; the report gives the median and spread over ``--rounds`` rounds;
- the INT8 classifier's accuracy / macro-F1 against FP32 on the held-out crops of the model card
  (``training.evaluate.evaluate_classifier``, the project's own metrics), and top-1 agreement;
- the INT8 detector's mAP against FP32 on the SubhiH test split (``evaluate_detector``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from gesture_recognition.artifacts import (
    CLASSIFIER_JSON,
    CLASSIFIER_ONNX,
    DETECTOR_JSON,
    DETECTOR_ONNX,
    read_classifier_spec,
    read_detector_spec,
    shipped_models_dir,
)
from gesture_recognition.export.quantize import (
    CALIBRATION_SPLITS,
    DEFAULT_MAX_PROB_DIFF,
    DEFAULT_MIN_AGREEMENT,
    VERIFICATION_SPLITS,
    QuantSettings,
    compare_classifiers,
    detector_head_nodes,
    detector_inputs,
    int8_decision,
    quantize_model,
    split_inputs,
)
from gesture_recognition.images import load_image
from gesture_recognition.paths import git_commit
from gesture_recognition.runtime import ClassifierRunner

ROOT = shipped_models_dir().parent
OPT_LEVELS = {
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session(path: str | Path, opt: str, threads: int) -> ort.InferenceSession:
    """Like ``runtime.make_session`` but with the optimisation level as a parameter."""
    options = ort.SessionOptions()
    options.graph_optimization_level = OPT_LEVELS[opt]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved(
    variants: dict[str, Callable[[], object]], rounds: int, runs: int, warmup: int = 5
) -> dict[str, dict[str, float]]:
    """Median latency (ms) per variant, alternating the variants within every round."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    per_round: dict[str, list[float]] = {name: [] for name in variants}
    rng = random.Random(0)
    for _ in range(rounds):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            fn, times = variants[name], []
            for _ in range(runs):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            per_round[name].append(float(np.median(times)) * 1000)
    return {
        name: {
            "median_ms": float(np.median(v)),
            "p25_ms": float(np.percentile(v, 25)),
            "p75_ms": float(np.percentile(v, 75)),
            "rounds": len(v),
        }
        for name, v in per_round.items()
    }


def _runner(
    sess: ort.InferenceSession, feed: dict[str, NDArray[np.float32]]
) -> Callable[[], object]:
    return lambda: sess.run(None, feed)


def _cycle(pipe: Callable[[NDArray[np.uint8]], object], images: list) -> Callable[[], object]:
    state = {"i": 0}

    def run() -> object:
        state["i"] = (state["i"] + 1) % len(images)
        return pipe(images[state["i"]])

    return run


def int8_dir_full(work: Path, models: Path) -> Path:
    """A models folder with the FP32 detector and the INT8 classifier of ``work/int8``."""
    folder = work / "int8_classifier_only"
    if not folder.is_dir():
        folder.mkdir()
        for name in (DETECTOR_ONNX, DETECTOR_JSON):
            shutil.copyfile(models / name, folder / name)
        for name in (CLASSIFIER_ONNX, CLASSIFIER_JSON):
            shutil.copyfile(work / "int8" / name, folder / name)
    return folder


def subhih_photos(split: str, limit: int | None = None) -> list[Path]:
    from gesture_recognition.training.evaluate import split_images

    images = split_images(ROOT / "runs/datasets/subhih_hands/data.yaml", split)
    return images[:limit] if limit else images


def quantize_detector(models: Path, out: Path, photos: Sequence[Path]) -> list[str]:
    """INT8 detector with every head node kept float; returns the excluded node names."""
    spec = read_detector_spec(models / DETECTOR_JSON)
    head = detector_head_nodes(models / DETECTOR_ONNX)
    quantize_model(
        models / DETECTOR_ONNX,
        out / DETECTOR_ONNX,
        spec.input_name,
        detector_inputs(photos, spec.imgsz),
        QuantSettings(),
        nodes_to_exclude=head,
    )
    shutil.copyfile(models / DETECTOR_JSON, out / DETECTOR_JSON)
    return head


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("model name")
        )
        flags = next(line for line in text.splitlines() if line.startswith("flags"))
        isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f" {f}" in flags]
        cpu += f" ({', '.join(isa) or 'no AVX2'})"
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}; {os.cpu_count()} cores visible, shared with other users while measuring; "
        f"Python {platform.python_version()}, ONNX Runtime {ort.__version__}"
    )


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    models: Path = args.models_dir
    cspec = read_classifier_spec(models / CLASSIFIER_JSON)
    dspec = read_detector_spec(models / DETECTOR_JSON)
    results: dict[str, Any] = {"machine": machine(), "commit": git_commit(ROOT)}

    # ---- INT8 classifier: calibrate on train crops, verify on held-out val + test crops.
    calibration = split_inputs(args.crops, cspec, CALIBRATION_SPLITS)
    held_out = split_inputs(args.crops, cspec, VERIFICATION_SPLITS)
    settings = QuantSettings()
    int8_dir = work / "int8"
    int8_dir.mkdir()
    shutil.copyfile(models / CLASSIFIER_JSON, int8_dir / CLASSIFIER_JSON)
    t0 = time.perf_counter()
    quantize_model(
        models / CLASSIFIER_ONNX,
        int8_dir / CLASSIFIER_ONNX,
        cspec.input_name,
        calibration,
        settings,
    )
    results["classifier_int8"] = {
        "settings": settings.describe(),
        "quantise_s": time.perf_counter() - t0,
        "calibration_crops": len(calibration),
        "size_bytes": {
            "fp32": (models / CLASSIFIER_ONNX).stat().st_size,
            "int8": (int8_dir / CLASSIFIER_ONNX).stat().st_size,
        },
        "vs_fp32_on_val_test": compare_classifiers(
            models / CLASSIFIER_ONNX, int8_dir / CLASSIFIER_ONNX, cspec, held_out
        ).as_dict(),
    }
    from gesture_recognition.training.evaluate import evaluate_classifier

    evals = {}
    for split in ("test", "val"):
        for name, folder in (("fp32", models), ("int8", int8_dir)):
            runner = ClassifierRunner(folder / CLASSIFIER_ONNX, cspec)
            evals[(split, name)] = evaluate_classifier(None, args.crops, split, classifier=runner)
    accuracy: dict[str, Any] = {}
    for split in ("test", "val"):
        fp, q = evals[(split, "fp32")], evals[(split, "int8")]
        same = sum(
            a["predicted"] == b["predicted"]
            for a, b in zip(fp["predictions"], q["predictions"], strict=True)
        )
        flips = [
            {
                "path": a["path"],
                "truth": a["truth"],
                "fp32": f"{a['predicted']} {a['score']:.2f}",
                "int8": f"{b['predicted']} {b['score']:.2f}",
            }
            for a, b in zip(fp["predictions"], q["predictions"], strict=True)
            if a["predicted"] != b["predicted"]
        ]
        accuracy[split] = {
            "flips": flips,
            "n": fp["n"],
            "fp32": {"accuracy": fp["accuracy"], "macro_f1": fp["macro_f1"]},
            "int8": {"accuracy": q["accuracy"], "macro_f1": q["macro_f1"]},
            "top1_agreement": same / max(fp["n"], 1),
        }
    results["classifier_int8"]["held_out"] = accuracy

    # ---- INT8 detector with a float head (optional: slow to calibrate and evaluate).
    det_int8_dir = None
    if args.detector_int8:
        det_int8_dir = work / "det_int8"
        det_int8_dir.mkdir()
        shutil.copyfile(models / CLASSIFIER_ONNX, det_int8_dir / CLASSIFIER_ONNX)
        shutil.copyfile(models / CLASSIFIER_JSON, det_int8_dir / CLASSIFIER_JSON)
        head = quantize_detector(models, det_int8_dir, subhih_photos("train", args.det_calib))
        from gesture_recognition.training.evaluate import evaluate_detector

        data_yaml = ROOT / "runs/datasets/subhih_hands/data.yaml"
        maps = {}
        for name, folder in (("fp32", models), ("int8", det_int8_dir)):
            r = evaluate_detector(folder, data_yaml, "test")
            maps[name] = {
                "map50": r["map50"],
                "map50_95": r["map50_95"],
                "served_map50": r["served"]["map50"],
                "served_precision": r["served"]["precision"],
                "served_recall": r["served"]["recall"],
            }
        results["detector_int8"] = {
            "settings": QuantSettings().describe()
            + f"; {len(head)} head nodes ({head[0].split('/')[1]}/*) kept float",
            "calibration_photos": args.det_calib,
            "subhih_test": maps,
        }

    # ---- latency, all variants interleaved.
    crop = held_out[:1]
    photo = detector_inputs(subhih_photos("test", 1), dspec.imgsz)
    variants: dict[str, Callable[[], object]] = {}
    for opt in OPT_LEVELS:
        for threads in (1, 2):
            variants[f"detector fp32 {opt} t{threads}"] = _runner(
                session(models / DETECTOR_ONNX, opt, threads), {dspec.input_name: photo}
            )
            variants[f"classifier fp32 {opt} t{threads}"] = _runner(
                session(models / CLASSIFIER_ONNX, opt, threads), {cspec.input_name: crop}
            )
    for threads in (1, 2):
        variants[f"classifier int8 all t{threads}"] = _runner(
            session(int8_dir / CLASSIFIER_ONNX, "all", threads), {cspec.input_name: crop}
        )
        if det_int8_dir is not None:
            variants[f"detector int8 all t{threads}"] = _runner(
                session(det_int8_dir / DETECTOR_ONNX, "all", threads), {dspec.input_name: photo}
            )
    # The classifier sees up to max_hands crops per photo: batch 4 as well.
    crops4 = np.ascontiguousarray(held_out[:4])
    for kind, folder in (("fp32", models), ("int8", int8_dir)):
        variants[f"classifier {kind} all t2 b4"] = _runner(
            session(folder / CLASSIFIER_ONNX, "all", 2), {cspec.input_name: crops4}
        )
    # Whole in-process pipeline (detect -> crop -> classify, both sessions in one process, as
    # one Python-backend host runs them) on real photos, cycling through them.
    from gesture_recognition.pipeline import GesturePipeline

    images = [load_image(p) for p in subhih_photos("test", 16)]
    both_dir = work / "both_int8"
    both_dir.mkdir()
    for name, folder in (
        (CLASSIFIER_ONNX, int8_dir),
        (CLASSIFIER_JSON, models),
        (DETECTOR_ONNX, det_int8_dir or models),
        (DETECTOR_JSON, models),
    ):
        shutil.copyfile(folder / name, both_dir / name)
    pipelines = {
        "pipeline fp32 t1": GesturePipeline.from_dir(models, threads=1),
        "pipeline fp32 t2": GesturePipeline.from_dir(models, threads=2),
        "pipeline int8 classifier t2": GesturePipeline.from_dir(
            int8_dir_full(work, models), threads=2
        ),
    }
    if det_int8_dir is not None:
        pipelines["pipeline int8 both t1"] = GesturePipeline.from_dir(both_dir, threads=1)
        pipelines["pipeline int8 both t2"] = GesturePipeline.from_dir(both_dir, threads=2)
    for name, pipe in pipelines.items():
        variants[name] = _cycle(pipe, images)
    results["latency"] = interleaved(variants, args.rounds, args.runs)
    results["timing_method"] = (
        f"{len(variants)} variants interleaved: {args.rounds} rounds, each round runs every "
        f"variant {args.runs} times in a new random order and keeps the median; table = median "
        "(p25-p75) over rounds. Batch 1 unless marked b4. Inputs: a real letterboxed SubhiH test "
        "photo and real held-out HaGRID crops; pipeline rows: one whole 640x480 SubhiH test photo "
        "per call (16 photos in turn), detector + classifier sessions in one process, threads "
        "as named (unnamed: ORT default)."
    )
    lat = results["latency"]
    results["decision"] = int8_decision(
        accuracy["test"]["fp32"],
        accuracy["test"]["int8"],
        lat["classifier fp32 all t2"]["median_ms"],
        lat["classifier int8 all t2"]["median_ms"],
        results["classifier_int8"]["vs_fp32_on_val_test"]["top1_agreement"],
    ).__dict__
    return results


def render(results: dict[str, Any], command: str) -> str:
    lat = results["latency"]
    lines = [
        "# CPU speed-ups: graph optimisation, threads, static INT8",
        "",
        f"Machine: {results['machine']}.  ",
        f"Commit: {results['commit']}. Command: `{command}`",
        "",
        "## Latency (ms per call)",
        "",
        results["timing_method"],
        "",
        "| variant | median | p25-p75 |",
        "| --- | ---: | ---: |",
    ]
    for name, v in lat.items():
        lines.append(f"| {name} | {v['median_ms']:.2f} | {v['p25_ms']:.2f}-{v['p75_ms']:.2f} |")
    q = results["classifier_int8"]
    agree = q["vs_fp32_on_val_test"]
    lines += [
        "",
        "## INT8 gesture classifier: accuracy on held-out real crops",
        "",
        f"Quantisation: {q['settings']}; calibrated on the {q['calibration_crops']} train-split "
        f"crops of the MCS crop manifest (the classifier's own training crops, never the "
        f"held-out ones); {q['quantise_s']:.0f} s. Size "
        f"{q['size_bytes']['fp32'] / 2**20:.1f} MiB -> {q['size_bytes']['int8'] / 2**20:.1f} MiB.",
        "",
        "Metrics by `training.evaluate.evaluate_classifier` (serving preprocessing) on the split "
        "of the model card (seed-0 70/15/15 split of HaGRID MCS photos).",
        "",
        "| split | crops | FP32 accuracy | INT8 accuracy | FP32 macro-F1 | INT8 macro-F1 "
        "| top-1 agreement |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for split, a in q["held_out"].items():
        lines.append(
            f"| {split} | {a['n']} | {a['fp32']['accuracy']:.3f} | {a['int8']['accuracy']:.3f} "
            f"| {a['fp32']['macro_f1']:.3f} | {a['int8']['macro_f1']:.3f} "
            f"| {a['top1_agreement']:.3f} |"
        )
    flips = [(split, f) for split, a in q["held_out"].items() for f in a["flips"]]
    if flips:
        lines += [
            "",
            "Crops whose top-1 class changed (class and softmax score of the top-1):",
            "",
            "| split | crop | truth | FP32 | INT8 |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {split} | {Path(f['path']).name} | {f['truth']} | {f['fp32']} | {f['int8']} |"
            for split, f in flips
        ]
    lines += [
        "",
        f"INT8 vs FP32 on val + test ({agree['samples']} crops): top-1 agreement "
        f"{agree['top1_agreement']:.3f}, max softmax difference {agree['max_prob_diff']:.3f} "
        f"(mean of per-crop max {agree['mean_prob_diff']:.3f}), max logit difference "
        f"{agree['max_logit_diff']:.2f}. Build verification limits: agreement >= "
        f"{DEFAULT_MIN_AGREEMENT}, max softmax difference <= {DEFAULT_MAX_PROB_DIFF}.",
    ]
    if "detector_int8" in results:
        d = results["detector_int8"]
        lines += [
            "",
            "## INT8 hand detector (head kept float): SubhiH test (312 photos)",
            "",
            f"Quantisation: {d['settings']}; calibrated on {d['calibration_photos']} SubhiH "
            "train photos.",
            "",
            "| model | mAP50 | mAP50-95 | served mAP50 | served P | served R |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, m in d["subhih_test"].items():
            lines.append(
                f"| {name} | {m['map50']:.3f} | {m['map50_95']:.3f} | {m['served_map50']:.3f} "
                f"| {m['served_precision']:.3f} | {m['served_recall']:.3f} |"
            )
    dec = results["decision"]
    lines += [
        "",
        "## Automatic INT8 classifier decision (`quantize.int8_decision`)",
        "",
        f"**{'adopt as default' if dec['adopt'] else 'do not adopt as default'}**: "
        + "; ".join(dec["reasons"])
        + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python export/cpu_speedups.py", description=__doc__)
    p.add_argument("--models-dir", type=Path, default=shipped_models_dir())
    p.add_argument("--crops", type=Path, default=ROOT / "runs/crops/hagrid_mcs2021")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--detector-int8", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--det-calib", type=int, default=64, help="SubhiH train photos")
    p.add_argument("--out", type=Path, default=ROOT / "reports/cpu_speedups")
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)  # onnxruntime.quantization's pre-processing advice
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args, Path(tmp))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    command = "python export/cpu_speedups.py " + " ".join(argv or sys.argv[1:])
    (args.out / "measured.md").write_text(render(results, command.strip()), encoding="utf-8")
    print((args.out / "measured.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
