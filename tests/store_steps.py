"""Contacts moved through their statuses the way the dialer moves them, for tests that set a
scene in the store: a worker claims the contact (store/boxes.py ``Leases.claim``: pending →
in_progress, leased to its box, refused while a call to the number is open), then settles it
after its call (``Leases.settle``). The store has no "set any status" method for tests alone
(issue 15: no store method used only by tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from modem_dialer.store import Campaigns
from modem_dialer.store.boxes import Leases
from modem_dialer.store.campaigns import Contact
from modem_dialer.store.timestamps import utc_now

BOX = "test-box"


def claim_contact(conn, contact_id: int, clock: Callable[[], datetime] = utc_now) -> None:
    """The contact taken by a worker of BOX, as before its call (its call row comes next)."""
    c = Campaigns(conn).get_contact(contact_id)
    assert c is not None, contact_id
    with conn:
        assert Leases(conn, clock).claim(contact_id, c.number, BOX), f"contact {contact_id} could not be claimed"


def settle_contact(conn, contact_id: int, status: str, *, next_attempt_at: datetime | None = None,
                   last_outcome: str | None = None, last_call_id: int | None = None, count_attempt: bool = False,
                   clock: Callable[[], datetime] = utc_now) -> None:
    """The contact's next status after a call, as the controller writes it: claimed first if
    it is still pending; ``count_attempt`` adds one to its attempts; ``next_attempt_at`` None
    keeps the current one."""
    c = Campaigns(conn).get_contact(contact_id)
    assert c is not None, contact_id
    if c.status == "pending":
        claim_contact(conn, contact_id, clock)
    assert Leases(conn, clock).settle(contact_id, BOX, status=status, next_attempt_at=next_attempt_at,
                                      last_outcome=last_outcome, last_call_id=last_call_id,
                                      attempts=c.attempts + (1 if count_attempt else 0)), \
        f"contact {contact_id} is not leased to {BOX}"


def contacts(conn, campaign_id: int, statuses: Sequence[str] | None = None) -> list[Contact]:
    """The campaign's contacts in id order (with ``statuses``, only those), read as the
    per-contact report reads them (``Campaigns.report_chunks``), each then as the dialer
    reads one (``get_contact``)."""
    store = Campaigns(conn)
    out = []
    for chunk in store.report_chunks(campaign_id):
        for row in chunk:
            c = store.get_contact(row[0])
            assert c is not None, row
            if statuses is None or c.status in statuses:
                out.append(c)
    return out
