"""The operator console: a sub-application mounted at /console/ on the service's own port.

Static pages (HTML, CSS, vanilla JS, charts drawn as inline SVG by our own code) are
package data in ``static/``: nothing is fetched from the internet. Every request passes the
service's Host/Origin guard (service/guard.py); every page and endpoint but the login wants a session; every
state-changing request wants the CSRF token (guard.py).
"""

from __future__ import annotations

import asyncio
import html
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from . import views
from .deferred import Deferred
from .guard import SAFE_METHODS, Session, Sessions, clear_session_cookies, csrf_ok, set_session_cookies
from .live import BankStream, BankView

if TYPE_CHECKING:
    from ..service import Service

PREFIX = "/console"
STATIC = Path(str(resources.files(__package__) / "static"))
LOGIN_DELAY = 1.0      # s added to a wrong token's answer: guessing goes slowly
# How often the campaigns page and the alerts page poll their lists (ms): written into the
# page when it is served (read then, not at import: patchable; the browser tests shorten them)
CAMPAIGNS_REFRESH_MS = 1000
ALERTS_REFRESH_MS = 1500

SESSIONS: web.AppKey[Sessions] = web.AppKey("console_sessions")
BANK_VIEW: web.AppKey[BankView] = web.AppKey("console_bank_view")
BANK_STREAM: web.AppKey[BankStream] = web.AppKey("console_bank_stream")
SLOW: web.AppKey[Deferred] = web.AppKey("console_slow_reads")
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("console_session", Session)

SECURITY_HEADERS = {
    # the pages load only their own files; no framing (clickjacking), no sniffing
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def is_console_path(path: str) -> bool:
    """Paths the console guards itself (the API's bearer check leaves them alone)."""
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


@web.middleware
async def headers_mw(request: web.Request, handler: views.Any) -> web.StreamResponse:
    t = time.perf_counter()
    resp = await handler(request)
    if not resp.prepared:
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        # the server's own time for this answer (bench/console.py reads it; so can the browser's tools)
        resp.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t) * 1000:.1f}"
    return resp


@web.middleware
async def session_mw(request: web.Request, handler: views.Any) -> web.StreamResponse:
    rel = request.path[len(PREFIX):]
    if rel == "/login" or rel.startswith("/static/"):      # the static files hold no data
        return await handler(request)
    s = request.app[SESSIONS].get(request)
    if s is None:
        if rel.startswith("/api/"):
            return web.json_response({"error": "log in first"}, status=401)
        return web.Response(status=303, headers={"Location": f"{PREFIX}/login"})
    if request.method not in SAFE_METHODS and not csrf_ok(request, s):
        return web.json_response({"error": "refused: missing or wrong CSRF token (reload the page)"}, status=403)
    request[SESSION_KEY] = s
    return await handler(request)


def _login_page(error: str | None, no_token: bool) -> str:
    page = (STATIC / "login.html").read_text()
    msg = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    hint = ('<p class="hint">No API token is set in the configuration: the console is open to anyone on '
            'this machine. Leave the field empty.</p>') if no_token else ""
    return page.replace("<!--error-->", msg).replace("<!--hint-->", hint)


async def login_page(request: web.Request) -> web.Response:
    if request.app[SESSIONS].get(request) is not None:
        return web.Response(status=303, headers={"Location": f"{PREFIX}/"})
    return web.Response(text=_login_page(None, request.app[SESSIONS].token is None), content_type="text/html")


