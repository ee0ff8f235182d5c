"""`refine models`: every model refine can build, with its size and cost, plus the torchvision peers."""

from __future__ import annotations

import typer

from refine_cli.cli._console import emit_json, out, tagged
from refine_cli.cli._options import JsonOpt, parse_size


def models_command(
    size: str = typer.Option("512", "--size", help="Input size for the MAC count: 512 or HEIGHTxWIDTH."),
    num_classes: int = typer.Option(21, "--num-classes", min=1, help="Classes of the classifier head."),
    json_out: JsonOpt = None,
) -> None:
    """List models with parameters and GMACs (counted on the meta device: nothing is allocated)."""
    from rich.table import Table

    from refine_cli.engine.bench.catalog import describe_models
    from refine_cli.engine.bench.complexity import MAC_UNIT_NOTE

    height, width = parse_size(size, "--size")
    rows = describe_models(height, width, num_classes=num_classes)
    if json_out is not None:
        emit_json(rows, json_out)
        if json_out == "-":
            return
    table = Table(title=f"Models ({num_classes} classes, GMACs at {height}x{width})", title_justify="left")
    table.add_column("model", no_wrap=True)
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("GMACs", justify="right", no_wrap=True)
    table.add_column("description", overflow="fold")
    for row in rows:
        description = tagged("peer:", "dim", row["description"]) if row["peer"] else row["description"]
        table.add_row(row["name"], f"{row['params']:,}", f"{row['gmacs']:.2f}", description)
    out.print(table)
    out.print(f"{MAC_UNIT_NOTE}. Peers are torchvision models (tv:NAME), usable with `refine bench --model`.")


def register(app: typer.Typer) -> None:
    """Attach `refine models`."""
    app.command("models", epilog="Examples:\n\n  refine models\n  refine models --json models.json")(models_command)
