#!/usr/bin/env bash
# Starts the brokers the cluster tests use, if they are not already up:
# NATS with JetStream on 127.0.0.1:4222 and Redis on 127.0.0.1:6379
# (this project's machines start both before any work; a fresh machine
# elsewhere gets them here). Installs nats-server / redis-server with apt if
# missing. Leaves running brokers alone.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "installing $2 (apt)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2") >/dev/null
  fi
}

wait_for() {
  for _ in $(seq 1 100); do
    up "$1" && return 0
    sleep 0.1
  done
  echo "$2 did not come up on 127.0.0.1:$1" >&2
  return 1
}

if ! up 6379; then
  need redis-server redis-server
  redis-server --port 6379 --bind 127.0.0.1 --daemonize yes --save "" --appendonly no >/dev/null
  wait_for 6379 redis-server
  echo "started redis-server on 127.0.0.1:6379"
fi

if ! up 4222; then
  need nats-server nats-server
  dir="${TMPDIR:-/tmp}/fanout-nats-js"
  mkdir -p "$dir"
  nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$dir" >"$dir/nats.log" 2>&1 &
  wait_for 4222 nats-server
  echo "started nats-server (JetStream) on 127.0.0.1:4222"
fi
