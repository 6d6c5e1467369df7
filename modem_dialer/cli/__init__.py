"""The ``modem-dialer`` command line.

One module per group of commands (``cli/modems.py``, ``cli/call.py`` …); each registers
its commands on :data:`main` when imported at the bottom of this file.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TextIO

import click

from ..at.errors import ATError
from ..errors import UserError
from ..files import open_private

# Exit codes shared by every command (docs/exit-codes.md has the full table): 1 is an error
# the user can fix, 64 (BSD sysexits' EX_USAGE) a command line click could not parse, so
# that 2 keeps the one meaning each command gives it (`call`: not answered…).
EX_ERROR = 1
EX_USAGE = 64
EX_INTERRUPTED = 130


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
            sys.exit(EX_INTERRUPTED)
    return wrapper


def describe_os_error(exc: OSError) -> str:
    """``path: reason`` for a file the system refused (missing folder, permissions, disk full)."""
    reason = exc.strerror or str(exc)
    if exc.filename is not None and exc.filename2 is not None:
        return f"{exc.filename} -> {exc.filename2}: {reason}"
    if exc.filename is not None:
        return f"{exc.filename}: {reason}"
    return reason


def _fail(message: str) -> NoReturn:
    click.echo(f"modem-dialer: {message}", err=True)
    sys.exit(EX_ERROR)


def _usage(exc: click.UsageError) -> NoReturn:
    exc.show()                       # click's own message: usage line, hint, the bad option and value
    raise click.exceptions.Exit(EX_USAGE)


class DialerGroup(click.Group):
    """The top-level group: the last safety net under every command.

    Click's usage errors exit with EX_USAGE instead of click's 2; an OSError or a
    UnicodeError that no command turned into a UserError is still one line, never a
    traceback (commands should name the file themselves where they know it better).
    """

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            _usage(exc)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:          # a subcommand's options, an unknown command
            _usage(exc)
        except BrokenPipeError:                  # `modem-dialer report x | head`: click handles it
            raise
        except OSError as exc:
            _fail(describe_os_error(exc))
        except UnicodeError as exc:
            _fail(f"not readable as text ({exc.__class__.__name__}: {exc.reason}); "
                  "save the file as UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc))


@click.group(cls=DialerGroup)
@click.option("--config", "config_path", metavar="PATH", help="config file (default $MODEM_DIALER_CONFIG or ./config.yaml)")
@click.option("-v", "--verbose", count=True, help="more logging to stderr (-vv for AT traffic)")
@click.version_option(package_name="modem-dialer")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """Automated calls through a bank of USB GSM/LTE modems."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    ctx.ensure_object(dict)
    ctx.obj["log_handler"] = handler
    use_log_handler(ctx, handler, logging.WARNING - 10 * min(verbose, 2))
    ctx.obj["config_path"] = config_path


def use_log_handler(ctx: click.Context, handler: logging.Handler, level: int,
                    replace: logging.Handler | None = None) -> None:
    """Log to ``handler`` at ``level`` (instead of ``replace``) for this command only.

    The root logger is the process's: a command run in-process (the tests run most commands
    through click's runner, one after the other) must not leave its handler — bound to that
    run's stderr — or its level behind for the next one."""
    root = logging.getLogger()
    old_level = root.level
    if replace is not None:
        root.removeHandler(replace)
    root.addHandler(handler)
    root.setLevel(level)

    def restore() -> None:
        root.removeHandler(handler)
        root.setLevel(old_level)
    ctx.call_on_close(restore)


def logger_level_for_command(name: str, level: int) -> None:
    """Set logger ``name`` to ``level`` until the running command ends (see use_log_handler)."""
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(level)
    click.get_current_context().call_on_close(lambda: logger.setLevel(old))


def load(ctx: click.Context):
    from ..config import load_config
    from ..store.boxes import set_this_box

    loaded = load_config(ctx.obj.get("config_path"))
    set_this_box(loaded.config.box)      # the box every row this process writes records
    return loaded


def open_database(ctx: click.Context):
    """The journal database the config names (opened, migrated)."""
    from ..store import open_db

    return open_db(load(ctx).database_path)


@contextlib.contextmanager
def writing(output: str | None) -> Iterator[TextIO]:
    """stdout, or ``output`` created 0600; a failed write (disk full, EIO) names the file."""
    try:
        if output is None:
            yield sys.stdout
            return
        with open_private(output) as out:
            yield out
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise UserError(f"{output or 'stdout'}: cannot write: {exc.strerror or exc}") from None


# Register the command modules (imported for their side effect on ``main``). Every command
# process imports them all, so they import at module level only what option declarations
# need: asyncio, yaml, numpy and the layers below come inside the commands that use them
# (`--help` or `campaign status` paid ~0.1 s of CPU for asyncio alone, issue 15).
from . import alert as _alert  # noqa: E402,F401
from . import box as _box  # noqa: E402,F401
from . import call as _call  # noqa: E402,F401
from . import campaign as _campaign  # noqa: E402,F401
from . import compliance as _compliance  # noqa: E402,F401
from . import db as _db  # noqa: E402,F401
from . import demo as _demo  # noqa: E402,F401
from . import flow as _flow  # noqa: E402,F401
from . import modems as _modems  # noqa: E402,F401
from . import oncall as _oncall  # noqa: E402,F401
from . import service as _service  # noqa: E402,F401
from . import simctl as _simctl  # noqa: E402,F401
from . import sms as _sms  # noqa: E402,F401
