"""A loopback stand-in for cityscapes-dataset.com: the login-then-download protocol of cityscapes_login.py."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.fake_nyu_ade20k_cityscapes import CS_GT_ZIP, CS_IMG_ZIP


class CityscapesStub:
    """A loopback stand-in for cityscapes-dataset.com: checks the login form and the session cookie.

    Like the real site (cityscapesScripts downloader): POST /login with username, password and
    submit=Login answers 302 and sets a cookie; every other page needs that cookie and otherwise
    redirects to /login. `packages` maps file names to bytes; ids follow the real packageIDs.
    """

    PACKAGE_IDS = {CS_GT_ZIP: "1", "gtCoarse.zip": "2", CS_IMG_ZIP: "3"}

    def __init__(self, username: str, password: str, packages: dict[str, bytes]) -> None:
        self.username, self.password, self.packages = username, password, packages
        self.sessions: set[str] = set()
        self.log: list[tuple[str, str, int]] = []  # (method, path, status)
        self.login_posts: list[dict[str, str]] = []
        self.cut_once: set[str] = set()  # package names whose first download is cut half-way
        self.stall_once: set[str] = set()  # ... whose first download stops half-way, connection left open
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CityscapesStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                stub._get(self)

            def do_POST(self) -> None:  # noqa: N802
                stub._post(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict | None = None):
        self.log.append((handler.command, handler.path, status))
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(handler.rfile.read(length).decode()))
        self.login_posts.append(form)
        good = (
            handler.path.rstrip("/") == "/login"
            and handler.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
            and form == {"username": self.username, "password": self.password, "submit": "Login"}
        )
        if not good:
            self._send(handler, 200, b"<form>Login failed</form>")
            return
        session = uuid.uuid4().hex
        self.sessions.add(session)
        self._send(handler, 302, headers={"Location": "/", "Set-Cookie": f"PHPSESSID={session}; Path=/; HttpOnly"})

    def _authorised(self, handler: BaseHTTPRequestHandler) -> bool:
        cookies = dict(
            part.strip().split("=", 1) for part in handler.headers.get("Cookie", "").split(";") if "=" in part
        )
        return cookies.get("PHPSESSID") in self.sessions

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urllib.parse.urlsplit(handler.path)
        path, query = parsed.path.rstrip("/"), urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        if path == "/login":
            self._send(handler, 200, b"<form method=post>login</form>")
            return
        if not self._authorised(handler):
            self._send(handler, 302, headers={"Location": "/login"})
            return
        by_id = {self.PACKAGE_IDS[name]: name for name in self.packages}
        if path == "/downloads" and "list" in query:
            listing = [
                {
                    "name": name,
                    "packageID": self.PACKAGE_IDS[name],
                    "size": f"{len(data) / 1e6:.1f}MB",
                    "thirdparty": "0",
                }
                for name, data in self.packages.items()
            ]
            self._send(handler, 200, json.dumps(listing).encode(), {"Content-Type": "application/json"})
            return
        name = by_id.get((query.get("packageID") or [""])[0])
        if path == "/md5-sum" and name:
            digest = hashlib.md5(self.packages[name], usedforsecurity=False).hexdigest()
            self._send(handler, 200, f"{digest}  {name}\n".encode())
            return
        if path == "/file-handling" and name:
            data = self.packages[name]
            start = 0
            range_header = handler.headers.get("Range", "")
            if range_header.startswith("bytes="):
                start = int(range_header[6:].split("-")[0])
            body = data[start:]
            if name in self.cut_once or name in self.stall_once:
                stall = name in self.stall_once
                self.cut_once.discard(name)
                self.stall_once.discard(name)
                self.log.append((handler.command, handler.path, 200))
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body[: len(body) // 2])
                handler.wfile.flush()
                if stall:  # a live but silent connection: only the client's stall rule ends it
                    self._stopping.wait(30)
                handler.close_connection = True
                return
            status = 206 if start else 200
            headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
            self._send(handler, status, body, headers)
            return
        self._send(handler, 404)
