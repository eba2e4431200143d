"""The dashboard ``GET /`` and ``GET /api/deployments`` with 300 stacks and 20 000 audit entries:
p95 ≤ 40 ms for GET / and ≤ 12 ms for GET /api/deployments (the performance issue), and no
Docker call during the requests.

300 stacks of one idle busybox container each (``--init`` + ``sleep``: running, no CPU), 20 000 audit
entries written through rsgo's own ``audit.record`` into the SQLite database before the server starts,
spread over the deployments and the last 90 days. Then ``GET /`` (signed-in session), ``GET
/api/deployments`` (API token) and, as the baseline, ``GET /healthz`` are requested in rotation, one at
a time, N times each.

Docker calls are counted by a proxy between rsgo and the engine socket (rsgo's DOCKER_HOST points at
it; RSGO_RESYNC_INTERVAL is 1 h so the periodic resync stays out of the burst). Every call during the
burst is reported with its path; an inspect that follows a Docker event for that container (other
stacks on this shared engine come and go) is discovery's work, not the request's, and is listed apart.

The target is listed in the README's "Performance" section.

    .venv/bin/python benchmarks/read_latency.py [--quick] [--stacks 300] [--entries 20000] [--requests 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from docker_proxy import CountingProxy

SOURCES = ("api", "ui", "observer", "schedule", "cli")


def create_fleet(client, prefix: str, stacks: int) -> list[str]:
    """``stacks`` stacks of one idle container each; returns the stack names."""
    names = [f"{prefix}-{i:03d}" for i in range(stacks)]
    began = time.monotonic()
    common.create_containers(client, [{"name": f"{name}-app", "stack": name, "command": common.IDLE, "init": True}
                                      for name in names])
    print(f"  created {stacks} containers in {time.monotonic() - began:.0f}s", flush=True)
    return names


def seed_database(data_dir: Path, stacks: list[str], entries: int) -> None:
    """Deployments and audit entries written by rsgo's own code, before the server starts."""
    from rsgo import audit, db, deployment_queries
    from rsgo.models import AuditEntry, Deployment
    from rsgo.settings import load_settings

    settings = load_settings({"RSGO_DATA_DIR": str(data_dir)})
    db.open_database(settings)
    db.migrate()
    deployment_queries.ensure_deployments(settings.environment, set(stacks))
    rows = list(Deployment.select().where(Deployment.name.in_(stacks)).order_by(Deployment.name))
    rng = random.Random(13)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    began = time.monotonic()
    with db.database.atomic():
        for index in range(entries):
            deployment = rows[index % len(rows)]
            entering = (index // len(rows)) % 2 == 0  # each deployment alternates Normal → Maintenance → Normal
            previous, new = ("Normal", "Maintenance") if entering else ("Maintenance", "Normal")
            outcome = rng.choices(("succeeded", "noop", "rejected", "failed"), (90, 5, 4, 1))[0]
            requested_at = now - dt.timedelta(seconds=(entries - index) * 90 * 86400 / entries)
            audit.record(deployment, previous_mode=previous, new_mode=new if outcome == "succeeded" else previous,
                         outcome=outcome, source=rng.choice(SOURCES), actor=f"user{rng.randrange(20)}",
                         reason=f"benchmark entry {index}: planned maintenance {rng.randrange(1000)}",
                         requested_mode=new, requested_at=requested_at,
                         error="transition_not_allowed: benchmark" if outcome == "rejected" else None)
        # audit.record stamps every entry "finished now"; spread over the 90 days they are, they end
        # when they began (the timelines read the end: 20 000 changes all "today" is no real history).
        AuditEntry.update(finished_at=AuditEntry.requested_at).execute()
    db.database.close()
    print(f"  wrote {entries} audit entries in {time.monotonic() - began:.0f}s", flush=True)


def wait_discovered(server: common.Server, token: str, stacks: list[str], timeout: float = 300) -> None:
    """Until every stack shows its container running (discovery has read the engine)."""
    wanted = set(stacks)

    def all_seen():
        items = requests.get(f"{server.url}/api/deployments", headers={"Authorization": f"Bearer {token}"},
                             timeout=60).json()["items"]
        return sum(1 for i in items if i["name"] in wanted and i["containers"]["running"] == 1) == len(wanted)

    common.wait_until(all_seen, timeout, 1.0, "discovery of every benchmark container")


def request_burst(server: common.Server, session: requests.Session, token: str, count: int) -> dict:
    """``count`` of each request, in rotation, one at a time; latencies in ms and the request windows."""
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    probe = requests.Session()
    kinds = {"GET /": (session, "/"), "GET /api/deployments": (api, "/api/deployments"),
             "GET /healthz": (probe, "/healthz")}
    latencies = {kind: [] for kind in kinds}
    windows = []
    sizes = {}
    for _ in range(count):
        for kind, (http, path) in kinds.items():
            began = time.monotonic()
            response = http.get(f"{server.url}{path}", timeout=60)
            ended = time.monotonic()
            if response.status_code != 200:
                raise RuntimeError(f"{kind}: {response.status_code} {response.text[:300]}")
            latencies[kind].append((ended - began) * 1000)
            windows.append((began, ended, kind))
            sizes[kind] = len(response.content)
    return {"latencies": latencies, "windows": windows, "sizes": sizes}


def docker_calls_report(proxy: CountingProxy, windows: list[tuple[float, float, str]]) -> dict:
    """Every Docker call between the first request's start and the last one's end, attributed."""
    start, end = windows[0][0], windows[-1][1]
    calls = proxy.calls_between(start, end)
    during_request, after_event, other = [], [], []
    for call in calls:
        kinds = sorted({kind for began, ended, kind in windows if began <= call.at <= ended})
        entry = {"method": call.method, "path": call.path, "duringRequests": kinds}
        if call.path == "/events":
            other.append(entry)
        elif proxy.follows_event(call):
            after_event.append(entry)  # discovery following a Docker event, not the request
        else:
            during_request.append(entry)
    return {"total": len(calls), "unexplained": during_request, "followingDockerEvents": after_event,
            "other": other}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 stacks, 2 000 entries, 40 requests each")
    parser.add_argument("--stacks", type=int)
    parser.add_argument("--entries", type=int)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--py-spy", metavar="FILE", help="profile the worker during the burst with py-spy (installed "
                        "separately: .venv/bin/pip install py-spy) into FILE, collapsed stacks")
    args = parser.parse_args(argv)
    stack_count = args.stacks or (30 if args.quick else 300)
    entry_count = args.entries or (2000 if args.quick else 20000)
    request_count = args.requests or (40 if args.quick else 200)
    common.terminate_on_sigterm()

    client = common.docker_client()
    server = common.Server("read")
    proxy = CountingProxy.for_docker_host(str(server.workdir / "docker-proxy.sock"))
    server.env.update({"DOCKER_HOST": proxy.docker_host, "RSGO_RESYNC_INTERVAL": "1h"})
    try:
        with common.time_limit(300 + stack_count * 1.5 + request_count * 3):
            stacks = create_fleet(client, f"bench-rl-{common.RUN_ID}", stack_count)
            seed_database(server.data_dir, stacks, entry_count)
            token = server.create_token("read")
            server.start()
            wait_discovered(server, token, stacks)
            session = server.login()
            request_burst(server, session, token, 5)  # warm-up: templates compiled, connections open
            time.sleep(2)
            profiler = common.start_profiler(server.worker_pid(), args.py_spy) if args.py_spy else None
            calls_before = proxy.count()
            burst = request_burst(server, session, token, request_count)
            calls_after = proxy.count()
            if profiler is not None:
                common.stop_profiler(profiler)
            deployments_listed = len(requests.get(f"{server.url}/api/deployments", timeout=60,
                                                  headers={"Authorization": f"Bearer {token}"}).json()["items"])
    finally:
        removed = common.remove_benchmark_containers(client)
        server.cleanup()
        proxy.close()

    calls = docker_calls_report(proxy, burst["windows"])
    latencies = burst["latencies"]
    health_p95 = common.percentile(latencies["GET /healthz"], 95)
    figures = []
    for kind, target in (("GET /", 40), ("GET /api/deployments", 12)):
        p95 = common.percentile(latencies[kind], 95)
        figures.append(common.figure(
            f"{kind} with {stack_count} stacks, {entry_count} audit entries, p95 ({request_count} requests)", p95, "ms",
            f"p95 ≤ {target} ms", p95 <= target, health_p95, "GET /healthz, p95", p95 / health_p95,
            note=f"p50 {common.median(latencies[kind]):.1f} ms; {burst['sizes'][kind] // 1024} KiB"))
    unexplained = len(calls["unexplained"])
    unparsed = proxy.unparsed_connections  # calls on such a connection were not counted: the 0 would be a guess
    figures.append(common.figure(
        "Docker API calls made by those requests", unexplained, "calls", "0", unexplained == 0 and unparsed == 0,
        note=f"{unparsed} connection(s) the proxy could not follow; "
             f"{calls_after - calls_before} calls through the proxy during the burst in all: "
             f"{len(calls['followingDockerEvents'])} inspects after Docker events of other stacks on the shared "
             f"engine (discovery), {unexplained} unexplained"))
    details = {"stacks": stack_count, "deploymentsListed": deployments_listed, "auditEntries": entry_count,
               "requestsEach": request_count,
               "latencyMs": {kind: {"p50": common.median(v), "p95": common.percentile(v, 95),
                                    "p99": common.percentile(v, 99), "max": max(v)} for kind, v in latencies.items()},
               "responseBytes": burst["sizes"], "dockerCalls": calls, "removedContainers": removed}
    # A profiled run is slowed by the profiler: it never replaces a real result.
    return common.write_result("read_latency" + ("-profiled" if args.py_spy else ""), figures, details, args.quick)


if __name__ == "__main__":
    main()
