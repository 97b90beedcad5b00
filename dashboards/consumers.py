"""Websocket consumers: the board feed. Session-authenticated; anonymous sockets are closed."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboards.events import ORDERS_CHANGED
from dashboards.groups import board_group


class BoardConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = board_group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "user": user.get_username()})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def orders_changed(self, event: dict) -> None:
        await self.send_json({"type": ORDERS_CHANGED, "ids": event["ids"]})
