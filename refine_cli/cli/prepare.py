"""`refine prepare <dataset>`: download (or take) the archives, convert to the unified format, check.

Each dataset is one small command that collects its own options and calls `_run`; the shared
options (root, archives, manifest, workers, trust, skip-bad, json) are declared once below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, warn
from refine_cli.cli._options import JsonOpt
from refine_cli.cli.check import WorkersOpt

RootOpt = Annotated[
    Optional[Path],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option(
        "--root",
        help="Where datasets go: <root>/<name>, downloads in <root>/downloads [default: $REFINE_DATA or ./data].",
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


def default_root() -> Path:
    """$REFINE_DATA, else ./data."""
    return Path(os.environ.get("REFINE_DATA") or "data")


def _run(
    converter: str,
    options: dict[str, Any],
    root: Path | None,
    archives: Path | None,
    manifest: Path | None,
    workers: int | None,
    trust_archives: bool,
    skip_bad: bool,
    json_out: str | None,
) -> None:
    from refine_cli.cli.check import problems_error, render_check
    from refine_cli.data.pipeline import prepare_dataset

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
    if report.check is not None:
        render_check(report.check)
    render_summary(report)
    if json_out:
        emit_json(report.to_dict(), json_out)
    if report.check is not None and not report.check.ok:
        raise problems_error(report.check)


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
        out.print(f"skipped {sample_id}: {reason}", soft_wrap=True, markup=False)
    if len(report.skipped) > 20:
        out.print(f"... and {len(report.skipped) - 20} more skipped (see --json)")
    out.print(
        f"converted {report.converted:,}, reused {report.reused:,}, skipped {len(report.skipped):,} "
        f"in {report.seconds:.1f} s ({report.images_per_s:.1f} images/s)"
    )
    for note in report.notes:
        warn(note)


def _list_datasets() -> None:
    from rich.table import Table

    from refine_cli.data.manifest import list_manifests, load_manifest

    table = Table(title="datasets (packaged manifests)")
    for column in ("name", "title", "download", "login", "licence"):
        table.add_column(column, overflow="fold")
    for name in list_manifests():
        manifest = load_manifest(name)
        size = sum(s.size or 0 for s in manifest.sources if not s.optional)
        login = "yes" if any(s.login for s in manifest.sources) else "no"
        licence = " ".join(manifest.licence.split())
        table.add_row(name, manifest.title, f"{size / 1e9:.1f} GB" if size else "?", login, licence[:120])
    out.print(table)


def register(app: typer.Typer) -> None:
    prepare_app = typer.Typer(
        help="Download (or take) a dataset's archives, convert them to the unified format and check the result.",
        no_args_is_help=False,
        invoke_without_command=True,
    )

    @prepare_app.callback()
    def _prepare(
        ctx: typer.Context,
        list_: Annotated[bool, typer.Option("--list", help="List the datasets, download sizes and terms.")] = False,
    ) -> None:
        if list_:
            _list_datasets()
            raise typer.Exit()
        if ctx.invoked_subcommand is None:
            out.print(ctx.get_help())
            raise typer.Exit()

    @prepare_app.command("voc")
    def voc(
        aug: Annotated[bool, typer.Option("--aug", help="Also build train_aug (10,582 images) from SBD.")] = False,
        root: RootOpt = None,
        archives: ArchivesOpt = None,
        manifest: ManifestOpt = None,
        workers: WorkersOpt = None,
        trust_archives: TrustOpt = False,
        skip_bad: SkipBadOpt = False,
        json_out: JsonOpt = None,
    ) -> None:
        """PASCAL VOC 2012 segmentation: train 1,464 / val 1,449 (21 classes)."""
        _run("voc", {"aug": aug}, root, archives, manifest, workers, trust_archives, skip_bad, json_out)

    @prepare_app.command("sbd")
    def sbd(
        root: RootOpt = None,
        archives: ArchivesOpt = None,
        manifest: ManifestOpt = None,
        workers: WorkersOpt = None,
        trust_archives: TrustOpt = False,
        skip_bad: SkipBadOpt = False,
        json_out: JsonOpt = None,
    ) -> None:
        """SBD (Semantic Boundaries Dataset): train 8,498 / val 2,857, VOC's 21 classes."""
        _run("sbd", {}, root, archives, manifest, workers, trust_archives, skip_bad, json_out)

    @prepare_app.command("coco")
    def coco(
        min_pixels: Annotated[
            int, typer.Option("--min-pixels", min=0, help="Drop training images with fewer VOC-class pixels.")
        ] = 1000,
        root: RootOpt = None,
        archives: ArchivesOpt = None,
        manifest: ManifestOpt = None,
        workers: WorkersOpt = None,
        trust_archives: TrustOpt = False,
        skip_bad: SkipBadOpt = False,
        json_out: JsonOpt = None,
    ) -> None:
        """MS COCO 2017 mapped to the 20 VOC classes (for VOC pre-training)."""
        options = {"min_pixels": min_pixels}
        _run("coco", options, root, archives, manifest, workers, trust_archives, skip_bad, json_out)

    from refine_cli.cli import prepare_shapes

    prepare_shapes.register(prepare_app)
    app.add_typer(prepare_app, name="prepare")
