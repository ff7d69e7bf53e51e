"""Label maps: built-in maps, aliases, unknown labels and maps from JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gesture_recognition.labels import (
    BUILTIN_LABEL_MAPS,
    LabelMap,
    UnknownLabelError,
    load_label_map,
)


@pytest.mark.parametrize("name", BUILTIN_LABEL_MAPS)
def test_builtin_maps_load(name: str) -> None:
    label_map = load_label_map(name)
    assert label_map.name == name
    assert label_map.num_classes == len(label_map.classes) == len(set(label_map.classes)) > 0
    for alias, target in label_map.aliases.items():
        assert label_map.canonical(alias) == target


def test_mcs2021_order_and_peace_alias() -> None:
    mcs = load_label_map("mcs2021")
    # The competition's column order: the index of a class is part of the contract.
    assert mcs.classes == ("no_gesture", "stop", "victory", "mute", "ok", "like", "dislike")
    assert mcs.canonical("peace") == "victory" and mcs.index("peace") == 2
    assert mcs.contains("peace") and mcs.contains("like") and not mcs.contains("call")
    assert mcs.no_hand_label == "no_gesture"


def test_hagrid_and_finger_count_maps() -> None:
    hagrid = load_label_map("hagrid")
    # The 14 labels of hagrid_hand_crops: 12 gestures, no_gesture and other_gesture; HaGRID's
    # further gestures (four, three, two_up, ...) are aliases of other_gesture.
    assert hagrid.num_classes == 14 and "no_gesture" in hagrid.classes
    assert "other_gesture" in hagrid.classes and hagrid.canonical("four") == "other_gesture"
    assert "peace" in hagrid.classes and "victory" not in hagrid.classes
    fingers = load_label_map("finger_count")
    assert fingers.canonical("3-hand") == "3" and fingers.index("5-hand") == 5
    assert fingers.no_hand_label == "no_hand" and "no_hand" not in fingers.classes


def test_unknown_label_is_an_error() -> None:
    mcs = load_label_map("mcs2021")
    with pytest.raises(UnknownLabelError, match="call"):
        mcs.canonical("call")
    with pytest.raises(KeyError):
        mcs.index("two_up")


def test_json_file_map(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    data = {
        "name": "mine",
        "classes": ["none", "thumb", "palm"],
        "aliases": {"like": "thumb", "stop": "palm"},
        "no_hand_label": "none",
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    label_map = load_label_map(path)
    assert label_map.classes == ("none", "thumb", "palm")
    assert label_map.index("stop") == 2 and label_map.no_hand_label == "none"
    assert LabelMap.from_dict(label_map.to_dict()) == label_map
    assert load_label_map(str(path)) == label_map


def test_missing_map_names_the_builtins(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mcs2021"):
        load_label_map(tmp_path / "nope.json")


@pytest.mark.parametrize(
    "data",
    [
        {"classes": ["a", "a"]},
        {"classes": []},
        {"classes": "abc"},
        {"classes": ["a", 1]},
        {"classes": ["a"], "aliases": {"b": "c"}},
        {"classes": ["a"], "aliases": ["b"]},
    ],
)
def test_invalid_maps_are_refused(data: dict) -> None:
    with pytest.raises(ValueError):
        LabelMap.from_dict(data)


def test_the_builtin_maps_are_the_label_maps_folder() -> None:
    folder = Path(__file__).resolve().parents[2] / "src" / "gesture_recognition" / "label_maps"
    assert set(BUILTIN_LABEL_MAPS) == {p.stem for p in folder.glob("*.json")}
    assert {"mcs2021", "hagrid", "finger_count"} <= set(BUILTIN_LABEL_MAPS)
