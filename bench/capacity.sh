#!/usr/bin/env bash
# A scheduled precompute of many dashboards against a simulated BigQuery, through the real
# Serving code (functions/precompute/benches/capacity.rs), on the Postgres of this machine:
# wall time, dashboards/s, peak Postgres connections (pg_stat_activity sampled every 50 ms)
# and the warehouse's peak running and queued queries. docs/capacity.md reads its figures.
#
#   bench/capacity.sh [fanout|tick|both]     (default: both)
#
# Knobs (environment), with their defaults:
#   CAPACITY_DASHBOARDS=10000     dashboards due (tick mode: TICK_DASHBOARDS=500, since one
#                                 instance at today's parallelism warms ~2.5 dashboards/s)
#   CAPACITY_QUERIES=3            independent queries per dashboard
#   CAPACITY_INSTANCES=20         function instances (fanout), each its own pool and caches
#   CAPACITY_PER_INSTANCE=4       dashboards each instance warms at once (WARM_PARALLELISM)
#   CAPACITY_POOL=2               DATABASE_POOL_SIZE of each instance
#   CAPACITY_SLOTS=100            warehouse queries running at once (the rest queue)
#   CAPACITY_LATENCY_MS=300-2000  latency of one warehouse query, uniform
#
# Needs a Postgres at 127.0.0.1:5432 (or BRIDGE_TEST_DATABASE_URL), as the tests do.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-both}"

run() {
  echo "==> $*"
  env "$@" cargo bench --locked -q -p precompute --bench capacity 2>&1 | grep -v '^\s*$'
}

if [ "$what" = fanout ] || [ "$what" = both ]; then
  run CAPACITY_MODE=fanout
fi
if [ "$what" = tick ] || [ "$what" = both ]; then
  run CAPACITY_MODE=tick CAPACITY_DASHBOARDS="${TICK_DASHBOARDS:-500}"
fi
