"""The console's JSON endpoints (under /console/api/), one per thing a page shows or does.

Reads go through ``store.console.ConsoleQueries``; actions go through the same service
objects the JSON API and the CLI use (the alert runner, the campaign runner, the
compliance store), so the console adds no second way of doing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import logging
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ...campaign.consent_csv import ConsentRow, check_scope, read_consent
from ...campaign.report import contact_rows, write_csv
from ...campaign.terms import CONSENT_SCOPES
from ...errors import UserError
from ...numbers import InvalidNumber, parse_number
from ...store import Campaigns, Compliance, open_db
from ...store.campaign_log import CampaignLog
from ...store.console import ConsoleQueries
from ...yamlfile import load_yaml
from . import uploads
from .deferred import Deferred

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("modem_dialer.console")

CONSOLE_SERVICE: web.AppKey[Service] = web.AppKey("console_service")
MAX_IMPORT = 32 << 20  # bytes of a suppression list or consent CSV upload
SHOWN_ERRORS = 200     # bad lines of an import listed on the page (all are counted)


def _svc(request: web.Request) -> Service:
    return request.app[CONSOLE_SERVICE]


def _q(request: web.Request) -> ConsoleQueries:
    return ConsoleQueries(_svc(request).conn)


def _who(request: web.Request) -> str:
    return f"console ({request.remote})"


def _int(request: web.Request, name: str, default: int = 0) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"{name}: not an integer: {raw[:20]!r}") from None


def _not_found(what: str) -> web.Response:
    return web.json_response({"error": f"no such {what}"}, status=404)


# ---- bank ------------------------------------------------------------------------------
async def bank(request: web.Request) -> web.Response:
    from .app import BANK_VIEW

    return web.json_response(request.app[BANK_VIEW].rows())


# ---- campaigns -------------------------------------------------------------------------
CHARTS_EVERY = 30.0    # s between two recomputations of a running campaign's charts


async def _campaign_entry(svc: Service, c: dict[str, Any], slow: Deferred) -> dict[str, Any]:
    run = svc.campaigns.running.get(c["name"])
    entry: dict[str, Any]
    if run is not None:
        # a running campaign's counts are the controller's, in memory
        snap = run.ctrl.snapshot()
        statuses = {k: v for k, v in snap["statuses"].items() if v > 0}
        entry = {"total": snap["total"], "finished": snap["finished"], "statuses": statuses,
                 "outcomes": snap["outcomes"], "eta_s": snap["eta_s"], "paused": snap["paused"],
                 "waiting_until": snap["waiting_until"].isoformat() if snap["waiting_until"] else None}
    else:
        cid = c["id"]
        counts = await slow.get(("counts", cid), c["updated_at"],
                                lambda q: (Campaigns(q.conn).counts(cid), q.campaign_outcomes(cid)))
        if counts is None:
            entry = {"total": None, "finished": None, "statuses": {}, "outcomes": {}, "counting": True}
        else:
            statuses, outcomes = counts
            total = sum(statuses.values())
            open_ = statuses.get("pending", 0) + statuses.get("in_progress", 0)
            entry = {"total": total, "finished": total - open_, "statuses": statuses, "outcomes": outcomes}
        entry.update(eta_s=None, paused=c["status"] == "paused", waiting_until=None)
    return {"id": c["id"], "name": c["name"], "status": c["status"], "running": run is not None,
            "file": Path(c["file"]).name if c["file"] else None, "created_at": c["created_at"],
            "purpose": (c["config"].get("spec") or {}).get("purpose"), **entry}


async def campaigns(request: web.Request) -> web.Response:
    from .app import SLOW

    svc = _svc(request)
    return web.json_response([await _campaign_entry(svc, c, request.app[SLOW])
                              for c in reversed(svc.campaigns.store.list_campaigns())])


def _campaign_or_404(request: web.Request) -> dict[str, Any]:
    c = _svc(request).campaigns.store.get_campaign(request.match_info["name"])
    if c is None:
        raise web.HTTPNotFound(text=json.dumps({"error": "no such campaign"}), content_type="application/json")
    return c


async def campaign(request: web.Request) -> web.Response:
    from .app import SLOW

    c = _campaign_or_404(request)
    entry = await _campaign_entry(_svc(request), c, request.app[SLOW])
    entry["rules"] = c["config"].get("rules")
    return web.json_response(entry)


async def campaign_action(request: web.Request) -> web.Response:
    """pause | resume | stop, as ``campaign pause/resume`` do (the controller reads the status)."""
    svc = _svc(request)
    c = _campaign_or_404(request)
    action = request.match_info["action"]
    store = Campaigns(svc.conn)
    clog = CampaignLog(svc.conn, c["id"])
    run = svc.campaigns.running.get(c["name"])
    if action == "pause":
        if c["status"] not in ("created", "running", "stopped"):
            raise UserError(f"campaign {c['name']!r} is {c['status']}; cannot pause it")
        store.update_campaign(c["id"], status="paused")
        clog.write("control", verdict="paused by operator", by=_who(request))
    elif action == "resume":
        if c["status"] == "paused":
            store.update_campaign(c["id"], status="running")
            clog.write("control", verdict="running by operator", by=_who(request))
        elif c["status"] == "stopped" and run is None and c["file"]:
            store.update_campaign(c["id"], status="running")
            clog.write("control", verdict="restarted by operator", by=_who(request))
            await svc.campaigns.submit(c["file"])
        else:
            raise UserError(f"campaign {c['name']!r} is {c['status']}; cannot resume it")
    elif action == "stop":
        if c["status"] in ("done", "stopped") and run is None:
            raise UserError(f"campaign {c['name']!r} is {c['status']}; cannot stop it")
        store.update_campaign(c["id"], status="stopped")
        clog.write("control", verdict="stopped by operator", by=_who(request))
        if run is not None:
            # an operator's stop is final (a service stop would resume at the next start)
            run.ctrl.stopped_status = "stopped"
            run.ctrl.request_stop()
    else:
        return _not_found("action")
    log.info("campaign %s: %s from the console", c["name"], action, extra={"campaign": c["name"]})
    return web.json_response({"name": c["name"], "action": action,
                              "status": store.get_campaign_by_id(c["id"])["status"]})  # type: ignore[index]


async def campaign_upload(request: web.Request) -> web.Response:
    svc = _svc(request)
    root = svc.loaded.resolve(svc.loaded.config.cache_dir) / "uploads"
    try:
        up = await uploads.receive(await request.multipart(), root)
    except UserError as exc:
        return web.json_response({"errors": [str(exc)]}, status=400)
    checked = await asyncio.to_thread(uploads.check, up, svc.loaded.config.default_region)
    fatal = checked.cf is None or (checked.errors and not checked.bad_rows)
    if fatal:
        return web.json_response({"errors": checked.errors}, status=400)
    if checked.bad_rows and not up.accept_bad:
        return web.json_response({"errors": checked.errors, "bad_rows": checked.bad_rows, "can_accept": True},
                                 status=422)
    try:
        view, started = await svc.campaigns.submit(str(up.campaign))
    except UserError as exc:
        return web.json_response({"errors": [up.show(str(exc))]}, status=400)
    log.info("campaign %s uploaded and %s from the console (%s)", view["name"],
             "started" if started else "already running", up.dir)
    return web.json_response({"name": view["name"], "started": started, "contacts": view["contacts"],
                              "warnings": checked.errors}, status=202 if started else 200)


async def contacts(request: web.Request) -> web.Response:
    c = _campaign_or_404(request)
    rows, nxt = _q(request).contacts_page(
        c["id"], after=request.query.get("after", ""), status=request.query.get("status") or None,
        outcome=request.query.get("outcome") or None, number=request.query.get("q") or None,
        limit=_int(request, "limit", 50))
    return web.json_response({"rows": [r.as_dict() for r in rows], "next": nxt})


async def charts(request: web.Request) -> web.Response:
    """The report's charts: counted in a worker, again at most every CHARTS_EVERY s while it runs."""
    from .app import SLOW

    svc = _svc(request)
    c = _campaign_or_404(request)
    cid = c["id"]
    stamp = (c["updated_at"], int(time.monotonic() // CHARTS_EVERY) if c["name"] in svc.campaigns.running else 0)
    got = await request.app[SLOW].get(("charts", cid), stamp, lambda q: q.report_charts(cid))
    if got is None:
        return web.json_response({"pending": True})
    return web.json_response(got.as_dict())


async def export(request: web.Request) -> web.StreamResponse:
    """The per-contact report (same rows and CSV as ``report``), streamed from its own connection.

    A worker thread reads and formats; the loop only writes chunks. A client that goes away
    stops the worker at its next chunk."""
    svc = _svc(request)
    c = _campaign_or_404(request)
    fmt = request.match_info["fmt"]
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json",
        "Content-Disposition": f'attachment; filename="{c["name"]}-report.{fmt}"'})
    await resp.prepare(request)
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def put(item: bytes | None) -> None:
        while not stop.is_set():
            try:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result(timeout=1.0)
                return
            except TimeoutError:
                continue
        raise _Stopped

    def produce() -> None:
        conn = open_db(svc.loaded.database_path)
        buf = io.StringIO()

        def flush() -> None:
            if buf.tell():
                put(buf.getvalue().encode())
                buf.seek(0)
                buf.truncate()

        class Chunked:
            def write(self, s: str) -> int:
                buf.write(s)
                if buf.tell() > 1 << 16:
                    flush()
                return len(s)
        try:
            if fmt == "csv":
                write_csv(Chunked(), contact_rows(conn, c["id"]))
            else:
                out = Chunked()
                out.write("[")
                for i, r in enumerate(contact_rows(conn, c["id"])):
                    out.write(("," if i else "") + "\n" + json.dumps(r, ensure_ascii=False))
                out.write("\n]\n")
            flush()
            put(None)
        except _Stopped:
            pass
        finally:
            conn.close()

    fut = loop.run_in_executor(None, produce)
    try:
        while (chunk := await queue.get()) is not None:
            await resp.write(chunk)
    except (ConnectionError, asyncio.CancelledError):
        log.info("report %s.%s: the client went away", c["name"], fmt)
        raise
    finally:
        stop.set()
        with contextlib.suppress(_Stopped, Exception):
            await fut
    await resp.write_eof()
    return resp


