"""The dashboard and the API with 300 stacks spread over 3 environments while one of them hangs:
``GET /`` and ``GET /api/deployments`` p95 stay within the single-engine target (README
"Performance"), beside ``GET /healthz`` in the same run as the baseline.

Environments: the main engine and a second private dockerd (tests/engines.py, its own data root,
socket and bridge), a third of the stacks each, and a TCP listener that accepts and never answers
(a hung engine) holding the last third (declared in the config file, so their deployments exist).
During the burst another thread keeps asking for mode changes of the hung environment's stacks, as
an impatient operator would (two a second): those requests must not slow anyone else down.

    .venv/bin/python benchmarks/environments.py [--quick] [--stacks 300] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import common
from read_latency import request_burst

from engines import Engine, HungEngine

TARGET_MS = 100  # the single-engine target of read_latency.py
# Two mode changes a second of the hung environment's stacks: an impatient operator, or a script retrying.
# (Without a pause, 20 a second on this 2-core machine took CPU from the measured requests: GET / p95 171 ms.)
PAUSE_BETWEEN_HUNG_CHANGES = 0.5


def hung_mode_changes(server: common.Server, token: str, ids: list[int], stop: threading.Event) -> dict:
    """Mode changes of the hung environment's stacks, one after another, until ``stop``."""
    answers: dict = {"count": 0, "statuses": {}, "slowestMs": 0.0}
    headers = {"Authorization": f"Bearer {token}"}
    index = 0
    while not stop.is_set():
        began = time.monotonic()
        response = requests.put(f"{server.url}/api/deployments/{ids[index % len(ids)]}/operation-mode", timeout=120,
                                json={"newMode": "Maintenance", "reason": "benchmark: the hung engine"},
                                headers=headers)
        answers["count"] += 1
        answers["statuses"][response.status_code] = answers["statuses"].get(response.status_code, 0) + 1
        answers["slowestMs"] = max(answers["slowestMs"], (time.monotonic() - began) * 1000)
        index += 1
        stop.wait(PAUSE_BETWEEN_HUNG_CHANGES)
    return answers


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 stacks, 40 requests each")
    parser.add_argument("--stacks", type=int)
    parser.add_argument("--requests", type=int)
    args = parser.parse_args(argv)
    stack_count = args.stacks or (30 if args.quick else 300)
    request_count = args.requests or (40 if args.quick else 200)
    per_environment = stack_count // 3
    common.terminate_on_sigterm()

    main_client = common.docker_client()
    second = Engine("/tmp/rsgo-bench-dockerd2", "rsgob2br", "172.30.97.1/24")
    hung = HungEngine()
    server = common.Server("environments")
    prefix = f"bench-env-{common.RUN_ID}"
    names = {env: [f"{prefix}-{env}-{i:03d}" for i in range(per_environment)] for env in ("local", "second", "hung")}
    try:
        with common.time_limit(600 + stack_count * 2 + request_count * 3):
            second.start()
            for env, client in (("local", main_client), ("second", second.client)):
                common.create_containers(client, [{"name": f"{name}-app", "stack": name, "command": common.IDLE,
                                                   "init": True} for name in names[env]])
            config = server.workdir / "rsgo.yml"
            main_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
            config.write_text(yaml.safe_dump({
                "environments": {"local": {"url": main_url}, "second": {"url": second.url},
                                 "hung": {"url": hung.url, "timeout": "10s"}},
                "stacks": {name: {"environment": "hung"} for name in names["hung"]}}))
            server.env.update({"RSGO_CONFIG": str(config), "RSGO_RESYNC_INTERVAL": "1h"})
            token = server.create_token("operate")
            server.start()
            visible = set(names["local"]) | set(names["second"])
            common.wait_until(lambda: sum(
                1 for item in requests.get(f"{server.url}/api/deployments", timeout=60,
                                           headers={"Authorization": f"Bearer {token}"}).json()["items"]
                if item["name"] in visible and item["containers"]["running"] == 1) == len(visible),
                300, 1.0, "discovery of both engines' stacks")
            hung_ids = list(common.deployment_ids(server, token, set(names["hung"])).values())
            session = server.login()
            request_burst(server, session, token, 5)  # warm-up
            stop = threading.Event()
            impatient: dict = {}
            worker = threading.Thread(target=lambda: impatient.update(hung_mode_changes(server, token, hung_ids,
                                                                                        stop)), daemon=True)
            worker.start()
            burst = request_burst(server, session, token, request_count)
            stop.set()
            worker.join(180)
            environments = requests.get(f"{server.url}/api/environments", timeout=60,
                                        headers={"Authorization": f"Bearer {token}"}).json()["items"]
    finally:
        common.remove_benchmark_containers(main_client)
        if second.is_running:
            common.remove_benchmark_containers(second.client)
            second.stop()
        hung.close()
        server.cleanup()

    latencies = burst["latencies"]
    health_p95 = common.percentile(latencies["GET /healthz"], 95)
    figures = []
    for kind in ("GET /", "GET /api/deployments"):
        p95 = common.percentile(latencies[kind], 95)
        figures.append(common.figure(
            f"{kind} with {stack_count} stacks over 3 environments, one hung, p95 ({request_count} requests)", p95,
            "ms", f"p95 ≤ {TARGET_MS} ms (single engine)", p95 <= TARGET_MS, health_p95, "GET /healthz, p95",
            p95 / health_p95, note=f"p50 {common.median(latencies[kind]):.1f} ms; meanwhile "
                                   f"{impatient.get('count', 0)} mode changes of hung stacks answered "
                                   f"{impatient.get('statuses')}"))
    details = {"stacks": stack_count, "requestsEach": request_count, "environments": environments,
               "hungModeChanges": impatient,
               "latencyMs": {kind: {"p50": common.median(v), "p95": common.percentile(v, 95),
                                    "p99": common.percentile(v, 99), "max": max(v)} for kind, v in latencies.items()}}
    return common.write_result("environments", figures, details, args.quick)


if __name__ == "__main__":
    main()
