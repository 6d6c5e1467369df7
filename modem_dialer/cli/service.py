"""``modem-dialer serve``: the resident service (modem bank, alert runner, HTTP API)."""

from __future__ import annotations

import asyncio
import logging

import click

from . import load, main, run_command


@main.command()
@click.option("--listen", help="address of the HTTP API (default alerting.api.listen, 127.0.0.1)")
@click.option("--port", type=click.IntRange(0, 65535), help="port of the HTTP API (default alerting.api.port, 8737)")
@click.option("--log-format", type=click.Choice(["json", "text"]), default="json", show_default=True,
              help="json: one object per line (journald-friendly)")
@click.pass_context
@run_command
def serve(ctx: click.Context, listen: str | None, port: int | None, log_format: str) -> None:
    """Run the service: own the modems, run alerts, serve the API until SIGTERM."""
    from ..service.logs import setup_logging
    from ..service.service import Service

    setup_logging(logging.DEBUG if logging.getLogger().level <= logging.DEBUG else logging.INFO, log_format)
    loaded = load(ctx)
    if not loaded.config.modems:
        click.echo("modem-dialer: warning: no modems in the config; alerts will wait for one", err=True)
    asyncio.run(Service(loaded, host=listen, port=port).run_forever())
