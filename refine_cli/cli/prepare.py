"""`refine prepare <dataset>`: download (or take) the archives, convert to the unified format, check.

Each dataset is one small command that collects its own options and calls `PrepareCommon.run`; the
shared options and the runner are in _prepare_common.py. Commands with more code live in their own
modules exposing `register(prepare_app)` (prepare_shapes.py, prepare_scenes.py, prepare_custom.py).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from refine_cli.cli._console import emit_json, out
from refine_cli.cli._help import RefineGroup, RefineTyper
from refine_cli.cli._prepare_common import PrepareCommon, download_examples, prepare_command


class LabelOrder(str, Enum):
    """Class order of Person-Part source PNGs (docs/dataset-facts.md section 5)."""

    deeplab = "deeplab"
    parsing_rcnn = "parsing-rcnn"


class ContextClasses(str, Enum):
    """Which PASCAL-Context variant(s) to write."""

    sixty = "60"
    fifty_nine = "59"
    both = "both"


# Datasets made from local files, without a manifest: (name, title, licence)
_LOCAL_DATASETS = [
    ("shapes", "synthetic shapes, drawn locally (refine prepare shapes)", "MIT, like refine"),
    ("custom", "your own labelled images: masks, CVAT, COCO, LabelMe, Label Studio, YOLO", "yours"),
]  # fmt: skip


def _list_datasets() -> None:
    """Every dataset: what it is, its download size and login, then each one's terms, wrapped at words."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from refine_cli.data.acquire.manifest import list_manifests, load_manifest

    rows = []
    for name in list_manifests():
        manifest = load_manifest(name)
        login = "yes" if any(s.login for s in manifest.sources) else "no"
        rows.append((name, manifest.title, download_size(manifest.sources), login, manifest.licence))
    rows += [(name, title, "none", "no", licence) for name, title, licence in _LOCAL_DATASETS]
    table = Table(title="datasets (packaged manifests, then local ones)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # fmt: skip
    for column in ("name", "download", "login"):
        table.add_column(column, no_wrap=True)
    table.add_column("what", ratio=1)
    terms = Table.grid(padding=(0, 2))
    terms.add_column(no_wrap=True)
    terms.add_column(ratio=1)
    for name, title, size, login, licence in rows:
        table.add_row(Text(name), size, login, Text(title))
        terms.add_row(Text(name), Text(" ".join(licence.split()) or "not stated"))
    out.print(table)
    out.print(Text("terms of use", style="bold"))
    out.print(terms)


def download_size(sources: list[Any]) -> str:
    """The download of a dataset's sources: `2.0 GB`, `~0.9 GB` (published rough sizes), `+ ?` for unknown ones.

    Optional sources (e.g. SBD for `voc --aug`) are added on a second line.
    """

    def total(chosen: list[Any]) -> str:
        known = sum(s.size or s.approx_size or 0 for s in chosen)
        rough = any(s.size is None and s.approx_size for s in chosen)
        unknown = any(s.size is None and s.approx_size is None for s in chosen)
        if not known:
            return "?"
        amount = f"{known / 1e9:.1f} GB" if known >= 1e8 else f"{known / 1e6:.0f} MB"
        return ("~" if rough else "") + amount + (" + ?" if unknown else "")

    needed = [s for s in sources if not s.optional]
    optional = [s for s in sources if s.optional]
    return total(needed) + (f"\n+{total(optional)} optional" if optional else "")


def _limit_option(flag: str, metavar: str, minimum: float, help_text: str) -> Any:
    """An optional number option of `refine prepare` itself (limits for untrusted downloads and archives)."""
    return Annotated[Optional[float], typer.Option(flag, min=minimum, metavar=metavar, help=help_text)]  # noqa: UP045


StallTimeoutOpt = _limit_option(
    "--stall-timeout", "SECONDS", 0.001,
    "Give up on a mirror that sends no byte for this long; it is retried once, then the next mirror is tried "
    "(default 15, or REFINE_STALL_TIMEOUT).",
)  # fmt: skip
MinRateOpt = _limit_option(
    "--min-rate", "KB/S", 0,
    "Also give up on a mirror that averages less than this over 20 s (REFINE_RATE_WINDOW) "
    "(default 10, or REFINE_MIN_RATE; 0 = off).",
)  # fmt: skip
MaxExpansionOpt = _limit_option(
    "--max-expansion", "N", 0,
    "Refuse an archive whose members add up to more than N x its size, like a zip bomb "
    "(default 100, or REFINE_MAX_EXPANSION; 0 = no limit).",
)  # fmt: skip


MinPixelsOpt = Annotated[
    int,
    typer.Option(
        "--min-pixels", min=0, help="Drop images, in train AND val (gluon-cv's rule), with fewer VOC-class pixels."
    ),
]
LabelOrderOpt = Annotated[
    LabelOrder,
    typer.Option(
        "--label-order",
        help="Class order of the source PNGs: deeplab (pascal_person_part.zip) or parsing-rcnn "
        "(1 lower-arm, 2 head, 3 upper-leg, 4 torso, 5 lower-leg, 6 upper-arm). Output is always deeplab's.",
    ),
]
ContextClassesOpt = Annotated[
    ContextClasses,
    typer.Option(
        "--classes",
        help="60: `context` with background as class 0 (RefineNet); 59: `context59` with background "
        "ignored (255); both: write both datasets.",
    ),
]
_EPILOG = (
    "Examples:\n\n  refine prepare --list\n  refine prepare voc --aug --root data\n"
    "  refine prepare cityscapes --archives ~/Downloads\n  refine prepare context --classes both\n"
    "  refine prepare shapes --root data\n  refine prepare custom mydata --from cvat_export/\n"
    "  refine prepare --stall-timeout 60 --min-rate 1 voc   (a slow link)"
)


def prepare_callback(
    ctx: typer.Context,
    list_: Annotated[bool, typer.Option("--list", help="List the datasets, download sizes and terms.")] = False,
    stall_timeout: StallTimeoutOpt = None,
    min_rate: MinRateOpt = None,
    max_expansion: MaxExpansionOpt = None,
) -> None:
    """The limits for untrusted downloads and archives, `--list`, and the help when no dataset is named."""
    from refine_cli.data.acquire.limits import set_max_expansion, set_stall_rules

    set_stall_rules(stall_timeout, min_rate)
    if max_expansion is not None:
        set_max_expansion(max_expansion)
    if list_:
        _list_datasets()
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help(), color=ctx.color)
        raise typer.Exit()


