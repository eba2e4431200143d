"""Shared fixtures: a real Docker engine, labelled test containers, apps on temp data dirs.

Nothing here skips: a missing Docker engine fails the run, because a Docker test that
does not run is a missing test. ``scripts/test`` provides the engine.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import docker
import pytest
import requests

from flask.testing import FlaskClient

from rsgo import create_app
from rsgo.security import tokens
from rsgo.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "rsgo-test/busybox:2"  # bump the tag when the image content changes
RUN_LABEL = "rsgo.test.run"
RUN_ID = uuid.uuid4().hex[:8]

# A PID 1 that exits at once on SIGTERM, and one that takes ~2 s (its TERM trap sleeps).
QUICK = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
SLOW_2S = ["sh", "-c", "trap 'sleep 2; exit 0' TERM; while :; do sleep 0.1; done"]


def wait_until(predicate, timeout: float = 10, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message} (last value: {value!r})")
        time.sleep(interval)


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env(version="auto", timeout=120)
        client.ping()
    except Exception as error:  # noqa: BLE001
        pytest.fail(f"no Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST')!r}: {error}. "
                    "Run the tests through scripts/test, which starts one.", pytrace=False)
    _ensure_test_image(client)
    yield client
    for container in client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"}):
        container.remove(force=True)
    client.close()


def _ensure_test_image(client) -> None:
    """A busybox image built from the host's static busybox (no registry is reachable)."""
    try:
        client.images.get(TEST_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        pytest.fail("/bin/busybox is missing: install busybox-static (scripts/test does)", pytrace=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        tar.add(busybox, arcname="bin/busybox")
        for tool in ("sh", "sleep", "echo", "cat", "ls", "date", "touch", "kill", "true", "false", "test", "rm"):
            link = tarfile.TarInfo(f"bin/{tool}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    client.api.import_image_from_data(buffer.getvalue(), repository=TEST_IMAGE.split(":")[0], tag=TEST_IMAGE.split(":")[1])


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
    """Apps on a temp data dir with discovery and enforcement running against the real engine."""
    runtimes = []

    def make(background: bool = True, data_dir: Path | None = None, **environ):
        app = create_app(settings_for(data_dir or tmp_path / "data", **environ), background=background)
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


def put_mode(client, stack_name: str, mode: str, **body):
    return client.put(f"/api/deployments/{stack_name}/operation-mode", json={"newMode": mode, **body})


def csrf_of(session: requests.Session, url: str) -> str:
    """The CSRF token a signed-in page carries (HTMX sends it as X-CSRF-Token)."""
    page = session.get(f"{url}/", timeout=10).text
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password-for-tests"


class ServerProcess:
    """``rsgo serve`` as a real process (its own session, so SIGKILL takes its workers too).

    Its first start creates the admin from RSGO_ADMIN_PASSWORD; ``headers`` carry an admin API
    token made with ``rsgo token create``; ``login()`` signs a browser-like session in.
    """

    def __init__(self, data_dir: Path, **environ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.env = {**os.environ, "RSGO_DATA_DIR": str(data_dir), "RSGO_PORT": str(self.port),
                    "RSGO_HOST": "127.0.0.1", "RSGO_RESYNC_INTERVAL": "2s", "RSGO_ADMIN_USER": ADMIN_USER,
                    "RSGO_ADMIN_PASSWORD": ADMIN_PASSWORD, **environ}
        self.process = None
        self.token = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def cli(self, *args, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", "rsgo.cli", *args], env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def login(self, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> requests.Session:
        """A signed-in session, the way a browser gets one: the login form, its CSRF token, a POST."""
        session = requests.Session()
        form = session.get(f"{self.url}/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        answer = session.post(f"{self.url}/login", data={"username": username, "password": password,
                                                         "csrf_token": csrf}, timeout=10, allow_redirects=False)
        assert answer.status_code == 302, answer.text
        session.headers["X-CSRF-Token"] = csrf_of(session, self.url)
        return session

    def websocket_headers(self, session: requests.Session) -> list[str]:
        cookie = "; ".join(f"{c.name}={c.value}" for c in session.cookies)
        return [f"Cookie: {cookie}", f"Origin: {self.url}"]

    def start(self, timeout: float = 30):
        if self.token is None:
            self.token = self.cli("token", "create", f"tests-{uuid.uuid4().hex[:6]}", "--scope", "admin")
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "rsgo.cli", "serve"], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)

        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"rsgo serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, interval=0.1, message="rsgo serve to answer /healthz")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig=9):
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.kill(15)


@pytest.fixture
def make_server(tmp_path):
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
