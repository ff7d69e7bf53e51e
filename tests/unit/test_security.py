"""Security properties that need no server: pickles, dataset paths, generated files, formats.

(The live server's loopback-only binding and refused model control are checked in
tests/functional/test_reliability.py; the launcher's defaults in test_launcher.py.)
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from gesture_recognition.artifacts import shipped_models_dir
from gesture_recognition.images import InvalidImageError, decode_image
from gesture_recognition.serving import launcher
from gesture_recognition.serving.build import build_repository
from gesture_recognition.serving.configs import ServingOptions
from gesture_recognition.training.converters.coco import read_coco
from gesture_recognition.training.converters.common import UnsafePathError, resolve_inside
from gesture_recognition.training.converters.voc import read_voc_dir

REPO = Path(__file__).resolve().parents[2]
CODE_DIRS = ("src", "training", "export", "client", "benchmarks")


def _python_files() -> list[Path]:
    return [p for d in CODE_DIRS for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts]


def _calls(tree: ast.AST, dotted: str) -> list[ast.Call]:
    owner, _, name = dotted.rpartition(".")
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (
            isinstance(func, ast.Attribute)
            and func.attr == name
            and isinstance(func.value, ast.Name)
            and func.value.id == owner
        ):
            found.append(node)
    return found


def test_checkpoints_are_loaded_without_executing_pickled_code() -> None:
    """Every torch.load passes weights_only=True, and nothing unpickles directly.

    ultralytics' own YOLO(...) checkpoint loading unpickles its .pt files (it must, they hold
    model objects); the project only points it at checkpoints it trained itself
    (README, "Limits and reliability").
    """
    unsafe = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for call in _calls(tree, "torch.load"):
            weights_only = [k for k in call.keywords if k.arg == "weights_only"]
            ok = weights_only and isinstance(weights_only[0].value, ast.Constant)
            if not (ok and weights_only[0].value.value is True):  # type: ignore[attr-defined]
                unsafe.append(f"{path.relative_to(REPO)}:{call.lineno} torch.load")
        for dotted in ("pickle.load", "pickle.loads", "dill.load", "joblib.load"):
            unsafe += [
                f"{path.relative_to(REPO)}:{c.lineno} {dotted}" for c in _calls(tree, dotted)
            ]
    assert unsafe == []


@pytest.mark.parametrize(
    "relative",
    ["../outside.jpg", "a/../../outside.jpg", "/etc/passwd", "//etc/passwd", "a/../../../etc"],
)
def test_resolve_inside_refuses_escapes(tmp_path: Path, relative: str) -> None:
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(UnsafePathError, match="escapes the dataset root"):
        resolve_inside(root, relative)


def test_resolve_inside_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    assert resolve_inside(root, "sub/a.jpg") == root.resolve() / "sub" / "a.jpg"
    with pytest.raises(UnsafePathError):
        resolve_inside(root, "link/elsewhere.jpg")


def _jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (200, 100, 50)).save(path)


def test_voc_and_coco_skip_absolute_paths(tmp_path: Path) -> None:
    voc = tmp_path / "voc" / "train"
    _jpeg(voc / "ok.jpg")
    box = "<object><name>hand</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
    box += "<ymax>9</ymax></bndbox></object>"
    for stem, filename in (("ok", "ok.jpg"), ("abs", "/etc/passwd"), ("up", "../../etc/passwd")):
        (voc / f"{stem}.xml").write_text(
            f"<annotation><filename>{filename}</filename>{box}</annotation>", encoding="utf-8"
        )
    records = {r.image_path.name: r for r in read_voc_dir(tmp_path / "voc", source="t")}
    problems = {name: r.problem for name, r in records.items()}
    assert problems["ok.jpg"] is None
    assert sorted(p for p in problems.values() if p) == ["path_escapes_root"] * 2
    assert all(not str(r.image_path).startswith("/etc") for r in records.values())

    coco = tmp_path / "coco" / "train"
    _jpeg(coco / "ok.jpg")
    data = {
        "images": [
            {"id": 1, "file_name": "ok.jpg", "width": 32, "height": 24},
            {"id": 2, "file_name": "/etc/passwd", "width": 32, "height": 24},
        ],
        "annotations": [
            {"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 8, 8]} for i in (1, 2)
        ],
        "categories": [{"id": 1, "name": "hand"}],
    }
    (coco / "ann.json").write_text(json.dumps(data), encoding="utf-8")
    coco_records = list(read_coco(coco / "ann.json", source="c"))
    assert [r.problem for r in coco_records] == [None, "path_escapes_root"]
    assert not any(str(r.image_path).startswith("/etc") for r in coco_records)


def _text_files(root: Path) -> list[Path]:
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".onnx"
    ]


def _machine_paths(tmp: Path) -> list[str]:
    home = os.path.expanduser("~")
    return [s for s in {str(tmp), str(tmp.resolve()), str(REPO), home} if s not in ("", "/")]


def test_generated_repository_names_no_machine_path(tmp_path: Path) -> None:
    models = shipped_models_dir()
    if not (models / "hand_detector.onnx").is_file():
        pytest.skip("no shipped models to build a repository from")
    out = build_repository("cpu", models, tmp_path / "repo", ServingOptions())
    leaks = []
    for path in _text_files(out):
        text = path.read_text(encoding="utf-8", errors="replace")
        leaks += [f"{path.relative_to(out)}: {s}" for s in _machine_paths(tmp_path) if s in text]
    assert leaks == []


def test_shipped_models_carry_no_machine_path() -> None:
    """ONNX metadata and spec JSONs: no build machine's paths (exports record such things)."""
    models = shipped_models_dir()
    files = [p for p in models.rglob("*") if p.suffix in (".onnx", ".json", ".md")]
    if not files:
        pytest.skip("no shipped models")
    markers = [b"/home/", b"/root/", b"/tmp/", str(REPO).encode(), b"site-packages"]
    leaks = [f"{p.name}: {m!r}" for p in files for m in markers if m in p.read_bytes()]
    assert leaks == []


