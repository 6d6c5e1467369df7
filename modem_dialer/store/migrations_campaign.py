"""Schema step for campaigns: the campaign log (calling-rule decisions, modem rotation, control).

Every decision of the calling rules (allow / deny / defer, with the rule), every modem
taken out of or back into rotation, and every pause/resume/stop is one row, so an
auditor can see why a number was or was not dialed at a given time.
"""

CAMPAIGN_LOG = """
CREATE TABLE campaign_log (
    id          INTEGER PRIMARY KEY,
    campaign_id INTEGER REFERENCES campaigns(id) ON DELETE CASCADE,
    contact_id  INTEGER REFERENCES contacts(id) ON DELETE SET NULL,
    number      TEXT,
    modem       TEXT,
    at          TEXT NOT NULL,
    kind        TEXT NOT NULL,
    verdict     TEXT,
    rule        TEXT,
    until       TEXT,
    data        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX campaign_log_campaign ON campaign_log(campaign_id, id);
CREATE INDEX campaign_log_contact ON campaign_log(contact_id);
CREATE INDEX campaign_log_number ON campaign_log(number);
"""
