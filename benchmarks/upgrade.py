"""Downtime of upgrading a 10-container compose stack from v1 to v2 images with rsgo's
``POST /api/deployments/{id}/upgrade``, against Debian's ``docker-compose`` 1.29 recreating the same
containers with ``docker-compose up -d`` after the image change, in the same run. Target: rsgo's
downtime ≤ 1.2 × compose's (the README's "Performance" section).

The stack: 10 services in three dependency levels, 1 → 3 → 6 (each level-1 service depends on the
level-0 one, each level-2 service on one level-1 service), written as a ``docker-compose.yml`` in a
temp dir with ``image: ${BENCH_UPGRADE_IMAGE}``, so switching the variable from v1 to v2 makes
``up -d`` recreate every container. Both images are built here ``FROM`` the tests' busybox image (no
registry is reachable) and differ in content (``/version``); both have ``HEALTHCHECK --interval=1s``
passing once the command has touched ``/tmp/ready`` (at once: the application starts in no time, so
what is measured is the orchestration), and a PID 1 that exits at once on SIGTERM. Every service
carries ``rsgo.stack: <project>``, ``com.docker.compose.depends_on: <its dependency>:<condition>:false``
(what compose v2 writes for the same file; compose 1.29 writes no such label, so the file sets it:
``service_started`` for a plain ``depends_on``, ``service_healthy`` in the gated file) and the
benchmark's run label; the project's network carries the run label too. rsgo starts a dependent once
its dependency runs (``service_started``) or passed its gate (``service_healthy``), and gates every
container before the upgrade counts as done, as the README's "Upgrades" says.

Each round brings a fresh compose project up per side (``docker-compose -p <project> up -d`` with
v1; every container healthy and rsgo showing all 10 running, then 1 s of quiet), then acts on it:

- ``compose``: ``docker-compose -p <project> up -d`` with v2. Compose 1.29 recreates dependencies
  first, each service as soon as its dependencies are done (stop, rename, create, start, remove the
  old one), and starts a dependent without waiting for its dependency's health (plain ``depends_on``,
  what most compose files say). The target's baseline.
- ``rsgo``: one ``POST /api/deployments/{id}/upgrade`` (operate token) naming all 10 services with
  the v2 image, ``healthTimeout: 2m``, ``stableFor: 0s`` (every service has a healthcheck, so each
  gate waits for ``healthy``), ``wait: true``. rsgo creates the new containers, stops the old ones
  (dependents first), swaps them, and starts each as its dependency's condition allows.
- ``compose-gated`` (context, ``--without-gated`` leaves it out): ``up -d`` with v2 on a project whose
  file says ``depends_on: {<dependency>: {condition: service_healthy}}``, compose's own way of waiting
  for a dependency's health before starting a dependent, as rsgo's gate does.

Downtime is measured from the first old container's ``die`` to the last new container's
``health_status: healthy``, both timestamps (``timeNano``) from Docker's own event stream, i.e. the
daemon's clock: the same source for every side, independent of any poller's interval and of when a
caller notices. The stream is subscribed to before the action and read live (filtered on the
project's label and the container events that matter; the daemon's backlog of 256 events is too
short on a shared engine where 10 healthchecks a second each make events). The time before the first
stop (compose reading the project, rsgo planning and checking images) is not downtime: everything
still runs. Each round runs the sides in rotating order (the engine warms up, the host is noisy);
reported: the median of each side with its spread (min–max and interquartile range), the ratio of the
medians, and the median of the per-round ratios. rsgo's own steps (``steps`` of the upgrade's answer,
with ``durationMs``) and a timeline per dependency level from the events are kept in the result file.

    .venv/bin/python benchmarks/upgrade.py [--quick] [--rounds 10] [--without-gated]

Needs ``docker-compose`` (Debian's package: ``apt-get install docker-compose``); installs nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

TARGET_RATIO = 1.2
IMAGE_REPOSITORY = f"rsgo-bench/upgrade-{common.RUN_ID}"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# Level 0: one service; level 1: three, each depending on it; level 2: six, two on each level-1 service.
SERVICES: dict[str, str | None] = {"l0a": None, **{f"l1{c}": "l0a" for c in "abc"},
                                   **{f"l2{c}": f"l1{'abc'[i // 2]}" for i, c in enumerate("abcdef")}}
LEVELS = {name: int(name[1]) for name in SERVICES}
# The container events the measurement reads (exec_* of the healthchecks, ten a second, left out).
EVENTS = ["kill", "die", "stop", "rename", "create", "start", "destroy", "health_status"]
HEALTHY = "health_status: healthy"
SIDES = ("compose", "rsgo", "compose-gated")
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; touch /tmp/ready; sleep 86400 & wait"]


def dockerfile(version: str) -> str:
    return (f"FROM {common.TEST_IMAGE}\n"
            f"RUN echo {version} > /version\n"
            f"LABEL rsgo.bench.version={version}\n"
            "HEALTHCHECK --interval=1s --timeout=2s --retries=3 CMD test -f /tmp/ready\n"
            f"CMD {json.dumps(COMMAND)}\n")


def build_images(client) -> dict[str, str]:
    """v1 and v2, tagged under this run's repository; version -> image id."""
    ids = {}
    for version in ("v1", "v2"):
        image, _ = client.images.build(fileobj=io.BytesIO(dockerfile(version).encode()), rm=True,
                                       tag=f"{IMAGE_REPOSITORY}:{version}", labels={common.BENCH_LABEL: common.RUN_ID})
        ids[version] = image.id
    return ids


