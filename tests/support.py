"""What the tests and the benchmarks share: the busybox test image, ``rsgo serve`` as a real process,
a websocket reader like an open page, the PUT that changes a mode, waits with deadlines, Chromium.

No pytest in here: ``benchmarks/common.py`` imports this module too (it puts ``tests/`` on
``sys.path``). A helper fails by raising ``AssertionError`` with a message that says what it was
waiting for or what went wrong, which reads as a failed check in a test and a failed run in a benchmark.
"""

from __future__ import annotations

import io
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import docker
import requests
import websocket
from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "rsgo-test/busybox:2"  # bump the tag when the image content changes
BUSYBOX = Path("/bin/busybox")
BUSYBOX_TOOLS = ("sh", "sleep", "echo", "cat", "ls", "date", "touch", "kill", "true", "false", "test", "rm")
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-password-for-tests"
CHROMIUM = "/usr/bin/chromium"  # the distribution's Chromium, driven by Playwright (its own download is not used)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- Docker --------------------------------------------------------------------------------------

def ensure_test_image(client: docker.DockerClient) -> None:
    """``TEST_IMAGE``: the host's static busybox and links to the tools the tests' commands use, in an
    image imported from a tar (no registry is reachable)."""
    try:
        client.images.get(TEST_IMAGE)
        return
    except docker.errors.ImageNotFound:
        pass
    if not BUSYBOX.exists():
        raise AssertionError(f"{BUSYBOX} is missing: install busybox-static (scripts/test does)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for tool in BUSYBOX_TOOLS:
            link = tarfile.TarInfo(f"bin/{tool}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    repository, tag = TEST_IMAGE.split(":")
    client.api.import_image_from_data(buffer.getvalue(), repository=repository, tag=tag)


# -- the API and the pages -------------------------------------------------------------------------

def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def put_mode(caller, ref, mode: str, headers: dict | None = None, *, session: requests.Session | None = None,
             timeout: float = 120, **body):
    """``PUT /api/deployments/<ref>/operation-mode`` with ``{"newMode": mode, **body}``.

    ``caller`` is a Flask test client (in-process, with its own token unless ``headers`` say otherwise)
    or a running server, reached over HTTP with ``session`` (a signed-in browser: its cookie and CSRF
    token), with ``headers``, or else with the server's admin token. The default client timeout is
    above the slowest transition any test or benchmark waits for, so a slow stop never looks like a hang.
    """
    path, payload = f"/api/deployments/{ref}/operation-mode", {"newMode": mode, **body}
    if isinstance(caller, FlaskClient):
        return caller.put(path, json=payload, headers=headers)
    if session is not None:
        return session.put(f"{caller.url}{path}", json=payload, timeout=timeout)
    return requests.put(f"{caller.url}{path}", json=payload, headers=headers or caller.headers, timeout=timeout)


def csrf_of(session: requests.Session, url: str) -> str:
    """The CSRF token a signed-in page carries (HTMX sends it as X-CSRF-Token)."""
    page = session.get(f"{url}/", timeout=60).text
    return re.search(r'"X-CSRF-Token": "([^"]+)"', page).group(1)


def cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies)


# -- rsgo serve ------------------------------------------------------------------------------------

class ServerProcess:
    """``rsgo serve`` as a real process on a free port (its own session, so SIGKILL takes its workers too).

    Its first start creates the admin from RSGO_ADMIN_PASSWORD. With ``admin_token`` (the tests'
    default) the first ``start()`` also makes an admin API token with ``rsgo token create``: ``token``,
    and ``headers`` that carry it. ``login()`` signs a browser-like session in. The log (stdout and
    stderr) goes to ``log_path``, by default next to the data dir; set ``stderr_path`` to keep stderr apart.
    """

    DEFAULTS = {"RSGO_RESYNC_INTERVAL": "2s"}  # settings a subclass may replace; ``environ`` wins over both

    def __init__(self, data_dir: Path, *, log_path: Path | None = None, admin_token: bool = True, **environ):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or self.data_dir.parent / f"server-{self.port}.log"
        self.env = {**os.environ, "RSGO_DATA_DIR": str(self.data_dir), "RSGO_PORT": str(self.port),
                    "RSGO_HOST": "127.0.0.1", "RSGO_ADMIN_USER": ADMIN_USER, "RSGO_ADMIN_PASSWORD": ADMIN_PASSWORD,
                    **self.DEFAULTS, **environ}
        self.admin_token = admin_token
        self.process: subprocess.Popen | None = None
        self.token: str | None = None
        self.stderr_path: Path | None = None

    @property
    def headers(self) -> dict:
        return bearer(self.token)

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """``rsgo <args>`` with this server's settings; its stdout, stripped."""
        result = subprocess.run([sys.executable, "-m", "rsgo.cli", *args], env=self.env, input=stdin,
                                capture_output=True, text=True, timeout=120, cwd=ROOT)
        if result.returncode != 0:
            raise AssertionError(f"rsgo {' '.join(args)} exited with {result.returncode}: {result.stderr}")
        return result.stdout.strip()

    def create_token(self, scope: str = "admin", name: str | None = None) -> str:
        return self.cli("token", "create", name or f"tests-{uuid.uuid4().hex[:6]}", "--scope", scope)

    def login(self, username: str = ADMIN_USER, password: str = ADMIN_PASSWORD) -> requests.Session:
        """A signed-in session, the way a browser gets one: the login form, its CSRF token, a POST."""
        session = requests.Session()
        form = session.get(f"{self.url}/login", timeout=10).text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
        answer = session.post(f"{self.url}/login", data={"username": username, "password": password,
                                                         "csrf_token": csrf}, timeout=30, allow_redirects=False)
        if answer.status_code != 302:
            raise AssertionError(f"sign-in as {username} answered {answer.status_code}: {answer.text[:300]}")
        session.headers["X-CSRF-Token"] = csrf_of(session, self.url)
        return session

    def cookie_header(self, session: requests.Session) -> str:
        return cookie_header(session)

    def websocket_headers(self, session: requests.Session) -> list[str]:
        """The header lines a signed-in page's websocket handshake carries."""
        return [f"Cookie: {cookie_header(session)}", f"Origin: {self.url}"]

    def start(self, timeout: float = 30):
        if self.admin_token and self.token is None:
            self.token = self.create_token("admin")
        with open(self.log_path, "ab") as log:  # the child writes to its own copy of the descriptor
            errors = open(self.stderr_path, "ab") if self.stderr_path else None  # closed below
            try:
                self.process = subprocess.Popen([sys.executable, "-m", "rsgo.cli", "serve"], env=self.env, stdout=log,
                                                stderr=errors or subprocess.STDOUT, start_new_session=True, cwd=ROOT)
            finally:
                if errors:
                    errors.close()

        def healthy():
            if self.process.poll() is not None:
                raise AssertionError(f"rsgo serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                return requests.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout, interval=0.1, message=f"rsgo serve to answer /healthz (log: {self.log_path})")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = 9) -> None:
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.kill(15)


# -- the live websocket ------------------------------------------------------------------------------

class LiveSocket:
    """A websocket to ``/ws?topics=...`` the way a page opens one, whose reader thread keeps every
    message with its arrival time.

    ``session``: a signed-in browser whose cookie it sends. ``origin``: ``"same"`` (this site's),
    another origin, or None for no Origin header at all. ``headers``: more header lines.
    """

    def __init__(self, server, topics: str, session: requests.Session | None = None, origin: str | None = "same",
                 headers: list[str] | None = None):
        options = {"timeout": 30, "header": list(headers or [])}
        if session is not None:
            options["cookie"] = cookie_header(session)
        if origin is None:
            options["suppress_origin"] = True
        else:
            options["origin"] = server.url if origin == "same" else origin
        self.topics = topics
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/ws?topics={topics}", **options)
        self.messages: list[str] = []
        self.arrivals: list[float] = []  # time.monotonic() when each message arrived
        self.closed = threading.Event()  # set once the connection has ended, whoever ended it
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"ws-{topics}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:  # noqa: BLE001 - closed by us or by the server: the page is gone
                break
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            with self._arrived:
                self.arrivals.append(time.monotonic())
                self.messages.append(data.decode() if isinstance(data, bytes) else data)
                self._arrived.notify_all()
        with self._arrived:
            self.closed.set()
            self._arrived.notify_all()

    @property
    def texts(self) -> list[str]:
        with self._arrived:
            return list(self.messages)

    def got(self, text: str) -> bool:
        """Some message so far contains ``text``."""
        with self._arrived:
            return any(text in message for message in self.messages)

    def wait_for_arrival(self, predicate, timeout: float = 15, what: str = "a matching fragment",
                         start: int = 0) -> tuple[int, float, str]:
        """The first message from index ``start`` on that satisfies ``predicate``: (index, arrival, text)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            seen = start
            while True:
                for index in range(seen, len(self.messages)):
                    if predicate(self.messages[index]):
                        return index, self.arrivals[index], self.messages[index]
                seen = max(seen, len(self.messages))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = "\n---\n".join(text[:400] for text in self.messages[start:][-5:])
                    raise AssertionError(f"{self.topics} client: no {what} within {timeout}s; "
                                         f"{len(self.messages) - start} messages, the last ones:\n{got}")
                self._arrived.wait(remaining)

    def wait_for(self, predicate, timeout: float = 15, what: str = "a matching fragment", start: int = 0) -> str:
        """The text of the first message from index ``start`` on that satisfies ``predicate``."""
        return self.wait_for_arrival(predicate, timeout, what, start)[2]

    def close(self) -> None:
        try:
            self.ws.send_close()
        except Exception:  # noqa: BLE001 - already closed
            pass
        try:
            if self.ws.sock:
                self.ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.join(timeout=10)
        self.ws.shutdown()


# -- Chromium ----------------------------------------------------------------------------------------

def launch_chromium(playwright):
    """The distribution's Chromium under Playwright, with the flags a container without a desktop needs."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def database_rows(server, query: str, *params) -> list[tuple]:
    """Rows of a running server's SQLite database, read through a read-only connection of the test's own."""
    connection = sqlite3.connect(f"file:{server.env['RSGO_DATA_DIR']}/rsgo.sqlite3?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(query, params).fetchall()
    finally:
        connection.close()
