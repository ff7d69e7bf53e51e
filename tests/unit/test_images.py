"""Decoding user photos: formats and modes, EXIF orientation, broken input, decompression bombs,
tiny images."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from gesture_recognition.images import (
    EXIF_ORIENTATION,
    MIN_SIDE,
    InvalidImageError,
    check_image_array,
    decode_image,
    load_image,
    shown_size,
    upright,
)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gradient(width: int = 40, height: int = 30) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(
        np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2), (height, width, 3)
    ).astype(np.uint8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width x height`` but which carries almost no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def test_png_round_trip_is_exact() -> None:
    pixels = gradient()
    out = decode_image(encode(Image.fromarray(pixels), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (30, 40, 3)
    np.testing.assert_array_equal(out, pixels)


def test_jpeg_decodes_close_to_the_original(tmp_path: Path) -> None:
    pixels = gradient()
    data = encode(Image.fromarray(pixels), "JPEG", quality=95)
    out = decode_image(data)
    assert out.shape == (30, 40, 3)
    assert np.abs(out.astype(int) - pixels.astype(int)).mean() < 4
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(load_image(path), out)


def test_grayscale_becomes_three_equal_channels() -> None:
    gray = np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) % 256
    out = decode_image(encode(Image.fromarray(gray.astype(np.uint8), "L"), "PNG"))
    assert out.shape == (30, 40, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_rgba_is_composited_on_white() -> None:
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (200, 10, 10, 255)  # opaque red half
    rgba[:, 10:] = (0, 0, 0, 0)  # fully transparent half
    out = decode_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert out.shape == (20, 20, 3)
    assert np.all(out[:, :10] == (200, 10, 10))
    assert np.all(out[:, 10:] == 255)


def test_palette_png_becomes_rgb() -> None:
    img = Image.fromarray(gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = decode_image(encode(img, "PNG"))
    np.testing.assert_array_equal(out, np.asarray(img.convert("RGB")))


def test_16_bit_png_is_scaled_to_8_bit() -> None:
    deep = np.zeros((10, 12), np.uint16)
    deep[:, 4:8] = 32768
    deep[:, 8:] = 65535
    data = encode(Image.fromarray(deep), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8
    assert np.all(out[:, :4] == 0) and np.all(out[:, 4:8] == 128) and np.all(out[:, 8:] == 255)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"definitely not an image",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 30,
        b"\xff\xd8\xff\xe0" + b"\x00" * 50,
    ],
    ids=["empty", "text", "png-signature-only", "jpeg-magic-only"],
)
def test_unreadable_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidImageError):
        decode_image(data)


def test_truncated_jpeg_is_refused() -> None:
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noisy), "JPEG", quality=90)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(InvalidImageError, match="readable"):
        decode_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_from_the_header(monkeypatch) -> None:
    def no_decoding(self):  # pragma: no cover - reached only if the check is missing
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InvalidImageError, match="limit"):
        decode_image(png_header_only(100_000, 100_000))
    with pytest.raises(InvalidImageError, match="limit"):
        decode_image(png_header_only(2_000, 2_000), max_pixels=1_000_000)


def test_a_real_image_over_a_small_limit_is_refused() -> None:
    data = encode(Image.fromarray(gradient(100, 100)), "PNG")
    with pytest.raises(InvalidImageError, match="10000"):
        decode_image(data, max_pixels=5_000)
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 3)


@pytest.mark.parametrize(("width", "height"), [(1, 1), (MIN_SIDE - 1, 50), (50, MIN_SIDE - 1)])
def test_tiny_images_are_refused_with_the_reason(width: int, height: int) -> None:
    data = encode(Image.new("RGB", (width, height), (9, 9, 9)), "PNG")
    with pytest.raises(InvalidImageError, match=f"at least {MIN_SIDE} pixels"):
        decode_image(data)
    assert decode_image(encode(Image.new("RGB", (MIN_SIDE, MIN_SIDE)), "PNG")).shape == (
        MIN_SIDE,
        MIN_SIDE,
        3,
    )


def test_check_image_array() -> None:
    good = np.zeros((16, 16, 3), np.uint8)
    assert check_image_array(good) is not None
    strided = np.zeros((16, 32, 3), np.uint8)[:, ::2]
    assert check_image_array(strided).flags.c_contiguous
    for bad, reason in [
        ([[0]], "numpy array"),
        (good.astype(np.float32), "UINT8"),
        (good[:, :, 0], "RGB"),
        (np.zeros((16, 16, 4), np.uint8), "RGB"),
    ]:
        with pytest.raises(InvalidImageError, match=reason):
            check_image_array(bad)
    with pytest.raises(InvalidImageError, match="limit"):
        check_image_array(good, max_pixels=100)


def test_unreadable_bytes_are_refused_after_ultralytics_patched_pil() -> None:
    """ultralytics replaces Image.open with a wrapper that imports pi_heif on unknown bytes."""
    from gesture_recognition.training.offline import configure_offline

    configure_offline()
    import ultralytics.utils.patches  # noqa: F401  (applies the patch)

    assert Image.open.__module__ == "ultralytics.utils.patches"
    with pytest.raises(InvalidImageError, match="not a readable image"):
        decode_image(b"definitely not an image")


# The EXIF spec's eight orientations: how a viewer turns the stored pixels to show the photo,
# written with numpy so the check does not rely on PIL's own exif_transpose.
SHOWN = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),  # a phone held upright: turned 90 degrees clockwise
    7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def with_orientation(stored: np.ndarray, tag: object, fmt: str = "PNG") -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = tag
    return encode(Image.fromarray(stored), fmt, exif=exif.tobytes())


@pytest.mark.parametrize("tag", sorted(SHOWN))
def test_the_exif_orientation_is_applied(tag: int) -> None:
    stored = gradient(40, 30)  # not square: a turn changes the shape too
    out = decode_image(with_orientation(stored, tag))
    assert np.array_equal(out, SHOWN[tag](stored))


@pytest.mark.parametrize("tag", sorted(SHOWN))
def test_the_shown_size_is_the_upright_photos(tag: int) -> None:
    stored = gradient(40, 30)
    with Image.open(io.BytesIO(with_orientation(stored, tag))) as img:
        assert shown_size(img) == SHOWN[tag](stored).shape[1::-1]
        if tag == 1:
            assert upright(img) is img  # nothing to turn: no copy of the pixels


def test_a_jpeg_from_a_phone_held_upright_is_decoded_upright() -> None:
    stored = gradient(48, 32)
    out = decode_image(with_orientation(stored, 6, "JPEG"))
    assert out.shape == (48, 32, 3)
    assert np.abs(out.astype(int) - SHOWN[6](stored)).mean() < 3


@pytest.mark.parametrize("tag", [0, 9, 65535])
def test_an_invalid_orientation_leaves_the_pixels_as_stored(tag: int) -> None:
    stored = gradient(40, 30)
    assert np.array_equal(decode_image(with_orientation(stored, tag)), stored)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_corrupt_exif_block_leaves_the_pixels_as_stored(fmt: str, recwarn) -> None:
    stored = gradient(40, 30)
    # A TIFF header whose first directory claims 5 entries and holds none.
    corrupt = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x05\x00"
    out = decode_image(encode(Image.fromarray(stored), fmt, exif=corrupt))
    assert out.shape == stored.shape
    if fmt == "PNG":
        assert np.array_equal(out, stored)
    assert not [w for w in recwarn if "EXIF" in str(w.message)]


def test_a_real_phone_photo_with_an_orientation_tag_is_read_upright(shared_data: Path) -> None:
    # One of the three sign-language digit photos a phone stored sideways (tag 6): read as
    # stored, the hand points sideways; every photo viewer shows it upright.
    path = shared_data / "sign_language_digits" / "7" / "IMG_5874.JPG"
    with Image.open(path) as img:
        assert img.getexif().get(EXIF_ORIENTATION) == 6
        stored = np.asarray(img.convert("RGB"))
    assert np.array_equal(load_image(path), np.rot90(stored, -1))
