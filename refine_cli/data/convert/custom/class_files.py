"""Class lists of own data (`refine prepare custom --classes`) and the mapping of source masks to labels.

A class list is read from one of the forms annotation tools write: one name per line, `name r g b`
lines, CVAT/Datumaro `labelmap.txt` (`name:r,g,b::`), or a JSON/YAML list of {name, color}. Classes
keep the file's order, except that a class called `background` becomes class 0. Index masks count in
the FILE's order (value k = the file's k-th class); colour masks are matched by exact colour. Nothing is
guessed: a value or colour that is in no class is an error naming it and the mask (or 255 on request).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.class_tables import check_class_name, voc_palette
from refine_cli.errors import RefineError

IGNORE = 255
Color = tuple[int, int, int]


@dataclass(frozen=True)
class ClassList:
    """Class names in model order, their colours (None: the file gave none), and the file's order."""

    names: tuple[str, ...]
    colors: tuple[Color, ...] | None
    file_order: tuple[int, ...]  # file position -> model index

    @property
    def palette(self) -> list[Color]:
        """Viewing colours: the file's, else the VOC colour map."""
        return list(self.colors) if self.colors is not None else voc_palette(len(self.names))


def make_class_list(entries: list[tuple[str, Color | None]], where: str) -> ClassList:
    """Check names and colours (unique, all or none coloured, < 255 classes); move `background` first."""
    if not entries:
        raise RefineError(f"{where} names no classes", hint="one class name per line, e.g. background, cat, dog")
    names = [name for name, _ in entries]
    if len(names) >= IGNORE:  # before any work that grows with the count
        raise RefineError(f"{where} has {len(names)} classes; at most 254 fit (255 means ignore)")
    for name in names:
        check_class_name(name, where, "give every class a name on one line, without control characters")
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise RefineError(f"{where} names the class(es) {', '.join(map(repr, duplicates))} more than once")
    colored = [color for _, color in entries if color is not None]
    if colored and len(colored) != len(entries):
        missing = [name for name, color in entries if color is None]
        raise RefineError(f"{where} gives colours for some classes but not for {', '.join(missing[:5])}")
    if len(set(colored)) != len(colored):
        raise RefineError(f"{where} gives two classes the same colour", hint="each class needs its own colour")
    order = list(range(len(entries)))
    lowered = [name.lower() for name in names]
    if "background" in lowered and lowered.index("background") != 0:
        first = lowered.index("background")
        order = [first] + [i for i in order if i != first]
    file_order = [order.index(position) for position in range(len(entries))]
    return ClassList(
        names=tuple(names[i] for i in order),
        colors=tuple(colored[i] for i in order) if colored else None,
        file_order=tuple(file_order),
    )


def _color(value: Any, where: str) -> Color:
    """(r, g, b) from [r, g, b], 'r,g,b' or '#rrggbb'."""
    try:
        if isinstance(value, str) and value.startswith("#") and len(value) == 7:
            rgb = [int(value[i : i + 2], 16) for i in (1, 3, 5)]
        elif isinstance(value, str):
            rgb = [int(part) for part in value.replace(",", " ").split()]
        else:
            rgb = [int(part) for part in value]
    except (TypeError, ValueError):
        rgb = []
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise RefineError(f"{where}: {value!r} is not a colour", hint="write r,g,b with values 0-255 or #rrggbb")
    return (rgb[0], rgb[1], rgb[2])


