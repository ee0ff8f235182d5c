"""Predict label maps for arbitrary image files: palette PNGs, overlays and optional probabilities.

Bad inputs (unreadable, missing, not an image) are reported and skipped so one broken file in a
folder of thousands does not cost the whole run; the caller decides what "nothing worked" means.
"""

from __future__ import annotations

import glob
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from refine_cli.data.format.imageio import IMAGE_SUFFIXES, ImageReadError, encode_label_png, read_rgb
from refine_cli.data.format.palette import palette_array, prediction_overlay
from refine_cli.engine.infer.loop import Backend, InferenceConfig, prefetch, run_inference
from refine_cli.errors import RefineError
from refine_cli.fileio import check_writable_folder, write_bytes_atomic

_GLOB_CHARS = set("*?[")


@dataclass
class PredictSummary:
    """What happened to every input: written outputs per processed image, reasons for skipped ones."""

    out_dir: Path
    processed: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    missing_outputs: list[tuple[str, str]] = field(default_factory=list)  # (file not written, why)

    def to_json(self) -> dict:
        return {
            "out_dir": str(self.out_dir),
            "processed": len(self.processed),
            "failed": [{"input": name, "reason": reason} for name, reason in self.failed],
            "not_written": [{"output": name, "reason": reason} for name, reason in self.missing_outputs],
            "outputs": [str(path) for path in self.outputs],
            "seconds": round(self.seconds, 3),
        }


