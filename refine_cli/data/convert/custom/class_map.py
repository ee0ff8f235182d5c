"""`--map OLD=NEW` / `--map-file`: rename, merge, ignore or drop classes of own data on the way in.

- rename: `--map cat=feline` (NEW is no class yet, and only `cat` goes to it);
- merge: `--map truck=car --map bus=car` (NEW is a class, or several OLD go to one new name);
- ignore: `--map bicycle=255` (or `=ignore`): its pixels become 255, left out of training and scores;
- background: `--map pole=background` (the name of class 0; `=0` means it too).
The mapping is applied before anything is drawn, so merged classes never make an overlap "conflict"
(255) with each other in the sources that have that rule. Classes keep their order; a merged class
keeps its place and colour, a renamed one the old one's. Every source class gets a value (its new
index or 255), which travels to the workers as `ClassValues`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_cli.class_tables import check_class_name
from refine_cli.data.convert.custom.class_files import (
    BACKGROUND_NAMES,
    CLASS_NAME_HINT,
    IGNORE,
    ClassList,
    is_background,
    make_class_list,
)
from refine_cli.data.convert.custom.json_shapes import check_shape, read_json, read_yaml
from refine_cli.errors import RefineError

IGNORE_WORDS = ("255", "ignore")
_MAP_FILE_SCHEMA = {
    "oneOf": [
        {"type": "object", "additionalProperties": {"type": ["string", "integer"]}},
        {"type": "array", "items": {"type": "string"}},
    ]
}


@dataclass(frozen=True)
class ClassValues:
    """Source class -> label value after the mapping; picklable, so it travels to the workers."""

    lut: tuple[int, ...]  # source class index -> label value (255: ignore)
    names: dict[str, int] = field(default_factory=dict)  # label name -> value (ignored labels -> 255)
    background: int = 0  # the value of pixels no shape covers
    unknown: int = IGNORE  # the value of a label in no class (only reached with --unknown-as-ignore)

    def of_name(self, name: str) -> int:
        return self.names.get(name, self.unknown)

    def of_index(self, index: int) -> int:
        return self.lut[index] if 0 <= index < len(self.lut) else IGNORE


def parse_map(pairs: list[str], map_file: Path | None) -> list[tuple[str, str]]:
    """(OLD, NEW) pairs from `--map OLD=NEW` options and a YAML/JSON map file ({OLD: NEW} or ["OLD=NEW"])."""
    items = [_split(text, f"--map {text!r}") for text in pairs]
    if map_file is not None:
        items += _read_map_file(Path(map_file).expanduser())
    seen: dict[str, str] = {}
    for old, new in items:
        if seen.get(old, new) != new:
            raise RefineError(f"the class map sends {old!r} to both {seen[old]!r} and {new!r}")
        seen[old] = new
    return list(seen.items())


def _split(text: str, where: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    old, new = old.strip(), new.strip()
    if not sep or not old or not new:
        raise RefineError(f"{where} is not OLD=NEW", hint="e.g. --map truck=car, --map bicycle=255")
    check_class_name(old, where, CLASS_NAME_HINT)
    check_class_name(new, where, CLASS_NAME_HINT)
    return old, new


def _read_map_file(path: Path) -> list[tuple[str, str]]:
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    doc = read_yaml(path, "map file") if is_yaml else read_json(path, "map file")
    check_shape(doc, _MAP_FILE_SCHEMA, f"map file {path}", hint="write {OLD: NEW} pairs, e.g. truck: car")
    if isinstance(doc, list):
        return [_split(text, f"map file {path}: {text!r}") for text in doc]
    return [_split(f"{old}={new}", f"map file {path}: {old!r}") for old, new in doc.items()]


def _target(new: str, names: tuple[str, ...]) -> str | int:
    """A class name, or IGNORE."""
    if new in names:
        return new
    if new.lower() in IGNORE_WORDS:
        return IGNORE
    if new == "0" or new.lower() == "background":
        return names[0] if is_background(names[0]) else new
    return new


def apply_map(classes: ClassList, pairs: list[tuple[str, str]]) -> tuple[ClassList, tuple[int, ...]]:
    """(the class list after the mapping, source index -> new index or 255)."""
    if not pairs:
        return classes, tuple(range(len(classes.names)))
    names = classes.names
    missing = [old for old, _ in pairs if old not in names]
    if missing:
        shown = ", ".join(repr(n) for n in names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        raise RefineError(
            f"the class map names {', '.join(repr(m) for m in missing)}, which is not a class; the classes are {shown}",
            hint="map the classes as the source names them (see the class table of a run without --map)",
        )
    mapping = {old: _target(new, names) for old, new in pairs}
    chained = [old for old, target in mapping.items() if target in mapping and target != old]
    if chained:
        raise RefineError(
            f"the class map sends {chained[0]!r} to {mapping[chained[0]]!r}, which is mapped itself",
            hint="map each class straight to its final name",
        )
    final: dict[str, int] = {}  # new name -> position of its first source class
    colors: dict[str, Any] = {}
    for index, name in enumerate(names):
        target = mapping.get(name, name)
        if target == IGNORE:
            continue
        final.setdefault(str(target), index)
        keep_own = name == target or str(target) not in names  # a merged class keeps the target's colour
        if classes.colors is not None and (keep_own and str(target) not in colors):
            colors[str(target)] = classes.colors[index]
    entries = [(name, colors.get(name)) for name in sorted(final, key=final.__getitem__)]
    mapped = make_class_list(entries, "the class list after --map")
    lut = tuple(
        IGNORE if mapping.get(name, name) == IGNORE else mapped.names.index(str(mapping.get(name, name)))
        for name in names
    )
    return mapped, lut


def class_values(
    source: ClassList, lut: tuple[int, ...], unknown_as_ignore: bool = False, covered_by_default: bool = True
) -> ClassValues:
    """The values every label name and index of `source` draw, after the mapping `lut`.

    Pixels no shape covers are class 0 when the source's class 0 is a background class (or when
    `covered_by_default` says class 0 is background by construction); otherwise they are ignore.
    """
    names = {name: lut[i] for i, name in enumerate(source.names)}
    names.update({name: IGNORE for name in source.ignored})
    has_background = covered_by_default or is_background(source.names[0])
    if is_background(source.names[0]):  # `_background_` shapes are class 0 when it is called `background`
        names.update({name: lut[0] for name in BACKGROUND_NAMES if name not in names})
    return ClassValues(lut, names, lut[0] if has_background else IGNORE, IGNORE if unknown_as_ignore else -1)
