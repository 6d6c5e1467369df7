"""``modem-dialer serve``: the resident service (modem bank, alert runner, HTTP API)."""

from __future__ import annotations

import logging

import click

from . import load, logger_level_for_command, main, run_command, use_log_handler


@main.command()
@click.option("--listen", help="address of the HTTP API (default alerting.api.listen, 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), help="port of the HTTP API (default alerting.api.port, 8737)")
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True,
              help="json: one object per line (journald-friendly)")
@click.pass_context
@run_command
def serve(ctx: click.Context, listen: str | None, port: int | None, log_format: str) -> None:
    """Run the service: own the modems, run alerts, serve the API until SIGTERM."""
    import asyncio
    import contextlib
    import faulthandler
    import signal
    import sys
    import threading

    from ..service.logs import log_handler
    from ..service.service import Service

    level = logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.INFO
    # the service's own format replaces main()'s handler, for this command only
    use_log_handler(ctx, log_handler(log_format), level, replace=ctx.obj.get("log_handler"))
    logger_level_for_command("aiohttp.access", logging.WARNING)   # no line per HTTP request
    loaded = load(ctx)
    if not loaded.config.modems:
        click.echo("modem-dialer: warning: no modems in the config; alerts will wait for one", err=True)
    # an operator aid (docs/exit-codes.md): `kill -USR1 PID` writes every thread's stack to
    # stderr, even when the event loop is stuck (a stop that hangs says where). Only as the
    # process's own command: run in-process (the tests) stderr may have no file descriptor
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(AttributeError, OSError, ValueError):
            faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)
    asyncio.run(Service(loaded, host=listen, port=port).run_forever())
