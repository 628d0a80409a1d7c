#!/usr/bin/env python3
"""hookd against its peers and the machine's limit, run side by side, printed as one table.

Every hookd here runs with the options a user gets by default (receivers created with no
options; the default retention; a fresh data directory).

1. Rejected trigger (a forged token): hookd vs adnanh/webhook on a hook whose trigger rule
   rejects, vs a bare hyper server answering 200, all sent the same URL by wrk. Medians of
   interleaved rounds, since the machine is shared and noisy.
2. Executed scaleService triggers on the local backend with durable history: 1,000
   receivers over 100 services, half up and half down, bounds 1..4, created with default
   options. The headline load sends Alertmanager notifications: each receiver's firing
   group in 8 variants, each re-sent as Alertmanager re-sends it, so most triggers are
   duplicates or held by the 300 s down cooldown, as with real Alertmanager traffic. A
   second load sends plain POSTs, each of which acts (scales or finds the bound). Both
   check history rows == 2xx answers and report bytes on disk per execution and the WAL's
   peak. For reference, adnanh/webhook running `true` synchronously (it records nothing).
3. Memory: hookd's RSS idle, and after run 2.
4. Retention: BENCH_MILLION (1,000,000) more triggers; the data directory's size after,
   and the WAL's peak throughout (sampled every 20 ms).
5. Store scale: trigger p99 with 1,000 and with BENCH_BIG_STORE (1,000,000) stored
   receivers, each start with the page cache dropped and no warm-up (cold); start-up time.
"""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKD = os.path.join(ROOT, "target/release/hookd")
HYPER = os.path.join(ROOT, "target/release/examples/bare_hyper")
LOAD = os.path.join(ROOT, "target/release/examples/load")
FIRING = open(os.path.join(ROOT, "tests/fixtures/alertmanager-firing.json")).read()
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "60000"))
MILLION = int(os.environ.get("BENCH_MILLION", "1000000"))
BIG_STORE = int(os.environ.get("BENCH_BIG_STORE", "1000000"))
CONNECTIONS = 32
SERVICES = 100
RECEIVERS = 1000
VARIANTS = 8
TOKEN = "bench-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status < 500:
                    return
        except Exception:
            time.sleep(0.02)
    raise SystemExit(f"{url} did not become ready")


