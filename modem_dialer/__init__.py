"""modem-dialer: an asyncio controller for a bank of USB GSM/LTE modems."""

__version__ = "0.1.0"
