"""A dataset is only ever replaced by a complete, checked one (a failing `prepare` keeps the old one).

The cases of docs/reliability.md "Nothing lost": a rerun after one mask was edited to an invalid value,
a dataset name reused for a broken export, a failing check of the replacement, and a crash between the
two renames of the swap.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from refine_cli.data.convert.target import REPLACED_SUFFIX, STAGING_SUFFIX, repair_interrupted_swap
from refine_cli.data.format.unified import UnifiedDataset
from tests.support import custom_exports as ex
from tests.support.prepare_runner import run_prepare


def _prepare(source: Path, root: Path, name: str = "own"):  # noqa: ANN202 - a PrepareRun
    classes = root.parent / "classes.txt"
    classes.write_text("background\ncat\ndog\n")
    return run_prepare(
        ["custom", name, "--from", str(source), "--classes", str(classes), "--root", str(root), "-j", "1"]
    )


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file of a dataset (lock files aside) and its content hash."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """An image + mask folder prepared as `own`: (export, dataset, fingerprint of the finished dataset)."""
    export = tmp_path / "export"
    ex.folder_export(export, n=6)
    run = _prepare(export, tmp_path / "data")
    assert run.exit_code == 0, run.output
    dataset = tmp_path / "data" / "own"
    return export, dataset, _fingerprint(dataset)


def test_a_rerun_with_one_invalid_mask_keeps_the_finished_dataset(prepared: tuple[Path, Path, dict]) -> None:
    export, dataset, before = prepared
    mask = export / "masks" / "p2.png"
    label = np.array(ex.painted(22))
    label[3, 3] = 7  # a class the dataset does not have
    ex.save_index(mask, label)
    run = _prepare(export, dataset.parent)
    assert run.exit_code == 2 and "p2" in run.output and "Traceback" not in run.output
    assert _fingerprint(dataset) == before  # every file as it was, meta.json included
    assert UnifiedDataset(dataset).meta.splits == {"train": 5, "val": 1}
    assert (dataset.parent / f"own{STAGING_SUFFIX}").is_dir()  # the new attempt waits there for a rerun
    # fixed, the rerun replaces the dataset with the new conversion, and nothing is left beside it
    ex.save_index(mask, np.array(ex.painted(5)))
    run = _prepare(export, dataset.parent)
    assert run.exit_code == 0, run.output
    assert np.array_equal(UnifiedDataset(dataset).read_label("p2"), ex.painted(5))
    assert sorted(p.name for p in dataset.parent.iterdir() if not p.name.startswith(".")) == ["own"]


def test_reusing_a_name_for_a_broken_export_keeps_the_dataset(
    prepared: tuple[Path, Path, dict], tmp_path: Path
) -> None:
    _, dataset, before = prepared
    broken = tmp_path / "broken"
    ex.folder_export(broken, n=3)
    (broken / "masks" / "p1.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png")
    run = _prepare(broken, dataset.parent)
    assert run.exit_code == 2 and "Traceback" not in run.output
    assert _fingerprint(dataset) == before


def test_a_replacement_that_fails_its_check_is_not_swapped_in(
    prepared: tuple[Path, Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from refine_cli.data.convert import pipeline

    export, dataset, before = prepared
    ex.save_index(export / "masks" / "p1.png", np.array(ex.painted(9)))  # another source: a replacement
    real_check = pipeline.check_dataset

    def failing_check(path: Path, **kwargs):  # noqa: ANN202, ANN003
        report = real_check(path, **kwargs)
        report.problems.append("injected problem")
        report.problem_count += 1
        return report

    monkeypatch.setattr(pipeline, "check_dataset", failing_check)
    run = _prepare(export, dataset.parent)
    assert run.exit_code == 2
    assert _fingerprint(dataset) == before
    assert not (dataset.parent / f"own{STAGING_SUFFIX}" / "meta.json").exists()


def test_a_swap_cut_in_two_by_a_crash_is_repaired(tmp_path: Path) -> None:
    final, replaced = tmp_path / "own", tmp_path / f"own{REPLACED_SUFFIX}"
    replaced.mkdir()
    (replaced / "meta.json").write_text("old")
    repair_interrupted_swap(final)  # renamed away, the new one not yet in: the old one comes back
    assert (final / "meta.json").read_text() == "old" and not replaced.exists()
    replaced.mkdir()
    (replaced / "meta.json").write_text("older")
    repair_interrupted_swap(final)  # both there: the swap went through, only the cleanup was cut
    assert (final / "meta.json").read_text() == "old" and not replaced.exists()


def test_an_empty_dataset_name_is_refused(tmp_path: Path) -> None:
    export = tmp_path / "export"
    ex.folder_export(export, n=3)
    run = _prepare(export, tmp_path / "data", name="")
    assert run.exit_code == 2 and "dataset name is empty" in run.output
    assert not (tmp_path / "data").exists()
