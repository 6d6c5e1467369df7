#!/bin/sh
# Zabbix media type "Script" for modem-dialer.
# Install: copy to the AlertScriptsPath of zabbix_server.conf, chmod 755, then create a media
# type of type Script named modem-dialer with script name zabbix-modem-dialer.sh and the
# parameters {ALERT.SENDTO}, {ALERT.SUBJECT}, {ALERT.MESSAGE}, {EVENT.ID}.
# Give users a media of this type whose "Send to" is a number or a person/group name.
# Recovery messages (subject starting with "Resolved") resolve the alert instead of calling.
set -eu
SENDTO="$1"
SUBJECT="$2"
MESSAGE="${3:-}"
EVENT_ID="${4:-unknown}"
: "${MODEM_DIALER:=/opt/modem-dialer/.venv/bin/modem-dialer}"
: "${MODEM_DIALER_CONFIG:=/etc/modem-dialer/config.yaml}"
: "${MODEM_DIALER_URL:=http://127.0.0.1:8737}"
export MODEM_DIALER_CONFIG

case "$SUBJECT" in
  Resolved*|OK:*)
    "$MODEM_DIALER" alert resolve --key "zabbix:$EVENT_ID"
    exit 0 ;;
esac

# Zabbix waits for the script (30 s default Timeout): do not --wait here, the service escalates.
exec "$MODEM_DIALER" alert --to "$SENDTO" --dedup-key "zabbix:$EVENT_ID" --say "$SUBJECT. $MESSAGE"
