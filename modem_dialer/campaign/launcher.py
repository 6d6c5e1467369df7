"""``campaign run`` end to end: file → contacts → lines → controller, with signals and the view.

Kept out of the CLI module so that benches and the service can run a campaign too.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any

from .. import webhooks
from ..call.inbound import InboundDesk, check_inbound_flows
from ..errors import UserError
from ..signals import on_signals
from ..store import Campaigns, open_db
from ..store.call_journal import CallJournal, DatabaseFault
from ..store.lock import DialerLock
from .box import BoxKeeper
from .contacts import BadRow, ImportReport, file_fingerprint, import_contacts
from .controller import Controller
from .pool import PoolLines, claim_pool_line
from .script import ScriptFor, flow_factory, message_factory
from .settings import LoadedCampaignConfig
from .spec import CampaignFile
from .view import make_view

Echo = Callable[[str], None]


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def prepare(loaded: LoadedCampaignConfig, cf: CampaignFile, conn, *, echo: Echo = print,
            echo_err: Echo = _err) -> tuple[int, ImportReport | None]:
    """Create or find the campaign and merge its contacts (skipped when the CSV is unchanged)."""
    spec = cf.spec
    region = spec.region or loaded.config.default_region
    store = Campaigns(conn)
    existing = store.get_campaign(spec.name)
    cfg = {"spec": spec.model_dump(mode="json"), "rules": spec.rule_set().describe(), "region": region}
    if existing is None:
        cid = store.create_campaign(spec.name, file=str(cf.path), config=cfg)
        old_fp = None
    else:
        cid = existing["id"]
        old_fp = existing["config"].get("contacts_fingerprint")
        if existing["config"].get("runner"):
            cfg["runner"] = existing["config"]["runner"]     # who dials it: 'service' or 'cli'

    fp = file_fingerprint(cf.contacts_path, region, *((spec.encoding, spec.delimiter)
                                                      if spec.encoding or spec.delimiter else ()))
    report = None
    if fp == old_fp:
        echo(f"{cf.contacts_path.name}: unchanged since the last import")
    else:
        def bad(row: BadRow) -> None:
            echo_err(f"{cf.contacts_path}:{row.line}: {row.reason}")
        report = import_contacts(store, cid, cf.contacts_path, region, on_bad=bad, encoding=spec.encoding,
                                 delimiter=spec.delimiter)
        echo(f"{cf.contacts_path.name}: {report.inserted} new, {report.updated} updated, "
             f"{report.unchanged} unchanged, {report.bad_count} bad row(s)")
    cfg["contacts_fingerprint"] = fp
    store.update_campaign(cid, config=cfg, file=str(cf.path))
    return cid, report


def set_runner(conn, cid: int, runner: str) -> None:
    """Record who dials the campaign: a service restart resumes only its own ('service')."""
    store = Campaigns(conn)
    c = store.get_campaign_by_id(cid)
    if c is not None and c["config"].get("runner") != runner:
        store.update_campaign(cid, config={**c["config"], "runner": runner})


def script_factory(loaded: LoadedCampaignConfig, cf: CampaignFile, lines: Any = None) -> ScriptFor:
    """The script per contact; ``lines`` lends free lines to a flow's bridge transfers
    (default: the standalone pool's, wired once the controller has built it)."""
    spec, cfg = cf.spec, loaded.config
    if spec.flow:
        return flow_factory(cf.flow_path, voice=spec.voice or cfg.tts_voice,
                            cache_dir=loaded.resolve(cfg.cache_dir), opt_out_key=spec.opt_out_key,
                            advisors=cfg.advisors, region=spec.region or cfg.default_region,
                            campaign=spec.name, lines=PoolLines() if lines is None else lines,
                            recordings_dir=loaded.resolve(cfg.cache_dir) / "recordings" / spec.name)
    from ..audio.source import message_samples

    samples = message_samples(cf.message_path, spec.say, voice=spec.voice or cfg.tts_voice,
                              cache_dir=loaded.resolve(cfg.cache_dir))
    return message_factory(samples, spec.repeat)


def modem_configs(loaded: LoadedCampaignConfig, cf: CampaignFile) -> list:
    cfg = loaded.config
    if not cfg.modems:
        raise UserError(f"{loaded.path}: no modems in the config (empty bank)")
    if cf.spec.modems is None:
        return list(cfg.modems)
    names = {m.name for m in cfg.modems}
    for n in cf.spec.modems:
        if n not in names:
            raise UserError(f"{cf.path}: modems: no modem named {n!r} in the config "
                            f"(have: {', '.join(sorted(names))})")
    return [cfg.modem(n) for n in cf.spec.modems]


def check_campaign(loaded: LoadedCampaignConfig, cf: CampaignFile, lines: Any = None) -> tuple[list, ScriptFor]:
    """Everything a campaign needs before its first dial: its modems are in the config and
    its message (a real WAV, a text that synthesises) or flow is good. `campaign run`,
    `campaign import` and a submission to the service all go through here, so that what
    one accepts the others accept too. Returns (modem configs, script per contact)."""
    return modem_configs(loaded, cf), script_factory(loaded, cf, lines)


def run_campaign(loaded: LoadedCampaignConfig, cf: CampaignFile, *, tty: bool | None = None,
                 echo: Echo = print, **controller_kw: Any) -> str:
    """Validate, import, dial until done or stopped. Returns 'done' or 'stopped'."""
    cfgs, script_for = check_campaign(loaded, cf)     # a bad WAV/flow/modem fails before any dial
    check_inbound_flows(loaded, [c.name for c in cfgs])   # and a bad inbound flow file
    db = loaded.database_path
    with DialerLock(db):
        conn = open_db(db)
        try:
            cid, _ = prepare(loaded, cf, conn, echo=echo)
            set_runner(conn, cid, "cli")
            return asyncio.run(_run(loaded, cf, conn, cid, cfgs, script_for, tty, echo, controller_kw))
        finally:
            conn.close()


async def _run(loaded, cf, conn, cid, cfgs, script_for, tty, echo, controller_kw) -> str:
    from ..call.line import open_lines

    lines, errors = await open_lines(cfgs)
    for name, err in errors.items():
        echo(f"{name}: not usable: {err}")
    usable = []
    for line in lines:
        if line.audio is None:
            echo(f"{line.name}: not usable: no audio path configured")
            await line.close()
        else:
            usable.append(line)
    if not usable:
        raise UserError("no modem ready: " + ("; ".join(f"{n}: {e}" for n, e in errors.items())
                                              or "no modem has an audio path"))
    view = make_view(cf.spec.name, tty)
    journal = CallJournal(conn, lock_limit_s=loaded.config.database_lock_limit.total_seconds(),
                          spool=loaded.spool_path)
    ctrl = Controller(conn, cid, cf.spec, usable, loaded.config.limits, script_for, view=view, journal=journal,
                      **controller_kw)
    lender = getattr(script_for, "lines", None)
    if isinstance(lender, PoolLines):
        lender.pool_of = lambda: ctrl.pool      # bridge transfers borrow free lines of this pool
    # events for the webhooks: queued in the outbox, delivered while the campaign runs (and
    # by `serve` later, for what is left)
    hooks = webhooks.configure(conn, list(loaded.config.webhooks))
    deliver = asyncio.ensure_future(hooks.run()) if hooks is not None else None
    # someone calling one of these SIMs back is answered (or rejected) per config inbound:
    desk = InboundDesk(loaded, conn, lambda line: claim_pool_line(ctrl.pool, line), journal, notify=webhooks.emit)
    for line in usable:
        desk.attach(line)
    # this box among the others on the database (docs/scale-out.md): its calls left open by
    # a killed run closed, its contacts released and settled, its lease kept while it runs
    def on_lost() -> None:        # another box took this one's contacts over: hang up, stop
        ctrl.request_stop()
        ctrl.request_stop()
    keeper = BoxKeeper(conn, journal, loaded.config.box, loaded.config.box_lease, on_lost=on_lost)
    interrupted = keeper.register()
    _, settled = ctrl.recover(close_open_calls=False)
    keeper.on_tick.append(ctrl.settle_released)
    keeper.on_fence.append(ctrl.fence)      # lease not renewed in time: hang up, hold
    keeper.start()
    if interrupted or settled:
        echo(f"recovered: {len(interrupted)} interrupted call(s) closed, {settled} contact(s) settled")
    loop = asyncio.get_running_loop()
    unhook = on_signals(loop, (signal.SIGINT, signal.SIGTERM), ctrl.request_stop)
    ready = [s for s in usable]
    echo(f"campaign {cf.spec.name}: {len(ready)} line(s): {', '.join(line.name for line in ready)}")
    view.start(ctrl.snapshot)
    fault: DatabaseFault | None = None
    try:
        result = await ctrl.run()
    except DatabaseFault as exc:
        fault, result = exc, "stopped"
    finally:
        view.stop()
        unhook()
        await desk.close()
        if deliver is not None:
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver
        webhooks.configure(None, [])
        await asyncio.gather(*(line.close() for line in usable), return_exceptions=True)
        await keeper.close()
        # commit what is still queued (waits for a lock up to the limit; a full disk loses it,
        # said in the log: those calls stay open and the next run records them as interrupted)
        lost = await journal.aclose()
    if fault is not None:
        raise UserError(f"{fault}; run stopped" + (f", {lost} journal write(s) not recorded" if lost else ""))
    if ctrl.pool is not None and all(s.state == "out" for s in ctrl.pool.slots) and result != "done":
        echo("no modem ready: " + "; ".join(f"{s.name}: {s.reason}" for s in ctrl.pool.slots))
    snap = ctrl.snapshot()
    echo(f"campaign {cf.spec.name}: {result}; contacts "
         + ", ".join(f"{k} {v}" for k, v in sorted(snap["statuses"].items()) if v > 0))
    return result
