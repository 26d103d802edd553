"""A webhook receiver for the embedded runtime and the tests: a small threaded HTTP server on
127.0.0.1 (a free port) that records every call (path, headers, JSON body) and answers with
`status`, after `delay` seconds (longer than the caller's timeout: a receiver that hangs).

    with WebhookReceiver() as receiver:
        url = receiver.url("/hooks/web")   # http://127.0.0.1:<port>/hooks/web
        ...
        receiver.calls                     # what was POSTed
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 1_000_000


@dataclass(frozen=True)
class WebhookCall:
    path: str
    headers: dict[str, str]
    body: Any = field(repr=False)  # the JSON posted (None if it was not JSON)


class WebhookReceiver:
    def __init__(self, status: int = 204, delay: float = 0.0):
        self.status, self.delay = status, delay
        self.calls: list[WebhookCall] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                with receiver._lock:
                    receiver.calls.append(WebhookCall(self.path, dict(self.headers.items()), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                """Silent: the path may carry the webhook's secret."""

        return Handler
