"""A small fake marketplace order API for the polling tests: an HTTP server on 127.0.0.1 in a
thread that serves paginated orders in the marketplace's own JSON shape, with faults the test
controls (HTTP errors, slow answers, malformed JSON, held requests, a required API key).

Shape (like many Chinese marketplace open APIs):
    GET /api/v2/orders?page_size=2&cursor=…  →
    {"code": 0, "msg": "ok", "data": {"list": [order, …], "total": n}, "next": "<token>" | null}

The cursor is either an opaque token this server handed out (the change feed: orders in the
order they last changed) or an ISO 8601 timestamp (everything updated since then), which is
what reconciliation asks for. `next` is null on the last page.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

ORDERS_PATH = "/api/v2/orders"

# Our field → the marketplace's path: what an admin would enter for this marketplace.
FIELD_MAPPING: dict[str, Any] = {
    "external_id": "order_sn",
    "source_created_at": "create_time",
    "source_updated_at": "update_time",
    "customer.name": "buyer.nick",
    "customer.phone": "buyer.mobile",
    "customer.account_id": "buyer.uid",
    "customer.is_vip": "buyer.is_vip",
    "address": "receiver.address",
    "items": {
        "path": "goods",
        "fields": {"sku": "goods_id", "name": "title", "qty": "num", "price": "unit_price"},
    },
    "amount": "pay_amount",
    "note": "buyer_memo",
}

# The channel settings that read this server's answers.
CHANNEL_SETTINGS: dict[str, Any] = {
    "poll_cursor_param": "cursor",
    "poll_page_size_param": "page_size",
    "poll_list_path": "data.list",
    "poll_next_cursor_path": "next",
    "field_mapping": FIELD_MAPPING,
}


def marketplace_order(order_sn: str, *, update_time: int, **overrides: Any) -> dict[str, Any]:
    """A complete order as the marketplace sends it; `update_time` is unix seconds."""
    order: dict[str, Any] = {
        "order_sn": order_sn,
        "create_time": update_time - 120,
        "update_time": update_time,
        "buyer": {"nick": "李雷", "mobile": "13510001000", "uid": f"u_{order_sn}", "is_vip": False},
        "receiver": {"name": "李雷", "address": "广东省深圳市南山区科技园南区8栋1203"},
        "goods": [{"goods_id": "DJ-001", "title": "羽绒服", "num": 1, "unit_price": "599.00"}],
        "pay_amount": "599.00",
        "buyer_memo": "",
        "status": "WAIT_SELLER_SEND_GOODS",
    }
    order.update(overrides)
    return order


def _token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, sort_keys=True).encode()).decode().rstrip("=")


def _untoken(token: str) -> dict[str, Any]:
    padded = token + "=" * (-len(token) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


class FakeMarketplace:
    """Start with `with FakeMarketplace() as market:`; `market.url` is the poll URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._seq: dict[str, int] = {}  # position in the change feed; 0 = never in the feed
        self._counter = 0
        self._faults: deque[tuple[str, Any] | None] = deque()
        self._held: list[threading.Event] = []
        self.required_header: tuple[str, str] | None = None
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits up to one interval.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}{ORDERS_PATH}"

    # --- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> FakeMarketplace:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for event in self._held:
            event.set()
        self._server.shutdown()
        self._server.server_close()

    # --- data the test controls ---------------------------------------------------------
    def add_order(self, order_sn: str, *, update_time: int, feed_missed: bool = False, **fields: Any) -> dict:
        """Add an order. `feed_missed`: the change feed never lists it (it appears "in the past",
        behind every cursor), only a since-timestamp query finds it."""
        order = marketplace_order(order_sn, update_time=update_time, **fields)
        with self._lock:
            self._orders[order_sn] = order
            self._seq[order_sn] = 0 if feed_missed else self._next_seq()
        return order

    def modify_order(
        self, order_sn: str, *, update_time: int, feed_missed: bool = False, **fields: Any
    ) -> dict:
        """Change an order upstream. It re-enters the change feed unless `feed_missed`."""
        with self._lock:
            order = self._orders[order_sn]
            order.update(fields, update_time=update_time)
            if not feed_missed:
                self._seq[order_sn] = self._next_seq()
            return dict(order)

    def _next_seq(self) -> int:
        self._counter += 1
        return self._counter

    # --- faults: each request takes the next planned fault (None: answer normally) --------
    def fail_next(self, times: int = 1, *, status: int = 500, after: int = 0) -> None:
        self._plan(("status", status), times, after)

    def time_out_next(self, times: int = 1, *, seconds: float = 2.0, after: int = 0) -> None:
        self._plan(("slow", seconds), times, after)

    def malformed_next(self, times: int = 1, *, after: int = 0) -> None:
        self._plan(("malformed", None), times, after)

    def wrong_shape_next(self, times: int = 1, *, after: int = 0) -> None:
        """Answer 200 with JSON that has no data.list (e.g. an API version change)."""
        self._plan(("shape", None), times, after)

    def hold_next(self, *, after: int = 0) -> threading.Event:
        """The next request waits until the returned event is set, then is answered."""
        event = threading.Event()
        self._held.append(event)
        self._plan(("hold", event), 1, after)
        return event

    def require_header(self, name: str, value: str) -> None:
        self.required_header = (name, value)

    def _plan(self, fault: tuple[str, Any], times: int, after: int) -> None:
        with self._lock:
            self._faults.extend([None] * after + [fault] * times)

    # --- the API ------------------------------------------------------------------------
    def _answer(self, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, bytes]:
        with self._lock:
            self.requests.append({"path": path, "params": params, "headers": headers})
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            kind, arg = fault
            if kind == "status":
                return arg, json.dumps({"code": arg, "msg": "internal error, try later"}).encode()
            if kind == "slow":
                time.sleep(arg)
            elif kind == "malformed":
                return 200, b'{"code": 0, "data": {"list": [{"order_sn": "X1", '
            elif kind == "shape":
                return 200, json.dumps({"code": 0, "result": {"items": []}}).encode()
            elif kind == "hold":
                arg.wait(timeout=30)
        if path != ORDERS_PATH:
            return 404, json.dumps({"code": 404, "msg": "no such API"}).encode()
        if self.required_header is not None:
            name, value = self.required_header
            if headers.get(name.lower()) != value:
                return 401, json.dumps({"code": 401, "msg": "invalid or missing api key"}).encode()
        try:
            size = max(1, min(100, int(params.get("page_size", "20"))))
        except ValueError:
            return 400, json.dumps({"code": 400, "msg": "page_size must be a number"}).encode()
        cursor = params.get("cursor", "")
        try:
            orders, next_token = self._list(cursor, size)
        except ValueError as exc:
            return 400, json.dumps({"code": 400, "msg": f"bad cursor: {exc}"}).encode()
        body = {"code": 0, "msg": "ok", "data": {"list": orders, "total": len(orders)}, "next": next_token}
        return 200, json.dumps(body, ensure_ascii=False).encode()

    def _list(self, cursor: str, size: int) -> tuple[list[dict], str | None]:
        with self._lock:
            since = offset = None
            after = 0
            if cursor:
                try:
                    since = datetime.fromisoformat(cursor).timestamp()
                    offset = 0
                except ValueError:
                    state = _untoken(cursor)  # raises ValueError on garbage
                    since, offset, after = state.get("since"), state.get("offset"), state.get("after", 0)
            if since is not None:
                # Everything updated since the timestamp, oldest change first, by offset.
                rows = sorted(
                    (o for o in self._orders.values() if o["update_time"] >= since),
                    key=lambda o: (o["update_time"], o["order_sn"]),
                )
                page = rows[offset : offset + size]
                more = offset + size < len(rows)
                nxt = _token({"since": since, "offset": offset + size}) if more else None
                return [json.loads(json.dumps(o)) for o in page], nxt
            # The change feed: orders in the order they last changed, after a position.
            feed = sorted((s, sn) for sn, s in self._seq.items() if s > after)
            page_keys = feed[:size]
            more = len(feed) > size
            nxt = _token({"after": page_keys[-1][0]}) if more else None
            return [json.loads(json.dumps(self._orders[sn])) for _, sn in page_keys], nxt

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        market = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = market._answer(parts.path, params, headers)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
