"""Own labelled images -> unified (`refine prepare custom NAME --from PATH`): no manifest, no download.

`plan()` finds the layout (`layout.py`, `coco_json.py` beside this module), the class list and the splits;
`convert()` turns one mask (or one image's COCO annotations) into a label. Rules, all documented in
docs/custom-data.md:
- sizes: refine reads every image's STORED pixel grid and never applies EXIF orientation (train,
  eval and predict do the same), so a mask must have the stored size; a mask that has the displayed
  size of an EXIF-rotated phone photo is refused with that explanation;
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
from refine_cli.data.convert.custom.class_files import Color, LabelTable, read_class_file
from refine_cli.data.convert.custom.coco_json import scan_coco
from refine_cli.data.convert.custom.layout import coco_files_in, detect_format, scan_folder, scan_voc
from refine_cli.data.convert.registry import register_converter
from refine_cli.data.format import imageio
from refine_cli.data.format.unified import validate_sample_id
from refine_cli.errors import RefineError

FORMATS = ("auto", "folder", "voc", "coco")
STORED_AS_IS = (".jpg", ".jpeg", ".png")


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


def _image_source(image: Path) -> dict[str, Any]:
    if image.suffix.lower() in STORED_AS_IS:
        return {"image_src": image}
    try:
        rgb = imageio.read_rgb(image)
    except imageio.ImageReadError as error:
        raise SampleError(error.one_line()) from None
    return {"image_bytes": imageio.encode_image_png(rgb), "image_ext": "png"}


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
        named = [*options.get("from", []), options.get("classes"), options.get("images")]
        return [Path(p).expanduser() for p in named if p]

    def plan(self, sources: dict[str, Path], options: dict[str, Any]) -> Plan:
        paths = [Path(p).expanduser() for p in options["from"]]
        fmt = options.get("format") or "auto"
        if fmt not in FORMATS:
            raise RefineError(f"--format {fmt} is not one of {', '.join(FORMATS)}")
        fmt = detect_format(paths[0]) if fmt == "auto" else fmt
        if len(paths) > 1 and fmt != "coco":
            raise RefineError("several --from are only for COCO JSON files (e.g. train and val)")
        given = read_class_file(Path(options["classes"]).expanduser()) if options.get("classes") else None
        void_values, void_colors = parse_void(list(options.get("void") or []))
        unknown = bool(options.get("unknown_as_ignore"))
        files = [Path(options["classes"]).expanduser()] if options.get("classes") else []
        if fmt == "coco":
            jsons = [q for p in paths for q in (coco_files_in(p) if p.is_dir() else [p])]
            if not jsons:
                raise RefineError(f"no COCO .json under {paths[0]}")
            images_dir = Path(options["images"]).expanduser() if options.get("images") else None
            crowd_as_class = bool(options.get("crowd_as_class"))
            scan = scan_coco(jsons, images_dir, given, bool(options.get("keep_empty")), crowd_as_class)
            classes, problems, skipped, notes = scan.classes, scan.problems, scan.skipped, scan.notes
            source_splits: dict[str, list[str]] | None = scan.splits
            items = [WorkItem(s.sample_id, ("coco", str(s.image), s.height, s.width, s.annotations))
                     for s in scan.samples]  # fmt: skip
            files += jsons + [s.image for s in scan.samples]
        else:
            layout = scan_voc(paths[0]) if fmt == "voc" else scan_folder(paths[0])
            if given is None and layout.labelmap is None:
                raise RefineError(
                    f"{paths[0]} has no class list",
                    hint="pass --classes FILE: one name per line (index masks) or `name r g b` lines (colour masks)",
                )
            classes = given if given is not None else read_class_file(layout.labelmap)  # type: ignore[arg-type]
            files += [layout.labelmap] if given is None and layout.labelmap else []
            class_colors = set(classes.colors or ())
            colors = void_colors + tuple(c for c in layout.void_colors if c not in class_colors)
            table = LabelTable.of(classes, void_values, colors, unknown)
            problems, skipped, notes, source_splits = layout.problems, [], [], layout.splits
            items = [WorkItem(s.sample_id, ("mask", str(s.image), str(s.mask), table)) for s in layout.samples]
            files += [p for s in layout.samples for p in (s.image, s.mask)]
        if not items:
            raise RefineError(f"found no usable image/mask pairs in {paths[0]}", hint="see docs/custom-data.md")
        good = {item.sample_id for item in items}
        known = {name: [i for i in ids if i in good] for name, ids in (source_splits or {}).items()}
        splits, split_record = decide_splits(known or {"all": sorted(good)}, float(options.get("val_fraction", 0.1)),
                                             int(options.get("seed", 0)))  # fmt: skip
        extra = {"source_format": fmt, "split": split_record, "void_values": list(void_values),
                 "void_colors": [list(c) for c in void_colors], "unknown_as_ignore": unknown}  # fmt: skip
        spec = DatasetSpec(options["name"], list(classes.names), classes.palette, extra=extra)
        record = {"path": str(paths[0].resolve()), "format": fmt, "files": len(set(files)),
                  "fingerprint": fingerprint(files)}  # fmt: skip
        return Plan(spec, splits, items, skipped=skipped, bad=problems, notes=notes, sources=[record])

    @staticmethod
    def convert(item: WorkItem) -> ConvertedSample:
        kind, image_path, *rest = item.args
        image = Path(image_path)
        image_hw = image_size(image)
        if kind == "coco":
            height, width, annotations = rest
            if (height, width) != (0, 0):  # 0x0: the record gives no size
                check_same_size((height, width), image, image_hw, "its COCO record")
            from refine_cli.data.convert.datasets.coco import rasterize

            try:
                label = rasterize(list(annotations), *image_hw)
            except (ValueError, TypeError, KeyError, IndexError) as error:
                raise SampleError(f"bad segmentation for {image.name}: {error}") from None
            return ConvertedSample(label=label, **_image_source(image))
        mask_path, table = Path(rest[0]), rest[1]
        try:
            mask = imageio.read_mask(mask_path, what="mask")
        except imageio.ImageReadError as error:
            raise SampleError(error.one_line()) from None
        check_same_size(mask.shape[:2], image, image_hw, f"mask {mask_path}")
        try:
            label = table.to_label(mask, str(mask_path))
        except RefineError as error:
            raise SampleError(error.one_line()) from None
        return ConvertedSample(label=label, **_image_source(image))
