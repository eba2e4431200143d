"""Extra Docker engines for tests that need more than one: private dockerds beside the main one,
and a TCP listener that accepts and never answers (an engine that hangs).

Each extra dockerd has its own data root, exec root, socket, pidfile and bridge (TESTING.md "A second
engine and a single-node Swarm"): ``--bridge=none`` would delete the host's docker0 and break the main
engine. Socket paths stay short because a unix socket path is limited to about 100 characters.
No pytest in here, like support.py: failures raise ``AssertionError`` with what went wrong.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import docker

import tls_material
from support import ensure_test_image, free_port

START_DEADLINE = 60
STOP_DEADLINE = 60


class Engine:
    """A private dockerd under ``root`` on a bridge of its own; ``start()`` again after ``stop()`` is fine."""

    def __init__(self, root: str, bridge: str, bridge_cidr: str, tls: bool = False):
        self.root = Path(root)
        # With ``tls`` the engine also listens on 127.0.0.1 with --tlsverify (certificates in root/tls).
        self.tls_dir = self.root / "tls" if tls else None
        self.bridge = bridge
        self.bridge_cidr = bridge_cidr
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.pidfile = self.root / "docker.pid"
        self.log_path = self.root / "log"
        self.started_here = False  # whether this object launched a dockerd (teardown stops only that)
        self._process: subprocess.Popen | None = None
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise AssertionError(f"the engine at {self.url} is not started")
        return self._client

    @property
    def tls_url(self) -> str:
        """tcp://127.0.0.1:PORT of the TLS listener (the port is kept with the certificates)."""
        if self.tls_dir is None or not (self.tls_dir / "port").exists():
            raise AssertionError(f"the engine at {self.url} has no TLS listener (started without tls=True?)")
        return f"tcp://127.0.0.1:{(self.tls_dir / 'port').read_text().strip()}"

    def _tls_arguments(self) -> list[str]:
        if self.tls_dir is None:
            return []
        if not (self.tls_dir / "port").exists():
            tls_material.make(self.tls_dir)
            (self.tls_dir / "port").write_text(str(free_port()))
        return ["-H", self.tls_url, "--tlsverify", f"--tlscacert={self.tls_dir / 'ca.pem'}",
                f"--tlscert={self.tls_dir / 'server-cert.pem'}", f"--tlskey={self.tls_dir / 'server-key.pem'}"]

    @property
    def is_running(self) -> bool:
        try:
            probe = docker.APIClient(base_url=self.url, version="1.41", timeout=5)
        except docker.errors.DockerException:
            return False
        try:
            return probe.ping()
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False
        finally:
            probe.close()

    def start(self) -> Engine:
        """Start dockerd unless the socket already answers; make the test image there."""
        if not self.is_running:
            self._launch()
        if self._client is not None:
            self._client.close()  # its pooled connections went to the engine before a restart
        self._client = docker.DockerClient(base_url=self.url, version="auto", timeout=120)
        ensure_test_image(self._client)
        return self

    def _launch(self) -> None:
        self._ensure_bridge()
        self.root.mkdir(parents=True, exist_ok=True)
        # DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: a Swarm task uses the local image instead of trying a
        # registry first (none is reachable; the pull attempt would only delay every task).
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        env.pop("DOCKER_HOST", None)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                 "-H", self.url, *self._tls_arguments(), "--pidfile", str(self.pidfile), f"--bridge={self.bridge}",
                 "--iptables=false"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)  # its own session: a Ctrl-C of pytest does not reach it first
        self.started_here = True
        deadline = time.monotonic() + START_DEADLINE
        while not self.is_running:
            if self._process.poll() is not None:
                raise AssertionError(f"dockerd for {self.url} exited with {self._process.returncode}:\n"
                                     f"{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"dockerd for {self.url} did not answer within {START_DEADLINE}s:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.2)

    def _ensure_bridge(self) -> None:
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode == 0:
            return
        for command in (["ip", "link", "add", self.bridge, "type", "bridge"],
                        ["ip", "addr", "add", self.bridge_cidr, "dev", self.bridge],
                        ["ip", "link", "set", self.bridge, "up"]):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                raise AssertionError(f"{' '.join(command)} failed: {result.stderr.strip()}")

    def stop(self) -> None:
        """SIGTERM to dockerd (ours, or the one named by the pidfile), then wait until it has exited."""
        if self._client is not None:
            self._client.close()
            self._client = None
        pid = self._process.pid if self._process is not None and self._process.poll() is None else self._pid_on_file()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_DEADLINE
        while self._alive(pid):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)  # it had its chance to stop its containers
                deadline = time.monotonic() + 10
            time.sleep(0.1)
        self._process = None

    def _alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None  # reaps our child, so it does not linger as a zombie
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def _pid_on_file(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._alive(pid) else None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class HungEngine:
    """A TCP listener that accepts connections and never answers: an engine that hangs."""

    def __init__(self):
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)  # so the accept loop sees ``close()``
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []  # kept open: a closed socket would answer with EOF
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hung-engine", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for connection in self._held:
            connection.close()
