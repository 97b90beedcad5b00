"""A fake HTTP endpoint on 127.0.0.1 in a thread for the notification and outbound webhook
tests: it plays a WeCom group robot, an SMS gateway or another system's webhook receiver.
It records every request (path, headers, raw body) and answers what the test planned:
by default 200 with WeCom's success body; `answer_next` queues other answers (an HTTP error,
a WeCom errcode, a slow answer). With `secret` set it checks X-Paidan-Signature the way a
careful receiver would (HMAC-SHA256 over "<t>.<raw body>", timestamp within 5 minutes) and
answers 401 when it does not verify."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WECOM_OK = {"errcode": 0, "errmsg": "ok"}
SIGNATURE_TOLERANCE_SECONDS = 300


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    signature_ok: bool | None = None  # None: the receiver has no secret

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def verify_signature(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """What a subscriber does with X-Paidan-Signature: t=<unix>,v1=<hex>."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


class FakeReceiver:
    """`with FakeReceiver() as robot:` then send to `robot.url`."""

    def __init__(self, *, secret: str | None = None, delay: float = 0.0) -> None:
        self.secret = secret
        self.delay = delay
        self.requests: list[Received] = []
        self.default: tuple[int, bytes] = (200, json.dumps(WECOM_OK).encode())
        self._planned: deque[tuple[int, bytes, float]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        host, port = self._server.server_address[:2]
        self.base = f"http://{host}:{port}"
        self.url = f"{self.base}/cgi-bin/webhook/send?key=robot-key-1234"

    def __enter__(self) -> FakeReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- what to answer -------------------------------------------------------------------
    def answer_always(self, status: int, body: Any = "") -> None:
        self.default = (status, _encode(body))

    def answer_next(self, status: int, body: Any = "", *, times: int = 1, delay: float = 0.0) -> None:
        with self._lock:
            self._planned.extend([(status, _encode(body), delay)] * times)

    def wecom_error_next(self, errcode: int, errmsg: str, *, times: int = 1) -> None:
        """WeCom answers refusals with HTTP 200 and a non-zero errcode."""
        self.answer_next(200, {"errcode": errcode, "errmsg": errmsg}, times=times)

    # --- the server -------------------------------------------------------------------------
    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        signature_ok = None
        if self.secret is not None:
            signature_ok = verify_signature(self.secret, headers.get("x-paidan-signature", ""), body)
        with self._lock:
            self.requests.append(Received(path=path, headers=headers, body=body, signature_ok=signature_ok))
            status, answer, delay = self._planned.popleft() if self._planned else (*self.default, 0.0)
        if delay or self.delay:
            time.sleep(delay or self.delay)
        if signature_ok is False:
            return 401, b'{"error": "bad signature"}'
        return status, answer

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, answer = receiver._answer(self.path, headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def _encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()
