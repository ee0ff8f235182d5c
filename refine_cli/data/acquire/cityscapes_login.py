"""Log in to cityscapes-dataset.com and download packages, the way cityscapesScripts' csDownload does.

Cityscapes needs an account, so the usual "fetch a URL" path cannot get it. The site protocol
(cityscapesScripts `download/downloader.py`): GET then POST the `/login` form (`username`, `password`,
`submit=Login`); a 302 answer means success and leaves a session cookie; `/downloads/?list` lists the
packages (JSON: name, packageID, size); `/md5-sum/?packageID=N` gives the md5; `/file-handling/?packageID=N`
streams the file and honours HTTP Range, so the shared download core (download.py) fetches it with the
session's cookies: resume, stall rules, checksum and atomic rename are the same as for every dataset.

The password is only ever held in memory: it is never printed, logged, put in an exception or written to
disk (unlike csDownload, which offers to store it unencrypted).
"""

from __future__ import annotations

import getpass
import http.cookiejar
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refine_cli.data.acquire.download import check_download_space, download
from refine_cli.data.acquire.manifest import Source
from refine_cli.errors import RefineError

DEFAULT_BASE_URL = "https://www.cityscapes-dataset.com"
# Lets tests (a loopback stub) or a mirror stand in for the real site; https is required elsewhere.
BASE_URL_ENV = "REFINE_CITYSCAPES_URL"
USERNAME_ENV = "CITYSCAPES_USERNAME"
PASSWORD_ENV = "CITYSCAPES_PASSWORD"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}

