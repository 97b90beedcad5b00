"""Websocket consumers: the board feed and each agent's queue feed. Session-authenticated
(config/asgi.py wraps them in the origin validator and the session middleware); anonymous
sockets are closed, and so are board sockets of accounts that have no board and agent sockets
of accounts with no agent profile. Every message names ids only; the page re-reads them
through the visibility-checked API."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from dashboards.groups import agent_group, user_group

# Application close codes (4000-4999): the client tells "log in again" from "retry later".
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_AN_AGENT = 4403
CLOSE_NO_BOARD = 4403


class _Feed(AsyncJsonWebsocketConsumer):
    """A feed of some channel-layer groups plus the person's own group (`user-<id>`):
    `groups_for` names them for the scope's user, or returns a close code to refuse them.
    Answers `ping` with `pong`. Both feeds handle every event type, so a message sent to a
    person's group can never close a socket for want of a handler."""

    async def groups_for(self, user) -> list[str] | int:
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        groups = await self.groups_for(user)
        if isinstance(groups, int):
            await self.close(code=groups)
            return
        self.joined = [*groups, user_group(user.pk)]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json(self.hello(user))

    def hello(self, user) -> dict:
        return {"type": "hello", "user": user.get_username()}

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs: object) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    # One handler per event type (dashboards.events), named as Channels maps the dotted type.
    async def orders_changed(self, event: dict) -> None:
        await self.send_json({"type": event["type"], "ids": event["ids"]})

    async def alerts_raised(self, event: dict) -> None:
        if self.sees_alerts:
            await self.send_json({"type": event["type"], "ids": event["ids"]})

    async def alerts_acknowledged(self, event: dict) -> None:
        if self.sees_alerts:
            await self.send_json({"type": event["type"], "ids": event["ids"]})

    async def notifications_created(self, event: dict) -> None:
        await self.send_json({"type": event["type"], "ids": event["ids"]})

    async def agent_changed(self, event: dict) -> None:
        await self.send_json({"type": event["type"]})

    sees_alerts = False


@database_sync_to_async
def _board_access(user) -> tuple[bool, list[str], bool]:
    from dashboards.board_selectors import board_scope, may_see_alerts, may_use_board

    if not may_use_board(user):
        return False, [], False
    return True, board_scope(user).groups, may_see_alerts(user)


class BoardConsumer(_Feed):
    """A board: the groups of the orders its viewer may see (all, or their regions and the
    orders no region covers). Agents have their queue page, not the board."""

    async def groups_for(self, user) -> list[str] | int:
        allowed, groups, sees_alerts = await _board_access(user)
        if not allowed:
            return CLOSE_NO_BOARD
        self.sees_alerts = sees_alerts
        return groups


@database_sync_to_async
def _agent_id_of(user_id: int) -> int | None:
    from agents.models import Agent

    return Agent.objects.filter(user_id=user_id).values_list("pk", flat=True).first()


class AgentConsumer(_Feed):
    """One agent's queue page: told to re-fetch whenever their offers, orders or inquiries
    change. The message carries no state on purpose; the page reads it from the API."""

    async def groups_for(self, user) -> list[str] | int:
        self.agent_id = await _agent_id_of(user.pk)
        return CLOSE_NOT_AN_AGENT if self.agent_id is None else [agent_group(self.agent_id)]

    def hello(self, user) -> dict:
        return {"type": "hello", "agent": self.agent_id}
