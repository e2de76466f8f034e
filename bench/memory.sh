#!/usr/bin/env bash
# Memory held by large results: a 30-query dashboard on the demo warehouse whose queries each
# return ROWS rows of ~1 KB (default 5000: ~5 MB of JSON each, over the default 4 MiB result
# cap; 3500 gives ~3.6 MB each, under it). Reads the dashboard's data twice, then deletes the
# dashboard, printing the server's resident memory (RSS) after each step, the response's
# size and how many queries were served or refused.
#
#   bench/memory.sh [rows=5000]
#
# BRIDGE_BIN names the bridge binary (default: target/release/bridge, built here), so that
# two builds can be compared side by side. Needs a Postgres at $BENCH_DATABASE_URL (admin
# URL; default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
rows="${1:-5000}"
. bench/lib.sh
start_bridge memory

python3 - "$base" "$token" "$reader_url" "$rows" "$pid" <<'PY'
import json, sys, time, urllib.request
base, token, url, rows, pid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def rss_mib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(base + path, method=method, data=None if body is None else body.encode(),
                                 headers={"Authorization": "Bearer " + token, "Content-Type": ctype})
    with urllib.request.urlopen(req) as r:
        raw = r.read()
        return json.loads(raw or b"null"), len(raw)
team = call("POST", "/v1/teams", json.dumps({"name": "Bench"}))[0]["id"]
conn = call("POST", f"/v1/teams/{team}/connections", json.dumps({"name": "Demo", "warehouse_type": "postgres", "credentials": {"url": url}}))[0]["id"]
call("POST", f"/v1/connections/{conn}/validate")
scan = call("POST", f"/v1/connections/{conn}/scan")[0]
while scan["status"] == "running":
    time.sleep(0.05)
    scan = call("GET", f"/v1/connections/{conn}/scans/{scan['scan_id']}")[0]
queries = "".join(
    f"  - id: q{i}\n    sql: SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, {rows + i}) AS g\n"
    for i in range(30))
yaml = (f"version: 1\nkind: dashboard\nslug: oversized\ntitle: Oversized\nconnection: {conn}\nqueries:\n{queries}"
        "layout:\n  - { id: t, type: table, query: q0, position: { x: 0, y: 0, w: 12, h: 4 } }\n")
call("POST", f"/v1/teams/{team}/dashboards", yaml, "application/yaml")
print(f"rows per query {rows} (~{rows * 1.03 / 1024:.1f} MiB of JSON each), 30 queries")
print(f"RSS before any read: {rss_mib():.0f} MiB")
for n in (1, 2):
    t = time.perf_counter()
    body, size = call("GET", "/v1/dashboards/oversized/data")
    wall = time.perf_counter() - t
    served = sum(1 for q in body["queries"].values() if "rows" in q)
    codes = {}
    for q in body["queries"].values():
        if "error" in q:
            codes[q["error"]["code"]] = codes.get(q["error"]["code"], 0) + 1
    print(f"read {n}: {size / 1048576:.1f} MiB response in {wall:.1f} s; {served} served, refused {codes or 'none'}; RSS {rss_mib():.0f} MiB")
call("DELETE", "/v1/dashboards/oversized")
time.sleep(1)
print(f"RSS after deleting the dashboard: {rss_mib():.0f} MiB")
PY
