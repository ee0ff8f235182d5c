"""`refine predict` on video: an overlay video of the same size, rate and frame count; bad videos in one line."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.support.checkpoints import save_tiny_checkpoint
from tests.support.cli import run_cli

FRAMES, WIDTH, HEIGHT, FPS = 7, 80, 48, 12.5
CLASSES = ["background", "disc", "bar"]
PALETTE = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]


def _decode(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps, (frames[0].shape[1], frames[0].shape[0]) if frames else (0, 0)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A clip written with OpenCV (a moving disc), a tiny checkpoint, and the frames as image files."""
    root = tmp_path_factory.mktemp("video")
    path = root / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    frames_dir = root / "frames"
    frames_dir.mkdir()
    for index in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        cv2.circle(frame, (12 + 8 * index, 24), 10, (30, 30, 220), -1)
        cv2.rectangle(frame, (50, 5), (75, 15), (30, 200, 30), -1)
        writer.write(frame)
    writer.release()
    decoded, _, _ = _decode(path)
    for index, frame in enumerate(decoded):  # what predict will see, as image files
        cv2.imwrite(str(frames_dir / f"{index:06d}.png"), frame)
    checkpoint = save_tiny_checkpoint(root / "tiny.pt", CLASSES, PALETTE)
    return {"root": root, "clip": path, "ck": checkpoint, "frames": frames_dir}


