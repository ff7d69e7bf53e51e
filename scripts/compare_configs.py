"""Prove that two versions of the config generator write the same Triton model repositories.

    python scripts/compare_configs.py dump DIR            # this checkout's code renders every case
    python scripts/compare_configs.py compare OLD NEW     # exit 1 on any difference

``dump`` renders the configs of every flavour for several model specs and serving options, the
committed ``model_repository/`` files, and builds full repositories from ``models/``. Run it
once with each version's code (each checkout's own ``.venv``), then ``compare`` the two folders:
every ``config.pbtxt`` is parsed into tritonclient's ``ModelConfig`` and must be the same
message; an explicit ``max_batch_size: 0`` must be written by both (Triton's auto-complete fills
in a batch size for native backends when the field is absent); every other file must be
byte-identical, except ``build_info.json``, whose fingerprint digests the generator's own source
and whose ``models_dir`` digests the checkout's path, and the ``model.py`` files, which are the
Python models' code copied from ``model_repository/`` (compared by the test suite, not here).
So only formatting may differ.

Works with the generator of issue 20 (``gesture_recognition.serving.configs``) and with the one
before it (``gesture_recognition.serving.repository``, commit 88e2160).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

FLAVOURS = ("cpu", "onnxruntime", "tensorrt")
OPTION_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "limits": {"max_hands": 3, "max_pixels": 1_000_000, "max_image_bytes": 1000},
    "tuned": {
        "ort_threads": 2,
        "ort_gate": 0,
        "detector_instances": 1,
        "classifier_instances": 3,
        "queue_delay_us": 2000,
        "detector_max_batch": 4,
        "detections": 100,
    },
    "engines": {"compute_capabilities": ("8.9", "7.5")},
}
EXPLICIT_NO_BATCH = re.compile(r"^max_batch_size:\s*0\s*$", re.M)


def _api() -> dict[str, Callable[..., Any]]:
    """The generator's functions, whichever version is installed."""
    try:
        from gesture_recognition.serving import build, configs

        return {
            "options": configs.ServingOptions,
            "specs": configs.Specs,
            "read_specs": configs.read_specs,
            "render": lambda flavour, specs, opts: {
                name: configs.config_text(config, flavour)
                for name, config in configs.model_configs(flavour, specs, opts).items()
            },
            "committed": build.committed_files,
            "build": build.build_repository,
        }
    except ImportError:
        from gesture_recognition.serving import repository as old

        return {
            "options": old.ServingOptions,
            "specs": old.Specs,
            "read_specs": old.read_specs,
            "render": lambda flavour, specs, opts: {
                name: old.render_config(config, flavour)
                for name, config in old.model_configs(flavour, specs, opts).items()
            },
            "committed": old.committed_files,
            "build": old.build_repository,
        }


def dump(out: Path) -> None:
    from gesture_recognition.artifacts import (
        ClassifierSpec,
        DetectorSpec,
        read_classifier_spec,
        shipped_models_dir,
    )
    from gesture_recognition.labels import load_label_map

    api = _api()
    models = shipped_models_dir()
    shipped = api["read_specs"](models)
    spec_sets = {
        "shipped": shipped,
        "finger_count": api["specs"](
            shipped.detector, read_classifier_spec(models / "finger_count/gesture_classifier.json")
        ),
        "square": api["specs"](
            DetectorSpec(imgsz=320), ClassifierSpec(load_label_map("mcs2021"), input_size=160)
        ),
    }
    for spec_name, specs in spec_sets.items():
        for option_name, values in OPTION_SETS.items():
            opts = replace(api["options"](), **values)
            for flavour in FLAVOURS:
                folder = out / "configs" / spec_name / option_name / flavour
                for model, text in api["render"](flavour, specs, opts).items():
                    (folder / model).mkdir(parents=True, exist_ok=True)
                    (folder / model / "config.pbtxt").write_text(text, encoding="utf-8")
    for rel, text in api["committed"]().items():
        path = out / "committed" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for option_name in ("defaults", "limits"):
        opts = replace(api["options"](), **OPTION_SETS[option_name])
        for flavour in FLAVOURS:
            api["build"](flavour, models, out / "built" / option_name / flavour, opts)


def _parse(path: Path) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def compare(old: Path, new: Path) -> list[str]:
    """Every difference between two dumps other than formatting (empty: none)."""
    problems: list[str] = []
    old_files = {p.relative_to(old) for p in old.rglob("*") if p.is_file()}
    new_files = {p.relative_to(new) for p in new.rglob("*") if p.is_file()}
    problems += [f"only in {old}: {p}" for p in sorted(old_files - new_files)]
    problems += [f"only in {new}: {p}" for p in sorted(new_files - old_files)]
    for rel in sorted(old_files & new_files):
        a, b = old / rel, new / rel
        if rel.name == "config.pbtxt":
            if _parse(a) != _parse(b):
                problems.append(
                    f"{rel}: the configs differ\n--- old\n{_parse(a)}--- new\n{_parse(b)}"
                )
            elif bool(EXPLICIT_NO_BATCH.search(a.read_text())) != bool(
                EXPLICIT_NO_BATCH.search(b.read_text())
            ):
                problems.append(f"{rel}: only one of them writes max_batch_size: 0")
        elif rel.name == "model.py":
            continue
        elif rel.name == "build_info.json":
            # The fingerprint digests the generator's source and models_dir the checkout's
            # path: both differ between two checkouts by design.
            info_a, info_b = (json.loads(p.read_text()) for p in (a, b))
            if info_a.keys() != info_b.keys() or info_a["flavour"] != info_b["flavour"]:
                problems.append(f"{rel}: {info_a} vs {info_b}")
        elif a.read_bytes() != b.read_bytes():
            problems.append(f"{rel}: the files differ")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "dump":
        dump(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        old, new = Path(argv[1]), Path(argv[2])
        problems = compare(old, new)
        for problem in problems:
            print(problem)
        configs = sum(1 for _ in old.rglob("config.pbtxt"))
        files = sum(1 for p in old.rglob("*") if p.is_file())
        verdict = "differ" if problems else "are the same (only formatting may differ)"
        print(f"{files} files, {configs} configs compared: {old} and {new} {verdict}")
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
