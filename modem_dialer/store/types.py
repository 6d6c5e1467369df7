"""What the layers above store/ may know about the database: a connection to pass around
and the errors a store call may raise. They never run SQL on the connection themselves
(store/ is the only package that speaks SQL; tests/test_rooms.py checks it).

Two backends: ``Connection`` is SQLite's or PostgreSQL's (``pg.PgConnection``, the same
surface). ``DB_ERRORS`` stays sqlite3's: PgConnection raises the same DB-API classes
(its ``DatabaseUnreachable`` is a ``sqlite3.OperationalError``).
"""

from __future__ import annotations

import sqlite3
from typing import TypeAlias

from .pg import PgConnection

# The connection a process opens with store.open_db and hands to the store classes.
Connection: TypeAlias = sqlite3.Connection | PgConnection

# Errors about the database itself (locked, disk full, constraint...) that upper layers
# catch around a store call to log and carry on: ``except DB_ERRORS as exc``.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
