"""The HTTP API (aiohttp). Every answer is JSON (but /metrics); bad input is a 4xx, never a call.

Routes: POST /v1/alerts, GET /v1/alerts, GET /v1/alerts/{id}, POST /v1/alerts/{id}/ack,
POST /v1/alerts/{id}/resolve,
POST /v1/alerts/resolve (by dedup key),
POST /v1/alertmanager, POST /v1/sms, GET /v1/sms/inbox (api_sms.py), GET /v1/sms/{id}, POST /v1/campaigns,
GET /v1/campaigns, GET /v1/campaigns/{name}, GET /v1/modems, GET /v1/inbound, GET /v1/webhooks, GET /healthz,
GET /metrics. Described in docs/api.md.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..alerting.inputs import TooMany, check_text, one_line
from ..errors import UserError
from ..numbers import parse_number
from ..store import Alerts, Connection, Journal, other_boxes_modems
from ..store.boxes import this_box
from .api_sms import add_routes as add_sms_routes
from .console import is_console_path
from .console import mount as mount_console
from .guard import AllowList, guard_middlewares
from .metrics import render

if TYPE_CHECKING:
    from .service import Service

log = logging.getLogger("modem_dialer.api")

SERVICE: web.AppKey[Service] = web.AppKey("service")
# the Host/Origin allow-list of the app (service/guard.py): pages served on the same port
# (the web console) reuse it, e.g. for their own CSRF checks
ALLOW: web.AppKey[AllowList] = web.AppKey("allow")
MAX_TEXT = 1000


class AlertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[str] | None = None
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    audio: str | None = None
    policy: str | None = None
    dedup_key: str | None = Field(default=None, max_length=200)
    ack_key: str | None = None
    via: Literal["call", "sms", "call+sms"] | None = None

    def __init__(self, **data: Any) -> None:
        if isinstance(data.get("to"), str):
            data["to"] = [data["to"]]
        super().__init__(**data)


class SmsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str
    text: str = Field(min_length=1, max_length=1530)


class AmAlert(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class AmPayload(BaseModel):
    """Alertmanager webhook payload (version 4); fields we do not use are accepted as they are."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    alerts: list[AmAlert]
    groupKey: str | None = None
    receiver: str | None = None
    groupLabels: dict[str, str] = Field(default_factory=dict)
    commonLabels: dict[str, str] = Field(default_factory=dict)
    commonAnnotations: dict[str, str] = Field(default_factory=dict)


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _pydantic_message(exc: ValidationError) -> str:
    e = exc.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "body"
    msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
    return f"{where}: {msg}"


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()          # raises 413 past client_max_size
    try:
        doc = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"malformed JSON: {exc}"}),
                                 content_type="application/json") from None
    except RecursionError:              # [[[[… deeper than the parser's stack
        raise web.HTTPBadRequest(text=json.dumps({"error": "malformed JSON: nested too deeply"}),
                                 content_type="application/json") from None
    if not isinstance(doc, dict):
        raise web.HTTPBadRequest(text=json.dumps({"error": "the body must be a JSON object"}),
                                 content_type="application/json")
    return doc


@web.middleware
async def errors_mw(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason)
    except ValidationError as exc:
        return error(400, _pydantic_message(exc))
    except TooMany as exc:
        return error(429, str(exc))
    except RecursionError:   # a structure nested deeper than our code walks: the caller's input
        return error(400, "input nested too deeply")
    except UserError as exc:
        return error(400, str(exc))
    except Exception:   # a bug: say so without a stack trace on the wire
        log.exception("%s %s failed", request.method, request.path)
        return error(500, "internal error (see the service log)")


def auth_mw(token: str | None):
    @web.middleware
    async def mw(request: web.Request, handler):
        # the console (/ and /console/…) logs in with a session cookie of its own (console/guard.py)
        if token and request.path != "/healthz" and not is_console_path(request.path):
            got = request.headers.get("Authorization", "")
            if not (got.startswith("Bearer ") and hmac.compare_digest(got[7:].strip().encode(), token.encode())):
                log.warning("unauthorised %s %s from %s", request.method, request.path, request.remote)
                return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                         headers={"WWW-Authenticate": 'Bearer realm="modem-dialer"'})
        return await handler(request)
    return mw


