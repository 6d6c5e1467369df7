"""Schema step for two-way traffic: incoming calls, callbacks, the webhook outbox.

``calls.direction`` says who placed the call ('out': we dialed, 'in': someone called a SIM);
attempt counts (calling rules, per-SIM limits) only count 'out'. ``inbound_calls`` keeps
every incoming call (answered, rejected, missed, or refused because the line was busy) and
the campaign contact it is a callback from. ``webhook_outbox`` holds each event for each
target URL until it is delivered (written before any delivery is tried).
"""

TWOWAY = """
ALTER TABLE calls ADD COLUMN direction TEXT NOT NULL DEFAULT 'out';
CREATE TABLE inbound_calls (
    id          INTEGER PRIMARY KEY,
    number      TEXT,
    withheld    INTEGER NOT NULL DEFAULT 0,
    modem       TEXT NOT NULL,
    iccid       TEXT,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    call_id     INTEGER REFERENCES calls(id) ON DELETE SET NULL,
    campaign_id INTEGER REFERENCES campaigns(id) ON DELETE SET NULL,
    contact_id  INTEGER REFERENCES contacts(id) ON DELETE SET NULL,
    note        TEXT
);
CREATE INDEX inbound_calls_contact ON inbound_calls(contact_id);
CREATE INDEX inbound_calls_campaign ON inbound_calls(campaign_id, id);
CREATE TABLE webhook_outbox (
    id           INTEGER PRIMARY KEY,
    event        TEXT NOT NULL,
    url          TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    next_at      TEXT NOT NULL,
    delivered_at TEXT,
    last_error   TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(next_at, id) WHERE status = 'pending';
"""
