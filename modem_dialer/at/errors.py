"""Typed errors of the AT channel."""

from __future__ import annotations


class ATError(Exception):
    """Base class: anything that went wrong with one AT command or the port."""

    def __init__(self, message: str, *, port: str | None = None, command: str | None = None) -> None:
        super().__init__(message)
        self.port = port
        self.command = command


class ATCommandError(ATError):
    """The modem answered with a final result other than OK (ERROR, BUSY, NO CARRIER …)."""

    def __init__(self, final: str, *, port: str | None = None, command: str | None = None,
                 lines: list[str] | None = None) -> None:
        super().__init__(f"{command or 'command'} failed: {final}", port=port, command=command)
        self.final = final
        self.lines = lines or []


class CMEError(ATCommandError):
    """``+CME ERROR: <n|text>`` — mobile equipment error (SIM, network …)."""

    @property
    def detail(self) -> str:
        return self.final.split(":", 1)[1].strip()


class CMSError(ATCommandError):
    """``+CMS ERROR: <n>`` — SMS error."""

    @property
    def detail(self) -> str:
        return self.final.split(":", 1)[1].strip()


class NotSupported(ATCommandError):
    """Huawei's ``COMMAND NOT SUPPORT``."""


class CommandTimeout(ATError):
    """No final result within the command's timeout."""


class PortLost(ATError):
    """The port went away (USB unplug, reset) or was closed."""


class PortOpenError(ATError):
    """The port could not be opened (missing, busy, permission)."""
