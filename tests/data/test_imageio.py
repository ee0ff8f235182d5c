"""The one image reader: pixel limits before decoding, truncation caught, stored grid, label round trips."""

from __future__ import annotations

import io
import resource
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refine_cli.data.format import imageio
from refine_cli.data.format.imageio import ImageReadError, PixelLimitError
from refine_cli.errors import RefineError
from tests.support.bombs import jpeg_bomb, png_bomb


def _jpeg(shape: tuple[int, int] = (48, 64), seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize("make", [png_bomb, jpeg_bomb])
def test_pixel_bombs_are_refused_from_the_header_before_decoding(tmp_path: Path, make) -> None:
    path = tmp_path / "bomb.img"
    path.write_bytes(make())
    assert path.stat().st_size < 4096
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for read in (imageio.read_rgb, imageio.read_label, imageio.verify_decodes, imageio.image_size, imageio.read_mask):
        with pytest.raises(PixelLimitError, match=r"30000x30000 = 900\.0 Mpixel, over the 100 Mpixel limit"):
            read(path)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024  # nothing near the 2.7 GB a decode would take


def test_the_limit_comes_from_the_environment_and_zero_means_none(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "a.jpg"
    path.write_bytes(_jpeg((48, 64)))
    monkeypatch.setenv(imageio.MAX_PIXELS_ENV, "3000")
    with pytest.raises(PixelLimitError, match="64x48"):
        imageio.read_rgb(path)
    monkeypatch.setenv(imageio.MAX_PIXELS_ENV, str(48 * 64))
    assert imageio.read_rgb(path).shape == (48, 64, 3)
    monkeypatch.setenv(imageio.MAX_PIXELS_ENV, "0")
    assert imageio.image_size(tmp_path / "a.jpg") == (48, 64)
    for word in ("lots", "inf"):
        monkeypatch.setenv(imageio.MAX_PIXELS_ENV, word)
        with pytest.raises(RefineError, match="is not a number"):
            imageio.read_rgb(path)


@pytest.mark.parametrize("cut", [1, 2, 100, 0.5])
def test_truncated_jpegs_fail_in_full_and_draft_decodes(cut: float) -> None:
    data = _jpeg()
    assert imageio.verify_decodes(data).height == 48  # the real size, not the 1/8 draft size
    keep = len(data) - cut if isinstance(cut, int) else int(len(data) * cut)
    with pytest.raises(ImageReadError, match="truncated"):
        imageio.verify_decodes(data[:keep])
    with pytest.raises(ImageReadError, match="truncated"):
        imageio.read_rgb(data[:keep])


@pytest.mark.parametrize("cut", [12, 13, 20])
def test_pngs_cut_after_their_last_pixel_fail_verification(cut: int) -> None:
    """PIL decodes a PNG whose IEND or last checksum is gone; prepare and `check --full` must not call it ok."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    assert imageio.verify_decodes(data).width == 64
    with pytest.raises(ImageReadError, match="truncated"):
        imageio.verify_decodes(data[:-cut])


def test_missing_folder_and_garbage_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="missing image file"):
        imageio.read_rgb(tmp_path / "nope.jpg")
    with pytest.raises(ImageReadError, match="is not a file"):
        imageio.read_rgb(tmp_path)
    (tmp_path / "x.png").write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="not an image file"):
        imageio.read_label(tmp_path / "x.png")


def test_exif_orientation_is_ignored_so_images_stay_on_the_label_grid(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (64, 32), (200, 10, 10)).save(path, exif=exif)
    assert imageio.read_rgb(path).shape == (32, 64, 3)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str) -> None:
    image = Image.new(mode, (8, 6))
    path = tmp_path / ("a.tif" if mode == "CMYK" else "a.png")
    image.save(path)
    rgb = imageio.read_rgb(path)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8


def test_label_round_trip_keeps_indices_and_attaches_the_palette(tmp_path: Path) -> None:
    label = np.array([[0, 1, 2], [255, 4, 0]], dtype=np.uint8)
    path = tmp_path / "l.png"
    path.write_bytes(imageio.encode_label_png(label, [(0, 0, 0), (128, 0, 0), (0, 128, 0)]))
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.getpalette()[3:6] == [128, 0, 0]
        assert image.getpalette()[255 * 3 : 256 * 3] == list(imageio.IGNORE_COLOR)
    np.testing.assert_array_equal(imageio.read_label(path), label)
    grey = tmp_path / "g.png"
    grey.write_bytes(imageio.encode_label_png(label))
    with Image.open(grey) as image:
        assert image.mode == "L"
    np.testing.assert_array_equal(imageio.read_label(grey), label)


def test_colour_labels_are_refused_but_read_as_colours_by_read_mask(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.new("RGB", (5, 4), (128, 0, 0)).save(path)
    with pytest.raises(ImageReadError, match="mode RGB"):
        imageio.read_label(path)
    mask = imageio.read_mask(path)
    assert mask.shape == (4, 5, 3) and tuple(mask[0, 0]) == (128, 0, 0)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((4, 5), 300, dtype=np.uint16)).save(wide)
    assert imageio.read_mask(wide).max() == 300
