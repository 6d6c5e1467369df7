"""What the layers above store/ may know about the database: a connection to pass around
and the errors a store call may raise. They never run SQL on the connection themselves
(store/ is the only package that speaks SQL; tests/test_rooms.py checks it).

A second backend (PostgreSQL) widens both: ``Connection`` becomes a union and
``DB_ERRORS`` gets that driver's base error.
"""

from __future__ import annotations

import sqlite3
from typing import TypeAlias

# The connection a process opens with store.open_db and hands to the store classes.
Connection: TypeAlias = sqlite3.Connection

# Errors about the database itself (locked, disk full, constraint...) that upper layers
# catch around a store call to log and carry on: ``except DB_ERRORS as exc``.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