def voc_command(
    common: PrepareCommon,
    aug: Annotated[bool, typer.Option("--aug", help="Also build train_aug (10,582 images) from SBD.")] = False,
) -> None:
    """PASCAL VOC 2012 segmentation: train 1,464 / val 1,449 (21 classes)."""
    common.run("voc", {"aug": aug})


def sbd_command(common: PrepareCommon) -> None:
    """SBD (Semantic Boundaries Dataset): train 8,498 / val 2,857, VOC's 21 classes."""
    common.run("sbd", {})


def coco_command(common: PrepareCommon, min_pixels: MinPixelsOpt = 1000) -> None:
    """MS COCO 2017 mapped to the 20 VOC classes (for VOC pre-training)."""
    common.run("coco", {"min_pixels": min_pixels})


def person_part_command(common: PrepareCommon, label_order: LabelOrderOpt = LabelOrder.deeplab) -> None:
    """PASCAL-Person-Part: train 1,716 / val 1,817, 7 classes (labels from the zip, VOC 2010 images)."""
    common.run("person-part", {"label_order": label_order.value})


def context_command(common: PrepareCommon, classes: ContextClassesOpt = ContextClasses.sixty) -> None:
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


def register(app: typer.Typer) -> None:
    """Attach `refine prepare` and one subcommand per dataset (order = order in --help)."""
    from refine_cli.cli import prepare_custom, prepare_scenes, prepare_shapes

    prepare_app = RefineTyper(
        cls=RefineGroup,
        help="Download (or take) a dataset's archives, convert them to the unified format and check the result. "
        "The download and archive limits below go before the dataset name.",
        no_args_is_help=False,
        invoke_without_command=True,
        epilog=_EPILOG,
    )
    prepare_app.callback()(prepare_callback)
    prepare_command(prepare_app, "voc", epilog=download_examples("voc", "refine prepare voc --aug --root data"))(
        voc_command
    )
    prepare_command(prepare_app, "sbd")(sbd_command)
    prepare_command(prepare_app, "coco")(coco_command)
    prepare_shapes.register(prepare_app)
    prepare_scenes.register(prepare_app)  # nyudv2, sunrgbd, ade20k, cityscapes
    prepare_custom.register(prepare_app)  # your own data
    prepare_command(prepare_app, "person-part")(person_part_command)
    context_epilog = download_examples("context", "refine prepare context --classes both")
    prepare_command(prepare_app, "context", epilog=context_epilog)(context_command)
    app.add_typer(prepare_app, name="prepare")
