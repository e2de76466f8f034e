#!/usr/bin/env python3
"""Cold start of a function binary: time from exec to its first 200 on /health, and its
resident memory once idle.

    cargo build --release -p teams
    bench/coldstart.py [--bin target/release/teams] [--runs 30]

Needs a Postgres URL in DATABASE_URL only to satisfy settings: /health does not touch the
database (the pool connects lazily). Prints median, p90 and max over the runs.
"""
import argparse, os, socket, statistics, subprocess, time

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def health_ok(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False

def rss_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/teams")
    ap.add_argument("--runs", type=int, default=30)
    a = ap.parse_args()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        "BRIDGE_DEV_JWT_SECRET": "bench-secret-bench-secret-bench-secret-0",
        "RUST_LOG": "warn",
    }
    times, rss, hwm = [], [], []
    for _ in range(a.runs):
        port = free_port()
        env["PORT"] = str(port)
        t0 = time.perf_counter()
        p = subprocess.Popen([a.bin], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not health_ok(port):
            if p.poll() is not None:
                raise SystemExit(f"{a.bin} exited with {p.returncode}")
        times.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.3)  # idle
        r, h = rss_kib(p.pid)
        rss.append(r); hwm.append(h)
        p.terminate(); p.wait()
    times.sort()
    print(f"binary: {a.bin} ({os.path.getsize(a.bin) / 1e6:.1f} MB), runs: {a.runs}")
    print(f"exec -> first 200 /health: median {statistics.median(times):.1f} ms, "
          f"p90 {times[int(len(times) * 0.9) - 1]:.1f} ms, max {times[-1]:.1f} ms")
    print(f"idle RSS: median {statistics.median(rss) / 1024:.1f} MiB "
          f"(peak RSS {max(hwm) / 1024:.1f} MiB)")

main()