class _Stopped(Exception):
    """The report's reader stops: nobody is downloading any more."""


# ---- alerts --------------------------------------------------------------------------
async def alerts(request: web.Request) -> web.Response:
    from ..api import alert_view  # api.py mounts the console: imported when used

    svc = _svc(request)
    live = request.query.get("status", "live") == "live"
    out = [v for v in (alert_view(svc.conn, i) for i in _q(request).alert_ids(live, _int(request, "limit", 50))) if v]
    return web.json_response(out)


def _path_id(request: web.Request, what: str) -> int:
    """The integer ``{id}`` of the path; 404 naming what it should have been."""
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound(text=json.dumps({"error": f"{what} ids are integers"}),
                               content_type="application/json") from None


def acknowledge(svc: Service, alert_id: int, by: str) -> bool:
    """open → acknowledged from the console: stop calling (as a key pressed in a call does)."""
    runner = svc.runner
    if not runner.alerts.acknowledge(alert_id, by):
        return False
    a = runner.alerts.get_alert(alert_id)
    if a is not None:
        a["state"]["result"] = "acknowledged"
        a["state"].setdefault("history", []).append({"at": a["acknowledged_at"], "via": "console",
                                                     "who": by, "outcome": "acknowledged"})
        runner.alerts.set_state(alert_id, a["state"])
    task = runner.tasks.get(alert_id)
    if task is not None and not task.done():
        task.cancel()       # hangs up the escalation's calls in progress
    for cb in runner.on_change:
        cb(alert_id)
    log.info("alert %s acknowledged by %s", alert_id, by, extra={"alert": alert_id})
    return True


