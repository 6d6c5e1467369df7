"""Classify how a call attempt ended, from the family-neutral Ended event."""

from __future__ import annotations

from ..modems import causes
from ..modems.events import Ended

OUTCOMES = ("answered", "busy", "no_answer", "rejected", "invalid_number", "failed", "machine", "interrupted",
            "line_busy")
# The dial was refused because someone called in on that line at that moment: not an attempt.
LINE_BUSY = "line_busy"
# Reached the network but nobody took the call (exit code 2 of `call`).
NOT_ANSWERED = ("busy", "no_answer", "rejected")


def classify(answered: bool, ended: Ended | None) -> str:
    if answered:
        return "answered"
    if ended is None:
        return "failed"
    cause, result = ended.cause, ended.result
    if cause == causes.BUSY or result == "BUSY":
        return "busy"
    if cause in (causes.NO_USER_RESPONDING, causes.NO_ANSWER) or result == "NO ANSWER":
        return "no_answer"
    if cause == causes.REJECTED:
        return "rejected"
    if cause in (causes.UNASSIGNED, causes.INVALID_FORMAT, 22):
        return "invalid_number"
    return "failed"
