"""Own-data exports of annotation tools, in the exact layouts they write, with independent reference labels.

- labelme: one JSON per image as labelme 5/6 saves it (`version`, `flags`, `shapes` with label, points,
  group_id, description, shape_type, flags, mask; `imagePath`, `imageData`, `imageHeight`, `imageWidth`;
  indent 2), mask shapes as a base64 0/1 PNG of their box, images as a file or embedded;
  `labelme_reference` draws them by labelme's published rules (`labelme.utils.shape_to_mask` per shape
  into its own mask, then `cls[mask] = value` in file order), independently of refine's one-canvas drawing.
- Label Studio: a JSON export (list of tasks with data.image `/data/upload/<project>/<file>` and
  annotations[].result), brushes as RLEs made by the SDK's encoder and by rle-pack (label_studio_rle.json,
  from tools/label_studio_rle_fixture.py).
- YOLO segmentation: Roboflow's layout (data.yaml with `../train/images`) and Ultralytics' own (`path`,
  images/<split>, labels/<split>); rectangles whose pixels are known exactly.
- Cityscapes: gtFine/<split>/<city>/*_gtFine_polygons.json beside leftImg8bit/, or one flat folder.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tests.support.custom_exports import SIZE, painted, photo, save_rgb
from tests.support.prepare_runner import PrepareRun, run_prepare

H, W = SIZE
RLE_FIXTURE = Path(__file__).with_name("label_studio_rle.json")


def prepare_custom(source: Path, root: Path, *extra: str, name: str = "own") -> PrepareRun:
    """`refine prepare custom NAME --from SOURCE --root ROOT -j 1 ...` through the CLI, with its JSON report."""
    return run_prepare(["custom", name, "--from", str(source), "--root", str(root), "-j", "1", *extra])


def one_line_error(output: str) -> str:
    """The single `error:` line of a failed command (and no traceback)."""
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


# --- labelme -------------------------------------------------------------------------------------------


def shape(label: str, points: list, shape_type: str | None = "polygon", mask: np.ndarray | None = None) -> dict:
    """A shape as labelme writes it (`mask`: a bool patch, saved as labelme's base64 0/1 PNG)."""
    encoded = None if mask is None else png_b64(mask.astype(np.uint8))
    return {"label": label, "points": points, "group_id": None, "description": "", "shape_type": shape_type,
            "flags": {}, "mask": encoded}  # fmt: skip


def png_b64(array: np.ndarray, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def labelme_file(path: Path, shapes: list[dict], image_path: str, embed: np.ndarray | None = None) -> Path:
    """labelme's JSON (labelme.LabelFile.save): embedded imageData when `embed` is given."""
    doc = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None if embed is None else png_b64(embed),
        "imageHeight": H,
        "imageWidth": W,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def labelme_reference(shapes: list[dict], values: dict[str, int], size: tuple[int, int] = SIZE) -> np.ndarray:
    """labelme2voc's label, drawn by labelme's rules: one bool mask per shape, then cls[mask] = value in order."""
    cls = np.zeros(size, dtype=np.int32)
    for item in shapes:
        kind, xy = item["shape_type"], [tuple(p) for p in item["points"]]
        if kind == "mask":
            mask = np.zeros(size, dtype=bool)
            (x1, y1), (x2, y2) = np.asarray(item["points"]).astype(int)
            patch = np.array(Image.open(io.BytesIO(base64.b64decode(item["mask"])))).astype(bool)
            mask[y1 : y2 + 1, x1 : x2 + 1] = patch
        else:
            canvas = Image.fromarray(np.zeros(size, dtype=np.uint8))
            draw = ImageDraw.Draw(canvas)
            if kind == "circle":
                (cx, cy), (px, py) = xy
                d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
                draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
            elif kind == "rectangle":
                (x0, y0), (x1, y1) = xy
                draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
            elif kind in ("line", "linestrip"):
                draw.line(xy=xy, fill=1, width=10)
            elif kind == "point":
                (cx, cy) = xy[0]
                draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], outline=1, fill=1)
            else:
                draw.polygon(xy=xy, outline=1, fill=1)
            mask = np.array(canvas, dtype=bool)
        cls[mask] = values[item["label"]]
    return np.where(cls < 0, 255, cls).astype(np.uint8)  # labelme's lblsave: -1 (__ignore__) -> 255


