#!/usr/bin/env python3
"""Executed triggers on PostgreSQL, one replica and three, beside SQLite, in one run.

The local backend runs on one machine (a second replica on its database is refused), so
this compares stores and replica counts on a real Swarm: a throwaway dockerd
(scripts/docker-engine.sh) with SERVICES services, and a throwaway PostgreSQL cluster
(scripts/postgres.sh). Each scenario starts from scratch (a new database, services back at
one replica) and sends the same Alertmanager traffic as bench.py's headline load: RECEIVERS
receivers created with default options, half up and half down within 1..3, each firing
group in 8 variants re-sent as Alertmanager re-sends them. Most triggers are duplicates
or held by a cooldown (decided from the store under the service's lock, no backend call);
the rest read and write Swarm. History rows must equal the 2xx answers in every scenario.

1. SQLite, one hookd.
2. PostgreSQL, one hookd.
3. PostgreSQL, three hookd on one database, the load split evenly across them.
"""

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (shares its helpers: ports, readiness, the API, the load driver)

ROOT = bench.ROOT
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "30000"))
SERVICES = 10
RECEIVERS = 100
VARIANTS = 8
CONNECTIONS = 30
IMAGE = "hookd-test/sleeper:1"


def script(*args):
    return subprocess.run([os.path.join(ROOT, "scripts", args[0]), *args[1:]],
                          capture_output=True, text=True, check=True).stdout.strip()


def docker(host, *args):
    return subprocess.run(["docker", *args], env=dict(os.environ, DOCKER_HOST=host),
                          capture_output=True, text=True, check=True).stdout


def psql(admin, database, sql):
    return subprocess.run(["psql", "-At", f"{admin}/{database}", "-c", sql],
                          capture_output=True, text=True, check=True).stdout.strip()


class Replica:
    def __init__(self, work, n, host, database_url, sealing_key):
        self.port = bench.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data_dir = os.path.join(work, f"data{n}")
        config = os.path.join(work, f"hookd{n}.toml")
        with open(config, "w") as f:
            if database_url:
                f.write(f'database_url = "{database_url}"\n')
            f.write(f'sealing_key_file = "{sealing_key}"\n')
            f.write(f'listen = "127.0.0.1:{self.port}"\ndata_dir = "{self.data_dir}"\n')
            f.write(f'[[backend]]\nname = "swarm"\nkind = "docker"\nendpoint = "{host}"\n')
        env = dict(os.environ, HOOKD_ADMIN_TOKEN=bench.TOKEN, HOOKD_LOG="warn")
        self.proc = subprocess.Popen([bench.HOOKD, "serve", "--config", config], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "hookd.log"), "a"))
        bench.wait_ready(self.base + "/readyz")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def outcomes(self):
        counts = {}
        with bench.urllib.request.urlopen(self.base + "/metrics") as r:
            text = r.read().decode()
        for m in re.finditer(r'hookd_triggers_total\{driver="\w+",outcome="(\w+)",reason="(\w*)",dry_run="false"\} (\d+)',
                             text):
            key = m.group(1) + (f": {m.group(2)}" if m.group(2) else "")
            counts[key] = counts.get(key, 0) + int(m.group(3))
        return counts


