"""What the API schema says beyond drf-spectacular's defaults: one error body for the whole API
and, for each operation, the error statuses its view can give, read from the view's own
permissions, throttles, body and path so that the schema cannot drift from the code (a view's
own `@extend_schema` responses win); query and decimal inputs as DRF really reads them; and the
signed webhook, which is no DRF view."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import AllowAny, IsAuthenticated

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

# DRF's own validation errors are `{field: [message, …]}` (nested for nested input); our
# services answer `{code, detail, errors}`. Both are objects, so one schema documents both.
_VALIDATION_ERROR = {
    "type": "object",
    "description": "What was wrong with the input: either `code`, `detail` and `errors` (field → "
    "messages), or the field names themselves mapped to their messages.",
    "properties": {
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": {}},
    },
    "additionalProperties": {},
}

_DESCRIPTIONS = {
    "400": "Invalid input; the body says which field or parameter and why. Nothing was written.",
    "401": "Not authenticated: no valid `Authorization: Token …` header or session.",
    "403": "Authenticated, but this account may not do this (role, agent profile, or CSRF for "
    "session clients).",
    "404": "No such object that you may see, or no such page of results.",
    "413": "The request body is larger than this server accepts.",
    "415": "The body is not JSON.",
    "429": "Too many requests from this client; retry after `Retry-After` seconds.",
    "503": (
        "The database was unavailable and the request was not carried out, or its answer was lost"
        " with the connection; resend after `Retry-After` seconds (ingestion is idempotent)."
    ),
}


class PaidanAutoSchema(AutoSchema):
    def get_operation(self, path, path_regex, path_prefix, method, registry) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._error_statuses(operation):
            response = responses.setdefault(code, {"description": _DESCRIPTIONS[code]})
            # A view may document an error with a description only; its body is still ours.
            if "content" not in response:
                response["content"] = {"application/json": {"schema": self._error_schema(code)}}
            if code in ("429", "503"):
                response.setdefault("headers", {})["Retry-After"] = {
                    "schema": {"type": "integer"},
                    "description": "Seconds to wait before trying again.",
                }
        for code, response in responses.items():
            if code >= "400" and "content" not in response:
                response["content"] = {"application/json": {"schema": self._error_schema(code)}}
            if not response.get("description") and code in _DESCRIPTIONS:
                response["description"] = _DESCRIPTIONS[code]
        operation["responses"] = dict(sorted(responses.items()))
        for parameter in operation.get("parameters", []):
            # Our pages submit forms, whose empty fields arrive as `name=`: every view reads an
            # empty query value as the parameter left out.
            if parameter.get("in") == "query" and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return operation

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # drf-spectacular documents an address of either protocol as any string; DRF takes an
        # IPv4 or IPv6 address only (or "" where blank is allowed).
        if isinstance(field, serializers.IPAddressField) and field.protocol == "both":
            forms: list[dict[str, Any]] = [{"format": "ipv4"}, {"format": "ipv6"}]
            if field.allow_blank:
                forms.append({"maxLength": 0})
            schema = {**schema, "anyOf": forms}
        # drf-spectacular's decimal pattern matches "", "-" and "."; DRF refuses them, and a
        # minus sign where the minimum is 0.
        if isinstance(field, serializers.DecimalField) and "pattern" in schema:
            sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
            places = field.decimal_places
            whole = "0" if field.max_whole_digits == 0 else rf"\d{{1,{field.max_whole_digits}}}"
            schema["pattern"] = rf"^{sign}(?:{whole}(?:\.\d{{0,{places}}})?|\.\d{{1,{places}}})$"
        return schema

    def _error_statuses(self, operation: dict[str, Any]) -> list[str]:
        view = self.view
        permissions = [type(p) for p in view.get_permissions()]
        has_body = self.method in _BODY_METHODS
        queries = [p for p in operation.get("parameters", []) if p.get("in") == "query"]
        codes = {"503"}
        if any(p is not AllowAny for p in permissions):
            codes.add("401")
        if any(p not in (AllowAny, IsAuthenticated) for p in permissions) or (
            has_body and any(isinstance(a, SessionAuthentication) for a in view.get_authenticators())
        ):
            codes.add("403")
        if has_body or queries:
            codes.add("400")
        paginated = isinstance(getattr(view, "paginator", None), PageNumberPagination)
        if "{" in self.path or (paginated and self.method == "GET"):
            codes.add("404")
        if has_body:
            codes.update({"413", "415"})
        if view.get_throttles():
            codes.add("429")
        return sorted(codes)

    def _error_schema(self, code: str) -> dict[str, Any]:
        if code == "400":
            component = ResolvedComponent(
                name="ValidationError", type=ResolvedComponent.SCHEMA, object="ValidationError",
                schema=_VALIDATION_ERROR,
            )  # fmt: skip
            self.registry.register_on_missing(component)
            return component.ref
        from orders.apis import ErrorSerializer

        return self.resolve_serializer(ErrorSerializer, "response").ref


_WEBHOOK_RESULT = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["created", "updated", "ignored", "duplicate"]},
        "id": {"type": "integer", "nullable": True},
        "tag": {"type": "string", "nullable": True},
        "reason": {"type": "string", "nullable": True},
        "detail": {"type": "string", "description": "For a duplicate: which event it repeats."},
    },
    "required": ["status"],
}


def _json(ref: str, description: str, *, retry_after: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    if retry_after:
        response["headers"] = {
            "Retry-After": {
                "schema": {"type": "integer"},
                "description": "Seconds to wait before trying again.",
            }
        }
    return response


def document_webhook(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    """POSTPROCESSING_HOOKS: the signed webhook is a plain Django view (it must read the raw
    body to check the signature), which drf-spectacular does not see; orders/webhooks.py."""
    result["components"]["schemas"]["WebhookResult"] = _WEBHOOK_RESULT
    header = {"in": "header", "required": True}
    result["paths"]["/hooks/{channel_code}/"] = {
        "post": {
            "operationId": "hooks_receive",
            "tags": ["hooks"],
            "description": "One order as the channel sends it, mapped by the channel's field mapping "
            "(admin) to the order fields, then ingested like POST /api/orders/. Signed: "
            'X-Paidan-Signature is "sha256=" + hex HMAC-SHA256, keyed by the channel\'s webhook '
            'secret, of X-Paidan-Timestamp + "." + the raw body. An event id already received '
            "is answered `duplicate` and changes nothing.",
            "parameters": [
                {"in": "path", "name": "channel_code", "required": True, "schema": {"type": "string"}},
                {
                    **header,
                    "name": "X-Paidan-Timestamp",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    "description": "Unix seconds, within WEBHOOK_TOLERANCE_SECONDS of our clock.",
                },
                {**header, "name": "X-Paidan-Signature", "schema": {"type": "string"}},
                {
                    **header,
                    "name": "X-Paidan-Event-Id",
                    "schema": {"type": "string", "maxLength": 128},
                    "description": "The sender's id of this event: the replay guard.",
                },
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {}}}},
            },
            "security": [],
            "responses": {
                "200": _json("WebhookResult", "Stored, updated, ignored as older, or a duplicate event."),
                "400": _json("ValidationError", "No event id, a body that is not JSON, or an invalid order."),
                "401": _json("Error", "Missing, stale or wrong signature; or the channel has no secret."),
                "404": _json("Error", "No active channel with this code."),
                "413": _json("Error", _DESCRIPTIONS["413"]),
                "429": _json("Error", "The channel sent more than WEBHOOK_RATE.", retry_after=True),
                "503": _json("Error", _DESCRIPTIONS["503"], retry_after=True),
            },
        }
    }
    return result
