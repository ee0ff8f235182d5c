"""Own labelled images -> unified (`refine prepare custom NAME --from PATH`): no manifest, no download.

`plan()` finds the source format (`layout.py`), lets its module read the classes, samples and splits
(`coco_json.py`, `labelme.py`, `label_studio.py`, `yolo.py`, `cityscapes_polygons.py`, or the mask
layouts of `layout.py`), applies `--map` (`class_map.py`) and plans the splits; `convert()` hands one
work item to its module's drawing function in a worker. Rules, all documented in docs/custom-data.md:
- sizes: refine reads every image's STORED pixel grid and never applies EXIF orientation (train,
  eval and predict do the same), so a mask must have the stored size; a mask that has the displayed
  size of an EXIF-rotated phone photo is refused with that explanation. Tools that annotate the
  displayed picture (labelme, Label Studio, Ultralytics) get their image stored as displayed (images.py);
- splits: the source's (a folder, list file or JSON per split) when it has a `val` split, otherwise a
  seeded random split of the rest (`--val-fraction`, `--seed`) recorded in meta.json; `test` stays;
- jpg/jpeg/png images are copied byte for byte, bmp/tif/webp are stored as lossless PNG.
The source files' names, sizes and times are fingerprinted, so rerunning after editing a mask
converts again instead of reusing a stale label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from refine_cli.data.convert.base import ConvertedSample, Converter, DatasetSpec, Plan, SampleError, WorkItem
from refine_cli.data.convert.checks import check_same_size, image_size
from refine_cli.data.convert.custom.cityscapes_polygons import convert_cityscapes, scan_cityscapes
from refine_cli.data.convert.custom.class_files import ClassList, Color, LabelTable, read_class_file
from refine_cli.data.convert.custom.class_map import ClassValues, apply_map, class_values, parse_map
from refine_cli.data.convert.custom.coco_json import scan_coco
from refine_cli.data.convert.custom.images import image_file
from refine_cli.data.convert.custom.label_studio import convert_label_studio, scan_label_studio
from refine_cli.data.convert.custom.labelme import convert_labelme, scan_labelme
from refine_cli.data.convert.custom.layout import coco_files_in, detect_format, scan_folder, scan_voc
from refine_cli.data.convert.custom.source import SourceScan, compose_exclusive, no_background_note
from refine_cli.data.convert.custom.yolo import convert_yolo, scan_yolo
from refine_cli.data.convert.registry import register_converter
from refine_cli.data.format import imageio
from refine_cli.data.format.unified import validate_sample_id
from refine_cli.errors import RefineError

FORMATS = ("auto", "folder", "voc", "coco", "labelme", "label-studio", "yolo", "cityscapes")


def parse_void(values: list[str]) -> tuple[tuple[int, ...], tuple[Color, ...]]:
    """`--void 0` (a mask value) and `--void 224,224,192` (a mask colour) -> ignore (255)."""
    numbers: list[int] = []
    colors: list[Color] = []
    for text in values:
        parts = [part.strip() for part in text.split(",")]
        if not all(part.isdigit() for part in parts) or len(parts) not in (1, 3):
            raise RefineError(f"--void {text!r} is neither a mask value nor an r,g,b colour", hint="e.g. --void 0")
        numbers += [int(parts[0])] if len(parts) == 1 else []
        colors += [(int(parts[0]), int(parts[1]), int(parts[2]))] if len(parts) == 3 else []
    if any(not 0 <= v < 65536 for v in numbers) or any(not 0 <= c <= 255 for rgb in colors for c in rgb):
        raise RefineError("--void values are 0-65535 and colours 0-255 per channel")
    return tuple(numbers), tuple(colors)


def decide_splits(
    source: dict[str, list[str]] | None, val_fraction: float, seed: int
) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """The source's splits when it has `val`; else `test` kept and the rest split at random (reproducibly)."""
    source = {name: ids for name, ids in (source or {}).items() if ids}
    if "val" in source:
        if "train" not in source:  # e.g. `default` + `val` lists: the rest is what there is to train on
            rest = sorted({i for name, ids in source.items() if name not in ("val", "test") for i in ids})
            source = {"train": rest, **source} if rest else source
        return source, {"kind": "source", "splits": sorted(source)}
    pool = sorted({i for name, ids in source.items() if name != "test" for i in ids})
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    n_val = round(len(pool) * val_fraction)
    n_val = min(max(n_val, 1 if val_fraction > 0 and len(pool) > 1 else 0), len(pool) - 1)
    val = set(order[:n_val])
    splits = {"train": [i for i in pool if i not in val]}
    if val:
        splits["val"] = [i for i in pool if i in val]
    if "test" in source:
        splits["test"] = source["test"]
    pooled = sorted(name for name in source if name != "test") or ["all"]
    return splits, {"kind": "random", "seed": seed, "val_fraction": val_fraction, "from": pooled}


