"""Commands of the campaign area (registered on the main group when imported)."""

from __future__ import annotations
