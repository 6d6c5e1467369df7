"""An alert's escalation plan: the policy with every name turned into numbers, frozen at raise time.

The plan is stored in the alert's ``state`` (JSON), so an alert in flight keeps the steps
it started with even if config.yaml changes, and a restarted service resumes from the
saved position (``pos``) without reading the policy again.
"""

from __future__ import annotations

from typing import Any

from ..errors import UserError
from ..numbers import parse_number
from .config import PolicyConfig, StepConfig, looks_like_number
from .settings import AlertSettings


def resolve_targets(cfg: AlertSettings, names: list[str]) -> list[dict[str, str]]:
    """People, groups and numbers → [{who, number}] (E.164), duplicates removed, order kept."""
    al = cfg.alerting
    out: list[dict[str, str]] = []
    seen: set[str] = set()

    def add(who: str, raw: str) -> None:
        number = parse_number(raw, cfg.default_region)
        if number not in seen:
            seen.add(number)
            out.append({"who": who, "number": number})

    for name in names:
        name = name.strip()
        if name in al.people:
            add(name, al.people[name])
        elif name in al.groups:
            for m in al.groups[name]:
                add(m, al.people.get(m, m))
        elif name in al.schedules:
            # whoever is on call now (the plan is frozen at raise time, like every other name)
            from ..store import utc_now
            from .schedules import on_call

            who = on_call(name, al.schedules[name], utc_now()).who
            add(who, al.people[who])
        elif looks_like_number(name):
            add(name, name)
        else:
            raise UserError(f"'to': {name!r} is not a person, group, schedule or phone number in the config")
    return out


def step_dict(cfg: AlertSettings, step: StepConfig, targets: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"targets": targets if targets is not None else resolve_targets(cfg, step.to), "via": step.via,
            "attempts": step.attempts, "retry_delay": step.retry_delay, "delay": step.delay}


def build_plan(cfg: AlertSettings, *, policy: str | None = None, to: list[str] | None = None,
               ack_key: str | None = None, via: str | None = None) -> tuple[str, dict[str, Any]]:
    """(policy name, plan). ``to`` replaces the policy's steps: one step per entry, in order,
    with the timing of the policy's first step."""
    al = cfg.alerting
    pol: PolicyConfig = al.policy(policy)
    name = policy or (al.default_policy if al.default_policy in al.policies else "adhoc")
    if to:
        base = pol.steps[0]
        steps = []
        for entry in to:
            s = step_dict(cfg, base, resolve_targets(cfg, [entry]))
            if via:
                s["via"] = via
            steps.append(s)
    else:
        steps = [step_dict(cfg, s) for s in pol.steps]
        if not any(s["targets"] for s in steps):
            raise UserError("no one to alert: give 'to' or configure alerting.policies."
                            f"{al.default_policy} in the config")
    if ack_key is not None and (len(ack_key) != 1 or ack_key not in "0123456789*#"):
        raise UserError(f"ack key {ack_key!r}: use one of 0-9, * or #")
    plan = {
        "steps": steps, "repeat": pol.repeat, "ack_key": ack_key or pol.ack_key, "resolve_key": pol.resolve_key,
        "ack_prompt": pol.ack_prompt, "message_repeat": pol.message_repeat, "ring_timeout": pol.ring_timeout,
        "sms_fallback": pol.sms_fallback, "line_wait": pol.line_wait, "ack_timeout": pol.ack_timeout,
    }
    if plan["resolve_key"] == plan["ack_key"]:
        plan["resolve_key"] = None
    return name, plan


def new_state(plan: dict[str, Any], *, say: str | None, audio: str | None, source: str,
              labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"plan": plan, "say": say, "audio": audio, "source": source, "labels": labels or {},
            "pos": {"round": 0, "step": 0, "attempt": 0}, "next_at": None, "result": None,
            "sms_to": [], "history": []}


def advance(state: dict[str, Any]) -> tuple[bool, float]:
    """Move ``pos`` past the attempt just made. -> (more to do, seconds to wait before it)."""
    plan, pos = state["plan"], state["pos"]
    step = plan["steps"][pos["step"]]
    if pos["attempt"] + 1 < step["attempts"]:
        pos["attempt"] += 1
        return True, float(step["retry_delay"])
    if pos["step"] + 1 < len(plan["steps"]):
        pos["step"] += 1
        pos["attempt"] = 0
        return True, float(step["delay"])
    if pos["round"] < plan["repeat"]:
        pos["round"] += 1
        pos["step"] = pos["attempt"] = 0
        return True, float(step["delay"])
    return False, 0.0
