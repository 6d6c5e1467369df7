"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (config, file, number, option).

    The CLI prints ``str(error)`` on one line and exits 1. The message must name
    the culprit: file and line, key, value, port.
    """
