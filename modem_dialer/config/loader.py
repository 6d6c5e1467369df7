"""Finding and loading the config file (``config.yaml``).

Looked up as ``--config PATH``, else ``$MODEM_DIALER_CONFIG``, else ``./config.yaml``.
Relative paths inside it are relative to the file itself. A mistake is one line naming the
file, line, key and value (``yamlfile.validate``), never a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..yamlfile import load_yaml, validate
from .schema import Config


class LoadedConfig:
    """The validated config plus where it came from (for resolving relative paths)."""

    def __init__(self, config: Config, path: Path | None) -> None:
        self.config = config
        self.path = path
        self.base = path.parent if path else Path.cwd()

    def resolve(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.base / q

    @property
    def database_path(self) -> Path | str:
        """The SQLite file (resolved against the config's folder), or the PostgreSQL DSN as written."""
        if self.config.database.startswith(("postgresql://", "postgres://")):
            return self.config.database
        return self.resolve(self.config.database)

    @property
    def spool_path(self) -> Path | None:
        """PostgreSQL: the local file next to the config that keeps the calls' journal steps
        while the server is away (store/spool.py), one per database; None for SQLite."""
        db = self.config.database
        if not db.startswith(("postgresql://", "postgres://")):
            return None
        import hashlib

        return self.base / f".modem-dialer-spool-{hashlib.sha256(db.encode()).hexdigest()[:10]}.db"


def find_config(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("MODEM_DIALER_CONFIG")
    if env:
        return Path(env)
    return Path("config.yaml")


def load_config(explicit: str | None = None) -> LoadedConfig:
    path = find_config(explicit)
    doc = load_yaml(path, "config file")
    return LoadedConfig(validate(doc, Config), path.resolve())
