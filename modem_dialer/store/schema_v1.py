"""Schema version 1. Documented table by table in docs/schema.md.

Timestamps are TEXT in the form ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (UTC), see
``timestamps.py``; JSON columns hold a JSON object as TEXT. Enumerated columns are
checked in Python (``journal.py``, ``campaigns.py``), not with SQL CHECKs, so that a
new value needs no table rebuild.
"""

SCHEMA_V1_TABLES = """
CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    file        TEXT,
    config      TEXT NOT NULL DEFAULT '{}',
    status      TEXT NOT NULL DEFAULT 'created',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE contacts (
    id              INTEGER PRIMARY KEY,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    number          TEXT NOT NULL,
    fields          TEXT NOT NULL DEFAULT '{}',
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_outcome    TEXT,
    last_call_id    INTEGER REFERENCES calls(id) ON DELETE SET NULL,
    line_no         INTEGER,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (campaign_id, number)
);
-- "next due pending contact": only pending rows are in this index, in due order.
CREATE INDEX contacts_due ON contacts(campaign_id, next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX contacts_status ON contacts(campaign_id, status);
CREATE INDEX contacts_number ON contacts(number);

CREATE TABLE alerts (
    id              INTEGER PRIMARY KEY,
    dedup_key       TEXT NOT NULL,
    policy          TEXT NOT NULL,
    text            TEXT NOT NULL,
    audio_ref       TEXT,
    status          TEXT NOT NULL DEFAULT 'open',
    state           TEXT NOT NULL DEFAULT '{}',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    acknowledged_at TEXT,
    acknowledged_by TEXT,
    resolved_at     TEXT
);
-- At most one live alert per dedup key; a resolved one may be raised again.
CREATE UNIQUE INDEX alerts_live_dedup ON alerts(dedup_key) WHERE status IN ('open', 'acknowledged');
CREATE INDEX alerts_status ON alerts(status, created_at);

CREATE TABLE calls (
    id          INTEGER PRIMARY KEY,
    number      TEXT NOT NULL,
    modem       TEXT NOT NULL,
    imei        TEXT,
    iccid       TEXT,
    caller_id   TEXT,
    campaign_id INTEGER REFERENCES campaigns(id) ON DELETE SET NULL,
    contact_id  INTEGER REFERENCES contacts(id) ON DELETE SET NULL,
    alert_id    INTEGER REFERENCES alerts(id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL,
    started_at  TEXT,
    answered_at TEXT,
    ended_at    TEXT,
    outcome     TEXT,
    cause       INTEGER,
    cause_text  TEXT,
    hangup_by   TEXT,
    duration_s  REAL
);
-- attempts per number over a rolling window (A.5.3), across campaigns
CREATE INDEX calls_number ON calls(number, created_at);
CREATE INDEX calls_campaign ON calls(campaign_id, created_at);
CREATE INDEX calls_contact ON calls(contact_id);
CREATE INDEX calls_alert ON calls(alert_id);
CREATE INDEX calls_created ON calls(created_at);
-- calls still in progress: what recover_interrupted() looks for
CREATE INDEX calls_open ON calls(id) WHERE outcome IS NULL;

CREATE TABLE call_events (
    id      INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX call_events_call ON call_events(call_id, id);

CREATE TABLE keys (
    id      INTEGER PRIMARY KEY,
    call_id INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    source  TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX keys_call ON keys(call_id, id);

CREATE TABLE answers (
    id         INTEGER PRIMARY KEY,
    call_id    INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    contact_id INTEGER REFERENCES contacts(id) ON DELETE SET NULL,
    name       TEXT NOT NULL,
    value      TEXT,
    at         TEXT NOT NULL
);
CREATE INDEX answers_call ON answers(call_id);
CREATE INDEX answers_contact ON answers(contact_id);

CREATE TABLE refusals (
    id          INTEGER PRIMARY KEY,
    number      TEXT NOT NULL,
    at          TEXT NOT NULL,
    source      TEXT NOT NULL,
    call_id     INTEGER REFERENCES calls(id) ON DELETE SET NULL,
    campaign_id INTEGER REFERENCES campaigns(id) ON DELETE SET NULL
);
CREATE INDEX refusals_number ON refusals(number, at);

CREATE TABLE suppression (
    number   TEXT PRIMARY KEY,
    reason   TEXT NOT NULL,
    source   TEXT NOT NULL,
    added_at TEXT NOT NULL
);

CREATE TABLE consent (
    id          INTEGER PRIMARY KEY,
    number      TEXT NOT NULL,
    scope       TEXT NOT NULL,
    source      TEXT NOT NULL,
    given_at    TEXT NOT NULL,
    proof_ref   TEXT,
    name        TEXT,
    text_shown  TEXT,
    collector   TEXT,
    time_slot   TEXT,
    tz          TEXT,
    recorded_at TEXT NOT NULL,
    revoked_at  TEXT,
    revoked_via TEXT
);
CREATE INDEX consent_number ON consent(number, scope, given_at);
"""

