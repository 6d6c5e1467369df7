"""The closed sets of names a campaign uses: rule presets, purposes, consent scopes.

Closed so that a typo ("automated_cals", a preset "xx") is an error naming the value
instead of a setting nobody will ever match. Kept apart from rules.py so the CLI can offer
them as choices without loading the phone-number and holiday data.
"""

from __future__ import annotations

from typing import Literal, get_args

Preset = Literal["none", "fr", "us", "uk"]
Purpose = Literal["commercial", "political", "survey", "debt_collection", "informational", "alert"]
# the scopes the presets ask for, and `consent import` records
ConsentScope = Literal["automated_calls", "political_automated", "telemarketing_robocalls", "out_of_hours"]

PRESETS: tuple[str, ...] = get_args(Preset)
PURPOSES: tuple[str, ...] = get_args(Purpose)
CONSENT_SCOPES: tuple[str, ...] = get_args(ConsentScope)
