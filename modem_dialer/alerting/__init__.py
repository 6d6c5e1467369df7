"""Alerting: people, escalation policies, on-call schedules, SMS in and out, acknowledgements.

A peer of ``campaign/`` above the call layer; the service (``service/``) hosts it: it owns
the modem bank this package borrows lines from (``alerting/lines.py`` says what it needs of
it), the HTTP API and the console.
"""
