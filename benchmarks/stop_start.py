"""Enter and leave Maintenance on a 30-container stack whose containers each take ~1 s to stop,
with rsgo's default settings, against the Docker CLI on the same 30 containers: ``docker stop``
with all names (the CLI stops them in parallel), ``docker start`` with all names (one after
another) and, as a second baseline for leaving, one ``docker start`` per container, all at once.

Rounds are paired: each measures every side in an order rotated from round to round (the engine
warms up and the host is noisy), with every container running again and every view settled
before each stop. A ratio near its target is decided by the median of the per-round ratios over
10 rounds, and reported with its interquartile range (issue: figures that hold up).

The targets are listed in the README's "Performance" section.

    .venv/bin/python benchmarks/stop_start.py [--quick] [--containers 30] [--rounds 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

from rsgo.settings import load_settings


def stop_in(seconds: float) -> list[str]:
    """PID 1 that waits (no polling loop: ``wait`` returns as soon as TERM arrives), then its TERM trap
    takes ``seconds`` before exiting: a container that needs ~``seconds`` to stop."""
    return ["sh", "-c", f"trap 'sleep {seconds:g}; exit 0' TERM; sleep 86400 & wait"]


def timed_change(server: common.Server, token: str, stack: str, mode: str) -> tuple[float, dict]:
    """The API call a script makes: PUT operation-mode, waiting until every container is done."""
    began = time.monotonic()
    response = common.put_mode(server, stack, mode, common.bearer(token), timeout=300, reason="benchmark", wait=True)
    elapsed = time.monotonic() - began
    body = response.json()
    if response.status_code != 200 or body.get("outcome") != "succeeded":
        raise RuntimeError(f"{mode}: {response.status_code} {str(body)[:500]}")
    return elapsed, body


def running_count(server: common.Server, token: str, stack: str) -> int:
    body = requests.get(f"{server.url}/api/deployments/{stack}", headers={"Authorization": f"Bearer {token}"},
                        timeout=30).json()
    return body["containerCounts"]["running"]


def settle(servers: list, stack: str, client, names: list[str], running: bool) -> None:
    """Until Docker and every rsgo's view agree that every container is running (or stopped), plus a
    pause so the event burst of the last action is processed before the next measurement begins."""
    expected = len(names) if running else 0
    common.wait_until(lambda: sum(client.api.inspect_container(n)["State"]["Running"] for n in names) == expected,
                      60, 0.2, f"containers {'running' if running else 'stopped'} in Docker")
    for server, token in servers:
        common.wait_until(lambda server=server, token=token: running_count(server, token, stack) == expected, 60, 0.2,
                          f"rsgo to show {expected} running")
    time.sleep(1.0)


def rsgo_cycle(server, token, servers, stack, client, names) -> dict:
    stop, body = timed_change(server, token, stack, "Maintenance")
    stop_actions = [c["durationMs"] for c in body["transition"]["containers"]]
    settle(servers, stack, client, names, running=False)
    start, body = timed_change(server, token, stack, "Normal")
    start_actions = [c["durationMs"] for c in body["transition"]["containers"]]
    settle(servers, stack, client, names, running=True)
    return {"stop": stop, "start": start, "stopActionMsMax": max(stop_actions),
            "startActionMsMax": max(start_actions)}


def docker_cycle(servers, stack, client, names) -> dict:
    stop = common.docker_cli("stop", *names)
    settle(servers, stack, client, names, running=False)
    start = common.docker_cli("start", *names)
    settle(servers, stack, client, names, running=True)
    common.docker_cli("stop", *names)
    settle(servers, stack, client, names, running=False)
    # What a script that wants speed does: one CLI call per container, all at once.
    began = time.monotonic()
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda name: common.docker_cli("start", name), names))
    parallel_start = time.monotonic() - began
    settle(servers, stack, client, names, running=True)
    return {"stop": stop, "start": start, "parallelStart": parallel_start}


def _spread_text(s: dict) -> str:
    return f"median {s['median']:.2f}, IQR {s['p25']:.2f}–{s['p75']:.2f}, min–max {s['min']:.2f}–{s['max']:.2f}"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 containers, 2 rounds")
    parser.add_argument("--containers", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--stop-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    count = args.containers or (10 if args.quick else 30)
    rounds = args.rounds or (2 if args.quick else 10)
    default_concurrency = load_settings({}).action_concurrency
    common.terminate_on_sigterm()

    client = common.docker_client()
    stack = f"bench-ss-{common.RUN_ID}"
    server = common.Server("stop-start")  # rsgo as shipped: no setting changed
    try:
        with common.time_limit(180 + rounds * (90 + 8 * count * args.stop_seconds)):
            names = common.create_containers(client, [
                {"name": f"{stack}-{i:02d}", "stack": stack, "command": stop_in(args.stop_seconds)}
                for i in range(count)])
            token = server.create_token("operate")
            server.start()
            common.deployment_ids(server, token, {stack})
            servers = [(server, token)]
            settle(servers, stack, client, names, running=True)
            sides = ["rsgo", "docker"]
            results = {side: [] for side in sides}
            for round_number in range(rounds):
                # Alternate who goes first: no side always gets the warmer (or busier) engine.
                for side in sides if round_number % 2 == 0 else reversed(sides):
                    if side == "docker":
                        measured = docker_cycle(servers, stack, client, names)
                    else:
                        measured = rsgo_cycle(server, token, servers, stack, client, names)
                    results[side].append(measured)
                    print(f"  round {round_number + 1} {side}: " + ", ".join(
                        f"{what} {value:.2f}s" for what, value in measured.items() if not what.endswith("Max")),
                        flush=True)
    finally:
        removed = common.remove_benchmark_containers(client)
        server.cleanup()

    rsgo_runs, docker_runs = results["rsgo"], results["docker"]
    ratios = {
        "stop": [r["stop"] / d["stop"] for r, d in zip(rsgo_runs, docker_runs, strict=True)],
        "start": [r["start"] / d["start"] for r, d in zip(rsgo_runs, docker_runs, strict=True)],
        "parallelStart": [r["start"] / d["parallelStart"] for r, d in zip(rsgo_runs, docker_runs, strict=True)],
    }
    spreads = {"ratios": {what: common.spread(values) for what, values in ratios.items()},
               "rsgo": {what: common.spread([r[what] for r in rsgo_runs]) for what in ("stop", "start")},
               "docker": {what: common.spread([d[what] for d in docker_runs])
                          for what in ("stop", "start", "parallelStart")}}
    label = ("default settings" if default_concurrency == 0 else f"RSGO_ACTION_CONCURRENCY={default_concurrency}, "
             "the default")
    rows = [("stop", f"enter Maintenance, {count} containers each stopping in ~{args.stop_seconds:g} s, {label}",
             "stop", f"docker stop <{count} names>", 1.05),
            ("start", f"leave Maintenance, same containers, {label}", "start",
             f"docker start <{count} names>", 0.65),
            ("parallelStart", f"leave Maintenance, same containers, {label}", "start",
             f"{count} × docker start <name>, all at once", 1.2)]
    figures = []
    for ratio_of, what, rsgo_side, baseline_what, target in rows:
        ratio = spreads["ratios"][ratio_of]
        measured = spreads["rsgo"][rsgo_side]["median"]
        baseline = spreads["docker"][ratio_of]["median"]
        figures.append(common.figure(
            f"{what} (median of {rounds} paired rounds)", measured, "s", f"≤ {target:g} × {baseline_what}",
            ratio["median"] <= target, baseline, baseline_what, ratio["median"],
            note=f"per-round ratio {_spread_text(ratio)}"))
    details = {"containers": count, "rounds": rounds, "stopSeconds": args.stop_seconds,
               "defaultActionConcurrency": default_concurrency, "spreads": spreads, "ratios": ratios,
               "perRound": results, "removedContainers": removed}
    return common.write_result("stop_start", figures, details, args.quick)


if __name__ == "__main__":
    main()
