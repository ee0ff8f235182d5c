"""Cityscapes: labelId -> trainId against the official table, the login-then-download client, end to end."""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from refine_cli.cli.app import app
from refine_cli.data.acquire.cityscapes_login import (
    CityscapesClient,
    Credentials,
    download_packages,
    ensure_login_sources,
    resolve_credentials,
)
from refine_cli.data.acquire.manifest import Source, load_manifest
from refine_cli.data.convert.base import SampleError, WorkItem
from refine_cli.data.convert.datasets.cityscapes import (
    CityscapesConverter,
    label_id_to_train_id_lut,
    train_ids_to_label_ids,
)
from refine_cli.data.format.unified import UnifiedDataset
from refine_cli.errors import RefineError
from tests.support.cityscapes_stub import CityscapesStub
from tests.support.fake_nyu_ade20k_cityscapes import (
    CS_GT_ZIP,
    CS_IMG_ZIP,
    build_cityscapes,
    patch_center,
)
from tests.support.fake_voc2012_sbd_coco import fixture_manifest
from tests.support.prepare_runner import run_prepare

# (labelId, trainId) pairs copied from cityscapesScripts helpers/labels.py (docs/dataset-facts.md appendix C).
OFFICIAL_PAIRS = [
    (0, 255), (1, 255), (3, 255), (6, 255), (7, 0), (8, 1), (9, 255), (10, 255), (11, 2), (12, 3), (13, 4),
    (14, 255), (16, 255), (17, 5), (18, 255), (19, 6), (20, 7), (21, 8), (22, 9), (23, 10), (24, 11), (25, 12),
    (26, 13), (27, 14), (28, 15), (29, 255), (30, 255), (31, 16), (32, 17), (33, 18),
]  # fmt: skip


def test_label_id_to_train_id_matches_official_table() -> None:
    lut = label_id_to_train_id_lut()
    for label_id, train_id in OFFICIAL_PAIRS:
        assert lut[label_id] == train_id, label_id
    assert train_ids_to_label_ids(np.array([[0, 10, 18, 255]], dtype=np.uint8)).tolist() == [[7, 23, 33, 0]]


# ------------------------------------------------------------------------------------- login client

USER, PASSWORD = "ada@example.org", "s3cret pass&word"


def test_login_then_download_resumes_and_verifies(tmp_path: Path) -> None:
    gt, img = os.urandom(300_000), os.urandom(5_000)
    with CityscapesStub(USER, PASSWORD, {CS_GT_ZIP: gt, CS_IMG_ZIP: img}) as stub:
        stub.cut_once.add(CS_GT_ZIP)  # the first transfer dies half-way: the client resumes with Range
        seen: list[tuple[str, int]] = []
        paths = download_packages(
            [CS_GT_ZIP, CS_IMG_ZIP],
            tmp_path,
            Credentials(USER, PASSWORD),
            base_url=stub.url,
            progress=lambda name, done, total: seen.append((name, done)),
        )
        assert paths[CS_GT_ZIP].read_bytes() == gt and paths[CS_IMG_ZIP].read_bytes() == img
        assert stub.login_posts == [{"username": USER, "password": PASSWORD, "submit": "Login"}]
        downloads = [(m, p, s) for m, p, s in stub.log if p.startswith("/file-handling/?packageID=1")]
        assert [s for *_, s in downloads] == [200, 206]
        assert not list(tmp_path.glob("*.part"))
        assert seen and seen[-1] == (CS_IMG_ZIP, len(img))


