"""The operator console (docs/console.md): web pages served by ``serve`` on the API's port."""

from .app import is_console_path, mount

__all__ = ["is_console_path", "mount"]
