"""Incoming SMS: every message journaled, concatenated parts reassembled across restarts."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from .timestamps import to_ts, utc_now
from .types import Connection

GAP = "[…]"        # stands for a part that never came, in a message stored incomplete


@dataclass(frozen=True)
class IncomingPart:
    modem: str
    sender: str
    reference: int
    ref_bits: int
    total: int
    seq: int
    text: str
    encoding: str
    pdu: str
    sent_at: datetime | None = None


@dataclass(frozen=True)
class InboxMessage:
    id: int
    modem: str
    sender: str | None
    text: str | None
    encoding: str
    parts: int
    complete: bool
    sent_at: str | None
    received_at: str
    kind: str
    action: str | None
    alert_id: int | None
    error: str | None

    def as_dict(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _message(row: sqlite3.Row) -> InboxMessage:
    return InboxMessage(int(row["id"]), row["modem"], row["sender"], row["text"], row["encoding"],
                        int(row["parts"]), bool(row["complete"]), row["sent_at"], row["received_at"],
                        row["kind"], row["action"], row["alert_id"], row["error"])


class SmsInbox:
    def __init__(self, conn: Connection, clock: Callable[[], datetime] = utc_now) -> None:
        self.conn = conn
        self._clock = clock

    def _now(self) -> str:
        return to_ts(self._clock())

    def add_message(self, modem: str, sender: str | None, text: str | None, encoding: str, *,
                    sent_at: datetime | None = None, parts: int = 1, complete: bool = True,
                    pdu: str | None = None, error: str | None = None, kind: str = "reply") -> int:
        with self.conn:
            cur = self.conn.execute(
                "INSERT INTO sms_in (modem, sender, text, encoding, parts, complete, sent_at, received_at, kind,"
                " pdu, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (modem, sender, text, encoding, parts, int(complete), to_ts(sent_at) if sent_at else None,
                 self._now(), kind, pdu, error))
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def add_part(self, part: IncomingPart) -> int | None:
        """Keep one part; when it was the last missing one, the whole message becomes one
        ``sms_in`` row (parts deleted in the same transaction). -> that row's id, else None."""
        key = (part.modem, part.sender, part.reference, part.ref_bits, part.total)
        with self.conn:
            self.conn.execute(
                "INSERT INTO sms_in_parts (modem, sender, reference, ref_bits, total, seq, text, encoding, pdu,"
                " sent_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (modem, sender, reference, ref_bits, total, seq) DO NOTHING",
                (*key[:4], part.total, part.seq, part.text, part.encoding, part.pdu,
                 to_ts(part.sent_at) if part.sent_at else None, self._now()))
            rows = self.conn.execute(
                "SELECT * FROM sms_in_parts WHERE modem = ? AND sender = ? AND reference = ? AND ref_bits = ?"
                " AND total = ? ORDER BY seq", key).fetchall()
            if len({r["seq"] for r in rows}) < part.total:
                return None
            return self._assemble(rows, complete=True)

    def _assemble(self, rows: list[sqlite3.Row], *, complete: bool) -> int:
        """Inside the caller's transaction: parts → one message row."""
        first = rows[0]
        total = int(first["total"])
        by_seq = {int(r["seq"]): r for r in rows}
        texts = [by_seq[i]["text"] if i in by_seq else GAP for i in range(1, total + 1)]
        # UCS-2 parts cut inside a surrogate pair by another sender: join the halves now
        text = "".join(texts).encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
        missing = [i for i in range(1, total + 1) if i not in by_seq]
        cur = self.conn.execute(
            "INSERT INTO sms_in (modem, sender, text, encoding, parts, complete, sent_at, received_at, kind, pdu,"
            " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'reply', ?, ?)",
            (first["modem"], first["sender"], text, first["encoding"], total, int(complete),
             first["sent_at"], self._now(), " ".join(r["pdu"] for r in rows),
             None if complete else f"part(s) {', '.join(map(str, missing))} of {total} never arrived"))
        self.conn.execute(f"DELETE FROM sms_in_parts WHERE id IN ({','.join('?' * len(rows))})",  # noqa: S608
                          [r["id"] for r in rows])
        return int(cur.lastrowid)  # type: ignore[arg-type]

    def expire_parts(self, older_than: timedelta) -> list[int]:
        """Messages whose first part came longer ago than ``older_than``: stored with what
        arrived, flagged incomplete. -> the new message ids."""
        cutoff = to_ts(self._clock() - older_than)
        out: list[int] = []
        with self.conn:
            groups = self.conn.execute(
                "SELECT modem, sender, reference, ref_bits, total FROM sms_in_parts"
                " GROUP BY modem, sender, reference, ref_bits, total HAVING MIN(received_at) < ?",
                (cutoff,)).fetchall()
            for g in groups:
                rows = self.conn.execute(
                    "SELECT * FROM sms_in_parts WHERE modem = ? AND sender = ? AND reference = ? AND ref_bits = ?"
                    " AND total = ? ORDER BY seq", tuple(g)).fetchall()
                out.append(self._assemble(rows, complete=False))
        return out

    def set_outcome(self, message_id: int, kind: str, action: str, alert_id: int | None = None) -> None:
        with self.conn:
            self.conn.execute("UPDATE sms_in SET kind = ?, action = ?, alert_id = COALESCE(?, alert_id) WHERE id = ?",
                              (kind, action, alert_id, message_id))

    def get(self, message_id: int) -> InboxMessage | None:
        row = self.conn.execute("SELECT * FROM sms_in WHERE id = ?", (message_id,)).fetchone()
        return None if row is None else _message(row)

    def messages(self, *, kind: str | None = None, sender: str | None = None, since_id: int = 0,
             limit: int = 100) -> list[InboxMessage]:
        """Newest first; ``kind`` None lists every kind."""
        rows = self.conn.execute(
            "SELECT * FROM sms_in WHERE (? IS NULL OR kind = ?) AND (? IS NULL OR sender = ?) AND id > ?"
            " ORDER BY id DESC LIMIT ?", (kind, kind, sender, sender, since_id, limit)).fetchall()
        return [_message(r) for r in rows]

    # --- what the reply handler needs from the outgoing side ---------------------------------

    def alerts_texted_to(self, number: str) -> list[int]:
        """Live alerts (open or acknowledged) that sent an SMS to ``number``, newest first."""
        return [int(r[0]) for r in self.conn.execute(
            "SELECT DISTINCT s.alert_id FROM sms s JOIN alerts a ON a.id = s.alert_id"
            " WHERE s.number = ? AND a.status IN ('open', 'acknowledged') ORDER BY s.alert_id DESC", (number,))]

    def sms_by_reference(self, modem: str, reference: int) -> int | None:
        """The latest SMS sent by ``modem`` with TP-MR ``reference`` and still awaiting its report."""
        row = self.conn.execute("SELECT id FROM sms WHERE modem = ? AND reference = ? AND status = 'sent'"
                                " ORDER BY id DESC LIMIT 1", (modem, reference)).fetchone()
        return None if row is None else int(row[0])