async def alert_action(request: web.Request) -> web.Response:
    svc = _svc(request)
    alert_id = _path_id(request, 'alert')
    if svc.runner.alerts.get_alert(alert_id) is None:
        return _not_found("alert")
    action = request.match_info["action"]
    if action == "ack":
        done = acknowledge(svc, alert_id, _who(request))
    elif action == "resolve":
        done = svc.runner.resolve(alert_id, by=_who(request))
    else:
        return _not_found("action")
    a = svc.runner.alerts.get_alert(alert_id)
    return web.json_response({"id": alert_id, "done": done, "status": a["status"] if a else None})


async def test_alert(request: web.Request) -> web.Response:
    svc = _svc(request)
    body = await request.json()
    if not isinstance(body, dict):
        raise UserError("the body must be a JSON object")
    to = [t.strip() for t in str(body.get("to") or "").split(",") if t.strip()] or None
    text = str(body.get("text") or "").strip()[:1000]
    policy = str(body.get("policy") or "").strip() or None
    alert_id, created = await svc.runner.submit(to=to, say=text or None, policy=policy, source="console",
                                          dedup_key=f"console-test:{text}:{','.join(to or [])}:{policy}")
    return web.json_response({"id": alert_id, "created": created}, status=202 if created else 200)


async def alert_choices(request: web.Request) -> web.Response:
    al = _svc(request).loaded.config.alerting
    return web.json_response({"policies": sorted(al.policies), "people": sorted(al.people),
                              "groups": sorted(al.groups)})