def compose_file(gated: bool) -> str:
    services = {}
    for name, dependency in SERVICES.items():
        labels = {"rsgo.stack": "${BENCH_STACK}", common.BENCH_LABEL: common.RUN_ID}
        service = {"image": "${BENCH_UPGRADE_IMAGE}", "labels": labels}
        if dependency:
            # What compose v2 writes for this file (1.29 writes no such label): rsgo reads the condition.
            condition = "service_healthy" if gated else "service_started"
            labels["com.docker.compose.depends_on"] = f"{dependency}:{condition}:false"
            service["depends_on"] = {dependency: {"condition": "service_healthy"}} if gated else [dependency]
        services[name] = service
    return yaml.safe_dump({"version": "2.4", "services": services,
                           "networks": {"default": {"labels": {common.BENCH_LABEL: common.RUN_ID}}}}, sort_keys=False)


class Compose:
    """``docker-compose`` on the temp dir's two files (plain ``depends_on`` and ``service_healthy``)."""

    def __init__(self, executable: str, workdir: Path):
        self.executable = executable
        self.workdir = workdir
        (workdir / "plain.yml").write_text(compose_file(gated=False))
        (workdir / "gated.yml").write_text(compose_file(gated=True))

    def up(self, project: str, version: str, gated: bool, timeout: float = 240) -> float:
        """``docker-compose -p <project> up -d`` with the image of ``version``; returns its wall time."""
        environ = {**os.environ, "BENCH_UPGRADE_IMAGE": f"{IMAGE_REPOSITORY}:{version}", "BENCH_STACK": project,
                   "COMPOSE_HTTP_TIMEOUT": "300"}
        file = self.workdir / ("gated.yml" if gated else "plain.yml")
        command = [self.executable, "--ansi", "never", "-f", str(file), "-p", project, "up", "-d"]
        began = time.monotonic()
        # subprocess.run kills compose when an exception (our time bound, SIGTERM) interrupts the wait.
        result = subprocess.run(command, cwd=self.workdir, env=environ, capture_output=True, text=True,
                                timeout=timeout)
        elapsed = time.monotonic() - began
        if result.returncode != 0:
            raise RuntimeError(f"docker-compose up -d ({project}, {version}) exited with {result.returncode}: "
                               f"{result.stderr[-2000:]}")
        return elapsed


class EventRecorder:
    """The project's container events, read live from Docker's stream in a thread of its own."""

    def __init__(self, client, project: str):
        self.events: list[dict] = []
        self._stream = client.api.events(decode=True, filters={
            "type": "container", "label": f"{PROJECT_LABEL}={project}", "event": EVENTS})
        self._thread = threading.Thread(target=self._read, name=f"events-{project}", daemon=True)
        self._thread.start()
        time.sleep(0.5)  # the daemon subscribes us just after answering the request

    def _read(self) -> None:
        try:
            for event in self._stream:
                self.events.append(event)
        except Exception:  # noqa: BLE001 - closing the stream ends the loop however it can
            pass

    def healthy_services(self, old_ids: set[str]) -> set[str]:
        return {e["Actor"]["Attributes"].get(SERVICE_LABEL) for e in list(self.events)
                if e.get("Action") == HEALTHY and e["id"] not in old_ids}

    def close(self) -> None:
        self._stream.close()
        self._thread.join(10)


