"""Browser-borne attacks on the API: cross-site requests and DNS rebinding (docs/api.md, Security).

A page open in any browser on the box (or on the LAN) can send requests to the API. Two
aiohttp middlewares stop it, for the JSON API and for anything else served on the port
(the web console reuses them):

- ``host_origin_middleware``: the ``Host`` header must name this service (an allowed name:
  the listen address, localhost, 127.0.0.1, ::1, plus ``alerting.api.allowed_hosts``) or
  be an IP address. A rebinding page reaches 127.0.0.1 under its own DNS name, so its Host
  is a foreign name: 403. (An IP-address Host cannot come from rebinding: the browser would
  then be on our origin; Alertmanager or Prometheus configured with the box's IP keep working.)
  When a browser sends ``Origin``, it must be one of ours (``http://NAME:PORT`` for an
  allowed name and the service's port, or one of ``alerting.api.allowed_origins``): 403
  otherwise, ``null`` included. Clients that are not browsers send no Origin.
- ``json_body_middleware``: a request with a body under the JSON prefixes must say
  ``Content-Type: application/json`` (415 otherwise). A page can only send that type
  after a CORS preflight, which this service never grants; ``text/plain`` and form posts
  (which need none) are refused.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD = ("", "0.0.0.0", "::", "*")


def _forbidden(status: int, message: str) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message}), content_type="application/json")


def split_host(value: str) -> tuple[str, int | None]:
    """``Host``-header value → (lower-case name without brackets, port or None)."""
    value = value.strip().lower()
    if value.startswith("["):                      # [::1]:8737
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:                                          # a name, or a bare IPv6 address
        name, port = value, ""
    return name, int(port) if port.isdigit() else None


@dataclass
class AllowList:
    """Names the service answers to and browser origins it accepts; ``port()`` is read per
    request (the port is known only once the socket is bound)."""

    hosts: frozenset[str]
    origins: frozenset[str] = frozenset()
    port: Callable[[], int] = field(default=lambda: 0)

    @classmethod
    def build(cls, listen: str, extra_hosts: list[str], extra_origins: list[str],
              port: Callable[[], int]) -> AllowList:
        hosts = set(LOOPBACK_NAMES) | {h.lower().strip("[]") for h in extra_hosts}
        if listen not in _WILDCARD:
            hosts.add(listen.lower().strip("[]"))
        return cls(frozenset(hosts), frozenset(o.lower().rstrip("/") for o in extra_origins), port)

    def host_ok(self, header: str | None) -> bool:
        if header is None:              # HTTP/1.0 without Host: no browser sends that
            return True
        name, _ = split_host(header)
        return name in self.hosts or _is_ip(name)

    def origin_ok(self, origin: str) -> bool:
        origin = origin.strip().lower().rstrip("/")
        if origin in self.origins:
            return True
        try:
            u = urlsplit(origin)
            port = u.port
        except ValueError:
            return False
        if u.scheme not in ("http", "https") or not u.hostname or u.path or u.query:
            return False
        if port is None:
            port = 443 if u.scheme == "https" else 80
        return u.hostname in self.hosts and port == self.port()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def host_origin_middleware(allow: AllowList) -> Callable:
    @web.middleware
    async def mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allow.host_ok(request.headers.get("Host")):
            return _forbidden(403, "Host not allowed: add the name this service is reached by to "
                                   "alerting.api.allowed_hosts")
        origin = request.headers.get("Origin")
        if origin is not None and not allow.origin_ok(origin):
            return _forbidden(403, "Origin not allowed: requests from other web pages are refused "
                                   "(alerting.api.allowed_origins)")
        return await handler(request)
    return mw


def json_body_middleware(prefixes: tuple[str, ...] = ("/v1/",)) -> Callable:
    @web.middleware
    async def mw(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(prefixes) and request.body_exists and request.content_type != "application/json":
            return _forbidden(415, "Content-Type must be application/json")
        return await handler(request)
    return mw


def guard_middlewares(allow: AllowList, json_prefixes: tuple[str, ...] = ("/v1/",)) -> list[Callable]:
    """Both checks, Host/Origin first (a foreign page learns nothing from a 415)."""
    return [host_origin_middleware(allow), json_body_middleware(json_prefixes)]
