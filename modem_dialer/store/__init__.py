"""SQLite store: call journal, campaigns and contacts, compliance records. Schema: docs/schema.md."""

from .campaigns import Campaigns, Contact, ImportResult
from .compliance import Compliance
from .db import open_db
from .journal import Journal
from .timestamps import from_ts, to_ts, utc_now

__all__ = ["Campaigns", "Compliance", "Contact", "ImportResult", "Journal", "from_ts", "open_db", "to_ts", "utc_now"]
