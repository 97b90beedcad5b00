"""Websocket consumers: the board feed and each agent's queue feed. Session-authenticated;
anonymous sockets are closed, and so are agent sockets of accounts with no agent profile."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboards.events import AGENT_CHANGED, ORDERS_CHANGED
from dashboards.groups import agent_group, board_group

# Application close codes (4000-4999): the client tells "log in again" from "retry later".
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_AN_AGENT = 4403


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


@database_sync_to_async
def _agent_id_of(user_id: int) -> int | None:
    from agents.models import Agent

    return Agent.objects.filter(user_id=user_id).values_list("pk", flat=True).first()


class AgentConsumer(AsyncJsonWebsocketConsumer):
    """One agent's queue page: told to re-fetch whenever their offers, orders or inquiries
    change. The message carries no state on purpose; the page reads it from the API."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        agent_id = await _agent_id_of(user.pk)
        if agent_id is None:
            await self.close(code=CLOSE_NOT_AN_AGENT)
            return
        self.group = agent_group(agent_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "agent": agent_id})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def agent_changed(self, event: dict) -> None:
        await self.send_json({"type": AGENT_CHANGED})
