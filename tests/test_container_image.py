"""The container image (Dockerfile), built and run against the real engine.

No registry is reachable here (no Docker Hub, and PyPI only through a TLS-inspecting proxy
whose CA a container does not trust), so the image is built the way the README describes for
such machines:

* the base is a plain Debian 12 root filesystem made by ``scripts/build-base-image``
  (debootstrap + ``docker import``; the image is its own cache, made once per engine);
* the Python dependencies come from a wheel directory in the build context, made on the host by
  pip (cached under /var/tmp/rsgo-wheels per dependency list), which the Dockerfile installs
  with ``--no-index``.

The built image carries a label with a hash of what goes into it (Dockerfile, .dockerignore,
pyproject.toml, rsgo/, templates/, static/); an image with the same hash is reused, so an
unchanged tree builds nothing, and a changed one rebuilds only from the first changed layer
(the engine's layer cache). Measured here (2 cores): a first run on a fresh machine takes
about 2.5 minutes (base image 44-83 s, wheels 8 s, image build 57-82 s); a rebuild after a code
change 7-8 s; an unchanged tree builds nothing. The timeouts below bound each step. Nothing is
skipped: a failing build is a failing test.

The container runs as the README shows: the engine's socket mounted at /var/run/docker.sock
with ``--group-add`` of the socket's group, a data directory owned by the container's uid,
``RSGO_ADMIN_PASSWORD``, a published port; it must see the host's stacks through the socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from conftest import RUN_ID, RUN_LABEL
from support import ROOT, free_port, wait_until

BASE_IMAGE = "rsgo-base/debian:bookworm"
IMAGE = "rsgo-test/rsgo:ci"
HASH_LABEL = "rsgo.test.source-hash"
CONTAINER_UID = 10001
ADMIN_PASSWORD = "container-admin-password"
# What goes into the image (the Dockerfile copies no more than these, plus README.md, which only
# feeds the package metadata and is left out so README edits do not rebuild the image).
IMAGE_INPUTS = ["Dockerfile", ".dockerignore", "pyproject.toml", "rsgo", "templates", "static"]
BASE_TIMEOUT, WHEELS_TIMEOUT, BUILD_TIMEOUT = 600, 300, 900

pytestmark = pytest.mark.timeout(BASE_TIMEOUT + WHEELS_TIMEOUT + BUILD_TIMEOUT + 300)


def docker(*args, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited with {result.returncode}:\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def _files(path: Path):
    if path.is_file():
        yield path
        return
    for file in sorted(path.rglob("*")):
        if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
            yield file


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for name in IMAGE_INPUTS:
        for file in _files(root / name):
            digest.update(str(file.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _report(request, text: str) -> None:
    """A line on the terminal even with output captured (build durations belong in the CI log)."""
    line = f"[container image] {text}"
    print(line)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)


def _dependencies(root: Path) -> list[str]:
    with open(root / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["dependencies"] + ["setuptools>=68", "wheel"]


def _wheelhouse(root: Path) -> Path:
    """Wheels of every dependency, made by the host's pip (which can reach PyPI here), cached per
    dependency list. The host runs the image's Python (3.11) on the image's Debian, so they fit."""
    requirements = _dependencies(root)
    key = hashlib.sha256(json.dumps([sys.version_info[:2], requirements]).encode()).hexdigest()[:16]
    wheels = Path(f"/var/tmp/rsgo-wheels/{key}")
    if wheels.is_dir():
        return wheels
    wheels.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=wheels.parent))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                             "--wheel-dir", str(partial), *requirements],
                            capture_output=True, text=True, timeout=WHEELS_TIMEOUT)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise AssertionError(f"pip wheel failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    try:
        partial.rename(wheels)
    except OSError:  # another run made it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return wheels


def _image_hash() -> str | None:
    result = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{HASH_LABEL}"}}}}', IMAGE,
                    check=False)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.fixture(scope="module")
def image(request, docker_client) -> str:
    started = time.monotonic()
    base = subprocess.run([str(ROOT / "scripts/build-base-image"), BASE_IMAGE], capture_output=True,
                          text=True, timeout=BASE_TIMEOUT)
    assert base.returncode == 0, f"scripts/build-base-image failed:\n{base.stdout}\n{base.stderr}"
    _report(request, f"base image {BASE_IMAGE}: {time.monotonic() - started:.1f}s "
                     f"({base.stderr.strip().splitlines()[-1] if base.stderr.strip() else 'ok'})")

    with tempfile.TemporaryDirectory(prefix="rsgo-build-") as context:
        # A snapshot of the tree (others may edit it meanwhile); the hash is of exactly what is built.
        for name in ["README.md", *IMAGE_INPUTS]:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, Path(context, name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, Path(context, name))
        wanted = source_hash(Path(context))
        if _image_hash() == wanted:
            _report(request, f"{IMAGE} is up to date (source hash {wanted}); not rebuilt")
            return IMAGE

        started = time.monotonic()
        old = docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
        shutil.copytree(_wheelhouse(Path(context)), Path(context, "wheels"))
        wheels_seconds = time.monotonic() - started
        build_started = time.monotonic()
        # The host's network for apt-get: a test worker's private engine runs with --iptables=false
        # (tests/engines.py), so its bridge has no way out.
        docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
               "--label", f"{HASH_LABEL}={wanted}", "--tag", IMAGE, context, timeout=BUILD_TIMEOUT)
    _report(request, f"{IMAGE} built in {time.monotonic() - build_started:.1f}s "
                     f"(wheels {wheels_seconds:.1f}s, source hash {wanted})")
    if old and old != docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip():
        docker("image", "rm", old, check=False)  # the previous build; its layers stay cached if shared
    return IMAGE


def _socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parsed = urlparse(host)
    assert parsed.scheme == "unix", f"the container needs the engine's socket; DOCKER_HOST is {host!r}"
    return parsed.path


class Container:
    def __init__(self, name: str, port: int, data: Path):
        self.name, self.port, self.data = name, port, data
        self.url = f"http://127.0.0.1:{port}"

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return docker("exec", self.name, *command, timeout=60, check=check)

    def inspect(self) -> dict:
        return json.loads(docker("inspect", self.name).stdout)[0]

    def logs(self) -> str:
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr


def run_container(image: str, data: Path, *env: str) -> Container:
    """``docker run`` as the README shows it (socket, its group, data dir, published port)."""
    socket = _socket_path()
    data.mkdir(parents=True, exist_ok=True)
    os.chown(data, CONTAINER_UID, CONTAINER_UID)
    container = Container(f"rsgo-image-{RUN_ID}-{uuid.uuid4().hex[:6]}", free_port(), data)
    env_args = [arg for pair in (("-e", e) for e in ("RSGO_RESYNC_INTERVAL=2s", *env)) for arg in pair]
    docker("run", "--detach", "--name", container.name, "--label", f"{RUN_LABEL}={RUN_ID}",
           "--volume", f"{socket}:/var/run/docker.sock", "--group-add", str(os.stat(socket).st_gid),
           "--volume", f"{data}:/data", "--publish", f"127.0.0.1:{container.port}:8080",
           "--health-interval", "1s", "--health-start-period", "60s", *env_args, image)
    return container


@pytest.fixture(scope="module")
def container(image, tmp_path_factory):
    running = run_container(image, tmp_path_factory.mktemp("container") / "data",
                            f"RSGO_ADMIN_PASSWORD={ADMIN_PASSWORD}")
    try:
        _wait_healthz(running)
        yield running
    finally:
        docker("rm", "--force", running.name, check=False)


def _wait_healthz(container: Container, timeout: float = 60):
    def answers():
        state = container.inspect()["State"]
        if not state["Running"]:
            raise AssertionError(f"the container exited ({state['ExitCode']}):\n{container.logs()}")
        try:
            return requests.get(f"{container.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, timeout, interval=0.2, message=f"/healthz of the container\n{container.logs()}")


def test_healthz_answers_and_the_healthcheck_reports_healthy(container):
    answer = requests.get(f"{container.url}/healthz", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    wait_until(lambda: container.inspect()["State"]["Health"]["Status"] == "healthy", 60, interval=0.5,
               message="the HEALTHCHECK to report healthy")
    assert container.inspect()["State"]["Health"]["Log"][-1]["ExitCode"] == 0


def test_it_lists_the_hosts_stacks_through_the_mounted_socket(container, make_stack):
    stack = make_stack("img")
    stack.add("web")
    stack.add("db", running=False)
    token = container.exec("rsgo", "token", "create", f"ci-{uuid.uuid4().hex[:6]}", "--scope", "read").stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}

    def listed():
        answer = requests.get(f"{container.url}/api/deployments", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return next((d for d in answer.json()["items"] if d["name"] == stack.name), None)

    wait_until(listed, 30, interval=0.5, message=f"{stack.name} in the container's /api/deployments")
    deployment = wait_until(lambda: (d := listed()) and d["containers"]["total"] == 2 and d, 30, interval=0.5,
                            message="both containers of the stack")
    assert deployment["containers"] == {"running": 1, "total": 2}
    assert deployment["operationMode"] == "Normal" and deployment["environment"] == "local"
    assert requests.get(f"{container.url}/api/deployments", timeout=10).status_code == 401


def test_it_runs_as_non_root(container):
    assert container.exec("id", "-u").stdout.strip() == str(CONTAINER_UID)
    processes = json.loads(container.exec("python3", "-c", (
        "import json, os\n"
        "out = {}\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        status = open(f'/proc/{pid}/status').read()\n"
        "        cmd = open(f'/proc/{pid}/cmdline').read().replace('\\0', ' ').strip()\n"
        "    except OSError:\n"
        "        continue\n"
        "    uid = next(l.split()[1:] for l in status.splitlines() if l.startswith('Uid:'))\n"
        "    out[pid] = {'uid': uid, 'cmd': cmd}\n"
        "print(json.dumps(out))\n")).stdout)
    assert processes["1"]["cmd"].startswith("tini -- rsgo serve"), processes
    servers = [p for p in processes.values() if "rsgo serve" in p["cmd"] and not p["cmd"].startswith("tini")]
    assert len(servers) >= 2, processes  # the gunicorn arbiter and its one worker
    for process in processes.values():
        if process["cmd"] == "runc init":
            # The runtime's own helper for an exec that is starting (the image's healthcheck, or another
            # exec): it turns into that exec's process, which runs as the image's user.
            continue
        assert set(process["uid"]) == {str(CONTAINER_UID)}, process  # real, effective, saved, fs
    assert container.inspect()["Config"]["User"] == "rsgo"
    # The data dir is the volume and belongs to the container's user.
    assert (container.data / "rsgo.sqlite3").stat().st_uid == CONTAINER_UID


def test_check_config_runs_inside(container):
    result = container.exec("rsgo", "check-config")
    assert "settings ok: data dir /data" in result.stdout and "config ok" in result.stdout, result.stdout


def test_the_odbc_drivers_are_registered(container):
    drivers = container.exec("odbcinst", "-q", "-d").stdout.split()
    assert "[FreeTDS]" in drivers and "[PostgreSQL" in drivers and "Unicode]" in drivers, drivers
    seen = container.exec("python3", "-c", "import pyodbc; print('\\n'.join(pyodbc.drivers()))").stdout.splitlines()
    assert {"FreeTDS", "PostgreSQL Unicode"} <= set(seen), seen


def test_templates_and_static_files_are_served(container):
    login = requests.get(f"{container.url}/login", timeout=10)
    assert login.status_code == 200 and 'name="csrf_token"' in login.text
    assert requests.get(f"{container.url}/static/rsgo.css", timeout=10).status_code == 200


def test_first_start_without_a_password_prints_the_setup_link_to_docker_logs(image, tmp_path):
    fresh = run_container(image, tmp_path / "data")
    try:
        _wait_healthz(fresh)
        wait_until(lambda: "/setup?token=" in fresh.logs(), 15, interval=0.2, message="the setup link in docker logs")
        assert "create the first admin at http://localhost:8080/setup?token=" in fresh.logs()
    finally:
        docker("rm", "--force", fresh.name, check=False)


def test_docker_stop_reaches_gunicorn_through_tini(container):
    """Last: stops the module's container. tini passes SIGTERM on; gunicorn shuts down cleanly."""
    started = time.monotonic()
    docker("stop", "--time", "40", container.name, timeout=60)
    took = time.monotonic() - started
    state = container.inspect()["State"]
    assert state["ExitCode"] == 0 and took < 30, (state, took, container.logs()[-3000:])
    assert "Shutting down: Master" in container.logs()
