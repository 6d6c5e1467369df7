"""Schema step for several boxes on one database (issue 14, docs/scale-out.md).

A *box* is one ``serve`` (or ``campaign run``) process owning its local modems. ``boxes``
holds one row per box name: its lease (renewed by a heartbeat) and whether it is up.
Every call and every modem state row records the box it belongs to; an in-progress
contact records the box that claimed it (``lease_box``): that box's lease is the
contact's lease. A live alert records the box running its escalation.

``modem_state`` is rebuilt: its key becomes (box, name), since two boxes may both have a
modem called ``gsm0``. Rows from before this step get box '' until their box starts and
takes them over (store/boxes.py ``register``).
"""

BOXES = """
CREATE TABLE boxes (
    name         TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'up',
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    lease_until  TEXT NOT NULL
);
ALTER TABLE calls ADD COLUMN box TEXT;
CREATE INDEX calls_box_open ON calls(box) WHERE outcome IS NULL;
ALTER TABLE contacts ADD COLUMN lease_box TEXT;
CREATE INDEX contacts_in_progress ON contacts(campaign_id, lease_box) WHERE status = 'in_progress';
ALTER TABLE alerts ADD COLUMN box TEXT;
CREATE TABLE modem_state_new (
    box       TEXT NOT NULL DEFAULT '',
    name      TEXT NOT NULL,
    imei      TEXT,
    iccid     TEXT,
    last_seen TEXT,
    status    TEXT NOT NULL DEFAULT 'unknown',
    reason    TEXT,
    PRIMARY KEY (box, name)
);
INSERT INTO modem_state_new (box, name, imei, iccid, last_seen, status, reason)
    SELECT '', name, imei, iccid, last_seen, status, reason FROM modem_state;
DROP TABLE modem_state;
ALTER TABLE modem_state_new RENAME TO modem_state;
"""