def expand_inputs(inputs: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (their image files, not recursive) and globs -> (image paths, unusable inputs)."""
    found: list[Path] = []
    problems: list[tuple[str, str]] = []
    for text in inputs:
        path = Path(text).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append((text, "folder has no image files"))
            found.extend(files)
        elif path.is_file():
            found.append(path)
        elif _GLOB_CHARS & set(text):
            files = sorted(Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file())
            if not files:
                problems.append((text, "pattern matches no files"))
            found.extend(files)
        else:
            problems.append((text, "does not exist"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, problems


def _read_or_reason(path: Path) -> np.ndarray | str:
    """The RGB image, or the one-line reason it cannot be used (predict skips such files)."""
    try:
        return read_rgb(path)
    except ImageReadError as error:
        return error.one_line()


def predict_images(
    model: nn.Module | Backend,
    paths: list[Path],
    out_dir: Path,
    config: InferenceConfig = InferenceConfig(),  # noqa: B008 - frozen, so one shared default is safe
    *,
    palette: list[list[int]] | None,
    classes: list[str],
    save_overlay: bool = False,
    save_probs: bool = False,
    progress: bool = True,
    label_id_map: Sequence[int] | None = None,
    overlay_style: tuple[float, bool] = (0.5, False),
    notify: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Write `<stem>.png` (+ `<stem>_overlay.jpg`, `<stem>_probs.npz`) into `out_dir` for each image.

    `config` says how each image is predicted (TTA, tiles, CRF, batch, test protocol). With `label_id_map`
    (class index -> source id, e.g. Cityscapes trainId -> labelId) `<stem>.png` holds the source ids as a
    plain 8-bit grayscale PNG, the format benchmark servers expect; ignore and any index without an entry
    become 0. `overlay_style` is (alpha, legend): the overlay blends the labels at alpha with every region
    outlined, and with legend a legend of the classes present below the picture.
    """
    from tqdm import tqdm

    _check_unique_stems(paths)
    writer = PredictionWriter(out_dir, palette, classes, save_overlay, save_probs, label_id_map)
    writer.overlay_alpha, writer.overlay_legend = overlay_style
    summary = PredictSummary(out_dir=out_dir)
    created = [folder for folder in (out_dir, *out_dir.parents) if not folder.exists()]
    check_writable_folder(out_dir)  # right before the loop: its `finally` removes them if nothing is written
    start = time.perf_counter()
    bar = tqdm(total=len(paths), desc="predict", unit=" img", disable=not progress, leave=False)

    def decoded() -> Iterator[tuple[Path, np.ndarray]]:
        for path, image in prefetch(_read_or_reason, paths):
            if isinstance(image, str):
                summary.failed.append((str(path), image))
                bar.update(1)
            else:
                yield path, image

    try:
        for prediction in run_inference(model, decoded(), config, want_probs=save_probs, notify=notify):
            path = prediction.key
            written = writer.write(path.stem, prediction.image, prediction.label_array(), prediction.probs)
            summary.outputs += written
            summary.missing_outputs += writer.missing(path.stem, written)
            summary.processed.append(path)
            bar.update(1)
    finally:
        bar.close()
        if not summary.outputs:
            _remove_empty(created)  # a run that wrote nothing leaves no folders behind either
    summary.seconds = time.perf_counter() - start
    return summary


def _check_unique_stems(paths: list[Path]) -> None:
    """Two inputs with one stem would overwrite each other's `<stem>.png`: refused before any work."""
    stems: dict[str, Path] = {}
    for path in paths:
        if path.stem in stems:
            raise RefineError(
                f"{stems[path.stem]} and {path} would both be written as {path.stem}.png",
                hint="predict them into separate --out folders",
            )
        stems[path.stem] = path


JPEG_MAX_SIDE = 65500  # what OpenCV's (and libjpeg's) encoder accepts


class PredictionWriter:
    """The files of one predicted image: `<stem>.png`, and `<stem>_overlay.jpg` / `<stem>_probs.npz` when asked.

    With `label_id_map` (class index -> source id, e.g. Cityscapes trainId -> labelId) `<stem>.png` holds
    the source ids as a plain 8-bit grayscale PNG; otherwise class indices with the palette attached.
    """

    def __init__(
        self,
        out_dir: Path,
        palette: list[list[int]] | None,
        classes: list[str],
        save_overlay: bool = False,
        save_probs: bool = False,
        label_id_map: Sequence[int] | None = None,
    ) -> None:
        self.out_dir, self.classes = out_dir, classes
        self.save_overlay, self.save_probs = save_overlay, save_probs
        self.overlay_alpha, self.overlay_legend = 0.5, False  # --alpha, --legend
        self.table = palette_array(palette, len(classes))
        self.id_lut = None
        if label_id_map is not None:
            self.id_lut = np.zeros(256, dtype=np.uint8)
            self.id_lut[: len(label_id_map)] = np.asarray(label_id_map, dtype=np.uint8)

    def write(self, stem: str, image: np.ndarray, label: np.ndarray, probs: np.ndarray | None) -> list[Path]:
        """Write this image's files atomically; returns their paths."""
        import cv2

        written = [self.out_dir / f"{stem}.png"]
        if self.id_lut is not None:
            write_bytes_atomic(written[0], encode_label_png(self.id_lut[label].astype(np.uint8)))
        else:
            write_bytes_atomic(written[0], encode_label_png(label.astype(np.uint8, copy=False), self.table))
        if self.save_overlay and max(image.shape[:2]) <= JPEG_MAX_SIDE:
            drawn = prediction_overlay(image, label, self.table, self.classes, self.overlay_alpha, self.overlay_legend)
            blended = cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)
            ok, jpeg = cv2.imencode(".jpg", blended, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                written.append(self.out_dir / f"{stem}_overlay.jpg")
                write_bytes_atomic(written[-1], jpeg.tobytes())
        if self.save_probs and probs is not None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, probs=probs.astype(np.float16), classes=np.array(self.classes))
            written.append(self.out_dir / f"{stem}_probs.npz")
            write_bytes_atomic(written[-1], buffer.getvalue())
        return written

    def missing(self, stem: str, written: list[Path]) -> list[tuple[str, str]]:
        """The files asked for that `write` could not make, and why (never counted as written)."""
        overlay_file = self.out_dir / f"{stem}_overlay.jpg"
        if self.save_overlay and overlay_file not in written:
            return [
                (str(overlay_file), f"JPEG holds at most {JPEG_MAX_SIDE} pixels per side; the label PNG was written")
            ]
        return []


def _remove_empty(folders: Sequence[Path]) -> None:
    """Remove the folders this run created (deepest first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def label_id_map_of(model: object, dataset_dir: str | os.PathLike[str] | None = None) -> list[int]:
    """The class index -> source id map (Cityscapes trainId -> labelId) for `predict --label-ids`.

    Taken from the unified dataset at `dataset_dir` when given, else from the loaded model (the dataset
    facts a `refine train` checkpoint records, or an export's metadata); a clear error when neither has one.
    """
    if dataset_dir is not None:
        from refine_cli.data.format.unified import UnifiedDataset

        id_map, source = (
            UnifiedDataset(Path(dataset_dir)).meta.extra.get("train_id_to_label_id"),
            f"{dataset_dir}/meta.json",
        )
    else:
        id_map, source = getattr(model, "label_id_map", None), f"checkpoint {getattr(model, 'path', '')}"
    if not id_map:
        raise RefineError(
            f"{source} has no class-index -> label-id map (train_id_to_label_id)",
            hint="--label-ids is for datasets such as Cityscapes; pass the dataset with --label-map DATA/cityscapes",
        )
    return [int(v) for v in id_map]
