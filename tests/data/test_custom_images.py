"""The images of own-data sources: EXIF orientation applied as Pillow's exif_transpose does, for the tools
that annotate the displayed picture (labelme, Label Studio, Ultralytics)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from refine_cli.data.convert.custom.images import apply_orientation, image_file
from tests.support.custom_exports import photo


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_as_pillow_applies_it(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(photo(5)).save(buffer, format="PNG", exif=exif.tobytes())
    path = tmp_path / "a.png"
    path.write_bytes(buffer.getvalue())
    shown = np.array(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.array_equal(apply_orientation(photo(5), orientation), shown)
    (height, width), fields = image_file(path, oriented=True)
    assert (height, width) == shown.shape[:2]
    if orientation == 1:
        assert fields == {"image_src": path}  # copied byte for byte
    else:
        stored = np.array(Image.open(io.BytesIO(fields["image_bytes"])).convert("RGB"))
        assert fields["image_ext"] == "png" and np.array_equal(stored, shown)
    assert image_file(path)[0] == (48, 64)  # sources that draw on the stored grid keep it
