"""Schema step for the web console: indexes that keep its pages fast at a million contacts.

- ``contacts(campaign_id)``, i.e. (campaign_id, rowid): a campaign's contacts in id order,
  so a keyset page (``id > last``) is an index range read of 50 entries, not a sort of the
  campaign;
- ``contacts(campaign_id, last_outcome)``: the report's outcome filter, paged the same way.
"""

CONSOLE_INDEXES = """
CREATE INDEX contacts_campaign ON contacts(campaign_id);
CREATE INDEX contacts_outcome ON contacts(campaign_id, last_outcome);
"""