# ---- call journal ----------------------------------------------------------------------
async def calls(request: web.Request) -> web.Response:
    q = request.query
    rows, nxt = _q(request).calls_page(before=q.get("before", ""), number=q.get("number") or None,
                                       campaign=q.get("campaign") or None, modem=q.get("modem") or None,
                                       outcome=q.get("outcome") or None, day=_day(q.get("day")),
                                       limit=_int(request, "limit", 50))
    return web.json_response({"rows": [r.as_dict() for r in rows], "next": nxt})


def _day(raw: str | None) -> str | None:
    if not raw:
        return None
    import re

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        raise UserError(f"day: expected YYYY-MM-DD, got {raw[:20]!r}")
    return raw


async def journal_choices(request: web.Request) -> web.Response:
    return web.json_response(_q(request).filter_choices())


async def call(request: web.Request) -> web.Response:
    d = _q(request).call_detail(_path_id(request, 'call'))
    if d is None:
        return _not_found("call")
    out = d.as_dict()
    paths = set()
    for r in out["recordings"]:
        paths.add(r.pop("path"))    # the browser asks for a recording by call and index, never by path
        r["url"] = f"/console/api/calls/{r['call_id']}/recordings/{r['index']}"
    # the journal names a recording by its path on the box: the page shows only its file name
    for item in [e["data"] for e in out["events"]] + out["answers"]:
        for k, v in item.items():
            if isinstance(v, str) and v in paths:
                item[k] = Path(v).name
    return web.json_response(out)


def recording_roots(svc: Service) -> list[Path]:
    """Where recordings may be served from: the campaigns' recordings directory."""
    return [(svc.loaded.resolve(svc.loaded.config.cache_dir) / "recordings").resolve()]


async def recording(request: web.Request) -> web.StreamResponse:
    svc = _svc(request)
    try:
        index = int(request.match_info["n"])
    except ValueError:
        return _not_found("recording")
    rec = _q(request).recording(_path_id(request, 'call'), index)
    if rec is None:
        return _not_found("recording")
    path = Path(rec.path).resolve()
    if not any(path.is_relative_to(r) for r in recording_roots(svc)) or path.suffix != ".wav" or not path.is_file():
        log.warning("recording %s/%s refused: %s is not in the recordings directory", rec.call_id, index, path)
        return _not_found("recording")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav", "Cache-Control": "private, max-age=3600"})


# ---- suppression and consent -------------------------------------------------------------
async def suppression(request: web.Request) -> web.Response:
    q = _q(request)
    rows = q.suppression_page(prefix=request.query.get("q") or None, after=request.query.get("after", ""),
                              limit=_int(request, "limit", 50))
    return web.json_response({"rows": [r.as_dict() for r in rows], "next": rows[-1].number if rows else None,
                              "total": q.suppression_count()})


async def _body(request: web.Request) -> dict[str, Any]:
    body = await request.json()
    if not isinstance(body, dict):
        raise UserError("the body must be a JSON object")
    return body


def _number(svc: Service, raw: Any) -> str:
    try:
        return parse_number(str(raw or ""), svc.loaded.config.default_region)
    except InvalidNumber as exc:
        raise UserError(f"number: {exc}") from None


async def suppression_add(request: web.Request) -> web.Response:
    svc = _svc(request)
    body = await _body(request)
    number = _number(svc, body.get("number"))
    reason = str(body.get("reason") or "manual").strip()[:40] or "manual"
    added = Compliance(svc.conn).suppress(number, reason, "console")
    return web.json_response({"number": number, "added": added})


async def suppression_remove(request: web.Request) -> web.Response:
    svc = _svc(request)
    number = _number(svc, (await _body(request)).get("number"))
    return web.json_response({"number": number, "removed": Compliance(svc.conn).unsuppress(number)})


def _upload_text(data: bytes) -> str:
    """An uploaded CSV as text, its encoding found as the CLI finds it (textfile.detect_encoding:
    UTF-8 with or without BOM, UTF-16 with a BOM, else the likeliest, cp1252 first)."""
    from ...textfile import detect_encoding

    try:
        return data.decode(detect_encoding(data[:65536], at_eof=len(data) <= 65536) or "utf-8-sig")
    except (UnicodeDecodeError, LookupError):
        return data.decode("utf-8-sig", errors="replace")


