"""A counting forwarder between rsgo and the Docker socket.

rsgo's ``DOCKER_HOST`` points at this proxy's unix socket; every connection is forwarded byte for
byte to the real engine socket, and the client→engine direction is parsed just enough to see each
HTTP request's method and path (keep-alive connections carry several). Requests are recorded with
their time, so a benchmark can ask "which Docker calls happened between t0 and t1?".

The engine→client direction of the events stream (``GET /events``) is scanned for container ids, so
an ``inspect`` that follows a Docker event (discovery keeping its view current) can be told apart
from an inspect a page or API request would make.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

_ID = re.compile(rb'"id":"([0-9a-f]{64})"')
_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+")
_LONG_ID = re.compile(r"/[0-9a-f]{64}")


@dataclass(frozen=True)
class Call:
    at: float  # time.monotonic() when the request line arrived
    method: str
    path: str  # without query string and API version prefix

    @property
    def template(self) -> str:
        """The path with ids and names replaced: ``/containers/{ref}/json``."""
        path = _LONG_ID.sub("/{id}", self.path)
        return re.sub(r"^/containers/[^/]+/", "/containers/{ref}/", path)

    def container(self) -> str | None:
        match = re.match(r"^/containers/([^/]+)/", self.path)
        return match.group(1) if match and match.group(1) != "json" else None


class CountingProxy:
    def __init__(self, listen_path: str, upstream_path: str):
        self.listen_path = listen_path
        self.upstream_path = upstream_path
        self.calls: list[Call] = []
        self.events: list[tuple[float, str]] = []  # (arrival, container id) seen on the events stream
        # Connections whose later requests went uncounted (a chunked request body): a figure built on the
        # count is void if this is not 0.
        self.unparsed_connections = 0
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(listen_path):
            os.unlink(listen_path)
        self._server.bind(listen_path)
        self._server.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @classmethod
    def for_docker_host(cls, listen_path: str) -> CountingProxy:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not host.startswith("unix://"):
            raise SystemExit(f"the counting proxy needs a unix-socket DOCKER_HOST, not {host!r}")
        return cls(listen_path, host[len("unix://"):])

    @property
    def docker_host(self) -> str:
        return f"unix://{self.listen_path}"

    def close(self) -> None:
        self._closed = True
        self._server.close()

    # -- queries ----------------------------------------------------------------------------

    def calls_between(self, start: float, end: float) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if start <= c.at <= end]

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def follows_event(self, call: Call, within: float = 5.0) -> bool:
        """An inspect of a container that had a Docker event shortly before: discovery, not a request."""
        ref = call.container()
        if ref is None:
            return False
        with self._lock:
            return any(call.at - within <= at <= call.at and (cid == ref or cid.startswith(ref))
                       for at, cid in self.events)

    # -- forwarding ---------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.upstream_path)
            except OSError:
                client.close()
                continue
            connection = {"events": False}
            threading.Thread(target=self._client_to_engine, args=(client, upstream, connection),
                             name="proxy-up", daemon=True).start()
            threading.Thread(target=self._engine_to_client, args=(upstream, client, connection),
                             name="proxy-down", daemon=True).start()

    def _client_to_engine(self, client, upstream, connection) -> None:
        buffer, body_left, parsing = b"", 0, True
        try:
            while chunk := client.recv(65536):
                upstream.sendall(chunk)
                if not parsing:
                    continue
                buffer += chunk
                while parsing:
                    if body_left:
                        skipped = min(body_left, len(buffer))
                        buffer, body_left = buffer[skipped:], body_left - skipped
                        if body_left:
                            break
                    head, separator, rest = buffer.partition(b"\r\n\r\n")
                    if not separator:
                        break
                    body_left, parsing = self._record(head, connection)
                    buffer = rest
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _record(self, head: bytes, connection) -> tuple[int, bool]:
        """Record one request; returns (body length to skip, whether later requests can still be parsed)."""
        lines = head.decode("latin-1").split("\r\n")
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        path = _VERSION_PREFIX.sub("", urlsplit(target).path)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        with self._lock:
            self.calls.append(Call(time.monotonic(), method, path))
        if path == "/events":
            connection["events"] = True
        if headers.get("transfer-encoding", "").lower() == "chunked":
            with self._lock:
                self.unparsed_connections += 1
            return 0, False  # rsgo never streams a request body; stop parsing rather than guess (and say so)
        return int(headers.get("content-length") or 0), True

    def _engine_to_client(self, upstream, client, connection) -> None:
        try:
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
                if connection["events"]:
                    now = time.monotonic()
                    with self._lock:
                        self.events.extend((now, cid.decode()) for cid in _ID.findall(chunk))
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