def _text_entries(text: str, where: str) -> list[tuple[str, Color | None]]:
    entries: list[tuple[str, Color | None]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        here = f"{where} line {number}"
        if ":" in line:  # CVAT / Datumaro labelmap: name:r,g,b:parts:actions
            name, _, rest = line.partition(":")
            color_text = rest.split(":", 1)[0].strip()
            entries.append((name.strip(), _color(color_text, here) if color_text else None))
            continue
        words = line.split()
        if len(words) >= 4 and all(word.isdigit() for word in words[-3:]):
            entries.append((" ".join(words[:-3]), _color(words[-3:], here)))
        else:
            entries.append((line, None))
    return entries


def _structured_entries(data: Any, where: str) -> list[tuple[str, Color | None]]:
    if isinstance(data, dict):
        data = data.get("classes", data.get("names", data.get("labels")))
        if isinstance(data, dict):  # {0: name, 1: name} (YOLO/mmseg style)
            data = [data[key] for key in sorted(data, key=int)]
    if not isinstance(data, list):
        raise RefineError(f"{where} is not a list of classes", hint='write [{"name": "cat", "color": [255, 0, 0]}]')
    entries: list[tuple[str, Color | None]] = []
    for item in data:
        if isinstance(item, str):
            entries.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            color = item.get("color", item.get("colour"))
            entries.append((item["name"], _color(color, f"{where} class {item['name']!r}") if color else None))
        else:
            raise RefineError(f"{where}: {item!r} is not a class", hint="each entry is a name or {name, color}")
    return entries


def read_class_file(path: Path) -> ClassList:
    """Read any of the accepted class-file forms (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise RefineError(f"cannot read the class file {path}: {error}") from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return make_class_list(_structured_entries(json.loads(text), str(path)), str(path))
        except json.JSONDecodeError as error:
            raise RefineError(f"{path} is not valid JSON: {error}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return make_class_list(_structured_entries(yaml.safe_load(text), str(path)), str(path))
        except yaml.YAMLError as error:
            raise RefineError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
    return make_class_list(_text_entries(text, str(path)), str(path))


@dataclass(frozen=True)
class LabelTable:
    """How a source mask becomes a label; picklable, so it travels to the worker processes."""

    num_classes: int
    colors: tuple[Color, ...] | None
    file_order: tuple[int, ...]
    void_values: tuple[int, ...] = ()
    void_colors: tuple[Color, ...] = ()
    unknown_to_ignore: bool = False

    @classmethod
    def of(cls, classes: ClassList, void_values=(), void_colors=(), unknown_to_ignore: bool = False) -> LabelTable:
        return cls(len(classes.names), classes.colors, classes.file_order, tuple(void_values), tuple(void_colors),
                   unknown_to_ignore)  # fmt: skip

    def value_lut(self) -> np.ndarray:
        """Source value -> label (-1 = in no class): values count the file's classes, void values skipped.

        Sized by the values that mean something (classes, voids, 255), not by the mask's largest value:
        one pixel of 3e8 in a 32-bit mask must not build a 3e8-entry table. The last entry (-1) stands
        for every larger value (see `to_label`).
        """
        voids = sorted(set(self.void_values))
        meaningful = max(IGNORE, self.num_classes + len(voids), *voids) + 1
        lut = np.full(meaningful + 1, -1, dtype=np.int64)
        lut[IGNORE] = IGNORE
        for value in range(meaningful):
            if value in voids:
                lut[value] = IGNORE
                continue
            position = value - sum(1 for v in voids if v < value)
            if 0 <= position < self.num_classes and value != IGNORE:
                lut[value] = self.file_order[position]
        return lut

    def to_label(self, mask: np.ndarray, where: str) -> np.ndarray:
        """HxW uint8 label of a mask as `imageio.read_mask` returns it; RefineError for unknown values/colours."""
        if mask.ndim == 3 and self.colors is None:
            if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
                raise RefineError(
                    f"mask {where} has colours but the class list has none",
                    hint="pass --classes with `name r g b` lines (or the export's labelmap.txt)",
                )
            mask = mask[..., 0]  # a grey mask saved as RGB: the values are the indices
        if mask.ndim == 2:
            if mask.size and int(mask.min()) < 0:
                raise RefineError(f"mask {where} has negative values")
            lut = self.value_lut()
            index = mask
            if mask.size and int(mask.max()) >= len(lut):  # only wide (16/32-bit) masks get here
                index = np.minimum(mask, len(lut) - 1)  # every value past the table is in no class
            label = lut[index]
            unknown = np.unique(mask[label < 0])
            shown = ", ".join(str(int(v)) for v in unknown[:8])
            what = f"values {shown} that are in no class (0-{self.num_classes - 1}"
            what += f", void {', '.join(map(str, self.void_values))})" if self.void_values else ")"
        else:
            packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) | mask[..., 2]
            codes, inverse = np.unique(packed, return_inverse=True)
            known = {(r << 16) | (g << 8) | b: IGNORE for r, g, b in self.void_colors}
            known.update({(r << 16) | (g << 8) | b: index for index, (r, g, b) in enumerate(self.colors or ())})
            mapped = np.array([known.get(int(code), -1) for code in codes], dtype=np.int64)
            label = mapped[inverse.reshape(packed.shape)]
            unknown = codes[mapped < 0]
            shown = ", ".join(f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in (int(v) for v in unknown[:8]))
            what = f"colours {shown} that are in no class"
        if unknown.size:
            if not self.unknown_to_ignore:
                more = f" and {unknown.size - 8} more" if unknown.size > 8 else ""
                raise RefineError(
                    f"mask {where} has {what}{more}",
                    hint="add them to the class list, or pass --unknown-as-ignore to map them to 255",
                )
            label = np.where(label < 0, IGNORE, label)
        return label.astype(np.uint8)