def scenario(work, host, name, replicas, admin=None):
    for i in range(SERVICES):
        docker(host, "service", "scale", "--detach", f"bench-svc{i:02}=1")
    database_url, database = None, None
    if admin:
        database = f"bench_{int(time.time() * 1000)}"
        psql(admin, "postgres", f"CREATE DATABASE {database}")
        database_url = f"{admin}/{database}"
    run_dir = os.path.join(work, name.replace(" ", "-"))
    os.makedirs(run_dir)
    key = os.path.join(run_dir, "sealing.key")
    started = [Replica(run_dir, n, host, database_url, key) for n in range(replicas)]
    try:
        paths = []
        for i in range(RECEIVERS):
            action = "up" if (i // SERVICES) % 2 == 0 else "down"
            r = bench.api(started[0].base, "POST", "/v1-webhooks/receivers", {
                "name": f"r{i:03}", "driver": "scaleService",
                "scaleServiceConfig": {"serviceId": f"bench-svc{i % SERVICES:02}", "action": action, "amount": 1,
                                       "min": 1, "max": 3}})
            paths.append(r["url"].split(started[0].base, 1)[1])
        requests_file = os.path.join(run_dir, "alerts.txt")
        with open(requests_file, "w") as f:
            for variant in range(VARIANTS):
                for i, path in enumerate(paths):
                    f.write(f"{path}\t{bench.alert_body(i, variant)}\n")
        share = REQUESTS // replicas
        began = time.time()
        loads = [subprocess.Popen([bench.LOAD, f"127.0.0.1:{r.port}", requests_file, str(CONNECTIONS // replicas),
                                   str(share)], stdout=subprocess.PIPE, text=True) for r in started]
        results = [json.loads(p.communicate()[0]) for p in loads]
        seconds = time.time() - began
        ok = sum(r["ok"] for r in results)
        if admin:
            rows = int(psql(admin, database, "SELECT COUNT(*) FROM executions"))
        else:
            db = sqlite3.connect(os.path.join(started[0].data_dir, "hookd.db"))
            rows = db.execute("SELECT COUNT(*) FROM executions").fetchone()[0]
            db.close()
        mix = {}
        for r in started:
            for k, v in r.outcomes().items():
                mix[k] = mix.get(k, 0) + v
        return {
            "name": name, "rps": ok / seconds, "p99": max(r["p99_ms"] for r in results), "ok": ok,
            "non_2xx": sum(r["non_2xx"] + r["errors"] for r in results), "rows": rows, "mix": mix,
        }
    finally:
        for r in started:
            r.stop()


def main():
    work = tempfile.mkdtemp(prefix="hookd-bench-replicas-")
    os.chmod(work, 0o755)  # the cluster inside runs as the postgres user
    docker_dir, pg_dir = os.path.join(work, "docker"), os.path.join(work, "pg")
    os.makedirs(docker_dir)
    try:
        script("docker-engine.sh", "start", docker_dir, "--swarm", "--bridge=hookd-test0")
        host = f"unix://{docker_dir}/docker.sock"
        admin = script("postgres.sh", "start", pg_dir)
        for i in range(SERVICES):
            docker(host, "service", "create", "--detach", "--name", f"bench-svc{i:02}", "--replicas", "1", IMAGE)
        runs = [
            scenario(work, host, "SQLite, 1 hookd", 1),
            scenario(work, host, "PostgreSQL, 1 hookd", 1, admin),
            scenario(work, host, "PostgreSQL, 3 hookd", 3, admin),
        ]
    finally:
        subprocess.run([os.path.join(ROOT, "scripts/docker-engine.sh"), "stop", docker_dir], capture_output=True)
        subprocess.run([os.path.join(ROOT, "scripts/postgres.sh"), "stop", pg_dir], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"\nExecuted Alertmanager triggers on Swarm ({REQUESTS} per scenario, {CONNECTIONS} connections in all, "
          f"{RECEIVERS} receivers over {SERVICES} services, default options)\n")
    print(f"| {'scenario':<22} | {'triggers/s':>10} | {'p99 ms':>7} | {'2xx':>6} | {'rows':>6} | outcomes |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 9}|{'-' * 8}|{'-' * 8}|----------|")
    for r in runs:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(r["mix"].items()))
        print(f"| {r['name']:<22} | {r['rps']:>10,.0f} | {r['p99']:>7.1f} | {r['ok']:>6} | {r['rows']:>6} | {mix} |")
    base = runs[1]["rps"]
    print(f"\nPostgreSQL 3 hookd / 1 hookd: {runs[2]['rps'] / base:.2f}x; PostgreSQL / SQLite (1 hookd): "
          f"{base / runs[0]['rps']:.2f}x")
    failed = [r["name"] for r in runs if r["rows"] != r["ok"] or r["non_2xx"]]
    if failed:
        print(f"FAILED: history rows != 2xx answers, or non-2xx answers, in {failed}")
        sys.exit(1)


if __name__ == "__main__":
    main()
