#!/usr/bin/env python3
"""Load generator of bench/relay.sh: Bridge's chat stream as an LLM relay, against the
shared relay-bench's fake upstream (direct path: the same load on its /v1/chat/completions).

bench.py of the relay-bench takes one RELAY_URL, and a Bridge session runs one stream at a
time (409), so here every virtual client streams over its own session. The relay-bench's
pieces are reused: fake_upstream.py, and bench.py's Target (request bytes), /proc readers
and process handling. Its client counts any event holding "Zq" as content; Bridge's `run`
event carries a random replay token that holds "Zq" about once in a hundred, so this client
counts only `token` events (or events without a name: the direct path).

Per phase (streams C, upstream delay D ms): C keep-alive clients stream for LOAD_WARMUP +
DURATION seconds; in the measured window, TTFT (request write -> first content event) and
total time of each request started in it, content chunks (the Zq<i> markers: Bridge
coalesces deltas into 50 ms windows after the first), CPU seconds of Bridge, the upstream,
Postgres (the postmaster's process tree: every database on it) and this generator, and the
machine's busy/steal cores. Over the whole phase: Bridge's rows in chat_run_events and all
row writes (pg_stat_user_tables) per 1,000 tokens relayed.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

MARK = b"Zq"


def ms(xs, q=None):
    if not xs:
        return float("nan")
    return statistics.median(xs) if q is None else bench.pct(xs, q)


class Client:
    """One keep-alive HTTP/1.1 connection doing streamed POSTs (after bench.py's Conn)."""

    def __init__(self, host, port, req):
        self.host, self.port, self.req = host, port, req
        self.r = self.w = None

    def close(self):
        if self.w is not None:
            try:
                self.w.close()
            except Exception:
                pass
        self.r = self.w = None

    async def stream(self, on_tokens=None):
        if self.w is None:
            self.r, self.w = await asyncio.open_connection(self.host, self.port)
        r = self.r
        t0 = time.perf_counter()
        self.w.write(self.req)
        buf = b""
        while (i := buf.find(b"\r\n\r\n")) < 0:
            d = await r.read(65536)
            if not d:
                self.close()
                raise ConnectionError("closed before the response head")
            buf += d
        head, buf = buf[:i].decode("latin-1"), buf[i + 4:]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdr = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        chunked = "chunked" in hdr.get("transfer-encoding", "").lower()
        clen = int(hdr["content-length"]) if "content-length" in hdr else None
        keep = hdr.get("connection", "").lower() != "close" and (chunked or clen is not None)
        res = {"status": status, "t0": t0, "ttft": None, "tlast": None, "events": 0,
               "content": 0, "tokens": 0, "done": False, "error": None}
        pending = b""
        body = []

        def feed(piece):
            nonlocal pending
            if status != 200:
                body.append(piece)
                return
            pending += piece
            if b"\r" in pending:
                pending = pending.replace(b"\r\n", b"\n")
            if b"\n\n" not in pending:
                return
            evs = pending.split(b"\n\n")
            pending = evs.pop()
            for ev in evs:
                if not ev:
                    continue
                res["events"] += 1
                named = b"event:" in ev
                n = ev.count(MARK)
                if n and (not named or b"event: token" in ev or b"event:token" in ev):
                    now = time.perf_counter() - t0
                    if res["ttft"] is None:
                        res["ttft"] = now
                    res["tlast"] = now
                    res["content"] += 1
                    res["tokens"] += n
                    if on_tokens is not None:
                        on_tokens(n)
                elif b"[DONE]" in ev or b"event: complete" in ev:
                    res["done"] = True
                elif b"event: error" in ev:
                    res["error"] = ev[:300].decode("utf-8", "replace")

        async def more():
            d = await r.read(65536)
            if not d:
                self.close()
                raise ConnectionError("closed in the body")
            return d

        if chunked:
            while True:
                while (j := buf.find(b"\r\n")) < 0:
                    buf += await more()
                size = int(buf[:j].split(b";")[0], 16)
                buf = buf[j + 2:]
                if size == 0:
                    while True:
                        j = buf.find(b"\r\n")
                        if j >= 0:
                            line, buf = buf[:j], buf[j + 2:]
                            if not line:
                                break
                            continue
                        buf += await more()
                    break
                while len(buf) < size + 2:
                    buf += await more()
                feed(buf[:size])
                buf = buf[size + 2:]
        elif clen is not None:
            got = len(buf)
            feed(buf)
            while got < clen:
                d = await more()
                got += len(d)
                feed(d)
        else:
            feed(buf)
            while True:
                d = await r.read(65536)
                if not d:
                    break
                feed(d)
            keep = False
        if pending.strip():
            feed(b"\n\n")
        res["total"] = time.perf_counter() - t0
        if not keep:
            self.close()
        if status != 200:
            res["error"] = "HTTP %d: %s" % (status, b"".join(body)[:300].decode("utf-8", "replace"))
        return res


def call(base, token, method, path, obj=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if obj is None else json.dumps(obj).encode(),
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def sql(query):
    """One query on Bridge's database ($DATABASE_URL), rows as lists of strings."""
    out = subprocess.run(["psql", os.environ["DATABASE_URL"], "-XAtF", "\t", "-c", query],
                         check=True, capture_output=True, text=True).stdout
    return [ln.split("\t") for ln in out.splitlines() if ln]


def postmaster_pid():
    try:
        data = sql("SELECT setting FROM pg_settings WHERE name = 'data_directory'")[0][0]
        with open(os.path.join(data, "postmaster.pid")) as f:
            pid = int(f.readline())
        bench._stat(pid)
        return pid
    except Exception:
        return None  # not local, or not readable: Postgres CPU is not reported


def db_writes():
    """Rows inserted/updated/deleted per table of Bridge's database (statistics may lag a
    backend's last transactions by up to ~10 s: PG flushes an idle backend's counters then)."""
    rows = sql("SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables")
    return {name: int(n) for name, n in rows}


def event_rows():
    return int(sql("SELECT count(*) FROM chat_run_events")[0][0])


async def load(targets, conc, dur, warm, pids, rss_pid):
    """conc clients (client i on targets[i % len]) for warm + dur seconds."""
    cnt = {"tokens": 0}
    rows, stop = [], False

    def on_tokens(n):
        cnt["tokens"] += n

    async def worker(i):
        host, port, req = targets[i % len(targets)]
        c = Client(host, port, req)
        while not stop:
            try:
                res = await c.stream(on_tokens)
            except (ConnectionError, OSError) as e:
                res = {"status": 0, "t0": time.perf_counter(), "error": repr(e)}
                c.close()
            rows.append(res)
            if res["error"] or res["status"] != 200:
                await asyncio.sleep(0.01)
        c.close()

    def snap():
        tot, idle, steal = bench.machine_cpu()
        return {"t": time.perf_counter(), "tokens": cnt["tokens"], "gen": bench.self_cpu(),
                "m_tot": tot, "m_idle": idle, "m_steal": steal,
                **{k: bench.tree_cpu(p) if p else 0.0 for k, p in pids.items()}}

    rss = {"max": 0.0}

    async def sample():
        while not stop:
            rss["max"] = max(rss["max"], bench.tree_rss(rss_pid)["rss_mib"])
            await asyncio.sleep(0.5)

    tasks = [asyncio.ensure_future(worker(i)) for i in range(conc)]
    sampler = asyncio.ensure_future(sample())
    await asyncio.sleep(warm)
    a = snap()
    await asyncio.sleep(dur)
    b = snap()
    stop = True
    await asyncio.wait(tasks, timeout=120)
    for t in tasks:
        t.cancel()
    sampler.cancel()
    dt = b["t"] - a["t"]
    mine = [r for r in rows if a["t"] <= r["t0"] < b["t"]]
    ok = [r for r in mine if r["status"] == 200 and not r["error"] and r.get("ttft") is not None]
    bad = [r for r in mine if r not in ok]
    k = (b["tokens"] - a["tokens"]) / 1000 or float("nan")
    o = {"conc": conc, "window_s": dt, "requests": len(mine), "ok": len(ok), "failed": len(bad),
         "first_error": bad[0]["error"] if bad else None,
         "incomplete": sum(1 for r in ok if not r["done"]),
         "tokens_per_response": sorted({r["tokens"] for r in ok}),
         "events_per_response": statistics.median([r["content"] for r in ok]) if ok else 0,
         "ttft_ms": [r["ttft"] * 1000 for r in ok], "total_ms": [r["total"] * 1000 for r in ok],
         "tokens": b["tokens"] - a["tokens"], "chunks_per_s": (b["tokens"] - a["tokens"]) / dt,
         "all_tokens": cnt["tokens"], "rss_max_mib": rss["max"],
         "rss_end_mib": bench.tree_rss(rss_pid)["rss_mib"],
         "busy_cores": ((b["m_tot"] - a["m_tot"]) - (b["m_idle"] - a["m_idle"])) / dt,
         "steal_cores": (b["m_steal"] - a["m_steal"]) / dt,
         "gen_cores": (b["gen"] - a["gen"]) / dt,
         "loadavg": open("/proc/loadavg").read().split()[0]}
    for name in pids:
        o[name + "_cores"] = (b[name] - a[name]) / dt
        o[name + "_cpu_per_1k"] = (b[name] - a[name]) / k
    o["other_cores"] = o["busy_cores"] - o["steal_cores"] - o["gen_cores"] - sum(
        o[n + "_cores"] for n in pids)
    return o


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--bench-dir", required=True)
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--logs", required=True)
    ap.add_argument("--concs", default="1,10,100")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--delay-ms", type=float, default=5)
    ap.add_argument("--events-chunks", type=int, default=50000)
    ap.add_argument("--unpaced", default="1", help="also run each concurrency at delay 0")
    a = ap.parse_args()
    concs = [int(x) for x in a.concs.split(",")]
    up_port, base = a.upstream_port, a.base
    up = bench.spawn("exec %s %s/fake_upstream.py --host 127.0.0.1 --port %d --chunks %d"
                     % (sys.executable, a.bench_dir, up_port, a.chunks),
                     os.path.join(a.logs, "upstream.log"), {}, a.bench_dir)
    for _ in range(500):
        try:
            if bench.http_get("http://127.0.0.1:%d/health" % up_port, 0.5)[0] == 200:
                break
        except Exception:
            await asyncio.sleep(0.02)
    else:
        raise SystemExit("the fake upstream did not start; see %s/upstream.log" % a.logs)

    def cfg(chunks, delay):
        bench.http_post_json("http://127.0.0.1:%d/_config" % up_port,
                             {"chunks": chunks, "delay_ms": delay})

    idle = bench.tree_rss(a.pid)
    team = call(base, a.token, "POST", "/v1/teams", {"name": "Relay bench"})["id"]
    sessions = [call(base, a.token, "POST", "/v1/chat/sessions", {"team_id": team})["id"]
                for _ in range(max(concs))]
    host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
    auth = "Authorization: Bearer " + a.token
    body = json.dumps({"message": "hello"})
    bridge = [(host, port, bench.Target("%s/v1/chat/sessions/%s/stream" % (base, s), "fake",
                                        "openai", "x", body, auth).req) for s in sessions]
    direct = [(host, up_port, bench.Target("http://127.0.0.1:%d/v1/chat/completions" % up_port,
                                           "fake", "openai", "x").req)]
    pg = postmaster_pid()
    pids = {"bridge": a.pid, "upstream": up.pid, **({"postgres": pg} if pg else {})}
    print("Bridge pid %d, idle RSS %.1f MiB (%d threads); upstream pid %d; postmaster %s; "
          "%d sessions; loop %s" % (a.pid, idle["rss_mib"], idle["threads"], up.pid, pg,
                                    len(sessions), type(asyncio.get_running_loop()).__module__),
          flush=True)
    # One run first (connections to the upstream and Postgres opened, prompts read).
    cfg(a.chunks, 0)
    first = await Client(*bridge[0]).stream()
    if first["error"] or not first["done"]:
        raise SystemExit("a first run failed: %s" % (first["error"] or "no complete event"))
    # Postgres publishes an idle backend's row counters up to ~10 s late: let the set-up's settle.
    await asyncio.sleep(11)

    delays = [a.delay_ms] + ([0.0] if a.unpaced == "1" and a.delay_ms != 0 else [])
    out = []
    for c in concs:
        for d in delays:
            cfg(a.chunks, d)
            w0, e0 = db_writes(), event_rows()
            r = await load(bridge, c, a.duration, a.warmup, pids, a.pid)
            e1 = event_rows()
            # The direct phase leaves Bridge idle long enough (> 10 s) for Postgres to
            # publish its backends' counters, read after it.
            dr = await load(direct, c, a.duration, a.warmup, pids, a.pid)
            w1 = db_writes()
            per_table = {t: w1.get(t, 0) - w0.get(t, 0) for t in w1}
            kt = r["all_tokens"] / 1000 or float("nan")
            r["event_rows_per_1k"] = (e1 - e0) / kt
            r["writes_per_1k"] = sum(per_table.values()) / kt
            r["writes_by_table_per_1k"] = {t: round(n / kt, 2) for t, n in sorted(
                per_table.items(), key=lambda x: -x[1]) if n}
            r["event_rows_per_run"] = (e1 - e0) / max(1, r["all_tokens"] / a.chunks)
            r["bridge_cpu_ms_per_run"] = r["bridge_cpu_per_1k"] * a.chunks
            for name, x in (("bridge", r), ("direct", dr)):
                print("C=%-3d delay %g ms %-6s %5d req (%d failed, %d without their end) ttft med %.2f p95 %.2f ms, total med "
                      "%.1f ms, tokens/resp %s, content events/resp %g, %.0f chunks/s | cpu-s/1k: bridge "
                      "%.4f postgres %s upstream %.4f | cores: bridge %.2f pg %s upstream %.2f gen %.2f "
                      "busy %.2f steal %.2f other %.2f, load %s | RSS max %.1f MiB%s" % (
                          c, d, name, x["requests"], x["failed"], x["incomplete"], ms(x["ttft_ms"]), ms(x["ttft_ms"], .95),
                          ms(x["total_ms"]), x["tokens_per_response"], x["events_per_response"],
                          x["chunks_per_s"], x["bridge_cpu_per_1k"],
                          "%.4f" % x["postgres_cpu_per_1k"] if pg else "-", x["upstream_cpu_per_1k"],
                          x["bridge_cores"], "%.2f" % x["postgres_cores"] if pg else "-",
                          x["upstream_cores"], x["gen_cores"], x["busy_cores"], x["steal_cores"],
                          x["other_cores"], x["loadavg"], x["rss_max_mib"],
                          "; first error: %s" % x["first_error"] if x["first_error"] else ""),
                      flush=True)
            print("  Bridge %.2f CPU-ms per run; Postgres per 1k tokens: %.1f chat_run_events rows "
                  "(%.1f per run), %.1f row writes in all %s" % (
                      r["bridge_cpu_ms_per_run"], r["event_rows_per_1k"], r["event_rows_per_run"],
                      r["writes_per_1k"], r["writes_by_table_per_1k"]), flush=True)
            out.append({"conc": c, "delay": d, "bridge": r, "direct": dr})

    # One long run at delay 0: the events (and tokens) per second one run sustains. Its
    # answer is kept as one message, at most 512 KiB as JSON: 50,000 chunks fit, 100,000 not.
    n = a.events_chunks
    cfg(n, 0)
    s = call(base, a.token, "POST", "/v1/chat/sessions", {"team_id": team})["id"]
    one = (host, port, bench.Target("%s/v1/chat/sessions/%s/stream" % (base, s), "fake", "openai",
                                    "x", body, auth).req)
    cpu0, e0 = bench.tree_cpu(a.pid), event_rows()
    seen = []
    res = await Client(*one).stream(lambda _n: seen.append(time.perf_counter()))
    cpu1, e1 = bench.tree_cpu(a.pid), event_rows()
    # After the first token event, one is due 50 ms after the previous one was sent; what
    # the gaps take beyond that is mostly the insert before each send.
    gaps = [(y - x) * 1000 for x, y in zip(seen[1:], seen[2:])]
    dres = await Client(*direct[0]).stream()
    print("one run of %d chunks at delay 0: %s in %.2f s (direct: %.2f s), %d tokens in %d token "
          "events, %d chat_run_events rows: %.1f events/s, %.0f tokens/s (direct %.0f); Bridge "
          "%.3f CPU-s (%.4f per 1k chunks); token events %.1f ms apart (median; 50 ms coalescing)" % (
              n, "complete" if res["done"] else "NOT complete: %s" % res["error"], res["total"],
              dres["total"], res["tokens"], res["content"], e1 - e0, (e1 - e0) / res["total"],
              res["tokens"] / res["total"], dres["tokens"] / dres["total"], cpu1 - cpu0,
              (cpu1 - cpu0) / (res["tokens"] / 1000 or float("nan")), ms(gaps)), flush=True)
    cfg(a.chunks, 0)
    end = bench.tree_rss(a.pid)

    print("\nsummary (medians; added = through Bridge minus direct at the same load; chunks = Zq<i>"
          " markers)")
    print("| streams | delay | TTFT direct | TTFT Bridge (p95) | added TTFT | added total | "
          "Bridge CPU-s/1k chunks | Postgres CPU-s/1k | chunks/s | Bridge RSS max | "
          "event rows/1k tok | row writes/1k tok | machine busy/steal cores | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for x in out:
        r, dr = x["bridge"], x["direct"]
        print("| %d | %g ms | %.2f ms | %.2f (%.2f) ms | %+.2f ms | %+.1f ms | %.4f | %s | %.0f | %.1f MiB "
              "| %.1f | %.1f | %.2f/%.2f | %d/%d |" % (
                  x["conc"], x["delay"], ms(dr["ttft_ms"]), ms(r["ttft_ms"]), ms(r["ttft_ms"], .95),
                  ms(r["ttft_ms"]) - ms(dr["ttft_ms"]), ms(r["total_ms"]) - ms(dr["total_ms"]),
                  r["bridge_cpu_per_1k"], "%.4f" % r["postgres_cpu_per_1k"] if pg else "-",
                  r["chunks_per_s"], r["rss_max_mib"], r["event_rows_per_1k"], r["writes_per_1k"],
                  r["busy_cores"], r["steal_cores"], r["failed"], r["requests"]))
    print("Bridge RSS: idle %.1f MiB, at the end %.1f MiB (%d threads)" % (
        idle["rss_mib"], end["rss_mib"], end["threads"]))
    bench.stop(up)


if __name__ == "__main__":
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--bench-dir")
    sys.path.insert(0, p.parse_known_args()[0].bench_dir or ".")
    import bench  # noqa: E402  the relay-bench's bench.py
    try:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    try:
        asyncio.run(main())
    finally:
        bench.stop_all()