def api(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def drop_page_cache():
    """Cold caches: the next start reads the database from disk. Needs root; says so if not."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def wrk(url):
    script = os.path.join(WORK, "post.lua")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    return next(float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec"))


def load(port, requests_file, requests):
    out = subprocess.run([LOAD, f"127.0.0.1:{port}", requests_file, str(CONNECTIONS), str(requests)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


class WalWatch:
    """Samples the size of a file (the WAL) every 20 ms while a load runs."""

    def __init__(self, path):
        self.path, self.peak, self.stop = path, 0, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, os.path.getsize(self.path))
            except OSError:
                pass
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


class Hookd:
    def __init__(self, data_dir, port=None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = data_dir + ".toml"
        with open(self.config, "w") as f:
            f.write(f'listen = "127.0.0.1:{self.port}"\ndata_dir = "{data_dir}"\n')
            f.write('[[backend]]\nname = "local"\nkind = "local"\nstop_grace_seconds = 1\n')
            for i in range(SERVICES):
                f.write(f'[[backend.service]]\nname = "svc{i:03}"\ncommand = "sleep"\nargs = ["1000000"]\nscale = 2\n')
        self.proc = None

    def start(self):
        env = dict(os.environ, HOOKD_ADMIN_TOKEN=TOKEN, HOOKD_LOG="warn")
        started = time.time()
        self.proc = subprocess.Popen([HOOKD, "serve", "--config", self.config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "hookd.log"), "a"))
        wait_ready(self.base + "/readyz")
        return time.time() - started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def db(self):
        return os.path.join(self.data_dir, "hookd.db")

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics") as r:
            return r.read().decode()

    def outcomes(self):
        """Triggers by outcome (and skip reason), from /metrics."""
        counts = {}
        for m in re.finditer(r'hookd_triggers_total\{driver="\w+",outcome="(\w+)",reason="(\w*)",dry_run="false"\} (\d+)',
                             self.metrics()):
            key = m.group(1) + (f": {m.group(2)}" if m.group(2) else "")
            counts[key] = counts.get(key, 0) + int(m.group(3))
        return counts

    def gauge(self, name):
        m = re.search(rf"^hookd_{name} (\d+)", self.metrics(), re.M)
        return int(m.group(1)) if m else 0


def rows(db_path):
    db = sqlite3.connect(db_path)
    n = db.execute("SELECT COUNT(*) FROM executions").fetchone()[0]
    db.close()
    return n


def alert_body(receiver, variant):
    body = json.loads(FIRING)
    name = f"Load{receiver:04}"
    body["groupKey"] = '{}:{alertname="%s"}' % name
    body["groupLabels"] = {"alertname": name}
    alert = body["alerts"][0]
    alert["labels"]["alertname"] = name
    alert["fingerprint"] = f"{receiver:08x}{variant:08x}"
    alert["startsAt"] = f"2026-11-23T05:{variant:02}:10.451Z"
    return json.dumps(body, separators=(",", ":"))


def median_rounds(contenders):
    results = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, url in contenders.items():
            results[name].append(wrk(url))
    return {name: statistics.median(v) for name, v in results.items()}


def executed_run(hookd, requests_file, requests):
    """One load on a running hookd: its figures, with rows, disk bytes and the WAL's peak."""
    before = rows(hookd.db())
    with WalWatch(hookd.db() + "-wal") as wal:
        result = load(hookd.port, requests_file, requests)
    result["rows"] = rows(hookd.db()) - before
    result["wal_peak_mb"] = max(wal.peak, hookd.gauge("store_wal_peak_bytes")) / 2**20
    return result


def main():
    global WORK
    WORK = tempfile.mkdtemp(prefix="hookd-bench-")
    with open(os.path.join(WORK, "post.lua"), "w") as f:
        f.write('wrk.method = "POST"\n')
    procs = []
    try:
        hyper_port, webhook_port = free_port(), free_port()
        procs.append(subprocess.Popen([HYPER, f"127.0.0.1:{hyper_port}"]))
        hooks = os.path.join(WORK, "hooks.json")
        with open(hooks, "w") as f:
            json.dump([
                {"id": "reject", "execute-command": "/bin/true", "trigger-rule-mismatch-http-response-code": 403,
                 "trigger-rule": {"match": {"type": "value", "value": "secret",
                                            "parameter": {"source": "header", "name": "X-Token"}}}},
                {"id": "exec", "execute-command": "/bin/true", "include-command-output-in-response": True},
            ], f)
        procs.append(subprocess.Popen(["webhook", "-hooks", hooks, "-ip", "127.0.0.1", "-port", str(webhook_port)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        data_dir = os.path.join(WORK, "data")
        hookd = Hookd(data_dir)
        hookd.start()
        wait_ready(f"http://127.0.0.1:{webhook_port}/")
        time.sleep(2)
        idle_rss = rss_mb(hookd.proc.pid)

        paths = []
        for i in range(RECEIVERS):
            action = "up" if (i // SERVICES) % 2 == 0 else "down"
            r = api(hookd.base, "POST", "/v1-webhooks/receivers", {
                "name": f"r{i:04}", "driver": "scaleService",
                "scaleServiceConfig": {"serviceId": f"svc{i % SERVICES:03}", "action": action, "amount": 1,
                                       "min": 1, "max": 4}})
            paths.append(r["url"].split(hookd.base, 1)[1])
        plain_file = os.path.join(WORK, "plain.txt")
        with open(plain_file, "w") as f:
            f.write("\n".join(paths) + "\n")
        alerts_file = os.path.join(WORK, "alerts.txt")
        with open(alerts_file, "w") as f:
            for variant in range(VARIANTS):
                for i, path in enumerate(paths):
                    f.write(f"{path}\t{alert_body(i, variant)}\n")

        # 1. Rejected trigger: the same forged URL for everyone.
        forged = paths[0][:-1] + ("A" if paths[0][-1] != "A" else "B")
        query = forged.split("?", 1)[1]
        rejected = median_rounds({
            "hookd": f"{hookd.base}{forged}",
            "webhook": f"http://127.0.0.1:{webhook_port}/hooks/reject?{query}",
            "hyper": f"http://127.0.0.1:{hyper_port}{forged}",
        })

        # 2. Executed triggers with durable history: Alertmanager traffic, then plain POSTs.
        alerts = executed_run(hookd, alerts_file, REQUESTS)
        mix = hookd.outcomes()
        plain = executed_run(hookd, plain_file, REQUESTS)
        busy_rss = rss_mb(hookd.proc.pid)
        stored = rows(hookd.db())
        time.sleep(1)  # the idle writer checkpoints; the WAL is emptied
        bytes_per_execution = os.path.getsize(hookd.db()) / stored
        exec_file = os.path.join(WORK, "exec.txt")
        with open(exec_file, "w") as f:
            f.write("/hooks/exec\n")
        webhook_exec = load(webhook_port, exec_file, max(2000, REQUESTS // 10))

        # 4. Retention: a million more triggers at the default limits.
        with WalWatch(hookd.db() + "-wal") as wal:
            million = load(hookd.port, alerts_file, MILLION)
        kept = hookd.gauge("store_executions")
        million_wal = max(wal.peak, hookd.gauge("store_wal_peak_bytes")) / 2**20
        hookd.stop()
        million_dir = dir_bytes(data_dir) / 2**20

        # 5. Store scale, cold: the same 1,000 receivers, alone or among BIG_STORE.
        big_dir = os.path.join(WORK, "data-big")
        shutil.copytree(data_dir, big_dir)
        db = sqlite3.connect(os.path.join(big_dir, "hookd.db"))
        config = db.execute("SELECT config FROM receivers LIMIT 1").fetchone()[0]
        extra = BIG_STORE - RECEIVERS
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO receivers (id, project, name, driver, config, enabled, token_generation, created, updated, "
            "revision) SELECT printf('%032x', i), 'default', 'filler-' || i, 'scaleService', ?, 1, 1, 0, 0, 1 "
            "FROM n", (extra, config))
        db.commit()
        receivers_stored = db.execute("SELECT COUNT(*) FROM receivers").fetchone()[0]
        db.close()
        big_hookd = Hookd(big_dir, port=hookd.port)
        small_runs, big_runs, startups = [], [], []
        cold = True
        for _ in range(ROUNDS):
            for server, runs in ((hookd, small_runs), (big_hookd, big_runs)):
                cold = drop_page_cache() and cold
                took = server.start()
                if server is big_hookd:
                    startups.append(took)
                time.sleep(3)  # the local processes start; no trigger has touched a receiver yet
                runs.append(load(server.port, plain_file, REQUESTS // 2))
                server.stop()
        small = min(small_runs, key=lambda r: abs(r["p99_ms"] - statistics.median(x["p99_ms"] for x in small_runs)))
        big = min(big_runs, key=lambda r: abs(r["p99_ms"] - statistics.median(x["p99_ms"] for x in big_runs)))
        startup = statistics.median(startups)
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(WORK, ignore_errors=True)

    def check(ok):
        return "met" if ok else "MISSED"

    print()
    print("hookd benchmarks (127.0.0.1, %d connections; medians of %d rounds of %d s for wrk runs)" % (CONNECTIONS, ROUNDS, SECONDS))
    print()
    print("| measure | hookd | reference | ratio | target | |")
    print("|---|---|---|---|---|---|")
    r_wh = rejected["hookd"] / rejected["webhook"]
    r_hy = rejected["hookd"] / rejected["hyper"]
    print(f"| rejected trigger, req/s vs adnanh/webhook | {rejected['hookd']:,.0f} | {rejected['webhook']:,.0f} | {r_wh:.2f}x | >= 1.5x | {check(r_wh >= 1.5)} |")
    print(f"| rejected trigger, req/s vs bare hyper | {rejected['hookd']:,.0f} | {rejected['hyper']:,.0f} | {r_hy:.2f} | >= 0.70 | {check(r_hy >= 0.70)} |")
    for label, run in (("Alertmanager notifications, default options", alerts), ("plain POSTs, each one acts", plain)):
        ok = run["ok"]
        print(f"| executed, {label}: triggers/s | {run['rps']:,.0f} | webhook running `true`: {webhook_exec['rps']:,.0f} | {run['rps'] / webhook_exec['rps']:.1f}x | >= 10,000/s | {check(run['rps'] >= 10000)} |")
        print(f"| executed, {label}: p50 / p99 | {run['p50_ms']:.2f} / {run['p99_ms']:.2f} ms | webhook: {webhook_exec['p50_ms']:.2f} / {webhook_exec['p99_ms']:.2f} ms | | p99 < 10 ms | {check(run['p99_ms'] < 10)} |")
        print(f"| executed, {label}: history rows vs 2xx | {run['rows']:,} rows | {ok:,} 2xx, {run['non_2xx']} non-2xx, {run['errors']} errors | | equal | {check(run['rows'] == ok and run['errors'] == 0)} |")
        print(f"| executed, {label}: WAL peak | {run['wal_peak_mb']:.1f} MB | | | < 64 MB | {check(run['wal_peak_mb'] < 64)} |")
    print(f"| bytes on disk per stored execution ({stored:,} stored) | {bytes_per_execution:,.0f} B | | | <= 2 KB | {check(bytes_per_execution <= 2048)} |")
    print(f"| after {MILLION:,} more triggers ({million['rps']:,.0f}/s): data dir, executions kept | {million_dir:.1f} MB, {kept:,} kept | | | < 200 MB | {check(million_dir < 200)} |")
    print(f"| ... WAL peak throughout | {million_wal:.1f} MB | | | < 64 MB | {check(million_wal < 64)} |")
    print(f"| RSS idle / after the executed runs | {idle_rss:.1f} / {busy_rss:.1f} MB | | | idle < 20 MB | {check(idle_rss < 20)} |")
    change = big["p99_ms"] / small["p99_ms"] - 1
    temperature = "cold page cache" if cold else "page cache NOT dropped (not root)"
    print(f"| trigger p99, {RECEIVERS:,} vs {receivers_stored:,} receivers ({temperature}, no warm-up, median of {ROUNDS}) | {small['p99_ms']:.2f} vs {big['p99_ms']:.2f} ms | | {change:+.0%} | < +20% | {check(change < 0.20)} |")
    print(f"| start-up with {receivers_stored:,} receivers (to /readyz) | {startup * 1000:.0f} ms | | | | |")
    print()
    print("Alertmanager run, outcomes:", ", ".join(f"{k} {v:,}" for k, v in sorted(mix.items())))
    print("raw:", json.dumps({"rejected": rejected, "alerts": alerts, "plain": plain, "webhook_exec": webhook_exec,
                              "million": million, "p99_small": small, "p99_big": big}))


if __name__ == "__main__":
    main()
