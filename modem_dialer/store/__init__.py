"""SQLite store: call journal, campaigns and contacts, compliance records. Schema: docs/schema.md."""

from .alerts import Alerts
from .campaigns import Campaigns, Contact, ImportResult
from .compliance import Compliance
from .db import open_db
from .journal import Journal
from .modem_states import modem_states, other_boxes_modems, set_modem_state
from .retention import erase_number, purge_before
from .sms_inbox import InboxMessage, IncomingPart, SmsInbox
from .timestamps import from_ts, to_ts, utc_now
from .types import DB_ERRORS, Connection

__all__ = [
    "DB_ERRORS",
    "Alerts",
    "Campaigns",
    "Compliance",
    "Connection",
    "Contact",
    "ImportResult",
    "InboxMessage",
    "IncomingPart",
    "Journal",
    "SmsInbox",
    "erase_number",
    "from_ts",
    "modem_states",
    "open_db",
    "other_boxes_modems",
    "purge_before",
    "set_modem_state",
    "to_ts",
    "utc_now",
]