ProgressFn = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Credentials:
    """A Cityscapes account; `repr` hides the password so it cannot leak into logs or tracebacks."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def resolve_credentials(username: str | None = None, *, interactive: bool | None = None) -> Credentials:
    """Username from the option or $CITYSCAPES_USERNAME; password from $CITYSCAPES_PASSWORD or a hidden prompt.

    The password is never taken from the command line (it would show in `ps` and shell history).
    """
    username = username or os.environ.get(USERNAME_ENV, "")
    if interactive is None:
        interactive = sys.stdin.isatty()
    if not username:
        if not interactive:
            raise RefineError(
                "Cityscapes needs an account and no username was given",
                hint=f"pass --username or set {USERNAME_ENV}, or download the zips yourself and pass --archives",
            )
        username = input("Cityscapes username or email address: ").strip()
    password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        if not interactive:
            raise RefineError(
                f"no Cityscapes password for {username!r}",
                hint=f"set {PASSWORD_ENV} or run in a terminal to be prompted",
            )
        password = getpass.getpass("Cityscapes password: ")
    if not username or not password:
        raise RefineError("empty Cityscapes username or password", hint="both are needed to log in")
    return Credentials(username=username, password=password)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Surface redirects as HTTPError: a 302 after the login POST is how the site says 'welcome'."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - stdlib signature
        return None


class CityscapesClient:
    """A logged-in session with cityscapes-dataset.com (or a stand-in at `base_url`)."""

    def __init__(self, base_url: str | None = None, *, timeout: float = 60.0) -> None:
        self.base_url = (base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL).rstrip("/")
        parsed = urllib.parse.urlsplit(self.base_url)
        if parsed.scheme != "https" and not (parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS):
            raise RefineError(
                f"refusing to send Cityscapes credentials to {self.base_url}",
                hint="the login URL must be https (plain http is only allowed for a local test server)",
            )
        self.timeout = timeout
        self.cookies = http.cookiejar.CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())
        self.logged_in = False

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _open(self, request: urllib.request.Request | str):
        try:
            return self._opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RefineError(
                f"cannot reach {self.base_url}: {reason}", hint="check the network connection and try again"
            ) from None

    def login(self, credentials: Credentials) -> None:
        """Post the login form; success is a redirect (302/303), anything else means bad credentials."""
        try:
            with self._open(self._url("/login")) as response:
                response.read()
        except urllib.error.HTTPError as error:
            if error.code not in (301, 302, 303):
                raise RefineError(f"Cityscapes login page answered HTTP {error.code}", hint="try again later") from None
        form = urllib.parse.urlencode(
            {"username": credentials.username, "password": credentials.password, "submit": "Login"}
        ).encode("ascii")
        request = urllib.request.Request(self._url("/login"), data=form, method="POST")
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self._open(request) as response:
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        if status not in (302, 303):
            raise RefineError(
                f"Cityscapes login failed for {credentials.username!r} (HTTP {status}, expected a redirect)",
                hint="check the username and password at https://www.cityscapes-dataset.com/login",
            )
        self.logged_in = True

    def _get(self, path: str, headers: dict[str, str] | None = None):
        if not self.logged_in:
            raise RefineError("not logged in to Cityscapes", hint="call login() first")
        request = urllib.request.Request(self._url(path), headers=headers or {})
        try:
            return self._open(request)
        except urllib.error.HTTPError as error:
            if error.code in (301, 302, 303, 401, 403):
                raise RefineError(
                    f"Cityscapes refused {path} (HTTP {error.code}); the session is not authorised",
                    hint="log in again; the account may lack access to this package",
                ) from None
            raise RefineError(f"Cityscapes answered HTTP {error.code} for {path}", hint="try again later") from None

    def packages(self) -> list[dict[str, Any]]:
        """The packages this account may download (name, packageID, size, ...)."""
        with self._get("/downloads/?list") as response:
            body = response.read()
        try:
            packages = json.loads(body)
        except ValueError:
            raise RefineError(
                "Cityscapes package list is not JSON (the login may have expired)", hint="try again"
            ) from None
        if not isinstance(packages, list):
            raise RefineError("unexpected Cityscapes package list format", hint="try again later")
        return packages

    def package_id(self, name: str) -> str:
        """The packageID for a package file name such as `gtFine_trainvaltest.zip`."""
        by_name = {str(p.get("name")): str(p.get("packageID")) for p in self.packages() if isinstance(p, dict)}
        if name not in by_name:
            raise RefineError(
                f"Cityscapes package {name!r} is not available to this account",
                hint="accept the dataset terms on the website, or download it by hand and pass --archives",
            )
        return by_name[name]

    def md5(self, package_id: str) -> str:
        """The md5 the site publishes for a package (first word of /md5-sum/)."""
        with self._get(f"/md5-sum/?packageID={urllib.parse.quote(package_id)}") as response:
            words = response.read().decode("utf-8", "replace").split()
        if not words or len(words[0]) != 32:
            raise RefineError(f"Cityscapes sent no md5 for package {package_id}", hint="try again later")
        return words[0].lower()

    def download(
        self, name: str, dest_dir: Path, *, expected_md5: str | None = None, progress: ProgressFn | None = None
    ) -> Path:
        """Download package `name` into `dest_dir` with the shared download core, verified against the site's md5.

        Same guarantees as every other download (download.py): resumed with Range after a cut, stall
        rules, md5 checked while streaming, and the file appears under its final name only when verified.
        """
        package_id = self.package_id(name)
        site_md5 = self.md5(package_id)
        if expected_md5 and site_md5 != expected_md5.lower():
            raise RefineError(
                f"Cityscapes publishes md5 {site_md5} for {name}, but the manifest expects {expected_md5}",
                hint="the package may have changed; report this so the manifest can be updated",
            )
        return download(
            self._url(f"/file-handling/?packageID={urllib.parse.quote(package_id)}"),
            Path(dest_dir) / name,
            checksums={"md5": site_md5},
            progress=False,
            timeout=self.timeout,
            opener=self._opener,  # carries the session cookie; redirects (an expired login) are not followed
            on_progress=progress,
        )


def download_packages(
    names: list[str],
    dest_dir: Path,
    credentials: Credentials,
    *,
    expected_md5: dict[str, str] | None = None,
    base_url: str | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> dict[str, Path]:
    """Log in once and download every package in `names`; returns name -> local path."""
    client = CityscapesClient(base_url)
    client.login(credentials)
    paths: dict[str, Path] = {}
    for name in names:
        callback = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        paths[name] = client.download(name, dest_dir, expected_md5=(expected_md5 or {}).get(name), progress=callback)
    return paths


def ensure_login_sources(
    sources: list[Source],
    downloads_dir: Path,
    username: str | None = None,
    *,
    interactive: bool | None = None,
    base_url: str | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> list[Path]:
    """Download the login-only sources that are not yet in `downloads_dir`; returns what was fetched.

    Logs in only when something is missing, so a re-run after a completed download never asks for a
    password. Integrity against the manifest is checked afterwards by the normal prepare pipeline.
    """
    missing = [s for s in sources if s.login and not (Path(downloads_dir) / s.file).is_file()]
    if not missing:
        return []
    check_download_space(missing, Path(downloads_dir))  # before asking for a password
    credentials = resolve_credentials(username, interactive=interactive)
    fetched = download_packages(
        [s.file for s in missing],
        Path(downloads_dir),
        credentials,
        expected_md5={s.file: s.md5 for s in missing if s.md5},
        base_url=base_url,
        progress=progress,
    )
    return list(fetched.values())
