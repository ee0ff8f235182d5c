"""`refine models`: every model refine can build, with its size and cost, plus the torchvision peers."""

from __future__ import annotations

from typing import Any

import typer

from refine_cli.cli._console import emit_json, out
from refine_cli.cli._options import JsonOpt, parse_size


def models_command(
    size: str = typer.Option("512", "--size", help="Input size for the MAC count: 512 or HEIGHTxWIDTH."),
    num_classes: int = typer.Option(21, "--num-classes", min=1, help="Classes of the classifier head."),
    json_out: JsonOpt = None,
) -> None:
    """List models with parameters and GMACs (counted on the meta device: nothing is allocated)."""
    from refine_cli.engine.bench.catalog import describe_models
    from refine_cli.engine.bench.complexity import MAC_UNIT_NOTE

    height, width = parse_size(size, "--size")
    rows = describe_models(height, width, num_classes=num_classes)
    if json_out is not None:
        emit_json(rows, json_out)
        if json_out == "-":
            return
    title = f"Models ({num_classes} classes, GMACs at {height}x{width})"
    # one line per model: the full descriptions where they fit, a few words in a narrow terminal or a pipe
    # (80 columns), and no words at all below that; nothing is ever cut in the middle of a word
    layouts = ("description", "summary", None)
    unbounded = out.options.update(max_width=10_000)  # the width the table wants, not what it gets
    for column in layouts:
        table = _models_table(rows, title, column)
        if out.measure(table, options=unbounded).maximum <= out.width:
            break
    out.print(table)
    if column != "description":
        out.print("Full descriptions: a wider terminal or --json.")
    out.print(f"{MAC_UNIT_NOTE}. Peers are torchvision models (tv:NAME), usable with `refine bench --model`.")


def _models_table(rows: list[dict], title: str, text_column: str | None) -> Any:
    """The table with `text_column` (description or summary) as its last column, or without one."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GMACs", justify="right", no_wrap=True)
    if text_column:
        table.add_column("description", no_wrap=True)
    for row in rows:
        cells = [Text(row["name"]), f"{row['params']:,}", f"{row['gmacs']:.2f}"]
        if text_column:
            text = row[text_column].removeprefix("peer: ")
            cells.append(Text.assemble(("peer: ", "dim") if row["peer"] else "", text))
        table.add_row(*cells)
    return table


def register(app: typer.Typer) -> None:
    """Attach `refine models`."""
    app.command("models", epilog="Examples:\n\n  refine models\n  refine models --json models.json")(models_command)