def labelme_scenes() -> dict[str, list[dict]]:
    """Every shape type, overlaps, float coordinates, `_background_` and `__ignore__` shapes."""
    patch = np.zeros((9, 12), dtype=bool)
    patch[2:8, 1:11] = True
    patch[4, 5] = False
    return {
        "a": [
            shape("cat", [[4.3, 3.7], [30.6, 5.2], [26.1, 28.9], [8.5, 22.4]]),
            shape("dog", [[40.7, 30.2], [22.2, 12.8]], "rectangle"),  # corners given in reverse
            shape("cat", [[50.5, 10.5], [50.5, 17.25]], "circle"),
            shape("_background_", [[12.0, 10.0], [18.0, 10.0], [15.0, 16.0]]),
            shape("__ignore__", [[0.0, 40.0], [10.0, 40.0], [10.0, 47.0], [0.0, 47.0]]),
            shape("dog", [[14.2, 33.1], [60.3, 36.4], [14.6, 33.9]]),  # a sliver: mostly its outline is drawn
        ],
        "b": [
            shape("dog", [[3.0, 40.5], [60.5, 44.2]], "line"),
            shape("cat", [[5.0, 5.0], [20.0, 25.0], [35.0, 5.0], [55.0, 30.0]], "linestrip"),
            shape("dog", [[58.0, 6.0]], "point"),
            shape("dog", [[30.7, 20.6], [41.9, 28.8]], "mask", mask=patch),  # labelme truncates the corners
            shape("cat", [[45.0, 35.0], [55.0, 33.0], [57.0, 42.0], [47.0, 44.0]], "oriented_rectangle"),
            shape("dog", [[1.0, 1.0], [9.0, 1.0], [5.0, 9.0]], None),  # labelme 3: no shape_type
        ],
    }


def labelme_export(root: Path) -> dict[str, list[dict]]:
    """Two labelme files: `a` names a JPEG beside it, `b` embeds a PNG (its imagePath names no file)."""
    scenes = labelme_scenes()
    save_rgb(root / "a.jpg", photo(40), quality=92)
    labelme_file(root / "a.json", scenes["a"], "a.jpg")
    labelme_file(root / "b.json", scenes["b"], "..\\elsewhere\\b.png", embed=photo(41))
    return scenes


# --- Label Studio --------------------------------------------------------------------------------------


def rle_fixture() -> dict[str, Any]:
    return json.loads(RLE_FIXTURE.read_text(encoding="utf-8"))


def ls_result(kind: str, value: dict, size: tuple[int, int] = SIZE) -> dict:
    """One result as Label Studio exports it."""
    return {"original_width": size[1], "original_height": size[0], "image_rotation": 0, "value": value,
            "id": f"r{abs(hash(json.dumps(value))) % 10**6}", "from_name": "tag", "to_name": "image", "type": kind,
            "origin": "manual"}  # fmt: skip


def ls_annotation(results: list[dict], number: int, updated: str, cancelled: bool = False, truth: bool = False) -> dict:
    return {"id": number, "completed_by": 1, "result": results, "was_cancelled": cancelled, "ground_truth": truth,
            "created_at": "2024-05-20T10:00:00.000000Z", "updated_at": updated, "draft_created_at": None,
            "lead_time": 12.5, "prediction": {}, "result_count": len(results), "unique_id": f"u{number}",
            "import_id": None, "last_action": None, "task": number // 10, "project": 3, "updated_by": 1,
            "parent_prediction": None, "parent_annotation": None, "last_created_by": None}  # fmt: skip


def ls_task(number: int, url: str, annotations: list[dict]) -> dict:
    return {"id": number, "annotations": annotations, "file_upload": url.rsplit("/", 1)[-1], "drafts": [],
            "predictions": [], "data": {"image": url}, "meta": {}, "created_at": "2024-05-20T09:00:00.000000Z",
            "updated_at": "2024-05-20T10:00:00.000000Z", "inner_id": number, "total_annotations": len(annotations),
            "cancelled_annotations": 0, "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0,
            "last_comment_updated_at": None, "project": 3, "updated_by": 1, "comment_authors": []}  # fmt: skip


def brush(rle: list[int], label: str) -> dict:
    return ls_result("brushlabels", {"format": "rle", "rle": rle, "brushlabels": [label]})


# --- YOLO ----------------------------------------------------------------------------------------------


def yolo_box_line(cls: int, x0: int, y0: int, x1: int, y1: int) -> str:
    """A rectangle polygon of pixel corners (inclusive), normalised with 6 decimals as exporters write them."""
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return f"{cls} " + " ".join(f"{x / W:.6f} {y / H:.6f}" for x, y in corners)


