"""scripts/typecheck.py: the installed layout it builds for mypy and the paths it reports."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _typecheck() -> ModuleType:
    path = ROOT / "scripts" / "typecheck.py"
    spec = importlib.util.spec_from_file_location("typecheck_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_installed_package_is_laid_out(tmp_path: Path) -> None:
    tc = _typecheck()
    dirs = tc.package_dirs(ROOT / "pyproject.toml")
    assert dirs["gesture_recognition"] == ROOT / "src" / "gesture_recognition"
    for part in ("client", "training", "export", "benchmarks"):
        assert dirs[f"gesture_recognition.{part}"] == ROOT / part
    tc.lay_out(dirs, tmp_path)
    top = tmp_path / "gesture_recognition"
    # What the installed package imports must resolve in the tree mypy reads.
    assert (top / "pipeline.py").resolve() == ROOT / "src" / "gesture_recognition" / "pipeline.py"
    assert (top / "client" / "clients.py").resolve() == ROOT / "client" / "clients.py"
    assert (top / "training" / "converters" / "voc.py").is_file()
    assert (top / "serving" / "python_model.py").is_file()
    assert not (top / "__pycache__").exists()


def test_errors_are_reported_at_their_repository_paths() -> None:
    tc = _typecheck()
    dirs = tc.package_dirs(ROOT / "pyproject.toml")
    line = 'gesture_recognition/client/shm.py:47: error: a/b "x"  [arg-type]'
    assert tc.to_repo_path(line, dirs) == 'client/shm.py:47: error: a/b "x"  [arg-type]'
    core = "gesture_recognition/serving/steps.py:3: error: y"
    assert tc.to_repo_path(core, dirs) == "src/gesture_recognition/serving/steps.py:3: error: y"
    nested = "gesture_recognition/training/converters/voc.py:61: note: z"
    assert tc.to_repo_path(nested, dirs) == "training/converters/voc.py:61: note: z"
    summary = "Found 1 error in 1 file (checked 78 source files)"
    assert tc.to_repo_path(summary, dirs) == summary
