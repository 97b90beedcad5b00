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


class _GroupConsumer(AsyncJsonWebsocketConsumer):
    """A feed of one channel-layer group: `group_for` names it for the scope's user, or
    returns a close code to refuse them. Answers `ping` with `pong`."""

    async def group_for(self, user) -> str | int:
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        group = await self.group_for(user)
        if isinstance(group, int):
            await self.close(code=group)
            return
        self.group = group
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json(self.hello(user))

    def hello(self, user) -> dict:
        return {"type": "hello", "user": user.get_username()}

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})


class BoardConsumer(_GroupConsumer):
    async def group_for(self, user) -> str:
        return board_group()

    async def orders_changed(self, event: dict) -> None:
        await self.send_json({"type": ORDERS_CHANGED, "ids": event["ids"]})


@database_sync_to_async
def _agent_id_of(user_id: int) -> int | None:
    from agents.models import Agent

    return Agent.objects.filter(user_id=user_id).values_list("pk", flat=True).first()


class AgentConsumer(_GroupConsumer):
    """One agent's queue page: told to re-fetch whenever their offers, orders or inquiries
    change. The message carries no state on purpose; the page reads it from the API."""

    async def group_for(self, user) -> str | int:
        self.agent_id = await _agent_id_of(user.pk)
        return CLOSE_NOT_AN_AGENT if self.agent_id is None else agent_group(self.agent_id)

    def hello(self, user) -> dict:
        return {"type": "hello", "agent": self.agent_id}

    async def agent_changed(self, event: dict) -> None:
        await self.send_json({"type": AGENT_CHANGED})
