#!/usr/bin/env python3
"""hookd against its peers and the machine's limit, run side by side, printed as one table.

1. Rejected trigger (a forged token): hookd vs adnanh/webhook on a hook whose trigger rule
   rejects, vs a bare hyper server answering 200, all sent the same URL by wrk. Medians of
   interleaved rounds, since the machine is shared and noisy.
2. Executed scaleService triggers on the local backend with durable history: 1,000
   receivers over 100 services, half up and half down by 1, round-robin, driven by
   examples/load.rs (exact counts). Checks history rows == 2xx answers. For reference,
   adnanh/webhook running `true` synchronously on the same load.
3. Memory: hookd's RSS idle, and after run 2.
4. Store scale: trigger p99 with 1,000 and with 1,000,000 stored receivers (steady state:
   each start gets a warm-up pass over the receivers first); start-up time.
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOOKD = os.path.join(ROOT, "target/release/hookd")
HYPER = os.path.join(ROOT, "target/release/examples/bare_hyper")
LOAD = os.path.join(ROOT, "target/release/examples/load")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "60000"))
BIG_STORE = int(os.environ.get("BENCH_BIG_STORE", "1000000"))
CONNECTIONS = 32
SERVICES = 100
RECEIVERS = 1000
TOKEN = "bench-admin-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=60):
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


def wrk(url):
    script = os.path.join(WORK, "post.lua")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    return next(float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec"))


def load(port, paths_file, requests):
    out = subprocess.run([LOAD, f"127.0.0.1:{port}", paths_file, str(CONNECTIONS), str(requests)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


class Hookd:
    def __init__(self, data_dir):
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = data_dir + ".toml"
        with open(self.config, "w") as f:
            f.write(f'listen = "127.0.0.1:{self.port}"\ndata_dir = "{data_dir}"\n')
            f.write('[[backend]]\nname = "local"\nkind = "local"\nstop_grace_seconds = 1\n')
            for i in range(SERVICES):
                f.write(f'[[backend.service]]\nname = "svc{i:03}"\ncommand = "sleep"\nargs = ["1000000"]\nscale = 2\n')
        self.proc = None

    def start(self):
        env = dict(os.environ, HOOKD_ADMIN_TOKEN=TOKEN)
        started = time.time()
        self.proc = subprocess.Popen([HOOKD, "serve", "--config", self.config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(WORK, "hookd.log"), "a"))
        wait_ready(self.base + "/readyz")
        return time.time() - started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def median_rounds(contenders):
    results = {name: [] for name in contenders}
    for _ in range(ROUNDS):
        for name, url in contenders.items():
            results[name].append(wrk(url))
    return {name: statistics.median(v) for name, v in results.items()}


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
                                       "min": 1, "max": 1000, "cooldownDownSeconds": 0}})
            paths.append(r["url"].split(hookd.base, 1)[1])
        paths_file = os.path.join(WORK, "paths.txt")
        with open(paths_file, "w") as f:
            f.write("\n".join(paths) + "\n")

        # 1. Rejected trigger: the same forged URL for everyone.
        forged = paths[0][:-1] + ("A" if paths[0][-1] != "A" else "B")
        query = forged.split("?", 1)[1]
        rejected = median_rounds({
            "hookd": f"{hookd.base}{forged}",
            "webhook": f"http://127.0.0.1:{webhook_port}/hooks/reject?{query}",
            "hyper": f"http://127.0.0.1:{hyper_port}{forged}",
        })

        # 2. Executed triggers with durable history.
        executed = load(hookd.port, paths_file, REQUESTS)
        db = sqlite3.connect(os.path.join(data_dir, "hookd.db"))
        rows = db.execute("SELECT COUNT(*) FROM executions").fetchone()[0]
        db.close()
        busy_rss = rss_mb(hookd.proc.pid)
        exec_file = os.path.join(WORK, "exec.txt")
        with open(exec_file, "w") as f:
            f.write("/hooks/exec\n")
        webhook_exec = load(webhook_port, exec_file, max(2000, REQUESTS // 10))

        # 4. Store scale: the same 1,000 receivers, alone or among BIG_STORE. Each round
        # restarts hookd on each database in turn and lets its processes settle, so only
        # the store's size differs; medians of the rounds, since p99 is noisy.
        hookd.stop()
        big_dir = os.path.join(WORK, "data-big")
        shutil.copytree(data_dir, big_dir)
        db = sqlite3.connect(os.path.join(big_dir, "hookd.db"))
        config = db.execute("SELECT config FROM receivers LIMIT 1").fetchone()[0]
        extra = BIG_STORE - RECEIVERS
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO receivers SELECT printf('%032x', i), 'default', 'filler-' || i, 'scaleService', ?, 1, 1, 0, 0 FROM n",
            (extra, config))
        db.commit()
        stored = db.execute("SELECT COUNT(*) FROM receivers").fetchone()[0]
        db.close()
        big_hookd = Hookd(big_dir)
        big_hookd.port = hookd.port
        big_hookd.base = hookd.base
        with open(big_hookd.config, "w") as f:
            f.write(open(hookd.config).read().replace(data_dir + '"', big_dir + '"'))
        small_runs, big_runs, startups = [], [], []
        for _ in range(ROUNDS):
            for server, runs in ((hookd, small_runs), (big_hookd, big_runs)):
                took = server.start()
                if server is big_hookd:
                    startups.append(took)
                time.sleep(3)
                load(server.port, paths_file, 2 * RECEIVERS)  # warm-up: touch every receiver
                runs.append(load(server.port, paths_file, REQUESTS // 2))
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

    ok_2xx = executed["ok"]
    print()
    print("hookd benchmarks (127.0.0.1, %d connections; medians of %d rounds of %d s for wrk runs)" % (CONNECTIONS, ROUNDS, SECONDS))
    print()
    print("| measure | hookd | reference | ratio | target | |")
    print("|---|---|---|---|---|---|")
    r_wh = rejected["hookd"] / rejected["webhook"]
    r_hy = rejected["hookd"] / rejected["hyper"]
    print(f"| rejected trigger, req/s vs adnanh/webhook | {rejected['hookd']:,.0f} | {rejected['webhook']:,.0f} | {r_wh:.2f}x | >= 1.5x | {check(r_wh >= 1.5)} |")
    print(f"| rejected trigger, req/s vs bare hyper | {rejected['hookd']:,.0f} | {rejected['hyper']:,.0f} | {r_hy:.2f} | >= 0.70 | {check(r_hy >= 0.70)} |")
    print(f"| executed scaleService, triggers/s | {executed['rps']:,.0f} | webhook running `true`: {webhook_exec['rps']:,.0f} | {executed['rps'] / webhook_exec['rps']:.1f}x | >= 5,000/s | {check(executed['rps'] >= 5000)} |")
    print(f"| executed, p50 / p99 latency | {executed['p50_ms']:.2f} / {executed['p99_ms']:.2f} ms | webhook: {webhook_exec['p50_ms']:.2f} / {webhook_exec['p99_ms']:.2f} ms | | p99 < 20 ms | {check(executed['p99_ms'] < 20)} |")
    print(f"| executed, history rows vs 2xx answers | {rows:,} rows | {ok_2xx:,} 2xx, {executed['non_2xx']} non-2xx, {executed['errors']} errors | | equal | {check(rows == ok_2xx and executed['errors'] == 0)} |")
    print(f"| RSS idle / after the executed run | {idle_rss:.1f} / {busy_rss:.1f} MB | | | idle < 20 MB | {check(idle_rss < 20)} |")
    change = big["p99_ms"] / small["p99_ms"] - 1
    print(f"| trigger p99, {RECEIVERS:,} vs {stored:,} receivers (median of {ROUNDS}) | {small['p99_ms']:.2f} vs {big['p99_ms']:.2f} ms | | {change:+.0%} | < +20% | {check(change < 0.20)} |")
    print(f"| start-up with {stored:,} receivers (to /readyz) | {startup * 1000:.0f} ms | | | | |")
    print()
    print("raw:", json.dumps({"rejected": rejected, "executed": executed, "webhook_exec": webhook_exec,
                              "p99_small": small, "p99_big": big, "rows": rows}))


if __name__ == "__main__":
    main()
