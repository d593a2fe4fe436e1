#!/bin/sh
# Creates deploy/secrets/* for docker compose: random NATS passwords, the
# operations token and the webhook signing secret; asks for the Partner
# Center client secret, refresh token and the webhook URL. Existing files are
# kept. The directory is 0700 (only you reach it on the host); the files are
# 0644 because compose bind-mounts them into containers that run as 65532.
set -eu
cd "$(dirname "$0")"
chmod 0700 .
random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
put() { # name value
	[ -e "$1" ] && { echo "keeping $1"; return; }
	printf '%s' "$2" > "$1" && chmod 0644 "$1" && echo "wrote $1"
}
ask() { # name prompt
	[ -e "$1" ] && { echo "keeping $1"; return; }
	printf '%s: ' "$2" >&2
	stty -echo 2>/dev/null || true; read -r v; stty echo 2>/dev/null || true; echo >&2
	put "$1" "$v"
}
put nats_watcher_password "$(random)"
put nats_notifier_password "$(random)"
put ops_token "$(random)"
put webhook_secret "whsec_$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
ask pc_client_secret "Entra application client secret"
ask pc_refresh_token "Partner Center refresh token (App+User consent, README)"
ask webhook_url "webhook URL the notifier posts to (https://...)"
