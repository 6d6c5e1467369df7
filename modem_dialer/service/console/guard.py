"""The console's doors: the login session and the CSRF token.

- **Host/Origin**: the service's own guard (service/guard.py, applied by api.make_app to
  every route of the port, the console's included) refuses a foreign ``Host`` (DNS
  rebinding) and a foreign ``Origin`` (another site's page) before the console sees them.
- **Session**: logging in with the API token gives a random session id in a cookie that is
  ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's request carries
  it) and ``Secure`` when the console is reached over https. Sessions live in memory:
  a restart of the service logs everyone out.
- **CSRF**: every state-changing request (anything but GET/HEAD) carries the session's
  CSRF token in the ``X-CSRF-Token`` header (double submit: the token is also in a
  script-readable cookie). A foreign page can neither read the cookie nor set the header.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

SESSION_COOKIE = "md_session"
CSRF_COOKIE = "md_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE = 12 * 3600.0      # s without a request before a session ends
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Session:
    sid: str
    csrf: str
    created: float
    seen: float
    who: str = "operator"


@dataclass
class Sessions:
    token: str | None                      # None: no API token set (loopback only), no password asked
    idle: float = SESSION_IDLE
    by_id: dict[str, Session] = field(default_factory=dict)

    def login(self, given: str) -> Session | None:
        if self.token and not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        now = time.monotonic()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        self.by_id[s.sid] = s
        self._expire(now)
        return s

    def get(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(SESSION_COOKIE)
        s = self.by_id.get(sid) if sid else None
        now = time.monotonic()
        if s is None or now - s.seen > self.idle:
            if s is not None:
                self.by_id.pop(s.sid, None)
            return None
        s.seen = now
        return s

    def logout(self, request: web.Request) -> None:
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            self.by_id.pop(sid, None)

    def _expire(self, now: float) -> None:
        for sid in [k for k, v in self.by_id.items() if now - v.seen > self.idle]:
            del self.by_id[sid]


def set_session_cookies(resp: web.StreamResponse, request: web.Request, s: Session, path: str) -> None:
    secure = request.secure
    resp.set_cookie(SESSION_COOKIE, s.sid, httponly=True, samesite="Strict", secure=secure, path=path)
    # readable by the console's script, which echoes it in X-CSRF-Token
    resp.set_cookie(CSRF_COOKIE, s.csrf, httponly=False, samesite="Strict", secure=secure, path=path)


def clear_session_cookies(resp: web.StreamResponse, path: str) -> None:
    resp.del_cookie(SESSION_COOKIE, path=path)
    resp.del_cookie(CSRF_COOKIE, path=path)


def csrf_ok(request: web.Request, s: Session) -> bool:
    got = request.headers.get(CSRF_HEADER, "")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return bool(got) and hmac.compare_digest(got, s.csrf) and hmac.compare_digest(cookie, s.csrf)
