#!/bin/sh
# A cron job that phones the on-call group when the nightly backup fails (crontab line):
#
#   30 2 * * *  /usr/local/bin/backup.sh || /opt/modem-dialer/.venv/bin/modem-dialer --config /etc/modem-dialer/config.yaml alert --to oncall --dedup-key backup-$(date +\%F) --say "Nightly backup failed on $(hostname)"
#
# Or without the CLI, straight to the API (token in a root-only file):
#
#   30 2 * * *  /usr/local/bin/backup.sh || curl -fsS -H "Authorization: Bearer $(cat /etc/modem-dialer/token)" -H 'Content-Type: application/json' -d '{"to":"oncall","text":"Nightly backup failed","dedup_key":"backup"}' http://127.0.0.1:8737/v1/alerts
/usr/local/bin/backup.sh || exec /opt/modem-dialer/.venv/bin/modem-dialer alert --to oncall --dedup-key "backup-$(date +%F)" --say "Nightly backup failed on $(hostname)"
