#!/usr/bin/env python3
"""hookd's public edge under idle, slow and hostile clients, with the default limits.

1. Idle connections: open as many as the open-file limit allows (EDGE_IDLE) that send nothing; /healthz latency (p50 / max
   of 20 probes, each on a fresh connection) once they are open, and how many hookd held.
2. Slowloris: 2,000 connections sending a request head one byte every 500 ms; /healthz
   latency meanwhile, and how many hookd closed (header timeout).
3. Slow bodies: 1,000 connections POSTing /ui/session with a 1 MB Content-Length and
   sending a few bytes a second; hookd's RSS before, during and after.

Usage: python3 bench/edge.py (after `cargo build --release`); knob EDGE_IDLE.
"""

import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKD = os.path.join(ROOT, "target/release/hookd")
IDLE = int(os.environ.get("EDGE_IDLE", "0"))  # 0: as many as this process may open
TOKEN = "edge-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))


def probe(base):
    """/healthz latencies in ms over 20 fresh connections: (p50, max, failures)."""
    times, failures = [], 0
    for _ in range(20):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                r.read()
            times.append((time.perf_counter() - started) * 1000)
        except Exception:
            failures += 1
        time.sleep(0.05)
    times.sort()
    return (times[len(times) // 2] if times else float("nan"), times[-1] if times else float("nan"), failures)


def metric(base, name):
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)} (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def connect(port, n):
    socks = []
    for _ in range(n):
        try:
            s = socket.socket()
        except OSError:
            break
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            break
        socks.append(s)
    return socks


def still_open(socks):
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            alive += 1 if s.recv(1) else 0
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work = tempfile.mkdtemp(prefix="hookd-edge-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HOOKD_ADMIN_TOKEN=TOKEN, HOOKD_LOG="warn")
    proc = subprocess.Popen([HOOKD, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "data")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(base + "/readyz", timeout=1)
                break
            except Exception:
                time.sleep(0.05)
        rows = []

        idle = connect(port, IDLE or hard - 200)
        time.sleep(1)
        p50, worst, failed = probe(base)
        held = metric(base, "hookd_connections_open")
        evicted = metric(base, 'hookd_connections_closed_by_hookd_total{reason="evicted"}')
        rows.append(f"| {len(idle):,} idle connections opened | hookd holds {held:,}, {evicted:,} evicted at the cap | "
                    f"/healthz p50 {p50:.1f} ms, max {worst:.1f} ms, {failed} failed |")
        for s in idle:
            s.close()
        time.sleep(1)

        slow = connect(port, 2000)
        started = time.time()
        worst_slow, fails = 0.0, 0
        line = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
        i = 0
        while time.time() - started < 15:
            for s in slow:
                try:
                    s.send(line[i % len(line):i % len(line) + 1])
                except OSError:
                    pass
            i += 1
            _, worst, failed = probe(base) if i % 4 == 0 else (0, 0, 0)
            worst_slow, fails = max(worst_slow, worst), fails + failed
            time.sleep(0.5)
        rows.append(f"| 2,000 slowloris connections (a byte each per 500 ms, 15 s) | {still_open(slow):,} still open after 15 s "
                    f"(header timeout 10 s) | /healthz max {worst_slow:.1f} ms, {fails} failed |")
        for s in slow:
            s.close()
        time.sleep(1)

        before = rss_mb(proc.pid)
        bodies = connect(port, 1000)
        head = (b"POST /ui/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n")
        for s in bodies:
            s.send(head)
        peak = before
        for _ in range(8):
            for s in bodies:
                try:
                    s.send(b"x" * 512)
                except OSError:
                    pass
            peak = max(peak, rss_mb(proc.pid))
            time.sleep(1)
        for s in bodies:
            s.close()
        time.sleep(2)
        rows.append(f"| 1,000 slow 1 MB bodies to POST /ui/session | RSS {before:.1f} MB before, {peak:.1f} MB at most, "
                    f"{rss_mb(proc.pid):.1f} MB after | bodies past 4 KB refused (413) |")
        print("\n| load | hookd | health |\n|---|---|---|")
        print("\n".join(rows))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
