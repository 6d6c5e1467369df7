"""Schema step for incoming SMS (issue 13): received messages, and parts awaiting their siblings.

A part of a concatenated message is a row in ``sms_in_parts`` until every part is there
(then one ``sms_in`` row, in the same transaction that deletes the parts), so a restart
between two parts loses nothing. A part read twice (re-listed from the SIM after a crash)
is stored once (the unique key).
"""

SMS_INBOX = """
CREATE TABLE sms_in (
    id          INTEGER PRIMARY KEY,
    modem       TEXT NOT NULL,
    sender      TEXT,                       -- NULL: no number given (hidden)
    text        TEXT,                       -- NULL: could not be decoded (see error, pdu)
    encoding    TEXT NOT NULL,              -- gsm7 | ucs2 | 8bit | unknown | garbled
    parts       INTEGER NOT NULL DEFAULT 1,
    complete    INTEGER NOT NULL DEFAULT 1, -- 0: parts still missing when the wait ran out
    sent_at     TEXT,                       -- the service centre's time stamp
    received_at TEXT NOT NULL,
    kind        TEXT NOT NULL DEFAULT 'reply',   -- stop | ack | reply | bad
    action      TEXT,                       -- what was done: suppressed, acknowledged, kept …
    alert_id    INTEGER REFERENCES alerts(id) ON DELETE SET NULL,
    pdu         TEXT,                       -- the raw PDU(s), for garbled or unknown ones
    error       TEXT
);
CREATE INDEX sms_in_received ON sms_in(received_at);
CREATE INDEX sms_in_sender ON sms_in(sender);

CREATE TABLE sms_in_parts (
    id          INTEGER PRIMARY KEY,
    modem       TEXT NOT NULL,
    sender      TEXT NOT NULL,
    reference   INTEGER NOT NULL,
    ref_bits    INTEGER NOT NULL,
    total       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    text        TEXT NOT NULL,
    encoding    TEXT NOT NULL,
    pdu         TEXT NOT NULL,
    sent_at     TEXT,
    received_at TEXT NOT NULL,
    UNIQUE (modem, sender, reference, ref_bits, total, seq)
);
"""
