"""A loopback HTTP server for download tests: serves in-memory files, supports Range, injects faults.

Tests must never touch the internet, so downloads are exercised against this server on 127.0.0.1
with an OS-chosen port. Faults are per path and cover what real mirrors do: 404s, connections cut
mid-transfer, wrong bytes, servers that ignore Range, redirects, and mirrors that stall (headers,
then nothing) or trickle (a few bytes a second) while keeping the connection open.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    """How to misbehave for one path.

    status: answer every request with this HTTP status (e.g. 404, 503) and no body.
    fail_times: with `status`, only the first N requests fail (then the file is served); 0 = always.
    cut_after: on the first `cut_times` requests send only this many body bytes, then drop the connection.
    corrupt: serve bytes of the right length but wrong content.
    ignore_range: answer Range requests with the full file and status 200 (servers without resume support).
    redirect_to: answer with a 302 to this path or URL.
    stall_after: send only this many body bytes, then nothing, holding the connection open (0: headers only).
    trickle: send the body at this many bytes per second.
    slow_times: stall or trickle only on the first N requests (then serve normally); 0 = always.
    """

    status: int | None = None
    fail_times: int = 0
    cut_after: int | None = None
    cut_times: int = 1
    corrupt: bool = False
    ignore_range: bool = False
    redirect_to: str | None = None
    stall_after: int | None = None
    trickle: float | None = None
    slow_times: int = 0


@dataclass
class Request:
    """One request the server saw (for assertions such as 'a Range request was made')."""

    path: str
    range: str | None
    status: int


@dataclass
class LoopbackServer:
    """Threaded HTTP server on 127.0.0.1; use as a context manager or via the `http_server` fixture."""

    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._served: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()  # ends stalled and trickling answers when the server stops

    def url(self, path: str) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/{path.lstrip('/')}"

    def requests_for(self, path: str) -> list[Request]:
        path = "/" + path.lstrip("/")
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def start(self) -> LoopbackServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, handler: BaseHTTPRequestHandler, status: int) -> None:
        with self._lock:
            self.requests.append(Request(handler.path, handler.headers.get("Range"), status))

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        fault = self.faults.get(path) or self.faults.get(path.lstrip("/")) or Fault()
        with self._lock:
            count = self._served.get(path, 0)
            self._served[path] = count + 1
        if fault.redirect_to is not None:
            target = fault.redirect_to if "://" in fault.redirect_to else self.url(fault.redirect_to)
            self._record(handler, 302)
            handler.send_response(302)
            handler.send_header("Location", target)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        data = self.files.get(path.lstrip("/"))
        failing = fault.status is not None and (fault.fail_times == 0 or count < fault.fail_times)
        status = fault.status if failing else None
        if data is None or status is not None:
            status = status or 404
            self._record(handler, status)
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if fault.corrupt:
            data = bytes((b + 1) % 256 for b in data)
        start, end = 0, len(data)
        range_header = handler.headers.get("Range")
        partial = False
        if range_header and not fault.ignore_range and range_header.startswith("bytes="):
            first, _, last = range_header[len("bytes=") :].partition("-")
            start = int(first)
            end = int(last) + 1 if last else len(data)
            if start >= len(data):
                self._record(handler, 416)
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
            partial = True
        body = data[start:end]
        code = 206 if partial else 200
        self._record(handler, code)
        handler.send_response(code)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "none" if fault.ignore_range else "bytes")
        if partial:
            handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        handler.end_headers()
        slow = fault.slow_times == 0 or count < fault.slow_times
        if slow and (fault.stall_after is not None or fault.trickle):
            self._send_slowly(handler, body, fault)
            return
        if fault.cut_after is not None and count < fault.cut_times:
            handler.wfile.write(body[: fault.cut_after])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(body)

    def _send_slowly(self, handler: BaseHTTPRequestHandler, body: bytes, fault: Fault) -> None:
        """Stall after `stall_after` bytes, or trickle at `trickle` bytes/s, until done or the client leaves."""
        try:
            if fault.stall_after is not None:
                handler.wfile.write(body[: fault.stall_after])
                handler.wfile.flush()
                self._stopping.wait(30)  # hold the connection open, sending nothing
                return
            step = max(1, int(fault.trickle / 20))  # 20 small writes a second
            for start in range(0, len(body), step):
                handler.wfile.write(body[start : start + step])
                handler.wfile.flush()
                if self._stopping.wait(step / fault.trickle):
                    return
        except OSError:  # the client gave up on us, as it should
            pass
        finally:
            handler.close_connection = True
