"""The gesture-client command's parts: input expansion, shared-memory regions, annotated
photos, and the command line's exit codes and messages."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gesture_recognition.client import cli
from gesture_recognition.client.annotate import annotate, annotated_name, save_annotated
from gesture_recognition.client.files import expand_inputs
from gesture_recognition.client.shm import Region, RegionPool, encode_input, region_size

from .client_answers import closed_port, gesture_result

# ----------------------------------------------------------------- input expansion


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_expand_inputs_files_folders_globs(tmp_path: Path) -> None:
    a = _touch(tmp_path / "photos" / "a.jpg")
    b = _touch(tmp_path / "photos" / "nested" / "deeper" / "b.PNG")
    c = _touch(tmp_path / "photos" / "c.webp")
    _touch(tmp_path / "photos" / "notes.txt")
    d = _touch(tmp_path / "other" / "d.jpeg")
    e = _touch(tmp_path / "other" / "e.bmp")
    odd = _touch(tmp_path / "named.dat")

    expansion = expand_inputs(
        [
            str(tmp_path / "photos"),  # folder: recursive, photos only, sorted
            str(tmp_path / "other" / "*.jpeg"),  # glob
            str(a),  # again: no duplicate
            str(tmp_path / "**" / "*.bmp"),  # recursive glob
            str(odd),  # named explicitly: taken whatever its suffix
            str(tmp_path / "missing.jpg"),
            str(tmp_path / "nothing" / "*.jpg"),
        ]
    )
    assert expansion.files == [a, c, b, d, e, odd]
    assert expansion.unmatched == [
        str(tmp_path / "missing.jpg"),
        str(tmp_path / "nothing" / "*.jpg"),
    ]


def test_expand_inputs_empty_folder_is_unmatched(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _touch(tmp_path / "empty" / "readme.md")
    assert expand_inputs([str(tmp_path / "empty")]).unmatched == [str(tmp_path / "empty")]


# ----------------------------------------------------------------- shared memory


def test_region_size() -> None:
    assert region_size(10) == 1 << 20
    assert region_size((1 << 20) + 1) == 1 << 21


def test_encode_input_serializes_bytes_like_triton() -> None:
    data = encode_input(np.array([b"abc"], dtype=np.object_))
    assert data == b"\x03\x00\x00\x00abc"
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert bytes(encode_input(pixels)) == pixels.tobytes()


def test_region_pool_writes_grows_and_cleans_up() -> None:
    pool = RegionPool(prefix="gesture_client_test")
    region, replaced = pool.take(100)
    assert replaced is None and region.key == f"/{region.name}"
    assert Path("/dev/shm", region.name).exists()
    assert region.write(b"hello") == 5
    assert bytes(region.memory.buf[:5]) == b"hello"
    region.registered = True
    pool.give(region)

    bigger, old = pool.take(region.byte_size + 1)
    assert old is region and bigger.byte_size >= region.byte_size + 1
    old.destroy()  # the caller unregisters, then destroys the replaced region
    assert not Path("/dev/shm", old.name).exists()
    pool.give(bigger)
    with pytest.raises(ValueError):
        bigger.write(b"x" * (bigger.byte_size + 1))

    pool.forget_registrations()
    assert not any(r.registered for r in pool.regions())
    pool.destroy_all()
    assert not Path("/dev/shm", bigger.name).exists()


def test_region_names_are_unique() -> None:
    first, second = Region.create(1024), Region.create(1024)
    try:
        assert first.name != second.name
    finally:
        first.destroy()
        second.destroy()


# ----------------------------------------------------------------- annotation


@pytest.mark.parametrize("n_hands", [0, 2])
def test_annotation_writes_a_png_of_the_photo_size(tmp_path: Path, n_hands: int) -> None:
    width, height = 320, 240
    photo = np.full((height, width, 3), 128, np.uint8)
    result = gesture_result(n_hands, width, height)
    path = save_annotated(photo, result, tmp_path / "out", "photo.png")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (width, height) and img.mode == "RGB"
        drawn = np.asarray(img)
    assert (drawn != photo).any()  # the banner at least
    if n_hands:
        x1, _, x2, y2 = (round(float(v)) for v in result.hand_boxes[0])
        edge = drawn[min(y2, height - 1), x1 + (x2 - x1) // 2]
        assert tuple(edge) != (128, 128, 128)  # a box edge was drawn


def test_annotate_keeps_the_input_untouched() -> None:
    photo = np.full((64, 80, 3), 50, np.uint8)
    annotate(photo, gesture_result(1, 80, 64))
    assert (photo == 50).all()


def test_annotated_names_do_not_collide() -> None:
    taken: set[str] = set()
    names = [annotated_name(Path(p), taken) for p in ("a/x.jpg", "b/x.jpg", "b/x.png", "y.jpg")]
    assert names == ["x.png", "x_2.png", "x_3.png", "y.png"]


# ----------------------------------------------------------------- CLI


@pytest.fixture
def photo_file(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (32, 24), (10, 20, 30)).save(path)
    return path


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("concurrency", ["1", "4"], ids=["sync", "async"])
def test_cli_server_down_is_one_clear_line(
    photo_file: Path, protocol: str, concurrency: str
) -> None:
    url = f"127.0.0.1:{closed_port()}"
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    code = cli.main(
        [str(photo_file), "--url", url, "--protocol", protocol, "--retries", "1",
         "--backoff", "0.05", "--concurrency", concurrency],
        out=out,
        err=err,
    )  # fmt: skip
    assert code == cli.EXIT_SERVER
    assert time.monotonic() - start < 10
    assert out.getvalue() == ""
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1, lines
    assert url in lines[0] and protocol in lines[0] and "gesture-serve" in lines[0]
    assert "Traceback" not in err.getvalue()


def test_cli_nothing_to_classify(tmp_path: Path) -> None:
    err = io.StringIO()
    code = cli.main([str(tmp_path / "none.jpg")], out=io.StringIO(), err=err)
    assert code == cli.EXIT_USAGE
    assert "none.jpg" in err.getvalue() and "nothing to classify" in err.getvalue()


def test_cli_rejects_bad_options(photo_file: Path) -> None:
    for argv in (["--protocol", "ftp"], ["--concurrency", "0"], ["--shared-memory", "cuda"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([str(photo_file), *argv], out=io.StringIO(), err=io.StringIO())
        assert exit_info.value.code == cli.EXIT_USAGE


def test_cli_default_url_follows_the_protocol() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["x.jpg", "--protocol", "http"])
    assert args.url is None  # filled in by main from the protocol
    from gesture_recognition.client.clients import default_url

    assert default_url("http").endswith(":8000") and default_url("grpc").endswith(":8001")