async def _upload(request: web.Request) -> tuple[str, bytes]:
    """The one file of an import form: its sanitised name and its bytes, capped at MAX_IMPORT."""
    reader = await request.multipart()
    part = await reader.next()
    if part is None or not isinstance(part, uploads.BodyPartReader) or not part.filename:
        raise UserError("file: choose a CSV or text file")
    name = uploads.safe_name(part.filename, "contacts")
    data = bytearray()
    while chunk := await part.read_chunk(1 << 16):
        data += chunk
        if len(data) > MAX_IMPORT:
            raise UserError(f"{name}: larger than {MAX_IMPORT >> 20} MB")
    return name, bytes(data)


async def suppression_import(request: web.Request) -> web.Response:
    """A CSV with a ``number`` column, or one number per line; bad lines named as the CLI names them."""
    svc = _svc(request)
    name, data = await _upload(request)
    region = svc.loaded.config.default_region
    errors: list[str] = []
    numbers: list[str] = []
    text = _upload_text(data)
    lines = text.splitlines()
    head = next(csv.reader([lines[0]]), []) if lines else []
    if "number" in [h.strip() for h in head]:
        rd = csv.DictReader(io.StringIO(text))
        rd.fieldnames = [c.strip() for c in rd.fieldnames or []]
        items = [(rd.line_num, row.get("number") or "") for row in rd]
    else:
        items = [(i, ln.strip()) for i, ln in enumerate(lines, 1) if ln.strip() and not ln.startswith("#")]
    for line, raw in items:
        try:
            numbers.append(parse_number(raw, region))
        except InvalidNumber as exc:
            errors.append(f"{name}:{line}: {exc}")
    added = Compliance(svc.conn).import_suppression(numbers, reason="dnc", source=name)
    return web.json_response({"added": added, "read": len(numbers), "errors": errors[:SHOWN_ERRORS], "bad": len(errors)})


async def _csv_download(request: web.Request, filename: str, rows: Any,
                        columns: list[str] | None = None) -> web.StreamResponse:
    """Rows (dicts) as a CSV download, written in 64 kB chunks; columns from the first row."""
    resp = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                       "Content-Disposition": f'attachment; filename="{filename}"'})
    await resp.prepare(request)
    buf = io.StringIO()
    w: Any = None
    for r in rows:
        if w is None:
            w = csv.DictWriter(buf, fieldnames=list(r))
            w.writeheader()
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        if buf.tell() > 1 << 16:
            await resp.write(buf.getvalue().encode())
            buf.seek(0)
            buf.truncate()
    if w is None and columns:           # nothing to export: the header alone
        csv.writer(buf).writerow(columns)
    await resp.write(buf.getvalue().encode())
    await resp.write_eof()
    return resp


async def suppression_export(request: web.Request) -> web.StreamResponse:
    """The list as ``suppress export`` writes it: number, reason, source, added_at."""
    return await _csv_download(request, "suppression.csv", Compliance(_svc(request).conn).export_suppression(),
                               ["number", "reason", "source", "added_at"])


async def consent(request: web.Request) -> web.Response:
    rows = _q(request).consent_for(request.query.get("q") or None, _int(request, "limit", 50))
    return web.json_response({"rows": [r.as_dict() for r in rows], "scopes": list(CONSENT_SCOPES)})


async def consent_add(request: web.Request) -> web.Response:
    """One consent record, given now: number, scope (of the closed set), source, an optional note."""
    svc = _svc(request)
    body = await _body(request)
    number = _number(svc, body.get("number"))
    scope = check_scope(str(body.get("scope") or ""))
    source = str(body.get("source") or "").strip()[:200] or "console"
    note = str(body.get("note") or "").strip()[:500] or None
    rid = Compliance(svc.conn).add_consent(number, scope, source, datetime.now(timezone.utc), note,
                                           collector=_who(request))
    return web.json_response({"id": rid, "number": number, "scope": scope, "source": source})


def _read_consent(data: bytes, name: str, region: str) -> tuple[list[ConsentRow], list[str], int]:
    """The rows of an uploaded consent CSV, read by ``consent import``'s parser (in a worker thread)."""
    errors: list[str] = []
    bad = 0

    def report(msg: str) -> None:
        nonlocal bad
        bad += 1
        if bad <= SHOWN_ERRORS:
            errors.append(msg)
    rows = list(read_consent(io.StringIO(_upload_text(data), newline=""), name, region,
                             report))
    return rows, errors, bad