def test_video_in_overlay_video_out(clip: dict, tmp_path: Path) -> None:
    """Same size, rate and frame count; frames batched; label PNGs equal predicting the frames as images."""
    out = tmp_path / "out"
    result = run_cli("predict", str(clip["clip"]), "--checkpoint", str(clip["ck"]), "--out", str(out), "--frames",
                   "--batch", "3", "--device", "cpu", "--json", str(tmp_path / "report.json"))  # fmt: skip
    assert result.exit_code == 0, result.output
    frames, fps, size = _decode(out / "clip_overlay.mp4")
    assert len(frames) == FRAMES and size == (WIDTH, HEIGHT) and fps == pytest.approx(FPS)
    (video,) = json.loads((tmp_path / "report.json").read_text())["videos"]
    assert video["frames"] == FRAMES and video["size"] == [WIDTH, HEIGHT] and video["frames_per_second"] > 0
    assert "frames/s" in result.output
    images = tmp_path / "images"
    result = run_cli("predict", str(clip["frames"]), "--checkpoint", str(clip["ck"]), "--out", str(images),
                   "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    labels = sorted((out / "clip_frames").glob("*.png"))
    assert [p.name for p in labels] == [f"{i:06d}.png" for i in range(FRAMES)]
    for path in labels:
        assert np.array_equal(np.array(Image.open(path)), np.array(Image.open(images / path.name)))
    assert not list(out.glob(".*")), "a temporary file was left behind"


def test_alpha_styles_the_overlay_video_and_legend_is_refused(clip: dict, tmp_path: Path) -> None:
    """--alpha reaches the video's blend (no --overlay needed); --legend would change the frame size: refused."""
    originals = [cv2.imread(str(path)).astype(int) for path in sorted(clip["frames"].glob("*.png"))]
    distance = {}
    for alpha in ("0.1", "0.9"):
        out = tmp_path / alpha
        result = run_cli("predict", str(clip["clip"]), "--checkpoint", str(clip["ck"]), "--out", str(out),
                       "--alpha", alpha, "--device", "cpu")  # fmt: skip
        assert result.exit_code == 0, result.output
        frames, _, _ = _decode(out / "clip_overlay.mp4")
        distance[alpha] = np.mean([np.abs(f.astype(int) - o).mean() for f, o in zip(frames, originals, strict=True)])
    assert distance["0.9"] > distance["0.1"] + 2, distance
    result = run_cli("predict", str(clip["clip"]), "--checkpoint", str(clip["ck"]), "--out", str(tmp_path / "l"),
                   "--legend")  # fmt: skip
    _refused(result, "--legend", "an overlay video keeps the frame size")


def _refused(result, *needles: str) -> None:  # noqa: ANN001
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
    text = " ".join(result.output.split())
    for needle in needles:
        assert needle in text, result.output


def test_undecodable_video_and_missing_codec_are_one_line(clip: dict, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    result = run_cli("predict", str(broken), "--checkpoint", str(clip["ck"]), "--out", str(tmp_path / "a"))
    _refused(result, "broken.mp4 cannot be opened as a video")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(clip["clip"].read_bytes()[:600])
    result = run_cli("predict", str(cut), "--checkpoint", str(clip["ck"]), "--out", str(tmp_path / "b"))
    _refused(result, "cut.mp4")
    result = run_cli("predict", str(clip["clip"]), "--checkpoint", str(clip["ck"]), "--out", str(tmp_path / "c"),
                   "--video-codec", "ZZZZ")  # fmt: skip
    _refused(result, "OpenCV cannot encode ZZZZ video", "--video-codec mp4v")
    result = run_cli("predict", "--camera", "97", "--checkpoint", clip["ck"], "--out", tmp_path / "d")
    _refused(result, "camera 97 cannot be opened")  # before the model loads: nothing precedes the error
    assert not result.output.split("error:")[0].strip(), result.output
    assert not any((tmp_path / name).exists() for name in "abcd"), "a refused run left an output folder"


def test_live_source_stops_cleanly_and_keeps_what_was_written(clip: dict, tmp_path: Path) -> None:
    """A live source (here a file read as if live) without a display is written; Ctrl-C keeps the video."""
    from refine_cli.engine.infer.loop import load_model
    from refine_cli.engine.infer.video import VideoOptions, VideoSource, predict_video

    loaded = load_model(clip["ck"], "cpu")
    interrupting = _failing_backend(loaded, 3, KeyboardInterrupt())
    source = VideoSource(str(clip["clip"]), "live", live=True)
    summary = predict_video(interrupting, source, tmp_path, loaded.palette, loaded.classes,
                            VideoOptions(show=False, progress=False))  # fmt: skip
    assert summary.interrupted and summary.frames == 2
    frames, _, size = _decode(tmp_path / "live_overlay.mp4")
    assert len(frames) == 2 and size == (WIDTH, HEIGHT)


def _avi(path: Path, frames: int, fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    for index in range(frames):
        frame = np.full((HEIGHT, WIDTH, 3), 60, np.uint8)
        cv2.circle(frame, (12 + 6 * index, 24), 10, (30, 30, 220), -1)
        writer.write(frame)
    writer.release()
    return path


def test_frame_label_ids_and_what_a_video_file_claims(clip: dict, tmp_path: Path) -> None:
    """--label-ids maps the frame PNGs as it maps images; a file cut short or claiming an absurd rate gets a note."""
    id_map = [7, 8, 11]
    facts = {"name": "m", "extra": {"train_id_to_label_id": id_map}}
    mapped = save_tiny_checkpoint(tmp_path / "mapped.pt", CLASSES, PALETTE, extra={"dataset": facts})
    plain, ids = tmp_path / "plain", tmp_path / "ids"
    for out, extra in ((plain, []), (ids, ["--label-ids"])):
        result = run_cli("predict", clip["clip"], "-c", mapped, "--out", out, "--frames", "--device", "cpu", *extra)
        assert result.exit_code == 0, result.output
    for path in sorted((plain / "clip_frames").glob("*.png")):
        written = Image.open(ids / "clip_frames" / path.name)
        assert written.mode == "L"
        assert np.array_equal(np.array(written), np.array(id_map, np.uint8)[np.array(Image.open(path))])
    whole = _avi(tmp_path / "whole.avi", 12)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    fast = _avi(tmp_path / "fast.avi", 3, fps=100000.0)
    result = run_cli("predict", cut, fast, "-c", clip["ck"], "--out", tmp_path / "o", "--video-codec", "MJPG",
                     "--device", "cpu", "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    cut_run, fast_run = json.loads(result.stdout)["videos"]
    assert 0 < cut_run["frames"] < 12 and any("claims 12 frames" in note for note in cut_run["notes"])
    assert fast_run["fps"] == 25.0 and any("fps; the video is written at 25 fps" in n for n in fast_run["notes"])
    assert len(_decode(tmp_path / "o" / "cut_overlay.avi")[0]) == cut_run["frames"]


def test_videos_in_folders_and_globs_and_probs_refused(clip: dict, tmp_path: Path) -> None:
    folder = tmp_path / "vids"
    folder.mkdir()
    for name in ("b.avi", "a.avi"):
        _avi(folder / name, 2)
    result = run_cli("predict", folder / "*.avi", "-c", clip["ck"], "--out", tmp_path / "o", "--video-codec",
                     "MJPG", "--device", "cpu", "--json", "-")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [Path(v["input"]).name for v in json.loads(result.stdout)["videos"]] == ["a.avi", "b.avi"]
    result = run_cli("predict", folder, "-c", clip["ck"], "--out", tmp_path / "p", "--video-codec", "MJPG")
    assert result.exit_code == 0 and sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "a_overlay.avi", "b_overlay.avi"], result.output  # fmt: skip
    result = run_cli("predict", clip["clip"], "-c", clip["ck"], "--out", tmp_path / "q", "--probs")
    _refused(result, "--probs writes <stem>_probs.npz per image")


def _failing_backend(loaded, fail_on: int, error: BaseException):  # noqa: ANN001, ANN202
    """The loaded backend, raising `error` on its `fail_on`-th call."""
    calls = {"n": 0}
    backend = loaded.backend

    def run(images):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == fail_on:
            raise error
        return backend(images)

    for name in ("runtime", "device", "precision", "mean", "std", "num_classes"):
        setattr(run, name, getattr(backend, name))
    return run


def test_a_full_disk_keeps_a_live_recording_and_fails_a_file(
    clip: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Low space stops a live recording and keeps it; a file's video is not kept, nor its frames folder."""
    from refine_cli.engine.infer import video_threads
    from refine_cli.engine.infer.loop import load_model
    from refine_cli.engine.infer.video import VideoOptions, VideoSource, VideoSummary, _check_written, predict_video
    from refine_cli.errors import RefineError
    from refine_cli.fileio import DiskFullError

    checks = {"n": 0}

    def filling(folder, needed, what, hint=None):  # noqa: ANN001, ANN202 - the third check finds the disk full
        checks["n"] += 1
        if checks["n"] >= 3:
            raise DiskFullError(f"not enough free space in {folder} for {what}")

    monkeypatch.setattr(video_threads, "FREE_SPACE_EVERY", 1)
    monkeypatch.setattr(video_threads, "ensure_free_space", filling)
    loaded = load_model(clip["ck"], "cpu")
    live = VideoSource(str(clip["clip"]), "live", live=True)
    summary = predict_video(loaded.backend, live, tmp_path / "live", loaded.palette, loaded.classes,
                            VideoOptions(show=False, progress=False))  # fmt: skip
    assert 2 <= summary.frames < FRAMES and any("recording stopped" in note for note in summary.notes)
    assert len(_decode(tmp_path / "live" / "live_overlay.mp4")[0]) == summary.frames
    checks["n"] = 0
    source = VideoSource(str(clip["clip"]), "clip", live=False)
    with pytest.raises(DiskFullError):
        predict_video(loaded.backend, source, tmp_path / "file", loaded.palette, loaded.classes,
                      VideoOptions(show=False, progress=False, save_frames=True))  # fmt: skip
    assert not (tmp_path / "file").exists(), "a failed file video left its outputs behind"
    monkeypatch.setattr(video_threads, "FREE_SPACE_EVERY", 100)
    broken = _failing_backend(loaded, 3, RuntimeError("the model failed"))
    with pytest.raises(RuntimeError):
        predict_video(broken, source, tmp_path / "model", loaded.palette, loaded.classes,
                      VideoOptions(show=False, progress=False, save_frames=True))  # fmt: skip
    assert not (tmp_path / "model").exists()
    lost = VideoSummary("in", None, None, frames=FRAMES + 100)  # an encoder or a disk that lost frames
    with pytest.raises(RefineError, match=f"came out with {FRAMES} of {FRAMES + 100} frame"):
        _check_written(clip["clip"], tmp_path / "x.mp4", lost)