def test_build_report_names_no_machine_path(tmp_path: Path) -> None:
    from gesture_recognition.export.build_engines import repository_report

    root = tmp_path / "repo"
    (root / "m" / "1").mkdir(parents=True)
    (root / "m" / "config.pbtxt").write_text('name: "m"\n')
    report = repository_report(root, "cpu")
    assert str(tmp_path) not in report


def test_eps_and_other_plugins_are_not_parsed() -> None:
    """PIL hands EPS to Ghostscript; only photo formats are opened."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(InvalidImageError, match="format not recognised"):
        decode_image(eps)
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PPM")  # a harmless format, also not a photo
    with pytest.raises(InvalidImageError, match="accepted: JPEG"):
        decode_image(buffer.getvalue())


def test_launcher_defaults_are_local_and_locked() -> None:
    args = launcher.parse_args([])
    assert args.address == "127.0.0.1"
    assert not args.allow_model_control
    assert args.stub_watchdog


def test_build_reports_show_paths_without_the_machine_prefix(repo_root: Path) -> None:
    from gesture_recognition.export.build_engines import shown

    assert shown(repo_root / "models" / "gesture_classifier.onnx") == (
        "models/gesture_classifier.onnx"
    )
    assert shown(repo_root.parent / "shared" / "data") == "../shared/data"
    assert shown("/somewhere/else/crops") == "crops"


def test_shown_paths_survive_symlinked_folders(tmp_path: Path, repo_root: Path) -> None:
    from gesture_recognition.paths import shown_path

    real = tmp_path / "real" / "data"
    real.mkdir(parents=True)
    root = tmp_path / "checkout" / "repo"
    root.mkdir(parents=True)
    (tmp_path / "checkout" / "shared").symlink_to(tmp_path / "real")
    assert shown_path(root / ".." / "shared" / "data", root) == "../shared/data"
    assert shown_path(root / "models" / "x.onnx", root) == "models/x.onnx"


MACHINE_PATH = re.compile(r"(?<![\w.])/(?:work|tmp|home|root|Users)/")


def test_committed_reports_name_no_machine_path(repo_root: Path) -> None:
    """Reports and model cards are written on a developer's machine and committed: the paths
    they show must be relative to the repository (a naive-baseline line once leaked one)."""
    leaks = []
    for folder in ("reports", "models", "training/reviews"):
        for path in sorted((repo_root / folder).rglob("*")):
            if path.suffix not in (".md", ".json", ".csv", ".log", ".txt") or not path.is_file():
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if MACHINE_PATH.search(line):
                    leaks.append(f"{path.relative_to(repo_root)}:{number}: {line[:120]}")
    assert not leaks, "\n".join(leaks)