def yolo_fill(boxes: list[tuple[int, int, int, int, int]], values: list[int]) -> np.ndarray:
    """The label of rectangles: each covers [int(x0/W*W), int(x1/W*W)] x [...] (Ultralytics' truncation, inclusive
    ends as OpenCV fills integer polygons); larger first, so a smaller one is on top. values[k]: YOLO class k."""
    label = np.zeros(SIZE, dtype=np.uint8)
    spans = []
    for cls, x0, y0, x1, y1 in boxes:
        a, b = int(float(f"{x0 / W:.6f}") * W), int(float(f"{x1 / W:.6f}") * W)
        c, d = int(float(f"{y0 / H:.6f}") * H), int(float(f"{y1 / H:.6f}") * H)
        spans.append(((b - a + 1) * (d - c + 1), values[cls], (a, b, c, d)))
    for _, value, (a, b, c, d) in sorted(spans, key=lambda span: -span[0]):
        label[c : d + 1, a : b + 1] = value
    return label


YOLO_SCENES = {
    "t0": [(0, 3, 4, 30, 20), (1, 10, 10, 20, 40)],  # overlap: the smaller dog is on top of the cat
    "t1": [(1, 40, 2, 60, 45)],
    "v0": [(0, 5, 5, 25, 25), (0, 30, 30, 50, 44)],
}


def yolo_roboflow_export(root: Path) -> dict[str, np.ndarray]:
    """Roboflow's "YOLOv8" download: data.yaml with ../train/images, train/ and valid/ with images/ + labels/."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(
        "train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\nnc: 2\nnames: ['cat', 'dog']\n\n"
        "roboflow:\n  workspace: me\n  project: pets\n  version: 1\n",
        encoding="utf-8",
    )
    expected = {}
    for name, boxes in YOLO_SCENES.items():
        split = "train" if name.startswith("t") else "valid"
        save_rgb(root / split / "images" / f"{name}_jpg.rf.abc.jpg", photo(50 + len(expected)))
        lines = [yolo_box_line(*box) for box in boxes]
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        (root / split / "labels" / f"{name}_jpg.rf.abc.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected[f"{name}_jpg.rf.abc"] = yolo_fill(boxes, [1, 2])
    return expected


# --- Cityscapes ----------------------------------------------------------------------------------------


CITY_OBJECTS = [
    {"label": "road", "polygon": [[0, 30], [63, 30], [63, 47], [0, 47]]},
    {"label": "car", "polygon": [[5, 20], [25, 18], [27, 35], [6, 36]]},
    {"label": "car", "polygon": [[30, 5], [50, 5], [50, 25], [30, 25]], "deleted": 1},
    {"label": "cargroup", "polygon": [[40, 26], [60, 26], [60, 44], [40, 44]]},
    {"label": "sky", "polygon": [[0, 0], [63, 0], [63, 8], [0, 8]]},
]


def cityscapes_reference(objects: list[dict], values: dict[str, int], background: int) -> np.ndarray:
    """json2labelImg's drawing: Pillow polygon fills (no outline) in file order, deleted ones skipped."""
    image = Image.new("L", (W, H), background)
    draw = ImageDraw.Draw(image)
    for obj in objects:
        if not obj.get("deleted"):
            label = obj["label"] if obj["label"] in values else obj["label"][: -len("group")]
            draw.polygon([tuple(p) for p in obj["polygon"]], fill=values[label])
    return np.array(image)


def cityscapes_file(path: Path, objects: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"imgHeight": H, "imgWidth": W, "objects": [{**o, "date": "01-Jan-2020 10:00:00", "id": i, "user": "me",
                                                       "verified": 1} for i, o in enumerate(objects)]}  # fmt: skip
    path.write_text(json.dumps(doc, indent=4), encoding="utf-8")


def cityscapes_export(root: Path) -> list[str]:
    """gtFine/{train,val}/<city>/*_gtFine_polygons.json with leftImg8bit/{train,val}/<city>/*_leftImg8bit.png."""
    ids = []
    for split, city, frame in (("train", "aachen", 19), ("train", "bochum", 20), ("val", "lindau", 21)):
        base = f"{city}_000000_{frame:06d}"
        cityscapes_file(root / "gtFine" / split / city / f"{base}_gtFine_polygons.json", CITY_OBJECTS)
        save_rgb(root / "leftImg8bit" / split / city / f"{base}_leftImg8bit.png", photo(frame))
        ids.append(base)
    return ids


def painted_mask(seed: int, cls: int) -> np.ndarray:
    return painted(seed) == cls