def _alert_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text=json.dumps({"error": "alert ids are integers"}),
                               content_type="application/json") from None


def alert_view(conn: Connection, alert_id: int) -> dict[str, Any] | None:
    """An alert as the API and ``alert status`` show it: row, escalation position, calls, SMS."""
    a = Alerts(conn).get_alert(alert_id)
    if a is None:
        return None
    state = a.pop("state")
    journal = Journal(conn)
    calls = journal.calls(alert_id=alert_id, limit=200, newest_first=False)
    for c in calls:
        c["keys"] = [{"key": k["key"], "at": k["at"]} for k in journal.keys_of(c["id"])]
    sms = Alerts(conn).sms_of_alert(alert_id)
    return {**a, "result": state.get("result"), "position": state.get("pos"), "next_at": state.get("next_at"),
            "plan": state.get("plan"), "history": state.get("history", []), "labels": state.get("labels", {}),
            "errors": state.get("errors", []),
            "ack_log": state.get("ack_log", []), "renotify_at": state.get("ack_deadline"),
            "calls": [{k: c.get(k) for k in ("id", "number", "modem", "outcome", "started_at", "answered_at",
                                              "ended_at", "keys")} for c in calls],
            "sms": sms}


# ---- handlers ------------------------------------------------------------------------
async def post_alert(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    req = AlertRequest(**await read_json(request))
    alert_id, created = await svc.runner.submit(to=req.to, say=req.text, audio=req.audio, policy=req.policy,
                                                dedup_key=req.dedup_key, ack_key=req.ack_key, via=req.via,
                                                source="api")
    a = svc.runner.alerts.get_alert(alert_id)
    return web.json_response({"id": alert_id, "created": created, "status": a["status"] if a else None,
                              "url": f"/v1/alerts/{alert_id}"}, status=202 if created else 200)


async def list_alerts(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    which = request.query.get("status", "live")
    try:
        limit = max(1, min(int(request.query.get("limit", "50")), 1000))
    except ValueError:
        return error(400, "limit: not an integer")
    if which not in ("live", "all"):
        return error(400, "status: use 'live' or 'all'")
    out = []
    for alert_id in Alerts(svc.conn).alert_ids(live_only=which == "live", limit=limit):
        v = alert_view(svc.conn, alert_id)
        if v:
            out.append({k: v[k] for k in ("id", "status", "result", "policy", "text", "dedup_key", "created_at",
                                          "acknowledged_at", "acknowledged_by", "resolved_at")})
    return web.json_response(out)


async def get_alert(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    # the calls' rows (keys, outcomes) may still be queued to the journal writer: read after them
    with contextlib.suppress(Exception):
        await svc.journal.flush()
    v = alert_view(svc.conn, _alert_id(request))
    return error(404, "no such alert") if v is None else web.json_response(v)


class WhoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str = Field(default="api", min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")


async def _who(request: web.Request) -> str:
    """``{"by": "alice"}`` (optional body): who acknowledges or resolves, journaled as given."""
    if not request.can_read_body:
        return "api"
    return WhoRequest(**await read_json(request)).by


async def ack_alert(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    alert_id = _alert_id(request)
    by = await _who(request)
    try:
        ok = svc.runner.acknowledge(alert_id, by=by, via="api")
    except KeyError:
        return error(404, "no such alert")
    a = svc.runner.alerts.get_alert(alert_id)
    return web.json_response({"id": alert_id, "acknowledged": ok, "status": a["status"] if a else None,
                              "acknowledged_by": a["acknowledged_by"] if a else None,
                              "renotify_at": a["state"].get("ack_deadline") if a else None})


async def resolve_alert(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    alert_id = _alert_id(request)
    by = await _who(request)
    try:
        ok = svc.runner.resolve(alert_id, by=by)
    except KeyError:
        return error(404, "no such alert")
    a = svc.runner.alerts.get_alert(alert_id)
    return web.json_response({"id": alert_id, "resolved": ok, "status": a["status"] if a else None})


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dedup_key: str = Field(min_length=1, max_length=200)


async def resolve_by_key(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    req = ResolveRequest(**await read_json(request))
    alert_id = svc.runner.resolve_key(req.dedup_key, by="api")
    return web.json_response({"resolved": alert_id, "dedup_key": req.dedup_key})


def am_text(p: AmPayload) -> str:
    firing = [a for a in p.alerts if a.status == "firing"] or p.alerts
    parts = []
    for a in firing[:5]:
        i = p.alerts.index(a)
        field = "summary" if a.annotations.get("summary") else "description"
        s = a.annotations.get(field)
        if s:
            s = one_line(s, f"alerts[{i}].annotations.{field}")
        else:
            s = a.labels.get("alertname", "alert")
            if a.labels.get("instance"):
                s += f" on {a.labels['instance']}"
            s = one_line(s, f"alerts[{i}].labels")
        parts.append(s)
    more = f" and {len(firing) - 5} more" if len(firing) > 5 else ""
    head = f"{len(firing)} alerts firing: " if len(firing) > 1 else ""
    return (head + "; ".join(parts) + more)[:MAX_TEXT]


def am_policy(svc: Service, p: AmPayload) -> str | None:
    al = svc.loaded.config.alerting
    labels = {**p.groupLabels, **p.commonLabels}
    named = labels.get(al.policy_label)
    if named:
        if named not in al.policies:
            raise UserError(f"label {al.policy_label}={named!r}: no such policy in the config")
        return named
    for r in al.routes:
        if all(labels.get(k) == v for k, v in r.match.items()):
            return r.policy
    return None


async def alertmanager(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    p = AmPayload(**await read_json(request))
    key = "am:" + (p.groupKey or json.dumps(p.groupLabels, sort_keys=True))
    if p.status == "resolved":
        alert_id = svc.runner.resolve_key(key, by="alertmanager")
        return web.json_response({"resolved": alert_id, "dedup_key": key})
    if not p.alerts:
        return error(400, "alerts: empty list")
    policy = am_policy(svc, p)
    alert_id, created = await svc.runner.submit(say=am_text(p), policy=policy, dedup_key=key,
                                                source="alertmanager", labels={**p.groupLabels, **p.commonLabels})
    return web.json_response({"id": alert_id, "created": created, "dedup_key": key}, status=202 if created else 200)


async def post_sms(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    req = SmsRequest(**await read_json(request))
    check_text(req.text, "text")
    number = parse_number(req.to, svc.loaded.config.default_region)
    cap = svc.loaded.config.alerting.max_queued_sms
    if svc.runner.alerts.count_queued_sms() >= cap:
        raise TooMany(f"{cap} SMS queued (alerting.max_queued_sms): try again when they are sent")
    sms_id = svc.texter.queue(number, req.text)
    svc.texter.spawn(sms_id)
    return web.json_response({"id": sms_id, "number": number, "url": f"/v1/sms/{sms_id}"}, status=202)


async def get_sms(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    row = svc.runner.alerts.get_sms(_alert_id(request))
    return error(404, "no such SMS") if row is None else web.json_response(row)


class CampaignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(min_length=1, max_length=4096)


async def post_campaign(request: web.Request) -> web.Response:
    """Run a campaign file (a path on the service host) in the service; 202 when started."""
    svc = request.app[SERVICE]
    req = CampaignRequest(**await read_json(request))
    view, started = await svc.campaigns.submit(req.file)
    return web.json_response({**view, "started": started}, status=202 if started else 200)


async def list_campaigns(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    return web.json_response([{"name": c["name"], "status": c["status"], "running": c["name"] in svc.campaigns.running,
                               "url": f"/v1/campaigns/{c['name']}"}
                              for c in svc.campaigns.store.list_campaigns()])


async def get_campaign(request: web.Request) -> web.Response:
    try:
        return web.json_response(await request.app[SERVICE].campaigns.view(request.match_info["name"]))
    except KeyError:
        return error(404, "no such campaign")


def _limit(request: web.Request) -> int:
    try:
        return max(1, min(int(request.query.get("limit", "50")), 1000))
    except ValueError:
        raise web.HTTPBadRequest(text=json.dumps({"error": "limit: not an integer"}),
                                 content_type="application/json") from None


async def list_inbound(request: web.Request) -> web.Response:
    """Incoming calls, newest first: who, on which SIM, what became of it, callback of whom."""
    from ..store.twoway import Inbound

    return web.json_response(Inbound(request.app[SERVICE].conn).recent(_limit(request)))


async def list_webhooks(request: web.Request) -> web.Response:
    """The webhook outbox: counts per status and the latest rows (?status=pending|delivered|failed)."""
    from ..store.twoway import Outbox

    status = request.query.get("status")
    if status not in (None, "pending", "delivered", "failed"):
        return error(400, "status: use pending, delivered or failed")
    box = Outbox(request.app[SERVICE].conn)
    return web.json_response({"counts": box.counts(), "items": box.list(status, _limit(request))})


async def modems(request: web.Request) -> web.Response:
    """The whole bank: this box's modems live, the other boxes' as they last wrote them to
    the shared database (``remote``, with their ``age_s``; docs/scale-out.md)."""
    svc = request.app[SERVICE]
    me = this_box()
    local = [{"box": me, "remote": False, **m} for m in svc.bank.snapshot()]
    remote = [{**m, "remote": True, "ready": m["status"] == "ready" and m["box_status"] == "up", "calls": {}}
              for m in other_boxes_modems(svc.conn, me)]
    return web.json_response(local + remote)


async def healthz(request: web.Request) -> web.Response:
    bank = request.app[SERVICE].bank
    ready = sum(1 for s in bank.slots.values() if s.ready(need_audio=False))
    return web.json_response({"ok": ready > 0, "modems_ready": ready, "modems": len(bank.slots)},
                             status=200 if ready > 0 else 503)


async def metrics(request: web.Request) -> web.Response:
    svc = request.app[SERVICE]
    return web.Response(text=render(svc.bank, svc.conn, svc.runner.queue_length),
                        content_type="text/plain", headers={"X-Content-Type-Options": "nosniff"})


def make_app(svc: Service) -> web.Application:
    api = svc.loaded.config.alerting.api
    allow = AllowList.build(svc.host, api.allowed_hosts, api.allowed_origins, port=lambda: svc.port)
    app = web.Application(middlewares=[*guard_middlewares(allow), errors_mw, auth_mw(api.bearer())],
                          client_max_size=api.max_body_bytes)
    app[SERVICE] = svc
    app[ALLOW] = allow
    app.router.add_post("/v1/alerts", post_alert)
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_get("/v1/alerts/{id}", get_alert)
    app.router.add_post("/v1/alerts/{id}/resolve", resolve_alert)
    app.router.add_post("/v1/alerts/{id}/ack", ack_alert)
    app.router.add_post("/v1/alerts/resolve", resolve_by_key)
    app.router.add_post("/v1/alertmanager", alertmanager)
    app.router.add_post("/v1/sms", post_sms)
    add_sms_routes(app, SERVICE)           # /v1/sms/inbox, before /v1/sms/{id}
    app.router.add_get("/v1/sms/{id}", get_sms)
    app.router.add_post("/v1/campaigns", post_campaign)
    app.router.add_get("/v1/campaigns", list_campaigns)
    app.router.add_get("/v1/campaigns/{name}", get_campaign)
    app.router.add_get("/v1/modems", modems)
    app.router.add_get("/v1/inbound", list_inbound)
    app.router.add_get("/v1/webhooks", list_webhooks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    mount_console(app, svc)
    return app
