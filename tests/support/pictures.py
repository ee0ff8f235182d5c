"""Checks for the pictures refine writes: files that decode, are not blank, and pages whose images resolve."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image


def assert_picture(path: Path, min_colours: int = 4) -> np.ndarray:
    """`path` decodes, has real content (pixel spread, several colours); returns its RGB pixels."""
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        image.load()
        rgb = np.asarray(image.convert("RGB"))
    assert rgb.shape[0] > 16 and rgb.shape[1] > 16, f"{path} is only {rgb.shape}"
    assert float(rgb.std()) > 5.0, f"{path} is blank"
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) >= min_colours, f"{path} has only {len(colours)} colours"
    return rgb


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.sources.append(str(values["src"]))
        if tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))


def page_images(page: Path) -> tuple[list[Path], list[Path]]:
    """The image files and link targets an HTML page references, resolved next to it (all must be relative)."""
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    for reference in parser.sources + parser.links:
        assert "://" not in reference and not reference.startswith("/"), f"{reference} does not open offline"
    return [page.parent / src for src in parser.sources], [page.parent / href for href in parser.links]
