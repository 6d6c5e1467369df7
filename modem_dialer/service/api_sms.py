"""HTTP routes for incoming SMS: ``GET /v1/sms/inbox`` (docs/sms.md).

Query: ``kind`` (stop | ack | reply | bad; default every kind), ``from`` (a number, any
format the config's region reads), ``since_id`` (only newer messages, for polling),
``limit`` (1-1000, default 100). Newest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ..errors import UserError
from ..numbers import parse_number
from ..store import SmsInbox

if TYPE_CHECKING:
    from .service import Service

KINDS = ("stop", "ack", "reply", "bad")


def _int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name}: not an integer: {raw[:20]!r}") from None
    if not lo <= value <= hi:
        raise UserError(f"{name}: {value} is not between {lo} and {hi}")
    return value


def inbox_query(svc: Service, request: web.Request) -> dict[str, object]:
    kind = request.query.get("kind")
    if kind is not None and kind not in KINDS:
        raise UserError(f"kind: {kind[:20]!r} is not one of {', '.join(KINDS)}")
    sender = request.query.get("from")
    if sender is not None:
        sender = parse_number(sender, svc.loaded.config.default_region)
    messages = SmsInbox(svc.conn).messages(kind=kind, sender=sender, since_id=_int(request, "since_id", 0, 0, 2**62),
                                       limit=_int(request, "limit", 100, 1, 1000))
    return {"messages": [m.as_dict() for m in messages]}


def add_routes(app: web.Application, key: web.AppKey) -> None:
    """Register before ``/v1/sms/{id}``, which would otherwise take "inbox" for an id."""

    async def get_inbox(request: web.Request) -> web.Response:
        return web.json_response(inbox_query(request.app[key], request))

    app.router.add_get("/v1/sms/inbox", get_inbox)
