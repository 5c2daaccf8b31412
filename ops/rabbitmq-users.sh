#!/usr/bin/env bash
# RabbitMQ users for a distributed TracSeq ML platform: one per process kind
# (tracseq_api, tracseq_scheduler, tracseq_worker), each limited to the
# platform's own exchanges and queues (`<prefix>.jobs*`) on one vhost, with no
# management tags. Run on the broker host as an operator who may use
# rabbitmqctl:
#   TRACSEQ_API_AMQP_PASSWORD=... TRACSEQ_SCHEDULER_AMQP_PASSWORD=... \
#   TRACSEQ_WORKER_AMQP_PASSWORD=... bash ops/rabbitmq-users.sh [vhost] [prefix]
# (defaults: vhost /, prefix tracseq; the prefix is distributed.amqp_prefix).
# Then set each process's AMQP_URL to amqp://tracseq_<kind>:<password>@host/<vhost>.
#
# Why the three users share one permission set: every process re-declares the
# topology on each channel it opens (so a broker that lost its definitions
# heals), and RabbitMQ authorises declaring and binding as configure, write
# and read on those names. What separates them is the credential: a leaked
# worker password can be revoked alone, and none of them reaches anything
# outside the prefix (other applications' queues, the management API).
# Re-running is safe: it updates passwords and permissions.
set -euo pipefail
vhost="${1:-/}"
prefix="${2:-tracseq}"
case "$prefix" in
  *[!A-Za-z0-9_-]*|'') echo "prefix must be letters, digits, '_' or '-'" >&2; exit 2 ;;
esac
names="^${prefix}\\.jobs(\\..*)?\$"
for kind in api scheduler worker; do
  var="TRACSEQ_$(echo "$kind" | tr '[:lower:]' '[:upper:]')_AMQP_PASSWORD"
  password="${!var:-}"
  [ -n "$password" ] || { echo "$var is not set" >&2; exit 2; }
  user="tracseq_$kind"
  if rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$user"; then
    printf '%s' "$password" | rabbitmqctl -q change_password "$user" >/dev/null
  else
    printf '%s' "$password" | rabbitmqctl -q add_user "$user" >/dev/null
  fi
  rabbitmqctl -q set_user_tags "$user"
  rabbitmqctl -q set_permissions -p "$vhost" "$user" "$names" "$names" "$names"
  echo "$user: configure, write and read on $names in vhost $vhost"
done
