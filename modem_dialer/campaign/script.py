"""What is played to each contact: a message, or an IVR flow when the campaign names one.

The controller asks ``script_for(contact)`` for every call, so a flow can use the
contact's fields. The opt-out key, when the campaign sets one, wraps any script: on
that key the number is suppressed first, the refusal journaled, then the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import webhooks
from ..call.message import message_script
from ..call.session import ActiveCall, CallEnded, Script
from ..errors import UserError
from ..store import Contact

ScriptFor = Callable[[Contact], Script]


@dataclass
class CallState:
    """What the controller needs to know about a call once it is over."""

    opted_out: bool = False


def message_factory(samples: np.ndarray, repeat: int = 1) -> ScriptFor:
    script = message_script(samples, repeat)
    return lambda contact: script


def flow_factory(path: Any, **extra: Any) -> ScriptFor:
    """Use the IVR flow runner (``modem_dialer.call.flow``: ``load_flow`` + ``flow_script``)."""
    try:
        from ..call import flow as flow_mod
    except ImportError:
        raise UserError(f"{path}: IVR flows are not available in this build") from None
    load_flow = getattr(flow_mod, "load_flow", None)
    flow_script = getattr(flow_mod, "flow_script", None)
    if load_flow is None or flow_script is None:
        raise UserError(f"{path}: IVR flows are not available in this build")
    flow = load_flow(path)
    params = inspect.signature(flow_script).parameters
    accepted = {k: v for k, v in extra.items() if k in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())}

    def script_for(contact: Contact) -> Script:
        kw = dict(accepted)
        if "contact_id" in params:
            kw["contact_id"] = contact.id
        return flow_script(flow, contact.fields, **kw)
    # the flow runner handles the campaign's opt-out key itself (with its confirmation)
    script_for.handles_opt_out = True  # type: ignore[attr-defined]
    script_for.lines = extra.get("lines")  # type: ignore[attr-defined]  # the pool is known later
    return script_for


def with_opt_out(script: Script, key: str, source: str, state: CallState,
                 poll: float = 0.02) -> Script:
    """Run ``script``; the moment ``key`` is pressed, suppress the number, journal the
    refusal and return (place_call then hangs up) — no menu, no confirmation (A.5.4)."""

    async def run(call: ActiveCall) -> None:
        inner = asyncio.ensure_future(script(call))
        try:
            while True:
                if any(k.key == key for k in call.keys):
                    # suppression first, then the refusal (A.5.4): the writer keeps that order
                    # queued (and spooled while PostgreSQL is away): in order with the call's rows
                    call.journal.suppress(call.number, "opt_out_key", source)
                    call.journal.refusal(call.call_id, "key")
                    call.event("opt_out", key=key)
                    webhooks.emit("opt_out", {"call_id": call.call_id, "number": call.number, "source": "key",
                                              "key": key, "campaign": source})
                    state.opted_out = True
                    return
                if inner.done():
                    break
                await asyncio.wait({inner}, timeout=poll)
            with contextlib.suppress(CallEnded):
                inner.result()
        finally:
            if not inner.done():
                inner.cancel()
                with contextlib.suppress(asyncio.CancelledError, CallEnded, Exception):
                    await inner
    return run