def test_a_stalled_package_download_resumes_like_every_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login client uses the shared download core: its stall rule, Range resume and md5 check."""
    monkeypatch.setenv("REFINE_STALL_TIMEOUT", "0.3")
    gt = os.urandom(300_000)
    with CityscapesStub(USER, PASSWORD, {CS_GT_ZIP: gt}) as stub:
        stub.stall_once.add(CS_GT_ZIP)
        started = time.monotonic()
        paths = download_packages([CS_GT_ZIP], tmp_path, Credentials(USER, PASSWORD), base_url=stub.url)
        assert time.monotonic() - started < 4
        assert paths[CS_GT_ZIP].read_bytes() == gt
        statuses = [s for _, p, s in stub.log if p.startswith("/file-handling/")]
        assert statuses == [200, 206]


def test_packages_that_do_not_fit_are_refused_before_the_password_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10 << 30))
    sources = [
        Source(key="gtfine", file=CS_GT_ZIP, urls=[], size=241_000_000, md5="0" * 32, login=True),
        Source(key="leftimg", file=CS_IMG_ZIP, urls=[], size=11_600_000_000, md5="1" * 32, login=True),
    ]
    with pytest.raises(RefineError, match=rf"to download {CS_GT_ZIP}, {CS_IMG_ZIP}: needs 11.0 GiB, 10.0 GiB free"):
        ensure_login_sources(sources, tmp_path, "ada", interactive=True)  # a prompt would fail under pytest


def test_bad_password_is_one_clear_error_without_the_password(tmp_path: Path) -> None:
    with CityscapesStub(USER, PASSWORD, {CS_GT_ZIP: b"x"}) as stub:
        with pytest.raises(RefineError) as caught:
            download_packages([CS_GT_ZIP], tmp_path, Credentials(USER, "wrong-one"), base_url=stub.url)
    text = caught.value.one_line()
    assert "login failed" in text and USER in text and "wrong-one" not in text
    assert "s3cret" not in repr(Credentials(USER, PASSWORD))


def test_session_cookie_is_required(tmp_path: Path) -> None:
    with CityscapesStub(USER, PASSWORD, {CS_GT_ZIP: b"x"}) as stub:
        client = CityscapesClient(stub.url)
        client.logged_in = True  # pretend, without the cookie: the site redirects to /login
        with pytest.raises(RefineError, match="not authorised"):
            client.packages()


def test_unavailable_package_and_insecure_url(tmp_path: Path) -> None:
    with CityscapesStub(USER, PASSWORD, {CS_GT_ZIP: b"x"}) as stub:
        with pytest.raises(RefineError, match="not available to this account"):
            download_packages([CS_IMG_ZIP], tmp_path, Credentials(USER, PASSWORD), base_url=stub.url)
    with pytest.raises(RefineError, match="refusing to send Cityscapes credentials"):
        CityscapesClient("http://example.org")


def test_credentials_from_environment_never_from_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSCAPES_USERNAME", "env-user")
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "env-pass")
    assert resolve_credentials(None, interactive=False) == Credentials("env-user", "env-pass")
    assert resolve_credentials("cli-user", interactive=False).username == "cli-user"
    monkeypatch.delenv("CITYSCAPES_PASSWORD")
    with pytest.raises(RefineError, match="no Cityscapes password"):
        resolve_credentials("cli-user", interactive=False)


# ---------------------------------------------------------------------------------------- converter


def _extract(zip_path: Path, dest: Path) -> Path:
    import zipfile

    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(dest)
    return dest


def test_plan_and_convert_map_known_pixels(tmp_path: Path) -> None:
    fake = build_cityscapes(tmp_path / "raw")
    sources = {"gtfine": _extract(fake.gt_zip, tmp_path / "gt"), "leftimg": _extract(fake.img_zip, tmp_path / "img")}
    plan = CityscapesConverter().plan(sources, {})
    assert plan.splits == fake.ids
    assert plan.spec.num_classes == 19 and plan.spec.extra["unlabeled_splits"] == ["test"]
    assert plan.spec.extra["train_id_to_label_id"][:3] == [7, 8, 11]
    items = {item.sample_id: item for item in plan.items}
    stem = fake.ids["train"][0]
    out = CityscapesConverter.convert(items[stem])
    source = fake.labels[stem]
    lut = dict(OFFICIAL_PAIRS)
    for index in range(15):
        y, x = patch_center(index, source.shape[1])
        assert out.label[y, x] == lut[int(source[y, x])]
    assert out.label[-1, -1] == 8  # fill: labelId 21 vegetation -> trainId 8
    assert out.image_src is not None and out.image_src.name == f"{stem}_leftImg8bit.png"
    test = CityscapesConverter.convert(items[fake.ids["test"][0]])
    assert (test.label == 255).all() and test.label.shape == (32, 64)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing-label", "missing label file"),
        ("wrong-size", r"^label \S*_gtFine_labelIds\.png is 60x32 but image \S*_leftImg8bit\.png is 64x32$"),
        ("bad-value", "not Cityscapes labelIds"),
    ],
)
def test_bad_labels_name_the_file(tmp_path: Path, kind: str, message: str) -> None:
    stem = "aachen_000000_000019"
    fake = build_cityscapes(tmp_path / "raw", bad={stem: kind})
    sources = {"gtfine": _extract(fake.gt_zip, tmp_path / "gt"), "leftimg": _extract(fake.img_zip, tmp_path / "img")}
    item = next(i for i in CityscapesConverter().plan(sources, {}).items if i.sample_id == stem)
    with pytest.raises(SampleError, match=message) as caught:
        CityscapesConverter.convert(item)
    assert f"{stem}_gtFine_labelIds.png" in caught.value.reason


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RefineError, match="has no leftImg8bit/ folder"):
        CityscapesConverter().plan({"gtfine": tmp_path / "empty", "leftimg": tmp_path / "empty"}, {})


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_corrupt_image_is_a_sample_error(tmp_path: Path) -> None:
    image = tmp_path / "x_leftImg8bit.png"
    image.write_bytes(_png_bytes(np.zeros((8, 8, 3), np.uint8))[:40])
    with pytest.raises(SampleError, match="cannot read image"):
        CityscapesConverter.convert(WorkItem("x", (str(image), None)))
    assert json.dumps(CityscapesConverter().required_sources({})) == '["gtfine", "leftimg"]'


# ------------------------------------------------------------------------------------------ end to end

FIXTURE_SPLITS = {"train": 2, "val": 2, "test": 1}


def _check_prepared(root: Path, fake) -> None:
    dataset = UnifiedDataset(root / "cityscapes")
    assert dataset.meta.num_classes == 19 and dataset.meta.classes[18] == "bicycle"
    assert dataset.meta.extra["unlabeled_splits"] == ["test"]
    label_ids = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]  # labels.py, trainId order
    assert dataset.meta.extra["train_id_to_label_id"] == label_ids
    assert dataset.meta.palette[0] == [128, 64, 128]
    lut = dict(OFFICIAL_PAIRS)
    for stem in [*fake.ids["train"], *fake.ids["val"]]:
        label, source = dataset.read_label(stem), fake.labels[stem]
        np.testing.assert_array_equal(label, np.vectorize(lambda v: lut[int(v)])(source).astype(np.uint8))
    assert (dataset.read_label(fake.ids["test"][0]) == 255).all()
    stem = fake.ids["val"][0]
    member = f"leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png"
    assert dataset.image_path(stem).read_bytes() == _zip_member(fake.img_zip, member)  # copied unchanged
    check = CliRunner().invoke(app, ["check", str(root / "cityscapes")])
    assert check.exit_code == 0, check.output


def _zip_member(path: Path, member: str) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return archive.read(member)


def test_prepare_cityscapes_from_archives(tmp_path: Path) -> None:
    fake = build_cityscapes(tmp_path / "archives")
    files = {"gtfine": fake.gt_zip, "leftimg": fake.img_zip}
    manifest = fixture_manifest(tmp_path, "cityscapes", files, splits=FIXTURE_SPLITS)
    args = ["cityscapes", "--root", str(tmp_path / "data"), "--archives", str(tmp_path / "archives")]
    result = run_prepare([*args, "--manifest", str(manifest), "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert result.report["splits"] == FIXTURE_SPLITS and result.report["check"]["ok"] is True
    _check_prepared(tmp_path / "data", fake)


def test_prepare_cityscapes_logs_in_and_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = build_cityscapes(tmp_path / "raw")
    files = {"gtfine": fake.gt_zip, "leftimg": fake.img_zip}
    manifest = fixture_manifest(tmp_path, "cityscapes", files, splits=FIXTURE_SPLITS)
    packages = {CS_GT_ZIP: fake.gt_zip.read_bytes(), CS_IMG_ZIP: fake.img_zip.read_bytes()}
    root = tmp_path / "data"
    args = ["cityscapes", "--root", str(root), "--manifest", str(manifest), "--workers", "1"]
    with CityscapesStub(USER, PASSWORD, packages) as stub:
        monkeypatch.setenv("REFINE_CITYSCAPES_URL", stub.url)
        monkeypatch.delenv("CITYSCAPES_USERNAME", raising=False)
        monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
        result = run_prepare([*args, "--username", USER])
        assert result.exit_code == 0, result.output
        assert PASSWORD not in result.output
        assert len(stub.login_posts) == 1
        _check_prepared(root, fake)
        assert sorted(p.name for p in (root / "downloads").glob("*.zip")) == [CS_GT_ZIP, CS_IMG_ZIP]
        again = run_prepare(args)  # zips already there: no login, no password needed
        assert again.exit_code == 0, again.output
        assert len(stub.login_posts) == 1 and again.report["reused"] == 5

        monkeypatch.delenv("CITYSCAPES_PASSWORD")
        fresh = run_prepare(["cityscapes", "--root", str(tmp_path / "other"), "--manifest", str(manifest)])
    assert fresh.exit_code == 2
    assert fresh.output.strip().startswith("error: Cityscapes needs an account")


def test_packaged_manifest_needs_login() -> None:
    manifest = load_manifest("cityscapes")
    assert manifest.splits == {"train": 2975, "val": 500, "test": 1525}
    gt, img = manifest.source("gtfine"), manifest.source("leftimg")
    assert gt.login and img.login and not gt.urls
    assert (gt.file, gt.md5) == ("gtFine_trainvaltest.zip", "4237c19de34c8a376e9ba46b495d6f66")
    assert (img.file, img.md5) == ("leftImg8bit_trainvaltest.zip", "0a6e97e94b616a514066c9e2adb0c97f")
