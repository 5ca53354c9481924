"""API tokens and users: listed, created and removed by root over the local socket only
(the route table refuses remote callers), so a leaked token cannot mint another."""

from __future__ import annotations

from typing import Any

from herd.api.context import ApiContext, Request
from herd.errors import ValidationError


def list_credentials(ctx: ApiContext, request: Request, kind: str) -> dict[str, Any]:
    return {"items": ctx.auth.list(kind)}


def create_credential(ctx: ApiContext, request: Request, kind: str) -> dict[str, Any]:
    """Create a token or a user.

    A token is generated here and shown in this answer only (the store keeps a hash); a
    user's password comes from the caller.
    """
    body = request.body
    fields = {"name", "read_only", *(("password",) if kind == "users" else ())}
    if not isinstance(body, dict) or not {"name"} <= set(body) <= fields:
        raise ValidationError("body", "<hidden>", "an object with " + ", ".join(sorted(fields)))
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ValidationError("read_only", read_only, "true or false")
    out = {"name": body["name"], "read_only": read_only}
    if kind == "tokens":
        return out | {"token": ctx.auth.create_token(body["name"], read_only)}
    # A missing password is refused by add_user, as an empty one is.
    ctx.auth.add_user(body["name"], body.get("password", ""), read_only)
    return out


def remove_credential(ctx: ApiContext, request: Request, kind: str, name: str) -> dict[str, Any]:
    ctx.auth.remove(kind, name)
    return {"name": name, "removed": True}
