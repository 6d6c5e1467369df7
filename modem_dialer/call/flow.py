"""IVR flows — the entry points other areas use.

- ``load_flow(path, fields=None) -> Flow``: read and check a flow file (UserError on mistakes).
- ``flow_script(flow, contact_fields, *, opt_out_key=None, machine=None, contact_id=None,
  campaign=None, advisors=None, region="FR", lines=None, ...) -> Script`` for ``place_call``.
- ``answers_summary(conn, campaign_id)``: per question, counts per answer (reports).
- ``flow_warnings(flow, *, preset, opt_out_key, machine)``: what the jurisdiction presets warn about.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..store import Campaigns, Connection
from .flow_model import Flow, check_flow, load_flow, placeholders
from .flow_runner import flow_script
from .transfer import LineProvider, StaticLineProvider

__all__ = [
    "Flow", "LineProvider", "StaticLineProvider", "answers_summary", "check_flow", "flow_script",
    "flow_warnings", "load_flow", "placeholders",
]


def answers_summary(conn: Connection, campaign_id: int) -> dict[str, dict[str, int]]:
    """``{question: {answer: count}}`` over the campaign's calls (``report`` shows it)."""
    return Campaigns(conn).answer_counts(campaign_id)


def _first_texts(flow: Flow) -> Iterable[str]:
    node = flow.node(flow.doc.start)
    for item in node.items():
        if item.say:
            yield item.say


def flow_warnings(flow: Flow, *, preset: str | None, opt_out_key: str | None = None,
                  machine: str | None = None) -> list[str]:
    """Warnings for a jurisdiction preset (fr, us, uk …): a missing or unannounced opt-out
    key (A.5.4: announce it at the start) and AMD ``skip`` where false positives count as
    abandoned calls (B.2.3)."""
    preset = (preset or "").lower()
    key = opt_out_key or flow.doc.opt_out.key
    mode = machine or flow.doc.machine.mode
    out = []
    if preset in ("fr", "us"):
        if key is None:
            out.append(f"{flow.path}: preset {preset} requires an opt-out key (opt_out.key or the campaign's)")
        elif not any(key in t for t in _first_texts(flow)):
            out.append(f"{flow.where('nodes', flow.doc.start)}: the first prompt does not announce the "
                       f"opt-out key {key!r}")
    if preset in ("us", "uk") and mode == "skip":
        out.append(f"{flow.where('machine', 'mode')}: machine mode skip: a person judged a machine and hung up "
                   f"on counts as an abandoned call in the {preset} preset")
    return out
