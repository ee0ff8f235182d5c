"""`refine prepare nyudv2 | sunrgbd | ade20k | cityscapes`: the indoor, scene-parsing and driving datasets.

Thin commands: their own options in, `PrepareCommon.run` out (the shared options come from prepare.py).
Cityscapes adds the login-then-download step (library: refine_cli.data.acquire.cityscapes_login) before the
common pipeline, which then finds and verifies the zips.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from refine_cli.cli._console import err
from refine_cli.cli._prepare_common import PrepareCommon, download_examples, prepare_command


def nyudv2_command(
    common: PrepareCommon,
    crop_border: Annotated[
        str,
        typer.Option(
            "--crop-border",
            metavar="none|lw|N|T,R,B,L",
            help="Remove the white frame around NYU images: 'lw' = 625x468 like LW-RefineNet (6 px top/bottom, "
            "7 left, 8 right), N pixels per side, or top,right,bottom,left. Labels are cropped the same way.",
        ),
    ] = "none",
) -> None:
    """NYUDv2 40 classes: train 795 / val 654 (the official test set), from the 2.8 GB labelled .mat."""
    from refine_cli.data.convert.datasets.nyudv2 import parse_crop

    top, right, bottom, left = parse_crop(crop_border)  # fail on a typo before any download
    common.run("nyudv2", {"crop_border": f"{top},{right},{bottom},{left}"})


def sunrgbd_command(
    common: PrepareCommon,
    release: Annotated[
        str,
        typer.Option(
            "--release",
            metavar="auto|toolbox|preprocessed",
            help="'toolbox': SUNRGBD.zip + SUNRGBDtoolbox.zip (the official release); 'preprocessed': the "
            "three files of ankurhanda/sunrgbd-meta-data most RGB-D repositories use (same labels). 'auto' "
            "takes 'preprocessed' when --archives (or the downloads folder) holds those files and no SUNRGBD.zip.",
        ),
    ] = "auto",
) -> None:
    """SUN RGB-D 37 classes (RGB only): train 5,285 / val 5,050 (the official test set), official or preprocessed."""
    from refine_cli.data.acquire.manifest import load_manifest
    from refine_cli.data.convert.datasets.sunrgbd import choose_release, prepared_release

    files = {source.key: source.file for source in load_manifest(common.manifest or "sunrgbd").sources}
    folder = common.archives if common.archives is not None else common.root_dir / "downloads"
    chosen = choose_release(release, folder, files, prepared_release(common.root_dir / "sunrgbd"))
    if release.strip().lower() == "auto":
        err.print(f"note: SUN RGB-D release: {chosen} (--release toolbox|preprocessed chooses)")
    common.run("sunrgbd", {"release": chosen} if chosen != "toolbox" else {})  # toolbox: the options of old runs


def ade20k_command(common: PrepareCommon) -> None:
    """ADE20K SceneParsing: train 20,210 / val 2,000, 150 classes ('other' -> ignore)."""
    common.run("ade20k", {})


def cityscapes_command(
    common: PrepareCommon,
    username: Annotated[
        Optional[str],  # noqa: UP045 - typer evaluates this at runtime
        typer.Option(
            "--username",
            help="Cityscapes account (or $CITYSCAPES_USERNAME); the password comes from $CITYSCAPES_PASSWORD "
            "or a hidden prompt, never from the command line.",
        ),
    ] = None,
) -> None:
    """Cityscapes fine: train 2,975 / val 500 / test 1,525 (test labels withheld: all 255), 19 trainIds.

    Needs an account: pass the two zips with --archives, or log in with --username.
    """
    common.refuse_overlaps("cityscapes", {})  # before the login and download
    if common.archives is None:
        from refine_cli.data.acquire.cityscapes_login import ensure_login_sources
        from refine_cli.data.acquire.manifest import load_manifest
        from refine_cli.data.convert.datasets.cityscapes import CityscapesConverter

        loaded = load_manifest(common.manifest if common.manifest is not None else "cityscapes")
        keys = CityscapesConverter().required_sources({})
        downloads = common.root_dir / "downloads"
        ensure_login_sources([loaded.source(k) for k in keys], downloads, username, progress=_progress_bars())
    common.run("cityscapes", {})


def _progress_bars():  # noqa: ANN202 - a (name, done, total) callback or None
    """One tqdm bar per package on stderr when it is a terminal; silent otherwise."""
    if not err.is_terminal:
        return None
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(name: str, done: int, total: int | None) -> None:
        bar = bars.get(name)
        if bar is None:
            bar = bars[name] = tqdm(total=total, desc=f"download {name}", unit="B", unit_scale=True, initial=done)
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return update


def register(prepare_app: typer.Typer) -> None:
    """Attach `nyudv2`, `sunrgbd`, `ade20k` and `cityscapes` to the `refine prepare` sub-app."""
    prepare_command(prepare_app, "nyudv2")(nyudv2_command)
    preprocessed = "refine prepare sunrgbd --release preprocessed --root data   (ankurhanda/sunrgbd-meta-data's copy)"
    prepare_command(prepare_app, "sunrgbd", epilog=download_examples("sunrgbd", preprocessed))(sunrgbd_command)
    prepare_command(prepare_app, "ade20k")(ade20k_command)
    login = "refine prepare cityscapes --username me@example.com   (password: prompt or $CITYSCAPES_PASSWORD)"
    prepare_command(prepare_app, "cityscapes", epilog=download_examples("cityscapes", login))(cityscapes_command)