def running_containers(client, project: str) -> list[dict]:
    return client.api.containers(filters={"label": f"{PROJECT_LABEL}={project}"})


def stack_ready(client, project: str, image_id: str) -> bool:
    """All 10 services run one container each, from ``image_id``, healthy."""
    containers = running_containers(client, project)
    if sorted(c["Labels"].get(SERVICE_LABEL) for c in containers) != sorted(SERVICES):
        return False
    for summary in containers:
        state = client.api.inspect_container(summary["Id"])
        if state["Image"] != image_id or (state["State"].get("Health") or {}).get("Status") != "healthy":
            return False
    return True


def rsgo_shows_running(server: common.Server, token: str, deployment_id: int) -> bool:
    body = requests.get(f"{server.url}/api/deployments/{deployment_id}", headers=common.bearer(token),
                        timeout=30).json()
    return body["containerCounts"]["running"] == len(SERVICES) and body["operationMode"] == "Normal"


def remove_project(client, project: str) -> list[str]:
    """Its containers (the kept-aside ones too), then its network; the networks Docker would not remove.

    Stopped before they are removed, as ``docker-compose down`` does: force-removing running containers
    in parallel can leave Docker 20.10 counting an endpoint that no longer exists (moby/moby#42119), and
    then the network cannot be removed until the daemon restarts."""
    containers = client.api.containers(all=True, filters={"label": f"{PROJECT_LABEL}={project}"})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: _ignore_missing(client.api.stop, c["Id"], timeout=5), containers))
        list(pool.map(lambda c: _ignore_missing(client.api.remove_container, c["Id"], force=True), containers))
    left = []
    for network in client.api.networks(filters={"label": f"{PROJECT_LABEL}={project}"}):
        try:
            common.wait_until(lambda network=network: _removed(client, network["Id"]), 15, 0.5,
                              f"network {network['Name']} removed")
        except AssertionError:
            left.append(network["Name"])
    return left


def _removed(client, network_id: str) -> bool:
    try:
        client.api.remove_network(network_id)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as error:
        if "active endpoints" in str(error):
            return False  # an endpoint still being released; or leaked for good (then reported)
        raise
    return True


def _ignore_missing(call, *args, **kwargs) -> None:
    try:
        call(*args, **kwargs)
    except docker.errors.NotFound:
        pass


def ns(event: dict) -> int:
    return int(event["timeNano"])


def measure(events: list[dict], old_ids: set[str]) -> dict:
    """Downtime, and a timeline in seconds after the first old container's ``die``, from Docker's events."""
    events = sorted(events, key=ns)
    dies = [ns(e) for e in events if e.get("Action") == "die" and e["id"] in old_ids]
    if len(dies) != len(SERVICES):
        raise RuntimeError(f"{len(dies)} of the {len(SERVICES)} old containers were seen dying")
    first_stop = dies[0]
    new: dict[str, dict[str, int]] = {}  # service -> its new container's create, start and first healthy
    for e in events:
        action = "healthy" if e.get("Action") == HEALTHY else e.get("Action")
        if e["id"] not in old_ids and action in ("create", "start", "healthy"):
            new.setdefault(e["Actor"]["Attributes"].get(SERVICE_LABEL), {}).setdefault(action, ns(e))
    missing = sorted(s for s in SERVICES if "healthy" not in new.get(s, {}))
    if missing:
        raise RuntimeError(f"no healthy event of a new container for {', '.join(missing)}")

    def after(value: int) -> float:
        return round((value - first_stop) / 1e9, 3)

    def span(names, what: str) -> tuple[float, float]:
        values = [new[s][what] for s in names if what in new[s]]
        return (after(min(values)), after(max(values))) if values else (None, None)

    levels = []
    for level in sorted(set(LEVELS.values())):
        names = [s for s in SERVICES if LEVELS[s] == level]
        (first_start, last_start), (_, last_healthy) = span(names, "start"), span(names, "healthy")
        levels.append({"level": level, "firstStart": first_start, "lastStart": last_start,
                       "lastHealthy": last_healthy})
    first_create, last_create = span(SERVICES, "create")
    return {"downtime": (max(new[s]["healthy"] for s in SERVICES) - first_stop) / 1e9, "lastOldDie": after(dies[-1]),
            "firstCreate": first_create, "lastCreate": last_create, "levels": levels}


