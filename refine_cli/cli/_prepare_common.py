"""What every `refine prepare <dataset>` shares: its options, the runner and the closing summary.

Each dataset is one small command that collects its own options and calls `PrepareCommon.run`; the
shared options (root, archives, manifest, workers, trust, skip-bad, json) are declared once here. The
dataset commands live in prepare.py, prepare_shapes.py, prepare_scenes.py and prepare_custom.py, which
all import this module and never each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._options import JsonOpt, parameters_of, with_shared_options
from refine_cli.cli._paths import default_root
from refine_cli.cli.check import WorkersOpt

RootOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--root",
        help="Where datasets go: <root>/<name>, downloads in <root>/downloads (default: $REFINE_DATA or ./data).",
    ),
]
ArchivesOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--archives", help="Use archives already in DIR (nothing is downloaded; missing ones are listed)."),
]
ManifestOpt = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--manifest", help="Use this manifest TOML instead of the packaged one (e.g. to add a mirror)."),
]
TrustOpt = Annotated[
    bool,
    typer.Option(
        "--trust-archives", help="Accept user-supplied archives whose size/checksum differ (re-packed copies)."
    ),
]
SkipBadOpt = Annotated[
    bool,
    typer.Option("--skip-bad", help="Skip unreadable or inconsistent samples and report them instead of stopping."),
]


def run_prepare(
    converter: str,
    options: dict[str, Any],
    root: Path | None,
    archives: Path | None,
    manifest: Path | None,
    workers: int | None,
    trust_archives: bool,
    skip_bad: bool,
    json_out: str | None,
) -> Any:
    """Prepare one dataset, print its summary and check, write --json; returns the PrepareReport."""
    from refine_cli.cli.check import problems_error, render_check
    from refine_cli.data.convert.pipeline import prepare_dataset

    refuse_prepare_overlaps(converter, options, root, archives, manifest, json_out)
    report = prepare_dataset(
        converter,
        root=root or default_root(),
        options=options,
        archives=archives,
        manifest=manifest,
        workers=workers or os.cpu_count() or 1,
        trust_archives=trust_archives,
        skip_bad=skip_bad,
        progress=err.is_terminal,
        notify=warn,
    )
    render_summary(report)
    if report.check is not None:  # last: the class pixel frequencies, so an empty or swamped class shows at once
        render_check(report.check)
    if json_out:
        emit_json(report.to_dict(), json_out)
    if report.check is not None and not report.check.ok:
        raise problems_error(report.check)
    return report


def refuse_prepare_overlaps(
    converter: str,
    options: dict[str, Any],
    root: Path | None,
    archives: Path | None,
    manifest: Path | None,
    json_out: str | None,
) -> None:
    """Before any download: the dataset folder and --json must not land on the archives or the manifest."""
    from refine_cli.data.convert.registry import get_converter
    from refine_cli.data.convert.sources import prepare_paths
    from refine_cli.guards import refuse_output_over_inputs

    paths = prepare_paths(converter, root or default_root(), options, archives, manifest)
    kind = "archive" if paths.sources and get_converter(converter).manifest else "source"  # custom: --from etc.
    reads = {kind: paths.sources, "--manifest": manifest}  # the archives, not the folder holding them
    refuse_output_over_inputs({"--json": json_out, "dataset folder": paths.dataset}, reads)
    refuse_output_over_inputs({"--json": json_out}, {"dataset folder": paths.dataset})


@dataclass
class PrepareCommon:
    """The options every `refine prepare <dataset>` takes, parsed once for all datasets."""

    root: Path | None = None
    archives: Path | None = None
    manifest: Path | None = None
    workers: int | None = None
    trust_archives: bool = False
    skip_bad: bool = False
    json_out: str | None = None

    @property
    def root_dir(self) -> Path:
        """--root, else $REFINE_DATA, else ./data."""
        return Path(self.root or default_root()).expanduser()

    def refuse_overlaps(self, converter: str, options: dict[str, Any]) -> None:
        """`refuse_prepare_overlaps` with these options (for work a command does before `run`)."""
        refuse_prepare_overlaps(converter, options, self.root, self.archives, self.manifest, self.json_out)

    def run(self, converter: str, options: dict[str, Any], json_out: str | None | bool = True) -> Any:
        """`run_prepare` with these options (json_out=None: the caller writes the JSON itself)."""
        json_dest = self.json_out if json_out is True else json_out
        return run_prepare(
            converter, options, self.root, self.archives, self.manifest, self.workers,
            self.trust_archives, self.skip_bad, json_dest,
        )  # fmt: skip


_DOWNLOAD_OPTIONS = ("archives", "manifest", "trust_archives")


def _common_options(
    root: RootOpt = None,
    archives: ArchivesOpt = None,
    manifest: ManifestOpt = None,
    workers: WorkersOpt = None,
    trust_archives: TrustOpt = False,
    skip_bad: SkipBadOpt = False,
    json_out: JsonOpt = None,
) -> None:
    """The options of every `refine prepare <dataset>` (declaration only: see PrepareCommon)."""


def download_examples(name: str, *extra: str) -> str:
    """The --help epilog of a downloaded dataset: its usual command lines (`extra`: its own options)."""
    lines = [f"refine prepare {name} --root data", *extra,
             f"refine prepare {name} --archives ~/Downloads --root data   (archives you already have)"]  # fmt: skip
    return "Examples:\n\n" + "\n".join(f"  {line}" for line in lines)


def prepare_command(
    prepare_app: typer.Typer, name: str, local: bool = False, **command_kwargs: Any
) -> Callable[[Callable], Callable]:
    """Register `fn(common: PrepareCommon, **own_options)` as `refine prepare NAME`.

    The command line gets the dataset's own options followed by the shared ones, declared once here
    instead of in every dataset's function. `local`: the data is on disk already, so the download
    options (--archives, --manifest, --trust-archives) are left out. Without an `epilog`, --help shows
    `download_examples(name)`.
    """
    if not local:
        command_kwargs.setdefault("epilog", download_examples(name))

    def decorate(fn: Callable) -> Callable:
        common = [p for p in parameters_of(_common_options) if not local or p.name not in _DOWNLOAD_OPTIONS]
        prepare_app.command(name, **command_kwargs)(with_shared_options(fn, "common", PrepareCommon, common))
        return fn

    return decorate


def render_summary(report) -> None:  # noqa: ANN001 - a PrepareReport
    """The closing table: samples per split (vs. expected), skipped files and why, time and speed."""
    from rich.table import Table

    table = Table(title=f"prepared {report.name} in {report.path}")
    table.add_column("split")
    table.add_column("samples", justify="right")
    table.add_column("expected", justify="right")
    for split, count in report.splits.items():
        expected = report.expected.get(split)
        style = "yellow" if expected is not None and expected != count else None
        table.add_row(split, f"{count:,}", "" if expected is None else f"{expected:,}", style=style)
    out.print(table)
    for sample_id, reason in report.skipped[:20]:
        out.print(f"skipped {sample_id}: {reason}", soft_wrap=True)
    if len(report.skipped) > 20:
        out.print(f"... and {len(report.skipped) - 20} more skipped (see --json)")
    out.print(
        f"converted {report.converted:,}, reused {report.reused:,}, skipped {len(report.skipped):,} "
        f"in {report.seconds:.1f} s ({report.images_per_s:.1f} images/s)"
    )
    for note in report.notes:
        warn(note)