async def login(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    form = await request.post()
    s = sessions.login(str(form.get("token", "")))
    if s is None:
        views.log.warning("console login refused from %s", request.remote)
        await asyncio.sleep(LOGIN_DELAY)
        return web.Response(text=_login_page("Wrong token.", sessions.token is None), content_type="text/html",
                            status=401)
    views.log.info("console login from %s", request.remote)
    resp = web.Response(status=303, headers={"Location": f"{PREFIX}/"})
    set_session_cookies(resp, request, s, PREFIX)
    return resp


async def logout(request: web.Request) -> web.Response:
    request.app[SESSIONS].logout(request)
    resp = web.json_response({"ok": True})
    clear_session_cookies(resp, PREFIX)
    return resp


async def index(request: web.Request) -> web.StreamResponse:
    s: Session = request[SESSION_KEY]
    page = (STATIC / "index.html").read_text().replace(
        "<body>", f'<body data-campaigns-ms="{int(CAMPAIGNS_REFRESH_MS)}" data-alerts-ms="{int(ALERTS_REFRESH_MS)}">', 1)
    resp = web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})
    # the CSRF cookie again: a console opened in a new tab after a restart of the browser keeps working
    set_session_cookies(resp, request, s, PREFIX)
    return resp


async def bank_stream(request: web.Request) -> web.StreamResponse:
    sessions, s = request.app[SESSIONS], request[SESSION_KEY]

    def alive() -> bool:
        # an open bank page is a page in use: it keeps its session from going idle; a logout
        # (in another tab) ends the stream at its next update
        if sessions.by_id.get(s.sid) is not s:
            return False
        s.seen = time.monotonic()
        return True
    return await request.app[BANK_STREAM].serve(request, alive)


def make_console(svc: Service) -> web.Application:
    api = svc.loaded.config.alerting.api
    # Host and Origin are checked by the service's guard middlewares (service/guard.py),
    # which the parent app applies to this sub-application's routes too
    app = web.Application(middlewares=[headers_mw, session_mw])
    app[views.CONSOLE_SERVICE] = svc
    app[SESSIONS] = Sessions(api.bearer())
    app[BANK_VIEW] = BankView(svc)
    app[BANK_STREAM] = BankStream(app[BANK_VIEW])
    app[SLOW] = Deferred(svc.loaded.database_path)

    async def closing(_app: web.Application) -> None:
        await app[BANK_STREAM].close()
    app.on_shutdown.append(closing)
    r = app.router
    r.add_get("/", index)
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    r.add_get("/api/bank", views.bank)
    r.add_get("/api/bank/stream", bank_stream)
    r.add_get("/api/campaigns", views.campaigns)
    r.add_post("/api/campaigns", views.campaign_upload)
    r.add_get("/api/campaigns/{name}", views.campaign)
    r.add_post("/api/campaigns/{name}/{action}", views.campaign_action)
    r.add_get("/api/campaigns/{name}/contacts", views.contacts)
    r.add_get("/api/campaigns/{name}/charts", views.charts)
    r.add_get("/api/campaigns/{name}/report.{fmt:(csv|json)}", views.export)
    r.add_get("/api/alerts", views.alerts)
    r.add_post("/api/alerts", views.test_alert)
    r.add_get("/api/alert-choices", views.alert_choices)
    r.add_post("/api/alerts/{id}/{action}", views.alert_action)
    r.add_get("/api/calls", views.calls)
    r.add_get("/api/call-choices", views.journal_choices)
    r.add_get("/api/calls/{id}", views.call)
    r.add_get("/api/calls/{id}/recordings/{n}", views.recording)
    r.add_get("/api/suppression", views.suppression)
    r.add_post("/api/suppression", views.suppression_add)
    r.add_post("/api/suppression/remove", views.suppression_remove)
    r.add_post("/api/suppression/import", views.suppression_import)
    r.add_get("/api/suppression/export.csv", views.suppression_export)
    r.add_get("/api/consent", views.consent)
    r.add_post("/api/consent", views.consent_add)
    r.add_post("/api/consent/import", views.consent_import)
    r.add_post("/api/consent/revoke", views.consent_revoke)
    r.add_get("/api/consent/export.csv", views.consent_export)
    r.add_get("/api/flows", views.flows)
    return app


async def root_redirect(request: web.Request) -> web.Response:
    return web.Response(status=303, headers={"Location": f"{PREFIX}/"})


def mount(app: web.Application, svc: Service) -> None:
    """Hook the console into the service's application: /console/… and / → /console/."""
    app.add_subapp(PREFIX, make_console(svc))
    app.router.add_get("/", root_redirect)
