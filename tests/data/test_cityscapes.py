"""Cityscapes: labelId -> trainId against the official table, the login-then-download client, end to end."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from refine_cli.data.cityscapes_login import CityscapesClient, Credentials, download_packages, resolve_credentials
from refine_cli.data.converters.base import SampleError, WorkItem
from refine_cli.data.converters.cityscapes import (
    CityscapesConverter,
    label_id_to_train_id_lut,
    train_ids_to_label_ids,
)
from refine_cli.errors import RefineError
from tests.support.fake_datasets_a import CS_GT_ZIP, CS_IMG_ZIP, CityscapesStub, build_cityscapes, patch_center

# (labelId, trainId) pairs copied from cityscapesScripts helpers/labels.py (datasets.md appendix C).
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
    [("missing-label", "missing label file"), ("wrong-size", "but image"), ("bad-value", "not Cityscapes labelIds")],
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
