"""``modem-dialer call``: one call, a message, keys, the journal."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING

import click

from ..errors import UserError
from . import load, main, run_command

if TYPE_CHECKING:
    import numpy as np

    from ..call.session import Script

EXIT_ANSWERED, EXIT_ERROR, EXIT_NOT_ANSWERED = 0, 1, 2


@main.command()
@click.argument("number", nargs=-1, required=True)
@click.option("--message", type=click.Path(dir_okay=False), help="WAV file to play")
@click.option("--say", help="text to speak (espeak-ng, offline)")
@click.option("--flow", "flow_file", type=click.Path(dir_okay=False), help="IVR flow file to run (see docs/flows.md)")
@click.option("--modem", "modem_name", help="use this modem (default: the first ready one)")
@click.option("--ring-timeout", type=float, default=45.0, show_default=True, help="seconds to let it ring (≥ 15)")
@click.option("--repeat", type=click.IntRange(1, 20), default=1, show_default=True, help="play the message N times")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@click.pass_context
@run_command
def call(ctx: click.Context, number: tuple[str, ...], message: str | None, say: str | None, flow_file: str | None,
         modem_name: str | None, ring_timeout: float, repeat: int, as_json: bool) -> None:
    """Call NUMBER, play a message, collect keys, journal everything.

    NUMBER may be written with spaces (06 12 34 56 78).

    Exit 0 answered, 2 reached the network but not answered (busy, no answer,
    rejected), 1 error (invalid number, failure, modem lost, bad input). Stopped by a
    signal (Ctrl-C, SIGTERM from `timeout` or `systemctl stop`, SIGHUP): the call is
    hung up and its journal row closed, then exit 128 + the signal: 130, 143, 129.
    """
    import asyncio

    from ..audio.source import message_samples
    from ..call.outcome import NOT_ANSWERED
    from ..call.session import MIN_RING_TIMEOUT
    from ..numbers import parse_number

    loaded = load(ctx)
    cfg = loaded.config
    e164 = parse_number(" ".join(number), cfg.default_region)   # before any modem is touched
    if ring_timeout < MIN_RING_TIMEOUT:
        raise UserError(f"--ring-timeout: {ring_timeout:g} s is under the {MIN_RING_TIMEOUT:g} s minimum "
                        "(shorter rings count as abandoned calls)")
    if sum(x is not None for x in (message, say, flow_file)) != 1:
        raise UserError("give exactly one of --message WAV, --say TEXT or --flow FILE")
    payload: Script | np.ndarray   # a ready script (--flow) or the message's samples
    if flow_file is not None:
        from ..call.flow import flow_script, load_flow

        # a flow with a mistake never starts a call; no second line here, so bridge transfers fall back
        payload = flow_script(load_flow(flow_file), {}, advisors=cfg.advisors, region=cfg.default_region,
                              voice=cfg.tts_voice, cache_dir=loaded.resolve(cfg.cache_dir))
    else:
        payload = message_samples(message, say, voice=cfg.tts_voice, cache_dir=loaded.resolve(cfg.cache_dir))
    candidates = [cfg.modem(modem_name)] if modem_name else list(cfg.modems)
    if not candidates:
        raise UserError("no modems in the config")
    try:
        result = asyncio.run(_call(loaded, candidates, e164, payload, ring_timeout, repeat))
    except Stopped as stop:
        what = "interrupted" if stop.signum == signal.SIGINT else f"stopped by {stop.name}"
        click.echo(f"modem-dialer: {what} (a call in progress was hung up and journaled)", err=True)
        sys.exit(128 + stop.signum)
    d = result.as_dict()
    if as_json:
        click.echo(json.dumps(d, indent=2))
    else:
        keys = "".join(k["key"] for k in d["keys"]) or "-"
        dur = f"{d['duration_s']:.1f} s" if d["answered_at"] else "-"
        cause = f", cause {d['cause']}" if d["cause"] is not None else ""
        click.echo(f"{d['number']}: {d['outcome']} via {d['modem']} (duration {dur}, keys {keys}, "
                   f"hung up by {d['hangup_by'] or '-'}{cause}{', ' + d['cause_text'] if d['cause_text'] else ''})")
    outcome = d["outcome"]
    sys.exit(EXIT_ANSWERED if outcome == "answered" else
             EXIT_NOT_ANSWERED if outcome in NOT_ANSWERED else EXIT_ERROR)


class Stopped(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived: the call was hung up and recorded."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


async def _call(loaded, candidates, number, payload, ring_timeout, repeat):
    """``payload``: message samples, or a ready script (``--flow``).

    SIGINT, SIGTERM and SIGHUP cancel this task: place_call hangs up and closes the row, then
    :class:`Stopped` is raised; a second signal meanwhile is ignored (the hang-up is bounded).
    Killed without a chance (SIGKILL), the next run closes the row and ends the call.

    SIGINT is handled here too, not left to asyncio.run: asyncio.run only handles it when
    Python installed its default handler at start-up, which it does not when the process
    started with SIGINT ignored — as every ``modem-dialer call … &`` of a shell script does
    (and a test suite run in the background). A ``kill -INT`` was then dropped and the call
    rang on until its ring timeout. ``campaign run`` and ``serve`` hook SIGINT the same way.
    """
    import asyncio

    from ..signals import on_signals

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            received.append(signum)
            task.cancel()
    undo = [on_signals(loop, [sig], on_signal, sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
    try:
        return await _call_line(loaded, candidates, number, payload, ring_timeout, repeat)
    except asyncio.CancelledError:
        if received:
            raise Stopped(received[0]) from None
        raise
    finally:
        for u in undo:
            u()


async def _call_line(loaded, candidates, number, payload, ring_timeout, repeat):
    from ..call.message import message_script
    from ..call.session import place_call
    from ..store import Journal, open_db
    from ..store.call_journal import CallJournal
    from ..store.lock import DialerLock

    conn = open_db(loaded.database_path)
    # Calls left open by a killed process are closed as 'interrupted' — but only when no other
    # dialing process (a campaign, the service) owns this journal: it would close their live calls.
    lock: DialerLock | None = None
    try:
        mine = DialerLock(loaded.database_path)
        mine.acquire()
        lock = mine
        Journal(conn).recover_interrupted()
    except UserError:
        pass
    line = None
    journal = CallJournal(conn, lock_limit_s=loaded.config.database_lock_limit.total_seconds())
    try:
        line = await _first_ready(candidates)
        script = payload if callable(payload) else message_script(payload, repeat)
        return await place_call(line, number, script, journal, ring_timeout=ring_timeout)
    finally:
        if line is not None:
            await line.close()
        await journal.aclose()
        conn.close()
        if lock is not None:
            lock.release()


async def _first_ready(candidates):
    """The first configured modem that opens, is registered and has an audio path."""
    from ..call.line import open_line

    errors = []
    for mc in candidates:
        try:
            opened = await open_line(mc)
        except Exception as exc:   # any failure to open is a per-modem error; try the next
            errors.append(str(exc))
            continue
        try:
            # a process killed mid-call may have left its call up on this modem (the same
            # clean-up `serve` and `campaign run` do when they open their lines)
            await opened.driver.clear_left_call()
            health = await opened.driver.health()
        except BaseException:
            await opened.close()
            raise
        if opened.audio is None:
            errors.append(f"{mc.name}: no audio path configured")
        elif not health.registration.registered:
            errors.append(f"{mc.name}: not registered ({health.registration.value})")
        else:
            return opened
        await opened.close()
    raise UserError("no modem ready: " + "; ".join(errors))