# Consent records are proof: append-only. Only the revocation may be filled in, once.
# (The script is split here only so that PostgreSQL gets its own trigger syntax: the SQLite
# script below is unchanged, SCHEMA_V1 is the concatenation.)
SCHEMA_V1_CONSENT_TRIGGERS = """-- Consent records are proof: append-only. Only the revocation may be filled in, once.
CREATE TRIGGER consent_immutable
BEFORE UPDATE OF id, number, scope, source, given_at, proof_ref, name, text_shown, collector,
                 time_slot, tz, recorded_at ON consent
BEGIN
    SELECT RAISE(ABORT, 'consent records are immutable');
END;
CREATE TRIGGER consent_revoke_once
BEFORE UPDATE OF revoked_at, revoked_via ON consent WHEN OLD.revoked_at IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'consent already revoked');
END;
"""

SCHEMA_V1_REST = """
CREATE TABLE modem_state (
    name      TEXT PRIMARY KEY,
    imei      TEXT,
    iccid     TEXT,
    last_seen TEXT,
    status    TEXT NOT NULL DEFAULT 'unknown',
    reason    TEXT
);

CREATE TABLE sms (
    id           INTEGER PRIMARY KEY,
    number       TEXT NOT NULL,
    text         TEXT NOT NULL,
    modem        TEXT,
    reference    INTEGER,
    status       TEXT NOT NULL DEFAULT 'queued',
    alert_id     INTEGER REFERENCES alerts(id) ON DELETE SET NULL,
    error        TEXT,
    created_at   TEXT NOT NULL,
    sent_at      TEXT,
    delivered_at TEXT
);
-- a delivery report (+CDS) names the modem and the message reference
CREATE INDEX sms_reference ON sms(modem, reference);
CREATE INDEX sms_alert ON sms(alert_id);
"""

SCHEMA_V1 = SCHEMA_V1_TABLES + SCHEMA_V1_CONSENT_TRIGGERS + SCHEMA_V1_REST

# The same triggers for PostgreSQL (PL/pgSQL); the error is an integrity violation on both.
SCHEMA_V1_CONSENT_TRIGGERS_PG = """
CREATE FUNCTION consent_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.number, NEW.scope, NEW.source, NEW.given_at, NEW.proof_ref, NEW.name, NEW.text_shown,
        NEW.collector, NEW.time_slot, NEW.tz, NEW.recorded_at)
       IS DISTINCT FROM
       (OLD.id, OLD.number, OLD.scope, OLD.source, OLD.given_at, OLD.proof_ref, OLD.name, OLD.text_shown,
        OLD.collector, OLD.time_slot, OLD.tz, OLD.recorded_at) THEN
        RAISE EXCEPTION 'consent records are immutable' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.revoked_at IS NOT NULL AND (NEW.revoked_at, NEW.revoked_via) IS DISTINCT FROM (OLD.revoked_at, OLD.revoked_via) THEN
        RAISE EXCEPTION 'consent already revoked' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER consent_guard BEFORE UPDATE ON consent FOR EACH ROW EXECUTE FUNCTION consent_guard();
"""
