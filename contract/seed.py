"""Seeds a running Bridge for the schemathesis pass (scripts/check-contract): a team, the
demo warehouse connected, validated and scanned, and the revenue dashboard on it. Prints
`NAME=value` lines (TEAM, CONNECTION, DATASET, TABLE, SLUG) for contract/schemathesis.toml.
Usage: seed.py BASE_URL TOKEN DEMO_URL"""

import json
import pathlib
import sys
import time
import urllib.request

base, token, demo_url = sys.argv[1:4]


def call(method, path, body=None, content_type="application/json"):
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.load(resp)


team = call("POST", "/v1/teams", {"name": "Contract"})["id"]
connection = call(
    "POST",
    f"/v1/teams/{team}/connections",
    {"name": "Demo warehouse", "warehouse_type": "postgres", "credentials": {"url": demo_url}},
)["id"]
outcome = call("POST", f"/v1/connections/{connection}/validate")["outcome"]
assert outcome == "validated", outcome
scan = call("POST", f"/v1/connections/{connection}/scan")["scan_id"]
for _ in range(600):
    status = call("GET", f"/v1/connections/{connection}/scans/{scan}")["status"]
    if status != "running":
        break
    time.sleep(0.1)
assert status == "succeeded", status
dataset = call("GET", f"/v1/connections/{connection}/datasets")["datasets"][0]["id"]
table = call("GET", f"/v1/datasets/{dataset}/tables")["tables"][0]["id"]
root = pathlib.Path(__file__).resolve().parent.parent
yaml = (root / "samplefiles/dashboards/revenue-overview.yaml").read_text()
yaml = yaml.replace("00000000-0000-4000-8000-000000000001", connection)
slug = call("POST", f"/v1/teams/{team}/dashboards", yaml, "application/yaml")["slug"]
call("GET", f"/v1/dashboards/{slug}/data")
for name, value in [("TEAM", team), ("CONNECTION", connection), ("DATASET", dataset), ("TABLE", table), ("SLUG", slug)]:
    print(f"{name}={value}")
