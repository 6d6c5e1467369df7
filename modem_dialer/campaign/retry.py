"""What becomes of a contact after an attempt: a final status, or pending with its next time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .spec import CampaignSpec

# Call outcomes that end a contact whatever the retry rules say.
FINAL_BY_OUTCOME = {"answered": "answered", "invalid_number": "invalid"}
# Rule verdicts (rules.check) that end a contact.
FINAL_BY_RULE = {"suppressed": "suppressed", "no_consent": "no_consent", "no_window": "exhausted"}
FINAL_STATUSES = ("answered", "exhausted", "suppressed", "no_consent", "invalid", "opted_out", "refused",
                  "cancelled")


@dataclass(frozen=True)
class Next:
    status: str
    next_attempt_at: datetime | None = None


def after_attempt(spec: CampaignSpec, outcome: str, attempts: int, ended_at: datetime, *,
                  opted_out: bool = False) -> Next:
    """``attempts`` counts this one. ``max`` in a retry rule is the number of attempts in all
    for a contact whose latest outcome is that one; ``after`` counts from the end of this one."""
    if opted_out:
        return Next("opted_out")
    if outcome in FINAL_BY_OUTCOME:
        return Next(FINAL_BY_OUTCOME[outcome])
    rule = spec.retry_rule(outcome)
    if rule is not None and attempts < rule.max:
        return Next("pending", ended_at + rule.after)
    return Next("exhausted")
