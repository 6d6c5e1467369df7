"""The alert runner: one task per live alert walks its plan — call, wait, escalate, SMS.

The alerts table is the job queue. Progress (``state.pos``, ``state.next_at``) is saved
after every attempt, so a service killed mid-escalation resumes at the attempt it was
about to make; an attempt cut short by the kill is made again (at least once, never
skipped). A key in the call acknowledges at once (journaled with who and when), before
the call even hangs up; ``resolve()`` cancels the task, hanging up a call in progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np

from ..audio.prompts import silence
from ..audio.source import message_samples
from ..call.session import ActiveCall, place_call
from ..errors import UserError
from ..store import Alerts, Connection, from_ts, to_ts, utc_now
from ..store.boxes import claim_alert, this_box, unowned_alerts
from ..store.call_journal import CallJournal
from .ack import alert_event, record_ack
from .inputs import TooMany, check_text, load_checked_prompt
from .lines import LineLender, Priority
from .plan import advance, build_plan, new_state
from .settings import LoadedAlertConfig
from .texting import Texter

log = logging.getLogger("modem_dialer.service")   # the name operators filter on (docs/api.md), kept

FALLBACK_VOICE = "en"        # espeak-ng's default voice, tried when the configured one fails
LINE_BUSY_TRIES = 3          # dials refused because a call rang in, before the attempt counts


class AlertRunner:
    def __init__(self, loaded: LoadedAlertConfig, conn: Connection, bank: LineLender, texter: Texter, *,
                 min_ring_timeout: float | None = None, journal: CallJournal | None = None) -> None:
        self.loaded = loaded
        self.cfg = loaded.config
        self.conn = conn
        self.alerts = Alerts(conn)
        self.journal = journal if journal is not None else CallJournal(conn)
        self._own_journal = journal is None      # the service's shared journal is the service's to close
        self.bank = bank
        self.texter = texter
        self.min_ring_timeout = min_ring_timeout   # tests lower place_call's floor
        self.tasks: dict[int, asyncio.Task] = {}
        self.done_events: dict[int, asyncio.Event] = {}
        self._samples: dict[int, np.ndarray] = {}
        self.on_change: list[Callable[[int], None]] = []
        self.renotify: dict[int, asyncio.Task] = {}      # acknowledgement timeouts armed
        # event webhooks (webhooks.py): emit(event, data)
        self.emit: Callable[[str, dict[str, Any]], Any] | None = None

    # ---- submit / resolve ------------------------------------------------------------
    async def submit(self, *, to: list[str] | None = None, say: str | None = None, audio: str | None = None,
                     policy: str | None = None, dedup_key: str | None = None, ack_key: str | None = None,
                     source: str = "api", labels: dict[str, str] | None = None,
                     via: str | None = None) -> tuple[int, bool]:
        """Check everything, then raise the alert (or return the live one with this dedup key).

        UserError on bad input (TooMany past a cap): nothing is stored, nobody is called. What
        is checked here cannot fail later: the text's characters, the prompt file (inside
        the prompt folders, size, a WAV we can decode), people, policy, keys."""
        al = self.cfg.alerting
        if (say is None) == (audio is None):
            raise UserError("give exactly one of 'text' or 'audio'")
        if say is not None:
            check_text(say, "text")
            if not say.strip():
                raise UserError("'text' is empty")
        if to is not None and len(to) > al.max_targets:
            raise UserError(f"'to': {len(to)} entries, at most {al.max_targets} (alerting.max_targets)")
        if audio is not None:
            # off the event loop: stat calls and the decoding of up to max_prompt_bytes
            await asyncio.to_thread(load_checked_prompt, self.loaded, audio)
        name, plan = build_plan(self.cfg, policy=policy, to=to, ack_key=ack_key, via=via)
        people = {t["number"] for s in plan["steps"] for t in s["targets"]}
        if len(people) > al.max_targets:
            raise UserError(f"this alert reaches {len(people)} people, at most {al.max_targets} "
                            "(alerting.max_targets)")
        key = dedup_key or _default_key(name, say or audio or "", plan)
        if self.alerts.live_id(key) is None and self.alerts.count_live() >= al.max_live_alerts:
            raise TooMany(f"{al.max_live_alerts} live alerts (alerting.max_live_alerts): resolve some first")
        state = new_state(plan, say=say, audio=audio, source=source, labels=labels)
        alert_id, created = self.alerts.raise_alert(key, name, say or f"(audio {audio})", audio_ref=audio,
                                                    state=state)
        log.info("alert %s %s (%s)", alert_id, "raised" if created else "deduplicated", key,
                 extra={"alert": alert_id, "policy": name, "dedup_key": key})
        if created:
            self._notify("alert.raised", alert_id, source=source)
            self._start(alert_id)
        return alert_id, created

    def resolve(self, alert_id: int, by: str = "api") -> bool:
        a = self.alerts.get_alert(alert_id)
        if a is None:
            raise KeyError(alert_id)
        ok = self.alerts.resolve(alert_id)
        if ok:
            state = a["state"]
            state["result"] = state.get("result") or "resolved"
            state["resolved_by"] = by
            self.alerts.set_state(alert_id, state)
            log.info("alert %s resolved by %s", alert_id, by, extra={"alert": alert_id})
            timer = self.renotify.pop(alert_id, None)
            if timer is not None:
                timer.cancel()
            self._notify("alert.resolved", alert_id, by=by)
            task = self.tasks.get(alert_id)
            if task is not None and not task.done():
                task.cancel()
            self._changed(alert_id)
        return ok

    def acknowledge(self, alert_id: int, by: str, *, via: str) -> bool:
        """Acknowledge from outside a call (API, CLI through the API, SMS reply): the same record
        as a key in the call (alerting/ack.py); the escalation stops (a call in progress for it
        is hung up) and, with the policy's ``ack_timeout``, starts over if the alert is not
        resolved by then. False if it was not open; KeyError if there is no such alert."""
        if self.alerts.get_alert(alert_id) is None:
            raise KeyError(alert_id)
        if not self._acked(alert_id, by, via):
            return False
        task = self.tasks.get(alert_id)
        if task is not None and not task.done():
            task.cancel()
        self._changed(alert_id)
        return True

    def _acked(self, alert_id: int, by: str, via: str) -> bool:
        """Every acknowledgement (any source): the one record and webhook, then the timeout armed."""
        st = record_ack(self.alerts, alert_id, by, via, self.emit)
        if st is None:
            return False
        if st.get("ack_deadline"):
            self._arm_renotify(alert_id)
        return True

    def _arm_renotify(self, alert_id: int) -> None:
        old = self.renotify.pop(alert_id, None)
        if old is not None:
            old.cancel()
        self.renotify[alert_id] = asyncio.get_running_loop().create_task(self._renotify(alert_id),
                                                                          name=f"renotify-{alert_id}")

    async def _renotify(self, alert_id: int) -> None:
        a = self.alerts.get_alert(alert_id)
        if a is None or not a["state"].get("ack_deadline"):
            return
        wait = (from_ts(a["state"]["ack_deadline"]) - utc_now()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        a = self.alerts.get_alert(alert_id)
        if a is None or a["status"] != "acknowledged" or not self.alerts.reopen(alert_id):
            return
        st = a["state"]
        st.pop("ack_deadline", None)
        st["result"] = None
        st["pos"] = {"round": 0, "step": 0, "attempt": 0}
        st["next_at"] = None
        st.setdefault("ack_log", []).append({"at": to_ts(utc_now()), "action": "renotify",
                                             "reason": "acknowledged but not resolved within the ack timeout",
                                             "acknowledged_by": a["acknowledged_by"]})
        self.alerts.set_state(alert_id, st)
        log.warning("alert %s: acknowledged by %s but not resolved in time: notifying again", alert_id,
                    a["acknowledged_by"], extra={"alert": alert_id})
        self._changed(alert_id)
        self.renotify.pop(alert_id, None)
        self._start(alert_id)

    def _notify(self, event: str, alert_id: int, **extra: Any) -> None:
        if self.emit is None:
            return
        payload = alert_event(self.alerts, alert_id, **extra)
        if payload is not None:
            self.emit(event, payload)

    def resolve_key(self, dedup_key: str, by: str) -> int | None:
        alert_id = self.alerts.live_id(dedup_key)
        if alert_id is not None:
            self.resolve(alert_id, by)
        return alert_id

    # ---- tasks -----------------------------------------------------------------------
    def resume(self) -> list[int]:
        """At start-up: a task for every open alert whose escalation is not over."""
        ids = []
        me = this_box()
        for a in self.alerts.live_alerts():
            # another box's alert is its own (a lost box's is released to all: adopt())
            if a.get("box") not in (None, me) or not claim_alert(self.conn, a["id"], me):
                continue
            if a["status"] == "open" and not a["state"].get("result"):
                self._start(a["id"])
                ids.append(a["id"])
            elif a["status"] == "acknowledged" and a["state"].get("ack_deadline"):
                self._arm_renotify(a["id"])      # the acknowledgement timeout survives a restart
        if ids:
            log.info("resuming %d alert(s): %s", len(ids), ids)
        return ids

    def adopt(self) -> list[int]:
        """On the box's heartbeat: live alerts no box runs (their box was lost) are taken by
        this box, one conditional UPDATE each (store/boxes.py ``claim_alert``): exactly one
        box goes on with each escalation."""
        ids = []
        for alert_id in unowned_alerts(self.conn):
            if alert_id in self.tasks or not claim_alert(self.conn, alert_id, this_box()):
                continue
            a = self.alerts.get_alert(alert_id)
            if a is None:
                continue
            if a["status"] == "open" and not a["state"].get("result"):
                self._start(alert_id)
                ids.append(alert_id)
            elif a["status"] == "acknowledged" and a["state"].get("ack_deadline"):
                self._arm_renotify(alert_id)
        if ids:
            log.warning("took over %d alert(s) of a lost box: %s", len(ids), ids)
        return ids

    def _start(self, alert_id: int) -> None:
        self.done_events.setdefault(alert_id, asyncio.Event())
        task = asyncio.get_running_loop().create_task(self._drive(alert_id), name=f"alert-{alert_id}")
        self.tasks[alert_id] = task
        task.add_done_callback(functools.partial(self._finished_task, alert_id))

    def _finished_task(self, alert_id: int, _task: asyncio.Task) -> None:
        self._finished(alert_id)

    def _finished(self, alert_id: int) -> None:
        self.tasks.pop(alert_id, None)
        self._samples.pop(alert_id, None)
        self.done_events.setdefault(alert_id, asyncio.Event()).set()

    def _changed(self, alert_id: int) -> None:
        for cb in self.on_change:
            cb(alert_id)

    @property
    def queue_length(self) -> int:
        return len(self.tasks)

    async def close(self) -> None:
        tasks = list(self.tasks.values()) + list(self.renotify.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._own_journal:
            # the service's journal outlives the runner: the box leaves through it (campaign/box.py)
            await self.journal.aclose()

    # ---- the escalation loop -----------------------------------------------------------
    async def _drive(self, alert_id: int) -> None:
        try:
            while True:
                a = self.alerts.get_alert(alert_id)
                if a is None or a["status"] != "open" or a["state"].get("result"):
                    return
                state = a["state"]
                if state.get("next_at"):
                    wait = (from_ts(state["next_at"]) - utc_now()).total_seconds()
                    if wait > 0:
                        await asyncio.sleep(wait)
                acked = await self._attempt(alert_id, a, state)
                a = self.alerts.get_alert(alert_id)
                if a is None or a["status"] != "open" or acked:
                    return
                state = a["state"]
                more, delay = advance(state)
                if more:
                    state["next_at"] = to_ts(utc_now() + timedelta(seconds=delay))
                    self.alerts.set_state(alert_id, state)
                    self._changed(alert_id)
                    continue
                state["result"] = "exhausted"
                self.alerts.set_state(alert_id, state)
                self.alerts.resolve(alert_id, status="expired")
                self._notify("alert.expired", alert_id)
                log.warning("alert %s not acknowledged: escalation exhausted", alert_id, extra={"alert": alert_id})
                self._changed(alert_id)
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:   # a bug in one alert must not stop the others; the alert stays
            # open (resumed at the next start) and says why in its view
            self._failed(alert_id, "escalation", exc)

    async def _attempt(self, alert_id: int, a: dict, state: dict) -> bool:
        """Run the step at ``pos`` once for all its targets. -> acknowledged?"""
        plan, pos = state["plan"], state["pos"]
        step = plan["steps"][pos["step"]]
        log.info("alert %s: step %d attempt %d (round %d) via %s", alert_id, pos["step"] + 1, pos["attempt"] + 1,
                 pos["round"] + 1, step["via"], extra={"alert": alert_id})
        acked = asyncio.Event()
        jobs = [self._reach(alert_id, a, state, step, t, acked) for t in step["targets"]]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        waiter = asyncio.ensure_future(acked.wait())
        try:
            pending: set[asyncio.Future[Any]] = set(tasks)
            while pending and not acked.is_set():
                _done, pending = await asyncio.wait(pending | {waiter}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(waiter)
            # someone acknowledged: stop calling the others, but let the acknowledging call end
            # on its own so its outcome lands in the history
            acker = getattr(acked, "by_number", None)
            for t, target in zip(tasks, step["targets"], strict=True):
                if t in pending and target["number"] != acker:
                    t.cancel()
            # wait for every target; a failure reaching one is journaled in the alert and
            # logged with its traceback (cancelled ones were cancelled above, on purpose)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for r, target in zip(results, step["targets"], strict=True):
                if isinstance(r, Exception):
                    self._failed(alert_id, f"reaching {target['who']} {target['number']}", r)
        finally:
            waiter.cancel()
            for t in tasks:
                t.cancel()
            # Resolved or stopping: the calls hang up and record their outcome before this
            # alert's task ends, so close() (which awaits that task) never leaves a call up
            # behind it while the bank and the journal close under it.
            await asyncio.gather(*tasks, return_exceptions=True)
        return acked.is_set()

    async def _reach(self, alert_id: int, a: dict, state: dict, step: dict, target: dict,
                     acked: asyncio.Event) -> None:
        number, who = target["number"], target["who"]
        plan = state["plan"]
        if step["via"] in ("sms", "call+sms"):
            await self._sms(alert_id, a, state, target, fallback=False)
        if step["via"] == "sms":
            return
        if self.texter.rate_limited(number):
            self._history(alert_id, who=who, number=number, via="call", outcome="rate_limited")
            return
        try:
            samples: np.ndarray | None = await self._prompt(alert_id, a, plan)
        except Exception as exc:
            self._failed(alert_id, "building the spoken message", exc)
            samples = await self._fallback_prompt(alert_id, a, plan)
        if samples is None:
            # no voice at all: the text goes by SMS whatever sms_fallback says, so the alert
            # still reaches this person
            self._history(alert_id, who=who, number=number, via="call", outcome="prompt_failed")
            await self._sms(alert_id, a, state, target, fallback=True)
            return
        outcome, call_id = "no_line", None
        try:
            for _ in range(LINE_BUSY_TRIES):
                # wait for a line as long as the policy says (None: until one frees up, however
                # long the backlog; the bank serves alerts first, in arrival order)
                async with self.bank.lease(Priority.ALERT, timeout=plan.get("line_wait")) as slot:
                    assert slot.line is not None
                    kw: dict[str, Any] = ({"min_ring_timeout": self.min_ring_timeout}
                                          if self.min_ring_timeout is not None else {})
                    result = await place_call(slot.line, number, self._script(alert_id, who, samples, plan, acked),
                                              self.journal, ring_timeout=plan["ring_timeout"], alert_id=alert_id,
                                              **kw)
                    outcome, call_id = result.outcome, result.call_id
                    self.bank.count_call(slot, outcome)
                # a caller rang in on that line as we dialed: not an attempt, take the next free line
                # (the ringing one is claimed by the inbound desk meanwhile)
                if outcome != "line_busy":
                    break
        except asyncio.TimeoutError:
            log.warning("alert %s: no line for %s within line_wait (%s s)", alert_id, who, plan.get("line_wait"),
                        extra={"alert": alert_id})
        self._history(alert_id, who=who, number=number, via="call", outcome=outcome, call_id=call_id,
                      acknowledged=acked.is_set() and self._acked_by(alert_id, number))
        if not acked.is_set() and plan["sms_fallback"]:
            current = self.alerts.get_alert(alert_id)
            if current and current["status"] == "open":
                await self._sms(alert_id, a, state, target, fallback=True)

    def _acked_by(self, alert_id: int, number: str) -> bool:
        a = self.alerts.get_alert(alert_id)
        return bool(a and a["acknowledged_by"] and number in a["acknowledged_by"])

    async def _sms(self, alert_id: int, a: dict, state: dict, target: dict, *, fallback: bool) -> None:
        number = target["number"]
        if fallback:
            fresh = self.alerts.get_alert(alert_id)
            if fresh and number in fresh["state"].get("sms_to", []):
                return       # one fallback SMS per person per alert
        text = fit_sms(number, f"ALERT #{alert_id}: {a['text']}")
        sms_id, status = await self.texter.send(number, text, alert_id=alert_id,
                                                wait=state["plan"].get("line_wait"))
        fresh = self.alerts.get_alert(alert_id)
        if fresh is not None:
            st = fresh["state"]
            if number not in st.setdefault("sms_to", []):
                st["sms_to"].append(number)
            self.alerts.set_state(alert_id, st)
        self._history(alert_id, who=target["who"], number=number, via="sms", outcome=status, sms_id=sms_id,
                      fallback=fallback)

    def _failed(self, alert_id: int, what: str, exc: BaseException) -> None:
        """Journal an error in the alert (``errors`` in its view) and log it with its traceback."""
        log.error("alert %s: %s failed: %s", alert_id, what, exc, exc_info=exc, extra={"alert": alert_id})
        a = self.alerts.get_alert(alert_id)
        if a is None:
            return
        st = a["state"]
        st.setdefault("errors", []).append({"at": to_ts(utc_now()), "what": what,
                                            "error": f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError)
                                            else str(exc)})
        self.alerts.set_state(alert_id, st)
        self._changed(alert_id)

    def _history(self, alert_id: int, **entry: Any) -> None:
        a = self.alerts.get_alert(alert_id)
        if a is None:
            return
        st = a["state"]
        pos = st["pos"]
        st.setdefault("history", []).append({"at": to_ts(utc_now()), "round": pos["round"], "step": pos["step"],
                                             "attempt": pos["attempt"], **entry})
        self.alerts.set_state(alert_id, st)
        log.info("alert %s: %s %s %s → %s", alert_id, entry.get("via"), entry.get("who"), entry.get("number"),
                 entry.get("outcome"), extra={"alert": alert_id})
        self._changed(alert_id)

    # ---- the call ----------------------------------------------------------------------
    async def _prompt(self, alert_id: int, a: dict, plan: dict) -> np.ndarray:
        if alert_id not in self._samples:
            st = a["state"]
            ack = plan["ack_prompt"].format(key=plan["ack_key"])
            cfg, cache = self.cfg, self.loaded.resolve(self.cfg.cache_dir)

            def make() -> np.ndarray:
                tail = message_samples(say=ack, voice=cfg.tts_voice, cache_dir=cache)
                if st.get("audio"):
                    # checked again: the folder may have changed since the alert was raised
                    head = load_checked_prompt(self.loaded, st["audio"])
                    return np.concatenate([head, silence(300), tail])
                return message_samples(say=f"{st['say']}. {ack}", voice=cfg.tts_voice, cache_dir=cache)
            self._samples[alert_id] = await asyncio.get_running_loop().run_in_executor(None, make)
        return self._samples[alert_id]

    async def _fallback_prompt(self, alert_id: int, a: dict, plan: dict) -> np.ndarray | None:
        """A simpler message when the real one cannot be built: the WAV without the spoken
        prompt, or the text in the default voice. None when nothing can be said."""
        st, cache = a["state"], self.loaded.resolve(self.cfg.cache_dir)
        ack = plan["ack_prompt"].format(key=plan["ack_key"])

        errors: list[Exception] = []

        def make() -> np.ndarray | None:        # in a worker thread: no journal writes here
            tries: list[Callable[[], np.ndarray]] = []
            if st.get("audio"):
                tries.append(lambda: load_checked_prompt(self.loaded, st["audio"]))
                tries.append(lambda: message_samples(say=f"Alert {alert_id}. The recorded message could not be "
                                                         f"played. {ack}", voice=FALLBACK_VOICE, cache_dir=cache))
            elif self.cfg.tts_voice != FALLBACK_VOICE:
                tries.append(lambda: message_samples(say=f"{st['say']}. {ack}", voice=FALLBACK_VOICE,
                                                     cache_dir=cache))
            for attempt in tries:
                try:
                    return attempt()
                except Exception as exc:      # each way out is tried; the errors are journaled below
                    errors.append(exc)
            return None
        samples = await asyncio.get_running_loop().run_in_executor(None, make)
        for exc in errors:
            self._failed(alert_id, "building a fallback message", exc)
        if samples is not None:
            self._samples[alert_id] = samples
        return samples

    def _script(self, alert_id: int, who: str, samples: np.ndarray, plan: dict, acked: asyncio.Event):
        ack_key, resolve_key = plan["ack_key"], plan.get("resolve_key")

        async def run(call: ActiveCall) -> None:
            for i in range(plan["message_repeat"]):
                if i:
                    key = await call.play(silence(700), name="gap", barge_in=True)
                else:
                    key = None
                if key is None:
                    key = await call.play(samples, name="alert", barge_in=True)
                if key is None and i == plan["message_repeat"] - 1:
                    key = await call.get_key(3.0)
                if key == ack_key or (key is not None and key == resolve_key):
                    by = f"{who} {call.number}"
                    if self._acked(alert_id, by, "key"):
                        call.event("alert", action="acknowledged", alert_id=alert_id, key=key, by=by)
                        acked.by_number = call.number  # type: ignore[attr-defined]
                        acked.set()
                    if key == resolve_key:
                        self.resolve(alert_id, by)
                    self._changed(alert_id)
                    return
                if key is not None:
                    call.event("alert", action="ignored_key", key=key)
        return run


def fit_sms(number: str, text: str) -> str:
    """``text`` cut to what one (multi-part) SMS carries: an alert's SMS must go out even when
    its text is long and needs UCS-2 (670 characters in 10 parts instead of 1530)."""
    from ..modems.sms import encode_sms

    while True:
        try:
            encode_sms(number, text)
            return text
        except UserError:
            if len(text) <= 20:
                return text
            text = text[: int(len(text) * 0.9)].rstrip() + "…"


def _default_key(policy: str, text: str, plan: dict) -> str:
    """Same text to the same people under the same policy is the same alert."""
    import hashlib

    who = ",".join(t["number"] for s in plan["steps"] for t in s["targets"])
    return "auto:" + hashlib.sha256(f"{policy}\n{who}\n{text}".encode()).hexdigest()[:24]
