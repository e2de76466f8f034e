#!/usr/bin/env bash
# Bridge's chat stream (POST /v1/chat/sessions/{id}/stream) as an LLM relay, against the
# shared relay-bench's fake upstream (its README has the LiteLLM baseline): added TTFT and
# total time over the direct path at the same load, Bridge's (and Postgres') CPU-seconds
# per 1,000 content chunks, Bridge's RSS, Postgres writes per 1,000 tokens, at 1, 10 and 100
# concurrent streams (one session per virtual client: a session runs one stream at a time);
# then the events and tokens per second one run of RELAY_EVENTS_CHUNKS chunks sustains.
#
#   bench/relay.sh [concurrencies=1,10,100]
#
# RELAY_BENCH_DIR: the relay-bench (default ../shared/relay-bench, relative to the repo).
# DURATION (20) and LOAD_WARMUP (3) seconds per phase; CHUNKS (200) per answer;
# LAT_DELAY_MS (5) between upstream chunks, and each concurrency again at 0 ms unless
# UNPACED=0; RELAY_EVENTS_CHUNKS (50000: the answer is kept as one message, at most
# 512 KiB as JSON). DATABASE_POOL_SIZE (default here 32; Bridge's own default is 8).
# BRIDGE_BIN and BENCH_DATABASE_URL as for the other scripts (bench/lib.sh).
# The load generator (bench/relay.py; the relay-bench's bench.py takes one URL, so one
# session) runs in a venv (RELAY_VENV, default $TMPDIR/relay-bench-venv) with uvloop pinned
# as in the relay-bench's requirements.lock (plain asyncio if it cannot be installed).
# Generator, fake upstream, Bridge and Postgres share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
concs="${1:-1,10,100}"
rb=$(cd "${RELAY_BENCH_DIR:-../shared/relay-bench}" && pwd)
venv="${RELAY_VENV:-${TMPDIR:-/tmp}/relay-bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$(grep -i '^uvloop==' "$rb/requirements.lock")" ||
    echo "uvloop not installed: the load generator runs on plain asyncio" >&2
fi
chunks="${CHUNKS:-200}"
events_chunks="${RELAY_EVENTS_CHUNKS:-50000}"
up_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

# Bridge's provider: the fake upstream (started by relay.py on $up_port), limits out of the way.
export LLM_PROVIDER=openai OPENAI_BASE_URL="http://127.0.0.1:$up_port/v1" OPENAI_MODEL=fake
export LLM_MAX_TOKENS=$(( events_chunks > 4096 ? (events_chunks > 128000 ? 128000 : events_chunks) : 4096 ))
export CHAT_MAX_RUN_TOKENS=100000000 CHAT_MAX_RUN_SECS=3600 LLM_BREAKER_FAILURES=1000000
export DATABASE_POOL_SIZE="${DATABASE_POOL_SIZE:-32}"
. bench/lib.sh
start_bridge relay
echo "bridge $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo +changes), pool $DATABASE_POOL_SIZE, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$venv/bin/python" bench/relay.py --base "$base" --token "$token" --pid "$pid" \
  --bench-dir "$rb" --upstream-port "$up_port" --logs "$dir" --concs "$concs" \
  --duration "${DURATION:-20}" --warmup "${LOAD_WARMUP:-3}" --chunks "$chunks" \
  --delay-ms "${LAT_DELAY_MS:-5}" --unpaced "${UNPACED:-1}" --events-chunks "$events_chunks"
grep -v '"level":"WARN"' "$dir/serve.log" | grep -m5 -i error || true