def fingerprint(paths: list[Path]) -> str:
    """sha256 of every source file's name, size and modification time (cheap: one stat per file)."""
    digest = hashlib.sha256()
    for path in sorted(set(paths)):
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@register_converter
class CustomConverter(Converter):
    """A user's own images and masks (folder, VOC export or COCO JSON) -> one unified dataset."""

    name = "custom"
    manifest = ""  # local files: nothing to download
    version = "1"

    def dataset_name(self, options: dict[str, Any]) -> str:
        """NAME becomes <root>/NAME: a path in it (`../x`, `a/b`) would write (and lock) outside --root."""
        name = options.get("name", self.name)
        if not isinstance(name, str) or not name.strip():
            raise RefineError("the dataset name is empty", hint="name it: refine prepare custom NAME --from PATH")
        try:
            return validate_sample_id(name)
        except ValueError:
            raise RefineError(
                f"dataset name {name!r} is not a plain folder name",
                hint="use letters, digits and _-.+=,@ (no '/', no '..'); --root chooses where it goes",
            ) from None

    def local_inputs(self, options: dict[str, Any]) -> list[Path]:
        named = [*options.get("from", []), options.get("classes"), options.get("images"), options.get("map_file")]
        return [Path(p).expanduser() for p in named if p]

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        paths = [Path(p).expanduser() for p in options["from"]]
        fmt = options.get("format") or "auto"
        if fmt not in FORMATS:
            raise RefineError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
        fmt = detect_format(paths[0]) if fmt == "auto" else fmt
        if len(paths) > 1 and fmt != "coco":
            raise RefineError("several --from are only for COCO JSON files (e.g. train and val)")
        pairs = parse_map(list(options.get("map") or []), _path(options.get("map_file")))
        scan = scan_source(fmt, paths, options)
        classes, lut = apply_map(scan.classes, pairs)
        unknown = bool(options.get("unknown_as_ignore"))
        values = class_values(scan.classes, lut, unknown, scan.background_by_construction)
        items = [WorkItem(sample_id, (*args, values)) for sample_id, args in scan.samples]
        if not items:
            if scan.problems:
                shown = "; ".join(reason for _, reason in scan.problems[:5])
                more = f" (and {len(scan.problems) - 5} more)" if len(scan.problems) > 5 else ""
                raise RefineError(f"no usable sample in {paths[0]}: {shown}{more}", hint="fix them and run again")
            raise RefineError(f"found no usable samples in {paths[0]}", hint="see docs/custom-data.md")
        good = {item.sample_id for item in items}
        known = {name: [i for i in ids if i in good] for name, ids in (scan.splits or {}).items()}
        splits, split_record = decide_splits(known or {"all": sorted(good)}, float(options.get("val_fraction", 0.1)),
                                             int(options.get("seed", 0)))  # fmt: skip
        void_values, void_colors = parse_void(list(options.get("void") or []))
        extra = {"source_format": fmt, "split": split_record, "void_values": list(void_values),
                 "void_colors": [list(c) for c in void_colors], "unknown_as_ignore": unknown}  # fmt: skip
        if pairs:
            extra.update(class_map=dict(pairs), source_classes=list(scan.classes.names))
        spec = DatasetSpec(options["name"], list(classes.names), classes.palette, extra=extra)
        files = scan.files + [Path(p).expanduser() for p in (options.get("classes"), options.get("map_file")) if p]
        record = {"path": str(paths[0].resolve()), "format": fmt, "files": len(set(files)),
                  "fingerprint": fingerprint(files)}  # fmt: skip
        notes = scan.notes + no_background_note(scan.classes, scan.background_by_construction)
        return Plan(spec, splits, items, skipped=scan.skipped, bad=scan.problems, notes=notes, sources=[record])

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        kind, *args = item.args
        return DRAW[kind](tuple(args))


def _path(value: Any) -> Path | None:
    return Path(value).expanduser() if value else None