async def consent_import(request: web.Request) -> web.Response:
    """A consent CSV as ``consent import`` reads it; bad rows named ``file:LINE: …`` as the CLI prints them."""
    svc = _svc(request)
    name, data = await _upload(request)
    rows, errors, bad = await asyncio.to_thread(_read_consent, data, name, svc.loaded.config.default_region)
    comp = Compliance(svc.conn)
    for r in rows:
        comp.add_consent(r.number, r.scope, r.source, r.given_at, r.proof_ref, name=r.name,
                         text_shown=r.text_shown, collector=r.collector, time_slot=r.time_slot, tz=r.tz)
    if bad > SHOWN_ERRORS:
        errors.append(f"… and {bad - SHOWN_ERRORS} more bad row(s)")
    return web.json_response({"added": len(rows), "bad": bad, "errors": errors,
                              "summary": f"{name}: {len(rows)} consent record(s) added, {bad} bad row(s)"})


async def consent_revoke(request: web.Request) -> web.Response:
    svc = _svc(request)
    body = await _body(request)
    number = _number(svc, body.get("number"))
    scope = str(body.get("scope") or "").strip() or None
    n = Compliance(svc.conn).revoke_consent(number, via="console", scope=scope)
    return web.json_response({"number": number, "revoked": n})


async def consent_export(request: web.Request) -> web.StreamResponse:
    return await _csv_download(request, "consent.csv", _q(request).export_consent())


# ---- flows -----------------------------------------------------------------------------
def _flow_graph(path: Path) -> dict[str, Any] | None:
    """Nodes and exits of a flow document (drawn even when the check finds a mistake)."""
    from ...call.flow_model import _validate

    try:
        doc = _validate(load_yaml(path, "flow file"))
    except (UserError, OSError):
        return None
    nodes = []
    for name, node in doc.nodes.items():
        kind = type(node).__name__.removesuffix("Node").lower()
        nodes.append({"name": name, "kind": kind, "exits": {str(k): v for k, v in node.exits().items()}})
    return {"start": doc.start, "nodes": nodes}


def flow_files(svc: Service) -> list[tuple[list[str], Path]]:
    """Flow files the console lists, each with what uses it: the campaigns in the database
    (newest first), then the flows that answer incoming calls (``inbound.flow``, per modem)."""
    seen: dict[Path, list[str]] = {}
    for camp, file, flow in ConsoleQueries(svc.conn).campaign_flow_files():
        p = Path(flow).expanduser()
        p = (p if p.is_absolute() else Path(file).parent / p).resolve()
        seen.setdefault(p, []).append(f"campaign {camp}")
    inbound: dict[Path, list[str]] = {}
    for name in svc.bank.slots:
        settings = svc.loaded.config.inbound.for_modem(name)
        if settings.action == "answer" and settings.flow:
            inbound.setdefault(svc.loaded.resolve(settings.flow).resolve(), []).append(name)
    for p, modems in inbound.items():
        seen.setdefault(p, []).append("incoming calls on " + ", ".join(modems))
    return [(used, p) for p, used in seen.items()]


def _check_flows(files: list[tuple[list[str], Path]]) -> list[dict[str, Any]]:
    # imported at the first flows page, not when serve mounts the console: the flow models
    # cost ~50 ms of CPU at every start of a service that may never show them
    from ...call.flow import load_flow

    out = []
    for used, path in files:
        camp = next((u.removeprefix("campaign ") for u in used if u.startswith("campaign ")), None)
        entry: dict[str, Any] = {"campaign": camp, "used_by": used, "file": path.name, "dir": str(path.parent)}
        try:
            fl = load_flow(path)
            entry["check"] = f"{path.name}: ok ({len(fl.doc.nodes)} nodes, start {fl.doc.start})"
            entry["ok"] = True
        except UserError as exc:
            entry["check"] = str(exc).replace(str(path.parent) + "/", "")
            entry["ok"] = False
        entry["graph"] = _flow_graph(path)
        out.append(entry)
    return out


async def flows(request: web.Request) -> web.Response:
    # the database is read here (its connection belongs to this thread), the files in a worker
    files = flow_files(_svc(request))
    return web.json_response(await asyncio.to_thread(_check_flows, files) if files else [])
