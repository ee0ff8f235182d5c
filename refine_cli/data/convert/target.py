"""Where a `prepare` writes, so that a dataset is only ever replaced by a complete, checked one.

A dataset without meta.json is incomplete: a rerun resumes it in place (finished samples are kept)
or, when its sources, options or converter changed, starts it over in place; nothing complete is
lost either way. A complete dataset is never touched by a conversion from other sources or
options: the new one is built beside it in `<name>.preparing` (resumable there too) and swapped in
only after it is complete and `refine check` passed; a failing run leaves the old dataset as it was.
The swap is two renames; a crash between them is repaired by the next prepare of that dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refine_cli.data.convert.base import Converter
from refine_cli.data.format.unified import META_FILE, UnifiedWriter
from refine_cli.fileio import write_json_atomic

STATE_FILE = ".prepare-state.json"
STAGING_SUFFIX = ".preparing"
REPLACED_SUFFIX = ".replaced"


def state_of(converter: Converter, options: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, Any]:
    """What a converted dataset depends on: converter, options and the identity of every source file.

    A rerun with any of these changed (e.g. another copy of an archive without a published checksum)
    converts from scratch instead of mixing samples of two sources.
    """
    clean = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    clean = {k: v for k, v in clean.items() if isinstance(v, (str, int, float, bool, type(None), list))}
    return {"converter": converter.name, "version": converter.version, "options": clean, "sources": sources}


def _read_state(folder: Path) -> dict[str, Any]:
    try:
        previous = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return previous if isinstance(previous, dict) else {}


def _same_state(folder: Path, state: dict[str, Any]) -> bool:
    previous = _read_state(folder)
    return {k: previous.get(k) for k in state} == state


def repair_interrupted_swap(final: Path) -> None:
    """Finish or undo a swap a crash cut in two (the dataset folder renamed away, the new one not yet in)."""
    replaced = final.with_name(final.name + REPLACED_SUFFIX)
    if not replaced.exists():
        return
    if final.exists():
        shutil.rmtree(replaced, ignore_errors=True)  # the swap went through; only the cleanup was cut
    else:
        os.replace(replaced, final)  # the old dataset goes back; the new one is still in .preparing


def writer_for(root: Path, name: str, state: dict[str, Any], notify: Callable[[str], None]) -> UnifiedWriter:
    """The writer of this run: the dataset folder itself, or its staging folder beside a complete one."""
    final = UnifiedWriter(root, name)
    repair_interrupted_swap(final.path)
    staging = final.path.with_name(name + STAGING_SUFFIX)
    complete = (final.path / META_FILE).is_file()
    if complete and not _same_state(final.path, state):
        notify(
            f"{final.path} was made from other source files or with other converter options or version; "
            f"converting it again from scratch in {staging.name}, which replaces it once complete and checked"
        )
        return UnifiedWriter(root, name + STAGING_SUFFIX)
    if staging.exists():  # a staged attempt for other sources or options than this run's: obsolete
        shutil.rmtree(staging, ignore_errors=True)
    return final


def is_staging(writer: UnifiedWriter) -> bool:
    """True when `writer` builds a replacement beside a complete dataset."""
    return writer.path.name.endswith(STAGING_SUFFIX)


def start_or_resume(writer: UnifiedWriter, state: dict[str, Any], notify: Callable[[str], None]) -> list[str]:
    """Make `writer`'s folder ready for this run; returns ids an earlier run of the same state dropped on purpose.

    A complete dataset of the same state keeps its meta.json while the run re-checks it (it stays usable
    if the run fails); an incomplete one made another way is started over.
    """
    same = _same_state(writer.path, state)
    previous = _read_state(writer.path) if same else {}
    has_data = writer.labels_dir.is_dir() and any(writer.labels_dir.iterdir())
    if not same:
        writer.remove_meta()
        if has_data:
            if not is_staging(writer):
                notify(f"{writer.path} is incomplete and was made another way; converting it again from scratch")
            for folder in (writer.images_dir, writer.labels_dir, writer.splits_dir):
                shutil.rmtree(folder, ignore_errors=True)
    writer.prepare_dirs()
    writer.remove_temporary_files()
    write_json_atomic(writer.path / STATE_FILE, {**state, "dropped": previous.get("dropped", [])})
    return [str(i) for i in previous.get("dropped", [])]


def swap_in(staged: UnifiedWriter, root: Path, name: str) -> Path:
    """Replace the complete dataset `<root>/<name>` by the checked one in `staged`; returns the final path."""
    final = Path(root) / name
    replaced = final.with_name(name + REPLACED_SUFFIX)
    shutil.rmtree(replaced, ignore_errors=True)
    os.replace(final, replaced)
    os.replace(staged.path, final)
    shutil.rmtree(replaced, ignore_errors=True)
    return final