def scan_source(fmt: str, paths: list[Path], options: dict[str, Any]) -> SourceScan:
    """The chosen source module's reading of `paths`: classes (before --map), samples, splits, findings."""
    given = read_class_file(_path(options["classes"])) if options.get("classes") else None  # type: ignore[arg-type]
    unknown = bool(options.get("unknown_as_ignore"))
    images = _path(options.get("images"))
    if fmt == "coco":
        jsons = [q for p in paths for q in (coco_files_in(p) if p.is_dir() else [p])]
        if not jsons:
            raise RefineError(f"no COCO .json under {paths[0]}")
        crowd_as_class = bool(options.get("crowd_as_class"))
        return scan_coco(jsons, images, given, bool(options.get("keep_empty")), crowd_as_class)
    if fmt == "labelme":
        return scan_labelme(_folder(paths[0], "a folder of labelme .json files"), given, unknown)
    if fmt == "label-studio":
        if not paths[0].is_file():
            raise RefineError(f"--from {paths[0]} is not a Label Studio JSON export file")
        return scan_label_studio(paths[0], images or paths[0].parent, given, unknown)
    if fmt == "yolo":
        if given is not None:
            raise RefineError(
                "a YOLO dataset names its classes in data.yaml", hint="leave out --classes; --map renames"
            )
        yaml_path = (
            paths[0]
            if paths[0].is_file()
            else next(
                (paths[0] / n for n in ("data.yaml", "data.yml") if (paths[0] / n).is_file()), paths[0] / "data.yaml"
            )
        )
        return scan_yolo(yaml_path)
    if fmt == "cityscapes":
        return scan_cityscapes(_folder(paths[0], "a folder of *_polygons.json files"), given, unknown)
    return _scan_masks(fmt, paths[0], given, options)


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise RefineError(f"--from {path} is not a folder", hint=f"give {what}")
    return path


def _scan_masks(fmt: str, path: Path, given: ClassList | None, options: dict[str, Any]) -> SourceScan:
    """The `folder` and `voc` layouts: image + mask pairs, mapped through a class list by value or colour."""
    layout = scan_voc(path) if fmt == "voc" else scan_folder(path)
    if given is None and layout.labelmap is None:
        raise RefineError(
            f"{path} has no class list",
            hint="pass --classes FILE: one name per line (index masks) or `name r g b` lines (colour masks)",
        )
    classes = given if given is not None else read_class_file(layout.labelmap)  # type: ignore[arg-type]
    void_values, void_colors = parse_void(list(options.get("void") or []))
    class_colors = set(classes.colors or ())
    colors = void_colors + tuple(c for c in layout.void_colors if c not in class_colors)
    table = LabelTable.of(classes, void_values, colors, bool(options.get("unknown_as_ignore")))
    files = [layout.labelmap] if given is None and layout.labelmap else []
    files += [p for s in layout.samples for p in (s.image, s.mask)]
    samples = [(s.sample_id, ("mask", str(s.image), str(s.mask), table)) for s in layout.samples]
    return SourceScan("mask", classes, samples, layout.splits, files, layout.problems)


def _convert_mask(args: tuple[Any, ...]) -> ConvertedSample:
    image_path, mask_path, table, values = Path(args[0]), Path(args[1]), args[2], args[3]
    image_hw, image = image_file(image_path)
    try:
        mask = imageio.read_mask(mask_path, what="mask")
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    check_same_size(mask.shape[:2], image_path, image_hw, f"mask {mask_path}")
    try:
        label = table.to_label(mask, str(mask_path))
    except RefineError as error:
        raise SampleError(error.one_line()) from None
    return ConvertedSample(label=_remap(label, values), **image)


def _remap(label: np.ndarray, values: ClassValues) -> np.ndarray:
    """A label in source classes -> the classes after --map (identity: returned as is)."""
    if values.lut == tuple(range(len(values.lut))):
        return label
    table = np.full(256, 255, dtype=np.uint8)
    table[: len(values.lut)] = values.lut
    return table[label]


def _convert_coco(args: tuple[Any, ...]) -> ConvertedSample:
    from refine_cli.data.convert.datasets.coco import decode_segmentation

    image_path, height, width, annotations, values = Path(args[0]), *args[1:]
    image_hw = image_size(image_path)
    if (height, width) != (0, 0):  # 0x0: the record gives no size
        check_same_size((height, width), image_path, image_hw, "its COCO record")
    regions = ((values.of_index(cls), decode_segmentation(seg, *image_hw), bool(crowd))
               for cls, crowd, seg in annotations)  # fmt: skip
    try:
        label = compose_exclusive(regions, *image_hw, values.background)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise SampleError(f"bad segmentation for {image_path.name}: {error}") from None
    return ConvertedSample(label=label, **image_file(image_path)[1])


DRAW = {
    "mask": _convert_mask,
    "coco": _convert_coco,
    "labelme": convert_labelme,
    "label-studio": convert_label_studio,
    "yolo": convert_yolo,
    "cityscapes": convert_cityscapes,
}
