"""scripts/compare_configs.py: two repositories whose configs differ only in formatting compare
equal; any other difference is reported."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The same config as the generator before issue 20 wrote it, and as text_format writes it.
HAND_WRITTEN = """name: "hand_crops"
backend: "python"
max_batch_size: 0
input [
  {
    name: "LETTERBOX"
    data_type: TYPE_FP32
    dims: [ 3 ]
  }
]
instance_group [ { count: 1 kind: KIND_CPU } ]
parameters: { key: "MAX_HANDS" value: { string_value: "16" } }
"""
TEXT_FORMAT = """# Generated
name: "hand_crops"
input {
  name: "LETTERBOX"
  data_type: TYPE_FP32
  dims: 3
}
instance_group {
  count: 1
  kind: KIND_CPU
}
parameters {
  key: "MAX_HANDS"
  value {
    string_value: "16"
  }
}
backend: "python"
max_batch_size: 0
"""


@pytest.fixture(scope="module")
def script() -> ModuleType:
    path = ROOT / "scripts" / "compare_configs.py"
    spec = importlib.util.spec_from_file_location("compare_configs_script", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _tree(root: Path, config: str, other: bytes = b"spec") -> Path:
    (root / "hand_crops" / "1").mkdir(parents=True)
    (root / "hand_crops" / "config.pbtxt").write_text(config)
    (root / "hand_crops" / "1" / "spec.json").write_bytes(other)
    return root


def test_formatting_alone_is_no_difference(script: ModuleType, tmp_path: Path) -> None:
    old, new = _tree(tmp_path / "old", HAND_WRITTEN), _tree(tmp_path / "new", TEXT_FORMAT)
    assert script.compare(old, new) == []
    assert script.main(["compare", str(old), str(new)]) == 0


@pytest.mark.parametrize(
    ("config", "other", "problem"),
    [
        (TEXT_FORMAT.replace('"16"', '"17"'), b"spec", "the configs differ"),
        (TEXT_FORMAT.replace("max_batch_size: 0\n", ""), b"spec", "max_batch_size: 0"),
        (TEXT_FORMAT, b"other spec", "spec.json: the files differ"),
    ],
)
def test_any_other_difference_is_reported(
    script: ModuleType, tmp_path: Path, config: str, other: bytes, problem: str
) -> None:
    old, new = _tree(tmp_path / "old", HAND_WRITTEN), _tree(tmp_path / "new", config, other)
    problems = script.compare(old, new)
    assert len(problems) == 1 and problem in problems[0]
    assert script.main(["compare", str(old), str(new)]) == 1


def test_the_python_models_code_is_left_to_the_tests(script: ModuleType, tmp_path: Path) -> None:
    old, new = _tree(tmp_path / "old", HAND_WRITTEN), _tree(tmp_path / "new", TEXT_FORMAT)
    (old / "hand_crops" / "1" / "model.py").write_text("# before\n")
    (new / "hand_crops" / "1" / "model.py").write_text("# after\n")
    assert script.compare(old, new) == []


def test_a_missing_file_is_reported(script: ModuleType, tmp_path: Path) -> None:
    old, new = _tree(tmp_path / "old", HAND_WRITTEN), _tree(tmp_path / "new", TEXT_FORMAT)
    (old / "gesture_decision").mkdir()
    (old / "gesture_decision" / "labels.txt").write_text("stop\n")
    assert script.compare(old, new) == [f"only in {old}: gesture_decision/labels.txt"]


def test_the_current_generator_matches_its_own_dump(script: ModuleType, tmp_path: Path) -> None:
    """``dump`` is deterministic: the same code dumps the same files twice."""
    script.dump(tmp_path / "a")
    script.dump(tmp_path / "b")
    assert script.compare(tmp_path / "a", tmp_path / "b") == []
    configs = list((tmp_path / "a").rglob("config.pbtxt"))
    assert len(configs) > 300
