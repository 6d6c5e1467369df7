"""A small synchronous client of the service's HTTP API, for the CLI (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from ..config import Config


class ServiceError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"service answered {status}: {message}")
        self.status = status


class Client:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_config(cls, cfg: Config) -> Client:
        api = cfg.alerting.api
        host = api.listen
        if host in ("0.0.0.0", "", "*"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return cls(f"http://{host}:{api.port}", api.bearer())

    def running(self) -> bool:
        """True when something answers /healthz (even 503: the service runs, its modems do not)."""
        try:
            self.request("GET", "/healthz", timeout=2)
            return True
        except ServiceError:
            return True
        except OSError:
            return False

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")[:200]
            raise ServiceError(exc.code, message) from None
        ctype = resp.headers.get("Content-Type", "")
        return json.loads(raw) if "json" in ctype else raw.decode()
