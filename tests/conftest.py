"""Shared fixtures: a real Docker engine, labelled test containers, apps on temp data dirs,
``rsgo serve`` processes, a private PostgreSQL, and apps on a fake Docker gateway for requests
refused before anything reaches Docker.

Nothing here skips: a missing Docker engine fails the run, because a Docker test that
does not run is a missing test. ``scripts/test`` provides the engine. Helpers that the benchmarks
use too (the test image, the server process, the websocket reader, ``put_mode``, ``wait_until``)
are in support.py; the security tests' own fixtures are in security/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import docker
import pytest
from flask.testing import FlaskClient

from fake_gateway import FakeGateway, FakeStack
from rsgo import create_app
from rsgo.security import tokens
from rsgo.settings import load_settings
from support import TEST_IMAGE, ServerProcess, ensure_test_image, free_port, wait_until

RUN_LABEL = "rsgo.test.run"
RUN_ID = uuid.uuid4().hex[:8]

# A PID 1 that exits at once on SIGTERM, and one that takes ~2 s (its TERM trap sleeps).
QUICK = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
SLOW_2S = ["sh", "-c", "trap 'sleep 2; exit 0' TERM; while :; do sleep 0.1; done"]


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"no Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST')!r}: {error}. "
                    "Run the tests through scripts/test, which starts one.", pytrace=False)
    try:
        ensure_test_image(client)
    except AssertionError as error:  # busybox is missing on the host
        pytest.fail(str(error), pytrace=False)
    yield client
    for container in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}):
        container.remove(force=True)
    client.close()


class Stack:
    """Containers of one test stack, named and labelled uniquely for this test."""

    def __init__(self, client, name: str):
        self.client = client
        self.name = name
        self.containers: dict[str, docker.models.containers.Container] = {}

    def container_name(self, short: str) -> str:
        return f"{self.name}-{short}"

    def add(self, short: str, *, labels: dict | None = None, command=None, running: bool = True,
            stop_timeout: int | None = None, healthcheck: dict | None = None, stack_label: str | None = None):
        all_labels = {"rsgo.stack": stack_label or self.name, RUN_LABEL: RUN_ID, **(labels or {})}
        created = self.client.api.create_container(
            TEST_IMAGE, command or QUICK, name=self.container_name(short), labels=all_labels,
            stop_timeout=stop_timeout, healthcheck=healthcheck, host_config=self.client.api.create_host_config())
        container = self.client.containers.get(created["Id"])
        if running:
            container.start()
        self.containers[short] = container
        return container

    def state(self, short: str) -> dict:
        return self.client.api.inspect_container(self.container_name(short))["State"]

    def is_running(self, short: str) -> bool:
        return self.state(short)["Running"]


@pytest.fixture
def make_stack(docker_client):
    stacks = []

    def make(prefix: str = "s") -> Stack:
        stack = Stack(docker_client, f"{prefix}{uuid.uuid4().hex[:6]}")
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        for container in docker_client.containers.list(all=True, filters={"label": f"rsgo.stack={stack.name}"}):
            container.remove(force=True)


def settings_for(data_dir: Path, **environ):
    return load_settings({"RSGO_DATA_DIR": str(data_dir), "RSGO_RESYNC_INTERVAL": "2s", **environ})


@pytest.fixture
def make_app(tmp_path):
    """Apps on a temp data dir with discovery and enforcement running against the real engine
    (or against ``gateway``: see ``fake_app``)."""
    runtimes = []

    def make(background: bool = True, data_dir: Path | None = None, gateway=None, **environ):
        app = create_app(settings_for(data_dir or tmp_path / "data", **environ), background=background,
                         gateway=gateway)
        runtimes.append(app.extensions["rsgo"])
        authenticate_test_client(app)
        return app

    yield make
    for runtime in runtimes:
        runtime.stop(timeout=60)


def authenticate_test_client(app, scope: str = "admin") -> str:
    """``app.test_client()`` sends an API token of ``scope`` made through rsgo's own token code.

    ``app.config["TEST_ACTOR"]`` is the actor the audit trail records for it (``token:<name>``).
    """
    row, token = tokens.create_token(f"tests-{uuid.uuid4().hex[:8]}", scope, created_by="tests")
    app.config["TEST_ACTOR"] = f"token:{row.name}"

    class TokenClient(FlaskClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"

    app.test_client_class = TokenClient
    return token


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def wait_for_deployment(client, stack_name: str, containers: int, timeout: float = 15) -> dict:
    """Wait until discovery shows ``containers`` containers for the stack; return the detail."""

    def seen():
        response = client.get(f"/api/deployments/{stack_name}")
        if response.status_code == 200 and response.json["containerCounts"]["total"] == containers:
            return response.json
        return None

    return wait_until(seen, timeout, message=f"discovery of {stack_name} with {containers} containers")


@pytest.fixture
def fake_gateway():
    return FakeGateway()


@pytest.fixture
def fake_app(make_app, fake_gateway):
    """An app whose Docker is a ``FakeGateway``, for requests refused before anything reaches Docker.

    Nothing runs in the background; ``make_fake_stack`` resyncs discovery (rsgo's own) after each
    container it adds. A module of such tests overrides ``app`` with it, so ``client`` uses it.
    """
    return make_app(background=False, gateway=fake_gateway)


@pytest.fixture
def make_fake_stack(fake_app, fake_gateway):
    def make(prefix: str = "s") -> FakeStack:
        runtime = fake_app.extensions["rsgo"]
        return FakeStack(fake_gateway, f"{prefix}{uuid.uuid4().hex[:6]}", runtime.environments.resync_all)

    return make


@pytest.fixture
def make_server(tmp_path):
    """``rsgo serve`` processes on temp data dirs (``ServerProcess``), stopped after the test."""
    servers = []

    def make(data_dir: Path | None = None, **environ) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", **environ)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


class PostgresServer:
    """A private PostgreSQL server in a temp dir on a free port (initdb refuses root: run as postgres)."""

    def __init__(self, root: Path):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not bins:
            pytest.fail("PostgreSQL is not installed: scripts/test installs the postgresql package", pytrace=False)
        self.bin = bins[-1].parent
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *args, check=True):
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            subprocess.run(["chown", "-R", f"{self.user}:", str(self.root)], check=True)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "rsgo", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-o",
                  f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        return self

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "rsgo", name)
        return f"postgresql://rsgo@127.0.0.1:{self.port}/{name}"

    def stop(self):
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", check=False)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    server = PostgresServer(Path(f"/tmp/rsgo-pg-{RUN_ID}")).start()
    yield server
    server.stop()
    subprocess.run(["rm", "-rf", str(server.root)], check=False)


# -- more engines: a second dockerd, a single-node Swarm, an engine that hangs (tests/engines.py) ---------------

from engines import Engine, HungEngine  # noqa: E402 - appended with the fixtures that use it


def _started(engine: Engine) -> Engine:
    """A test that needs another engine fails without it, as one without the main engine does."""
    try:
        return engine.start()
    except AssertionError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def second_engine():
    """A plain engine beside the main one (``Engine``: ``url``, ``client``, ``stop()``, ``start()``)."""
    engine = _started(Engine("/tmp/rsgo-dockerd2", "rsgo2br", "172.30.99.1/24", tls=True))
    yield engine
    if engine.started_here:
        engine.stop()


@pytest.fixture(scope="session")
def swarm_engine():
    """A third engine, the manager of a single-node Swarm (``Engine``, like ``second_engine``)."""
    engine = _started(Engine("/tmp/rsgo-dockerd3", "rsgo3br", "172.30.98.1/24"))
    initialised = False
    try:
        swarm = engine.client.info()["Swarm"]
        if not swarm.get("ControlAvailable"):
            if swarm.get("LocalNodeState") not in ("inactive", "", None):  # a worker or a broken swarm left over
                engine.client.swarm.leave(force=True)
            engine.client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
            initialised = True
        # No test publishes a port: the ingress network would only add a sandbox (and a veth pair on the
        # host) to set up now and to tear down in the moment between leave and stop at the end.
        for network in engine.client.networks.list(names=["ingress"]):
            network.remove()
    except docker.errors.DockerException as error:
        if engine.started_here:
            engine.stop()
        pytest.fail(f"swarm init on {engine.url} failed: {error}\n{engine.log_tail()}", pytrace=False)
    yield engine
    if initialised and engine.is_running:
        try:
            engine.client.swarm.leave(force=True)
        except docker.errors.APIError as error:
            if "context deadline exceeded" not in str(error):
                raise
            engine.client.swarm.leave(force=True)  # raft sometimes needs a second go when the node is busy
    if engine.started_here:
        engine.stop()


@pytest.fixture
def make_service(swarm_engine):
    """``make_service(name=None, **kwargs)``: ``services.create`` of the test image on the swarm engine
    (``kwargs`` as the SDK takes them: mode, labels, env, constraints, container_labels...), removed after
    the test. The SDK does not resolve the image to a registry digest, and the engine prefers its local
    image (``Engine`` starts it so), so no registry is asked."""
    created = []

    def make(name: str | None = None, *, command=None, **kwargs):
        service = swarm_engine.client.services.create(
            TEST_IMAGE, command=command or QUICK, name=name or f"svc{uuid.uuid4().hex[:6]}", **kwargs)
        created.append(service.id)
        return service

    yield make
    for service_id in created:
        try:
            swarm_engine.client.api.remove_service(service_id)
        except docker.errors.NotFound:
            pass  # the test removed it


@pytest.fixture
def hung_engine():
    """``tcp://127.0.0.1:PORT`` of a listener that accepts connections and never answers."""
    engine = HungEngine()
    yield engine.url
    engine.close()


# Tests that use an extra engine (a fixed data root and bridge each, tests/engines.py) run in one
# xdist worker: two workers would each start, stop and reconfigure the same engine.
_SHARED_ENGINE_FILES = {"test_environments.py", "test_swarm.py", "test_swarm_gateway.py", "test_swarm_upgrades.py",
                        "test_client.py"}


# A module whose module-scoped fixture starts an engine of its own at a fixed root: its tests run in one
# worker too, or two workers each build the estate there (same container names) and one stops the engine
# under the other (seen in the full run: "discovery of the estate" timed out, the socket gone).
_OWN_ENGINE_FILES = {"test_dashboard_overview.py": "overview-engine"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in _SHARED_ENGINE_FILES:
            item.add_marker(pytest.mark.xdist_group("shared-engines"))
        elif item.path.name in _OWN_ENGINE_FILES:
            item.add_marker(pytest.mark.xdist_group(_OWN_ENGINE_FILES[item.path.name]))


# -- xdist: one engine per worker ----------------------------------------------------------------------------
# Every test reads whole engines (discovery lists every stack on one), so two workers on one engine would
# see each other's stacks. The first worker keeps the main engine; each further one gets a private dockerd
# of its own (tests/engines.py), named in DOCKER_HOST before any test module is imported.

def pytest_configure(config):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or worker == "gw0":
        return
    number = int(worker[2:])
    engine = Engine(f"/tmp/rsgo-dw{number}", f"rsgow{number}br", f"172.30.{90 - number}.1/24")
    try:
        engine.start()
    except AssertionError as error:
        raise pytest.UsageError(f"the engine of xdist worker {worker} did not start: {error}") from None
    os.environ["DOCKER_HOST"] = engine.url
    config.stash[_WORKER_ENGINE] = engine


def pytest_unconfigure(config):
    engine = config.stash.get(_WORKER_ENGINE, None)
    if engine is not None and engine.started_here:
        engine.stop()


_WORKER_ENGINE = pytest.StashKey[Engine]()
