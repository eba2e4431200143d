"""Enter and leave Maintenance on a 30-container stack whose containers each take ~1 s to stop,
against ``docker stop`` / ``docker start`` of the same 30 containers in one CLI call.

Each round measures both, in alternating order (the engine warms up and the host is noisy), with
every container running again and rsgo's view settled before each stop. Reported: medians over the
rounds and their ratio (rsgo / docker), target ≤ 1.2.

The target is listed in the README's "Performance" section.

    .venv/bin/python benchmarks/stop_start.py [--quick] [--containers 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
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
    return {"stop": stop, "start": start}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 containers, 2 rounds")
    parser.add_argument("--containers", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--stop-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)
    count = args.containers or (10 if args.quick else 30)
    rounds = args.rounds or (2 if args.quick else 3)
    default_concurrency = load_settings({}).action_concurrency
    common.terminate_on_sigterm()

    client = common.docker_client()
    stack = f"bench-ss-{common.RUN_ID}"
    # rsgo as shipped, and (for comparison) rsgo allowed to act on the whole stack at once, like the CLI.
    rsgo_servers = {"rsgo": common.Server("stop-start"),
                    "rsgo-wide": common.Server("stop-start-wide", {"RSGO_ACTION_CONCURRENCY": str(count)})}
    try:
        with common.time_limit(180 + rounds * (90 + 6 * count * args.stop_seconds)):
            names = common.create_containers(client, [
                {"name": f"{stack}-{i:02d}", "stack": stack, "command": stop_in(args.stop_seconds)}
                for i in range(count)])
            servers = []
            for server in rsgo_servers.values():
                token = server.create_token("operate")
                server.start()
                common.deployment_ids(server, token, {stack})
                servers.append((server, token))
            tokens = dict(zip(rsgo_servers, (token for _, token in servers), strict=True))
            settle(servers, stack, client, names, running=True)
            sides = ["rsgo", "docker", "rsgo-wide"]
            results = {side: [] for side in sides}
            for round_number in range(rounds):
                # Rotate who goes first: no side always gets the warmer (or busier) engine.
                order = sides[round_number % 3:] + sides[:round_number % 3]
                for side in order:
                    if side == "docker":
                        measured = docker_cycle(servers, stack, client, names)
                    else:
                        measured = rsgo_cycle(rsgo_servers[side], tokens[side], servers, stack, client, names)
                    results[side].append(measured)
                    print(f"  round {round_number + 1} {side}: stop {measured['stop']:.2f}s, "
                          f"start {measured['start']:.2f}s", flush=True)
    finally:
        removed = common.remove_benchmark_containers(client)
        for server in rsgo_servers.values():
            server.cleanup()

    medians = {side: {what: common.median([r[what] for r in results[side]]) for what in ("stop", "start")}
               for side in results}
    docker_stop, docker_start = medians["docker"]["stop"], medians["docker"]["start"]
    figures = []
    for side, label in (("rsgo", f"RSGO_ACTION_CONCURRENCY={default_concurrency}, the default"),
                        ("rsgo-wide", f"RSGO_ACTION_CONCURRENCY={count}")):
        stop, start = medians[side]["stop"], medians[side]["start"]
        figures += [
            common.figure(f"enter Maintenance, {count} containers each stopping in ~{args.stop_seconds:g} s, "
                          f"{label} (median of {rounds})", stop, "s", "≤ 1.2 × docker stop",
                          stop / docker_stop <= 1.2, docker_stop, f"docker stop <{count} names>", stop / docker_stop),
            common.figure(f"leave Maintenance, same containers, {label} (median of {rounds})", start, "s",
                          "≤ 1.2 × docker start", start / docker_start <= 1.2, docker_start,
                          f"docker start <{count} names>", start / docker_start),
        ]
    details = {"containers": count, "rounds": rounds, "stopSeconds": args.stop_seconds,
               "defaultActionConcurrency": default_concurrency, "medians": medians, "perRound": results,
               "removedContainers": removed}
    return common.write_result("stop_start", figures, details, args.quick)


if __name__ == "__main__":
    main()
