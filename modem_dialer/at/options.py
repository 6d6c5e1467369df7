"""What the AT layer needs to open a modem's port: the ``port`` and ``baudrate`` keys of a
``modems:`` entry of config.yaml (``modems.options.ModemConfig`` extends it).

The AT layer knows nothing else of the config file: no alerting, campaign or IVR section
is loaded to open a serial port (tests/test_rooms_layers.py).
"""

from __future__ import annotations

from ..yamlfile import Strict


class SerialOptions(Strict):
    port: str                # the AT tty, e.g. /dev/gsm/gsm0-at
    baudrate: int = 115200
