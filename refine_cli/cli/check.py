"""`refine check <root>/<name>`: validate a unified dataset and print its class histogram."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from refine_cli.cli._console import emit_json, err, out, tagged
from refine_cli.cli._options import JsonOpt, check_picture_folder
from refine_cli.errors import RefineError

WorkersOpt = Annotated[
    Optional[int],  # noqa: UP045 - typer evaluates this at runtime
    typer.Option("--workers", "-j", min=1, help="Parallel processes (default: CPU count)."),
]


def render_check(report) -> None:  # noqa: ANN001 - a CheckReport (kept import-free at module level)
    """Print the histogram table and the listed problems of a CheckReport."""
    from rich.table import Table

    total = max(report.total_pixels, 1)
    table = Table(title=f"{report.name}: {report.samples} samples, splits {_splits(report.splits)}")
    table.add_column("#", justify="right")
    table.add_column("class")
    table.add_column("pixels", justify="right")
    table.add_column("%", justify="right")
    table.add_column("images", justify="right")
    for index, (name, pixels, images) in enumerate(
        zip(report.classes, report.class_pixels, report.class_images, strict=True)
    ):
        style = "yellow" if pixels == 0 else None
        table.add_row(str(index), name, f"{pixels:,}", f"{100 * pixels / total:.2f}", f"{images:,}", style=style)
    table.add_row(str(report.ignore_index), "(ignore)", f"{report.ignore_pixels:,}",
                  f"{100 * report.ignore_pixels / total:.2f}", "", style="dim")  # fmt: skip
    out.print(table)
    for problem in report.problems:
        out.print(tagged("problem:", "red", problem), soft_wrap=True)
    if report.problem_count > len(report.problems):
        out.print(f"... and {report.problem_count - len(report.problems)} more problem(s)")
    if report.ok:
        out.print(tagged("ok:", "green", f"{report.path} is a valid unified dataset ({report.seconds:.1f} s)"))


def _splits(splits: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in splits.items()) or "none"


def problems_error(report) -> RefineError:  # noqa: ANN001 - a CheckReport
    """The one-line error for a dataset that failed its check."""
    first = report.problems[0] if report.problems else "see above"
    return RefineError(
        f"{report.path} failed the check with {report.problem_count} problem(s); first: {first}",
        hint="rerun the `refine prepare` command that made it, or fix the files listed above",
    )


def register(app: typer.Typer) -> None:
    examples = (
        "Examples:\n\n  refine check data/voc\n  refine check data/voc --full --json check.json\n"
        "  refine check data/voc --gallery pictures/voc   (class_frequency.png, samples.png)"
    )

    @app.command("check", epilog=examples)
    def check(
        path: Annotated[Path, typer.Argument(help="A unified dataset folder, e.g. data/voc.", show_default=False)],
        workers: WorkersOpt = None,
        full: Annotated[
            bool, typer.Option("--full", help="Also decode every image (slower; finds corrupt files).")
        ] = False,
        gallery: Annotated[
            Optional[Path],  # noqa: UP045
            typer.Option("--gallery", help="Also draw the class-frequency chart and random labelled samples into DIR."),
        ] = None,
        gallery_samples: Annotated[
            int, typer.Option("--gallery-samples", min=1, max=64, help="Samples in the --gallery grid.")
        ] = 16,
        json_out: JsonOpt = None,
    ) -> None:
        """Validate a unified dataset: sizes, label values, splits and counts; print the class histogram."""
        from refine_cli.data.format.check import check_dataset
        from refine_cli.data.format.gallery import GALLERY_FILES
        from refine_cli.guards import refuse_output_over_inputs

        pictures = [gallery, *(gallery / name for name in GALLERY_FILES)] if gallery is not None else None
        refuse_output_over_inputs({"--json": json_out, "--gallery": pictures}, {"dataset": path})
        if gallery is not None:
            check_picture_folder(gallery, "--gallery", {"dataset": path})
        report = check_dataset(path, workers=workers or os.cpu_count() or 1, full=full, progress=err.is_terminal)
        render_check(report)
        if gallery is not None:
            from refine_cli.data.format.gallery import write_gallery

            for picture in write_gallery(report, gallery, samples=gallery_samples):
                err.print(f"wrote {picture}")
        if json_out:
            emit_json(report.to_dict(), json_out)
        if not report.ok:
            raise problems_error(report)
