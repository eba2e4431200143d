"""A TCP front for the real engine's unix socket, for failure-path tests: it passes every byte through both
ways, except that it can answer chosen requests itself (say, a 500 to one container's stop, as an engine
answers when a stop fails) or be cut off (connections refused and dropped, as when the engine is down).

Requests are matched on the first bytes of what the client sends; the Docker SDK sends each request's line
and headers in one write and does not pipeline, so a request line starts a read.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading


def engine_socket_path() -> str:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), f"the fault proxy fronts a unix socket, not {host}"
    return host[len("unix://"):]


def error_response(status: int, message: str) -> bytes:
    body = json.dumps({"message": message}).encode()
    return (f"HTTP/1.1 {status} Injected\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"\r\n").encode() + body


class FaultProxy:
    def __init__(self, socket_path: str | None = None):
        self.socket_path = socket_path or engine_socket_path()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"tcp://127.0.0.1:{self._listener.getsockname()[1]}"
        self._rules: list[tuple[re.Pattern, bytes]] = []
        self._cut = threading.Event()
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()
        self.answered: list[bytes] = []  # the request lines the proxy answered itself
        self.seen: list[str] = []  # every request line, in order
        threading.Thread(target=self._accept, daemon=True).start()

    def answer(self, request_line: str, response: bytes) -> None:
        """Answer requests whose line matches the regex ``request_line`` with ``response``."""
        self._rules.append((re.compile(request_line.encode()), response))

    def fail_stop(self, container_name: str, message: str = "cannot stop container: injected failure") -> None:
        self.answer(rf"^POST /[^ ]*containers/{re.escape(container_name)}/stop", error_response(500, message))

    def container_actions(self) -> list[str]:
        """The request lines that act on a container (stop, start, kill, restart, ...), not those that read."""
        return [line for line in self.seen
                if re.match(r"^POST /[^ ]*containers/[^/ ]+/(stop|start|kill|restart|pause|unpause)", line)]

    def cut(self) -> None:
        """The engine is gone: open connections are dropped, new ones closed at once."""
        self._cut.set()
        with self._guard:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.socket_path)
            with self._guard:
                self._open.update((client, upstream))
            threading.Thread(target=self._to_engine, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _to_engine(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                if re.match(rb"^[A-Z]+ /", data):
                    self.seen.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                response = next((r for pattern, r in self._rules if pattern.search(data)), None)
                if response is not None:
                    self.answered.append(data.split(b"\r\n", 1)[0])
                    client.sendall(response)
                else:
                    upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _pipe(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source, target)

    def _close(self, *sockets: socket.socket) -> None:
        with self._guard:
            for sock in sockets:
                self._open.discard(sock)
                with contextlib.suppress(OSError):
                    sock.close()
