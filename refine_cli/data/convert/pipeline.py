"""The `prepare` runner: manifest -> fetched sources -> extraction -> plan -> parallel conversion -> check.

Resumable by construction: every file is written atomically, finished samples are skipped on a
rerun, and meta.json (the "dataset is complete" mark) is removed before a folder changes and written
last. A state file records the converter version, options and sources; a rerun with different ones
starts over instead of mixing two conversions, beside a complete dataset rather than over it
(target.py): a dataset is only ever replaced by a complete, checked one.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refine_cli.data.acquire.manifest import Manifest, load_manifest
from refine_cli.data.convert.base import Converter, DatasetSpec, Plan, WorkItem
from refine_cli.data.convert.registry import get_converter
from refine_cli.data.convert.sources import fetch_sources
from refine_cli.data.convert.target import STATE_FILE, is_staging, start_or_resume, state_of, swap_in, writer_for
from refine_cli.data.convert.worker import Outcome, convert_chunk
from refine_cli.data.format.check import CheckReport, check_dataset
from refine_cli.data.format.image_sizes import measure_image_sizes
from refine_cli.data.format.unified import DatasetMeta, UnifiedWriter, validate_sample_id
from refine_cli.errors import RefineError
from refine_cli.fileio import ensure_free_space, write_json_atomic
from refine_cli.locks import hold_lock
from refine_cli.workers import die_with_parent, pool_size

MAX_BAD_LISTED = 20  # a conversion without --skip-bad stops after this many bad samples and lists them


@dataclass
class PrepareReport:
    """What a `prepare` run did: counts per split, drops with reasons, timing, and the final check."""

    name: str
    path: Path
    converter: str
    splits: dict[str, int]
    expected: dict[str, int]
    converted: int
    reused: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    convert_seconds: float = 0.0
    convert_cpu_seconds: float = 0.0  # CPU time of this process and its workers during conversion
    check: CheckReport | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.converted / self.convert_seconds if self.convert_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "converter": self.converter,
            "splits": self.splits,
            "expected": self.expected,
            "converted": self.converted,
            "reused": self.reused,
            "skipped": [{"id": sample_id, "reason": reason} for sample_id, reason in self.skipped],
            "seconds": round(self.seconds, 3),
            "images_per_s": round(self.images_per_s, 2),
            "convert_cpu_seconds": round(self.convert_cpu_seconds, 3),
            "notes": self.notes,
            "check": self.check.to_dict() if self.check is not None else None,
        }


def _check_plan_ids(plan: Plan, converter: str) -> None:
    """Every sample id becomes a file name: refuse a bad one (from a damaged list file) before any work."""
    for sample_id in [item.sample_id for item in plan.items] + [i for ids in plan.splits.values() for i in ids]:
        try:
            validate_sample_id(sample_id)
        except ValueError:
            raise RefineError(
                f"the {converter} sources name a sample {sample_id!r}, which is not a valid sample id",
                hint="a list file in the archive is damaged; download it again",
            ) from None


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process plus its reaped children, e.g. a finished worker pool."""
    try:
        import resource
    except ImportError:  # not on POSIX: this process only
        return time.process_time()
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _chunks(items: list[WorkItem], size: int) -> Iterator[list[WorkItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _run_work(
    converter: Converter,
    writer: UnifiedWriter,
    plan: Plan,
    todo: list[WorkItem],
    workers: int,
    progress: bool,
) -> Iterator[Outcome]:
    """Convert `todo`, in this process (workers=1) or a process pool; yield outcomes as they finish."""
    from tqdm import tqdm

    spec = plan.spec
    job = (type(converter).convert, writer, spec.palette, spec.num_classes, spec.ignore_index)
    bar = tqdm(total=len(todo), desc=f"convert {spec.name}", unit=" samples", disable=not progress)
    workers = pool_size(workers, len(todo))
    try:
        if workers <= 1:
            for chunk in _chunks(todo, 1):
                for outcome in convert_chunk(*job, chunk):
                    bar.update(1)
                    yield outcome
            return
        chunk_size = max(1, min(64, len(todo) // (workers * 8) or 1))
        pending: set[Future[list[Outcome]]] = set()
        chunks = _chunks(todo, chunk_size)
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            try:
                for chunk in chunks:  # keep a bounded number of chunks in flight
                    pending.add(pool.submit(convert_chunk, *job, chunk))
                    if len(pending) >= workers * 4:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            for outcome in future.result():
                                bar.update(1)
                                yield outcome
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        for outcome in future.result():
                            bar.update(1)
                            yield outcome
            finally:
                for future in pending:
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def _conversion_bytes(todo: list[WorkItem], source_bytes: int) -> int:
    """What converting `todo` will write, estimated before it starts, from a sample of the files it reads.

    Images are copied unchanged and labels re-encoded at a similar size, so the source files a work
    item names are a fair guess; capped by the source archives' size (a .mat shared by every item).
    """
    if not todo:
        return 0
    sample = todo[:: max(1, len(todo) // 500)]
    read = sum(
        os.path.getsize(arg) for item in sample for arg in item.args if isinstance(arg, str) and os.path.isfile(arg)
    )
    estimate = int(read / len(sample) * len(todo))
    return min(estimate, source_bytes) if source_bytes else estimate


def _bad_samples_error(bad: list[tuple[str, str]]) -> RefineError:
    """One error line for every bad sample seen (up to MAX_BAD_LISTED): all can be fixed before the rerun."""
    hint = "pass --skip-bad to skip such samples and list them; finished samples are kept for a rerun"
    if len(bad) == 1:
        return RefineError(f"bad sample {bad[0][0]!r}: {bad[0][1]}", hint=hint)
    listed = "; ".join(f"{sample_id!r}: {reason}" for sample_id, reason in bad)
    more = " (stopped there)" if len(bad) >= MAX_BAD_LISTED else ""
    return RefineError(f"{len(bad)} bad samples{more}: {listed}", hint=hint)


def _default_notify(message: str) -> None:
    import sys

    sys.stderr.write(f"warning: {message}\n")


def prepare_dataset(
    converter_name: str,
    root: Path,
    options: dict[str, Any],
    archives: Path | None = None,
    manifest: str | Path | None = None,
    workers: int = 1,
    trust_archives: bool = False,
    skip_bad: bool = False,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Make `<root>/<dataset>` from the converter's sources; see the module docstring for guarantees.

    The dataset folder is locked for the whole run (refine_cli.locks): a second `prepare` of the same
    dataset waits briefly, then is refused with a line naming the first, instead of both writing it.
    """
    request = _Request(
        get_converter(converter_name), Path(root).expanduser(), options, archives, manifest, workers,
        trust_archives, skip_bad, progress, notify or _default_notify,
    )  # fmt: skip
    with contextlib.ExitStack() as held:  # the folder this run writes: two datasets never wait for each other
        held.enter_context(hold_lock(request.root / request.converter.dataset_name(options), "dataset folder"))
        return _prepare_locked(request, held)


@dataclass
class _Request:
    """The arguments of one `prepare_dataset` call, handed through its phases."""

    converter: Converter
    root: Path
    options: dict[str, Any]
    archives: Path | None
    manifest: str | Path | None
    workers: int
    trust_archives: bool
    skip_bad: bool
    progress: bool
    notify: Callable[[str], None]


def _prepare_locked(request: _Request, held: contextlib.ExitStack) -> PrepareReport:
    """The body of `prepare_dataset`, under the dataset folder's lock: plan, convert, write meta, check."""
    started = time.perf_counter()
    converter, root, workers, progress = request.converter, request.root, request.workers, request.progress
    plan, loaded, options, source_records = _plan(request)
    spec = plan.spec
    if spec.name != converter.dataset_name(options):  # the plan names another folder: lock it too
        held.enter_context(hold_lock(root / spec.name, "dataset folder"))
    state = state_of(converter, options, source_records)
    writer = writer_for(root, spec.name, state, request.notify)
    dropped_before = set(start_or_resume(writer, state, request.notify))
    items = [item for item in plan.items if item.sample_id not in dropped_before]
    todo = [item for item in items if not writer.has_sample(item.sample_id)]
    if todo:
        writer.remove_meta()  # the folder changes: incomplete until meta.json is written again, last
    source_bytes = sum(record.get("size") or 0 for record in source_records)
    what = f"convert {len(todo):,} {spec.name} samples"
    ensure_free_space(writer.path, _conversion_bytes(todo, source_bytes), what, hint="free some space there or "
                      "choose another --root")  # fmt: skip
    skipped: list[tuple[str, str]] = list(plan.skipped) + [(i, f"bad sample: {reason}") for i, reason in plan.bad]
    skipped += [(i, "dropped by the converter in an earlier run") for i in sorted(dropped_before)]
    run = _convert(converter, writer, plan, todo, workers, progress, request.skip_bad)
    skipped += run.skipped
    removed = {sample_id for sample_id, _ in skipped}
    splits = {split: [i for i in ids if i not in removed] for split, ids in plan.splits.items()}
    writer.write_splits(splits)
    expected = {split: loaded.splits[split] for split in splits if loaded and split in loaded.splits}
    notes = list(plan.notes) + [
        f"split {split!r} has {len(splits[split])} samples, the manifest expects {count}"
        for split, count in expected.items()
        if len(splits[split]) != count
    ]
    write_json_atomic(writer.path / STATE_FILE, {**state, "dropped": sorted(dropped_before | set(run.dropped))})
    meta = _meta(spec, converter, splits, source_records)
    sizes = measure_image_sizes(writer.label_path(i) for i in sorted({i for ids in splits.values() for i in ids}))
    meta.image_sizes = sizes.to_dict() if sizes is not None else {}
    writer.write_meta(meta)
    check = check_dataset(writer.path, workers=workers, progress=progress)
    path = writer.path
    if not check.ok:
        writer.remove_meta()  # never leave a dataset that looks complete but is wrong
        if is_staging(writer):
            notes.append(f"{root / spec.name} is kept as it was; the new conversion stays in {writer.path}")
    elif is_staging(writer):
        path = swap_in(writer, root, spec.name)
    return PrepareReport(
        name=spec.name, path=path, converter=converter.name, splits=meta.splits, expected=expected,
        converted=run.converted, reused=len(items) - len(todo), skipped=skipped,
        seconds=time.perf_counter() - started, convert_seconds=run.seconds, convert_cpu_seconds=run.cpu_seconds,
        check=check, notes=notes,
    )  # fmt: skip


def _plan(request: _Request) -> tuple[Plan, Manifest | None, dict[str, Any], list[dict[str, Any]]]:
    """(plan, manifest, options, source records): the sources fetched and checked, the samples named."""
    converter, options, manifest = request.converter, request.options, request.manifest
    loaded: Manifest | None = None
    if converter.manifest or manifest is not None:
        loaded = load_manifest(manifest if manifest is not None else converter.manifest)
        options = {**options, "manifest": loaded}
        keys = converter.required_sources(options)
        source_paths, source_records = fetch_sources(
            loaded, keys, request.root, request.archives, request.trust_archives, request.progress, request.notify
        )
        plan = converter.plan(source_paths, options)
    else:  # local files (refine prepare custom): the plan names and fingerprints its sources
        plan = converter.plan({}, options)
        source_records = plan.sources
    _check_plan_ids(plan, converter.name)
    if plan.bad and not request.skip_bad:
        shown = "; ".join(reason for _, reason in plan.bad[:5])
        more = f" (and {len(plan.bad) - 5} more)" if len(plan.bad) > 5 else ""
        raise RefineError(
            f"{len(plan.bad)} problem(s) in the source files: {shown}{more}",
            hint="fix them, or pass --skip-bad to leave those samples out and list them",
        )
    return plan, loaded, options, source_records


@dataclass
class _Conversion:
    """What the workers did: samples written, dropped by the converter, skipped (with why), and the time."""

    converted: int = 0
    dropped: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _convert(
    converter: Converter,
    writer: UnifiedWriter,
    plan: Plan,
    todo: list[WorkItem],
    workers: int,
    progress: bool,
    skip_bad: bool,
) -> _Conversion:
    """Convert `todo` in parallel; bad samples stop the run (all seen listed) unless `skip_bad`."""
    run = _Conversion()
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    bad: list[tuple[str, str]] = []
    with contextlib.closing(_run_work(converter, writer, plan, todo, workers, progress)) as outcomes:
        for outcome in outcomes:  # closing() stops the workers at once if we raise
            if outcome.status == "ok":
                run.converted += 1
            elif outcome.status == "skip":
                run.skipped.append((outcome.sample_id, outcome.reason))
                run.dropped.append(outcome.sample_id)
            elif skip_bad:
                run.skipped.append((outcome.sample_id, f"bad sample: {outcome.reason}"))
            else:
                bad.append((outcome.sample_id, outcome.reason))
                if len(bad) >= MAX_BAD_LISTED:
                    break  # enough to act on; closing() stops the workers
    if bad:
        raise _bad_samples_error(bad)
    run.seconds = time.perf_counter() - start
    run.cpu_seconds = _cpu_seconds() - cpu_start  # the pool is shut down (workers reaped) by now
    return run


def _meta(
    spec: DatasetSpec, converter: Converter, splits: dict[str, list[str]], sources: list[dict[str, Any]]
) -> DatasetMeta:
    """meta.json of the finished dataset."""
    return DatasetMeta(
        name=spec.name,
        num_classes=spec.num_classes,
        classes=list(spec.classes),
        palette=[list(color) for color in spec.palette],
        ignore_index=spec.ignore_index,
        splits={split: len(ids) for split, ids in splits.items()},
        sources=sources,
        converter=converter.name,
        converter_version=str(converter.version),
        extra=dict(spec.extra),
    )
