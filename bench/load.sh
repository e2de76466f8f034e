#!/usr/bin/env bash
# Requests per second and latency of GET /v1/teams/{id} on the `teams` binary (release),
# under wrk, against the local Postgres. Everything runs on this machine, so wrk, Bridge
# and Postgres share its cores: the figure is a floor, not a ceiling.
#
#   bench/load.sh [seconds=20] [connections=32]
#
# Needs: wrk (apt-get install wrk), a Postgres at $BENCH_DATABASE_URL (admin URL; default
# postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
conns="${2:-32}"
admin="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="bridge_bench"
url="${admin%/*}/$db"

cargo build --release --locked -p teams -p bridge >/dev/null
psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
export DATABASE_URL="$url" BRIDGE_DEV_JWT_SECRET="bench-$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
target/release/bridge migrate >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PORT=$port RUST_LOG="${RUST_LOG:-info}" target/release/teams >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.05; done

token=$(target/release/bridge token --email bench@example.com)
team=$(curl -sf -X POST "http://127.0.0.1:$port/v1/teams" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"name":"Bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
target="http://127.0.0.1:$port/v1/teams/$team"
curl -sf "$target" -H "Authorization: Bearer $token" >/dev/null

echo "GET /v1/teams/{id}: wrk -t2 -c$conns -d${secs}s (RUST_LOG=${RUST_LOG:-info}, pool ${DATABASE_POOL_SIZE:-8})"
wrk -t2 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" "$target" \
  | grep -E "Requests/sec|Latency|50%|90%|99%|requests in|Non-2xx"
echo "RSS after load: $(awk '/VmRSS/{print $2/1024 " MiB"}' /proc/$pid/status)"
