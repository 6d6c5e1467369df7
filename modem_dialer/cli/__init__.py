"""The ``modem-dialer`` command line.

One module per group of commands (``cli/modems.py``, ``cli/call.py`` …); each registers
its commands on :data:`main` when imported at the bottom of this file.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable

import click

from ..at.errors import ATError
from ..errors import UserError


def run_command(fn: Callable) -> Callable:
    """Turn user mistakes into one line on stderr and exit 1 — never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            click.echo(f"modem-dialer: {exc}", err=True)
            sys.exit(1)
        except ATError as exc:
            # a modem that is missing, busy or silent: its port is in the message
            click.echo(f"modem-dialer: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("modem-dialer: interrupted", err=True)
            sys.exit(130)
    return wrapper


@click.group()
@click.option("--config", "config_path", metavar="PATH", help="config file (default $MODEM_DIALER_CONFIG or ./config.yaml)")
@click.option("-v", "--verbose", count=True, help="more logging to stderr (-vv for AT traffic)")
@click.version_option(package_name="modem-dialer")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """Automated calls through a bank of USB GSM/LTE modems."""
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def load(ctx: click.Context):
    from ..config import load_config

    return load_config(ctx.obj.get("config_path"))


# Register the command modules (imported for their side effect on ``main``).
from . import alert as _alert  # noqa: E402,F401
from . import box as _box  # noqa: E402,F401
from . import call as _call  # noqa: E402,F401
from . import campaign as _campaign  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import flow as _flow  # noqa: E402,F401
from . import modems as _modems  # noqa: E402,F401
from . import oncall as _oncall  # noqa: E402,F401
from . import service as _service  # noqa: E402,F401
from . import simctl as _simctl  # noqa: E402,F401
from . import sms as _sms  # noqa: E402,F401
