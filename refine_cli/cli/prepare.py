"""`refine prepare <dataset>`: download (or take) the archives, convert to the unified format, check.

Each dataset is one small command that collects its own options and calls `run_prepare`; the shared
options (root, archives, manifest, workers, trust, skip-bad, json) are declared once below. A command
may also live in its own module exposing `register(prepare_app)` (see prepare_shapes.py).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
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


class LabelOrder(str, Enum):
    """Class order of Person-Part source PNGs (datasets.md section 5)."""

    deeplab = "deeplab"
    parsing_rcnn = "parsing-rcnn"


class ContextClasses(str, Enum):
    """Which PASCAL-Context variant(s) to write."""

    sixty = "60"
    fifty_nine = "59"
    both = "both"


def default_root() -> Path:
    """$REFINE_DATA, else ./data."""
    return Path(os.environ.get("REFINE_DATA") or "data")


def dataset_path(data: str) -> Path:
    """--data as given: a dataset folder, or the name of one under $REFINE_DATA (./data)."""
    path = Path(data).expanduser()
    if not path.exists() and not path.is_absolute() and (default_root() / data).exists():
        path = default_root() / data
    return path


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
    """Prepare one dataset, print its check and summary, write --json; returns the PrepareReport."""
    from refine_cli.cli.check import problems_error, render_check
    from refine_cli.data.pipeline import prepare_dataset

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
    if report.check is not None:
        render_check(report.check)
    render_summary(report)
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
    from refine_cli.data.pipeline import prepare_paths
    from refine_cli.guards import refuse_output_over_inputs

    paths = prepare_paths(converter, root or default_root(), options, archives, manifest)
    reads = {"archive": paths.sources, "--manifest": manifest}  # the archives, not the folder holding them
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


def _common_parameters() -> list[inspect.Parameter]:
    def spec(root: RootOpt = None, archives: ArchivesOpt = None, manifest: ManifestOpt = None,
             workers: WorkersOpt = None, trust_archives: TrustOpt = False, skip_bad: SkipBadOpt = False,
             json_out: JsonOpt = None) -> None: ...  # fmt: skip

    return list(inspect.signature(spec, eval_str=True).parameters.values())


def prepare_command(prepare_app: typer.Typer, name: str, **command_kwargs: Any) -> Callable[[Callable], Callable]:
    """Register `fn(common: PrepareCommon, **own_options)` as `refine prepare NAME`.

    The command line gets the dataset's own options followed by the shared ones, declared once here
    instead of in every dataset's function.
    """

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "common"]
        common = _common_parameters()
        shared = {p.name for p in common}

        def command(**kwargs: Any) -> Any:
            values = PrepareCommon(**{key: kwargs.pop(key) for key in shared})
            return fn(values, **kwargs)

        command.__signature__ = inspect.Signature(own + common)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in own + common}
        command.__name__, command.__doc__ = fn.__name__, fn.__doc__
        prepare_app.command(name, **command_kwargs)(command)
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
        epilog=(
            "Examples:\n\n  refine prepare --list\n  refine prepare voc --aug --root data\n"
            "  refine prepare cityscapes --archives ~/Downloads\n  refine prepare context --classes both\n"
            "  refine prepare shapes --root data"
        ),
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

    @prepare_command(prepare_app, "voc")
    def voc(
        common: PrepareCommon,
        aug: Annotated[bool, typer.Option("--aug", help="Also build train_aug (10,582 images) from SBD.")] = False,
    ) -> None:
        """PASCAL VOC 2012 segmentation: train 1,464 / val 1,449 (21 classes)."""
        common.run("voc", {"aug": aug})

    @prepare_command(prepare_app, "sbd")
    def sbd(common: PrepareCommon) -> None:
        """SBD (Semantic Boundaries Dataset): train 8,498 / val 2,857, VOC's 21 classes."""
        common.run("sbd", {})

    @prepare_command(prepare_app, "coco")
    def coco(
        common: PrepareCommon,
        min_pixels: Annotated[
            int,
            typer.Option(
                "--min-pixels",
                min=0,
                help="Drop images, in train AND val (gluon-cv's rule), with fewer VOC-class pixels.",
            ),
        ] = 1000,
    ) -> None:
        """MS COCO 2017 mapped to the 20 VOC classes (for VOC pre-training)."""
        common.run("coco", {"min_pixels": min_pixels})

    from refine_cli.cli import prepare_shapes

    prepare_shapes.register(prepare_app)
    from refine_cli.cli import prepare_scenes  # nyudv2, ade20k, cityscapes

    prepare_scenes.register(prepare_app)

    @prepare_command(prepare_app, "person-part")
    def person_part(
        common: PrepareCommon,
        label_order: Annotated[
            LabelOrder,
            typer.Option(
                "--label-order",
                help="Class order of the source PNGs: deeplab (pascal_person_part.zip) or parsing-rcnn "
                "(1 lower-arm, 2 head, 3 upper-leg, 4 torso, 5 lower-leg, 6 upper-arm). Output is always deeplab's.",
            ),
        ] = LabelOrder.deeplab,
    ) -> None:
        """PASCAL-Person-Part: train 1,716 / val 1,817, 7 classes (labels from the zip, VOC 2010 images)."""
        common.run("person-part", {"label_order": label_order.value})

    @prepare_command(prepare_app, "context")
    def context(
        common: PrepareCommon,
        classes: Annotated[
            ContextClasses,
            typer.Option(
                "--classes",
                help="60: `context` with background as class 0 (RefineNet); 59: `context59` with background "
                "ignored (255); both: write both datasets.",
            ),
        ] = ContextClasses.sixty,
    ) -> None:
        """PASCAL-Context: train 4,998 / val 5,105 in the FCN/RefineNet class order (VOC 2010 images)."""
        names = {"60": ["context"], "59": ["context59"], "both": ["context", "context59"]}[classes.value]
        for name in names:
            common.refuse_overlaps(name, {})
        if len(names) == 1:
            common.run(names[0], {})
            return
        reports = [common.run(name, {}, json_out=None) for name in names]
        if common.json_out:
            emit_json({"datasets": [report.to_dict() for report in reports]}, common.json_out)

    app.add_typer(prepare_app, name="prepare")
