#!/usr/bin/env bash
# Runs every fact of demo.jsonl on a database holding the demo warehouse and prints
# "<id> | <fact name> | <rows>". Fails when a line is not JSON, a query errors, or a
# fact returns no rows or more than 400. Arguments go to psql, e.g.
#   samplefiles/evals/check.sh -h 127.0.0.1 -U postgres -d evals_scratch
set -euo pipefail
cd "$(dirname "$0")"
python3 - "$@" <<'PY'
import json, subprocess, sys
bad = 0
for n, line in enumerate(open("demo.jsonl"), 1):
    rec = json.loads(line)
    for fact in rec["facts"]:
        sql = "SELECT count(*) FROM (" + fact["sql"] + ") AS fact"
        out = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", *sys.argv[1:], "-c", sql],
                             capture_output=True, text=True)
        rows = int(out.stdout) if out.returncode == 0 else -1
        ok = 1 <= rows <= 400
        bad += not ok
        print(f"{rec['id']} | {fact['name']} | {rows if rows >= 0 else out.stderr.strip()}{'' if ok else '  <-- FAIL'}")
sys.exit(1 if bad else 0)
PY