def act(side: str, project: str, compose: Compose, server: common.Server, token: str, deployment_id: int | None,
        new_ref: str) -> dict:
    """The measured action; its wall time and, for rsgo, the upgrade's steps."""
    if side != "rsgo":
        return {"wall": compose.up(project, "v2", gated=side == "compose-gated")}
    body = {"images": dict.fromkeys(SERVICES, new_ref), "healthTimeout": "2m", "stableFor": "0s", "wait": True,
            "reason": "benchmark"}
    began = time.monotonic()
    response = requests.post(f"{server.url}/api/deployments/{deployment_id}/upgrade", json=body,
                             headers=common.bearer(token), timeout=300)
    wall = time.monotonic() - began
    answer = response.json()
    if response.status_code != 200 or answer.get("status") != "succeeded":
        raise RuntimeError(f"rsgo upgrade: {response.status_code} {str(answer)[:1500]}")
    return {"wall": wall, "steps": {s["step"]: s["durationMs"] for s in answer["steps"]}}


def run_side(side: str, project: str, client, compose: Compose, server: common.Server, token: str,
             images: dict[str, str]) -> dict:
    """One side of a round: the stack up on v1, settled, then upgraded to v2 while Docker's events are read."""
    compose.up(project, "v1", gated=side == "compose-gated")
    common.wait_until(lambda: stack_ready(client, project, images["v1"]), 120, 0.2, f"{project} healthy on v1")
    # rsgo follows every side's stack (the same background work for all); only the rsgo side is upgraded by it.
    deployment_id = common.deployment_ids(server, token, {project})[project]
    common.wait_until(lambda: rsgo_shows_running(server, token, deployment_id), 60, 0.2,
                      f"rsgo to show {project}'s {len(SERVICES)} containers running")
    time.sleep(1.0)
    old_ids = {c["Id"] for c in running_containers(client, project)}
    recorder = EventRecorder(client, project)
    try:
        outcome = act(side, project, compose, server, token, deployment_id, f"{IMAGE_REPOSITORY}:v2")
        common.wait_until(lambda: recorder.healthy_services(old_ids) >= set(SERVICES), 120, 0.1,
                          f"every new container of {project} healthy")
    finally:
        recorder.close()
    common.wait_until(lambda: stack_ready(client, project, images["v2"]), 60, 0.2, f"{project} healthy on v2")
    return {**outcome, **measure(recorder.events, old_ids)}


def describe(name: str, s: dict) -> str:
    return (f"{name} {s['median']:.2f} s (min–max {s['min']:.2f}–{s['max']:.2f}, "
            f"IQR {s['p25']:.2f}–{s['p75']:.2f})")


