"""The console's doors: the Host/Origin check, the login session and the CSRF token.

- **Host/Origin**: a page on another site must not drive the box through the operator's
  browser, and a DNS-rebinding name must not reach it at all. A request is served only
  when its ``Host`` is one of the box's names (the listen address, localhost and the
  loopback addresses, the machine's host names, any IP address of the box itself) and,
  when the browser sends ``Origin`` (or ``Sec-Fetch-Site``), it is this same origin.
  :func:`host_origin_mw` takes the allowed names, so the JSON API can use it too.
- **Session**: logging in with the API token gives a random session id in a cookie that is
  ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's request carries
  it) and ``Secure`` when the console is reached over https. Sessions live in memory:
  a restart of the service logs everyone out.
- **CSRF**: every state-changing request (anything but GET/HEAD) carries the session's
  CSRF token in the ``X-CSRF-Token`` header (double submit: the token is also in a
  script-readable cookie). A foreign page can neither read the cookie nor set the header.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

SESSION_COOKIE = "md_session"
CSRF_COOKIE = "md_csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_IDLE = 12 * 3600.0      # s without a request before a session ends
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _split_host(value: str) -> str:
    """'example:8080' → 'example', '[::1]:8080' → '::1' (lower case, no trailing dot)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


@functools.lru_cache(maxsize=256)
def _is_own_address(host: str) -> bool:
    """An IP literal assigned to this machine (binding to it succeeds only then)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast:     # 0.0.0.0 binds anywhere: not a name of this box
        return False
    fam = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(fam, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
        return True
    except OSError:
        return False


def box_names(listen: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names this box answers to: listen address, loopback names, host names, ``extra``."""
    names = {"localhost", "127.0.0.1", "::1", _split_host(listen)}
    for n in (socket.gethostname(), socket.getfqdn()):
        if n:
            names.add(n.lower().rstrip("."))
    names.update(_split_host(x) for x in extra)
    names.discard("0.0.0.0")
    names.discard("::")
    return frozenset(names)


@dataclass(frozen=True)
class HostCheck:
    names: frozenset[str]

    def host_ok(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        h = _split_host(host_header)
        return h in self.names or _is_own_address(h)

    def why_refused(self, request: web.Request) -> str | None:
        """None when the request comes from this box's own pages, else the reason."""
        host = request.headers.get("Host")
        if not self.host_ok(host):
            return f"Host {host!r} is not one of this box's names"
        origin = request.headers.get("Origin")
        if origin is not None:
            o = urlsplit(origin)
            if origin == "null" or not o.netloc or o.netloc.lower() != (host or "").lower():
                return f"Origin {origin!r} is not this console"
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return "cross-site request"
        return None


def host_origin_mw(check: HostCheck) -> Callable:
    """Refuse a foreign Host or a cross-site Origin with 403 (JSON), before any handler runs."""
    @web.middleware
    async def mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        why = check.why_refused(request)
        if why is not None:
            return web.json_response({"error": f"refused: {why}"}, status=403)
        return await handler(request)
    return mw


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
