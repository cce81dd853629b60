#!/usr/bin/env bash
# Makes sure the services the integration tests use are installed and running:
# PostgreSQL, Redis, NATS (JetStream), RabbitMQ and memcached. Idempotent; safe to run often.
set -uo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 0.5; done; echo "warning: port $1 still closed" >&2; }

if ! up 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  wait_up 5432
fi
if ! up 6379 && command -v redis-server >/dev/null; then
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
  wait_up 6379
fi
if ! up 4222 && [ -x /usr/sbin/nats-server ]; then
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  wait_up 4222
fi
if ! up 5672 && command -v rabbitmq-server >/dev/null; then
  rabbitmq-server -detached || true
  wait_up 5672
fi
if ! command -v memcached >/dev/null; then
  echo "== installing memcached"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq memcached) >/dev/null || echo "warning: memcached install failed" >&2
fi
if ! up 11211 && command -v memcached >/dev/null; then
  memcached -d -u root -l 127.0.0.1 -p 11211 || true
  wait_up 11211
fi
exit 0