def cleanup(client, projects: list[str], leaked: list[str]) -> tuple[int, list[str]]:
    """Everything this run made, each kind on its own (one failing does not keep the others); the
    number of containers removed by the run label, and the networks Docker would not remove."""
    removed = 0
    try:
        for project in projects:
            leaked += remove_project(client, project)
        removed = common.remove_benchmark_containers(client)
        for network in client.api.networks(filters={"label": f"{common.BENCH_LABEL}={common.RUN_ID}"}):
            if not _removed(client, network["Id"]):
                leaked.append(network["Name"])
    except docker.errors.APIError as error:
        print(f"cleanup: {error}", file=sys.stderr)
    for tag in ("v1", "v2"):
        try:
            _ignore_missing(client.images.remove, f"{IMAGE_REPOSITORY}:{tag}", force=True)
        except docker.errors.APIError as error:
            print(f"cleanup: {error}", file=sys.stderr)
    leaked = sorted(set(leaked))
    if leaked:
        print(f"left behind: network(s) {', '.join(leaked)}: Docker still counts an endpoint of a removed "
              "container (moby/moby#42119); they go when the daemon restarts", file=sys.stderr)
    return removed, leaked


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--without-gated", action="store_true",
                        help="leave out the compose-gated side (compose with condition: service_healthy)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 10)
    sides = [side for side in SIDES if not (args.without_gated and side == "compose-gated")]
    executable = shutil.which("docker-compose")
    if executable is None:
        print("docker-compose is missing: this benchmark compares rsgo with Debian's docker-compose 1.29;\n"
              "install it with:  apt-get install docker-compose", file=sys.stderr)
        sys.exit(2)
    compose_version = subprocess.run([executable, "version", "--short"], capture_output=True, text=True).stdout.strip()
    common.terminate_on_sigterm()

    client = common.docker_client()
    workdir = Path(tempfile.mkdtemp(prefix="rsgo-bench-upgrade-compose-"))
    server = common.Server("upgrade")
    projects: list[str] = []
    leaked: list[str] = []  # networks Docker would not remove (see remove_project)
    results: dict[str, list[dict]] = {side: [] for side in sides}
    try:
        with common.time_limit(240 + rounds * len(sides) * 50):
            images = build_images(client)
            compose = Compose(executable, workdir)
            token = server.create_token("operate")
            server.start()
            server.wait_ready()
            for round_number in range(rounds):
                # Rotate who goes first: no side always gets the warmer (or busier) engine.
                order = sides[round_number % len(sides):] + sides[:round_number % len(sides)]
                for side in order:
                    project = f"bup{common.RUN_ID}r{round_number:02d}{side.replace('-', '')}"
                    projects.append(project)
                    try:
                        measured = run_side(side, project, client, compose, server, token, images)
                    finally:
                        leaked += remove_project(client, project)
                    results[side].append(measured)
                    steps = ""
                    if "steps" in measured:
                        steps = ", steps " + ", ".join(f"{k} {v / 1000:.2f}" for k, v in measured["steps"].items())
                    healthy = "/".join(f"{level['lastHealthy']:.1f}" for level in measured["levels"])
                    print(f"  round {round_number + 1} {side}: downtime {measured['downtime']:.2f}s (levels healthy "
                          f"at {healthy}s; call {measured['wall']:.2f}s{steps})", flush=True)
    finally:
        server.cleanup()
        removed, leaked = cleanup(client, projects, leaked)
        shutil.rmtree(workdir, ignore_errors=True)

    downtimes = {side: [r["downtime"] for r in results[side]] for side in sides}
    spreads = {side: common.spread(values) for side, values in downtimes.items()}
    rsgo = spreads["rsgo"]["median"]
    what = (f"upgrade downtime, {len(SERVICES)} containers in levels 1 → 3 → 6 with 1 s healthchecks, v1 → v2: "
            f"first old die → last new healthy (median of {rounds})")
    figures = []
    for side, target, baseline_what in (
            ("compose", f"≤ {TARGET_RATIO} × docker-compose up -d", f"docker-compose {compose_version} up -d"),
            ("compose-gated", f"≤ {TARGET_RATIO} × docker-compose up -d with service_healthy (context)",
             f"docker-compose {compose_version} up -d, depends_on condition: service_healthy")):
        if side not in sides:
            continue
        baseline = spreads[side]["median"]
        paired = common.median([r / b for r, b in zip(downtimes["rsgo"], downtimes[side], strict=True)])
        note = (f"{describe('rsgo', spreads['rsgo'])}; {describe(side, spreads[side])}; "
                f"median of the per-round ratios {paired:.2f}")
        figures.append(common.figure(what if side == "compose" else f"the same, against compose waiting for health "
                                     f"(median of {rounds})", rsgo, "s", target, rsgo / baseline <= TARGET_RATIO,
                                     baseline, baseline_what, rsgo / baseline, note))
    step_names = list(dict.fromkeys(name for r in results["rsgo"] for name in r["steps"]))
    details = {"services": {name: {"level": LEVELS[name], "dependsOn": dep} for name, dep in SERVICES.items()},
               "rounds": rounds, "sides": sides, "dockerCompose": compose_version, "downtime": spreads,
               "rsgoStepMedianMs": {name: common.median([r["steps"][name] for r in results["rsgo"]
                                                         if name in r["steps"]]) for name in step_names},
               "callMedianSeconds": {side: common.median([r["wall"] for r in results[side]]) for side in sides},
               "perRound": results, "removedContainers": removed, "networksLeftBehind": leaked,
               "measuredFrom": "Docker events (timeNano): first old container's die → last new container's "
                               "health_status: healthy"}
    return common.write_result("upgrade", figures, details, args.quick)


if __name__ == "__main__":
    main()
