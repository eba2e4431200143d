"""A mode change → the dashboard fragment received by 200 connected websocket clients, p99 ≤ 100 ms.

One ``rsgo serve`` (websocket caps raised to 200, one user), one stack declared in
the config file (no containers: Normal ↔ Migrating touches no container, so only the push is
measured). Every client is a signed-in page (the session cookie, a same-origin Origin) subscribed to
``topics=dashboard``. The clock starts just before the PUT is sent; a client's latency ends when it
has read the first fragment whose dashboard row shows the new mode.

Clients are raw sockets read by one selector thread (no thread per client on the client side, so
200 clients do not fight over the GIL): frames are parsed and timestamped as they are read.
Baseline: the same measurement with 1 client, on the same server, in the same run. Each of the 100
changes is measured on its own (the server idles 0.3 s between them: isolated changes, not a burst);
besides the p99 over every client and change, the spread of each change's slowest client is reported
(200 clients of one change are not 200 independent samples).

The target is listed in the README's "Performance" section.

    .venv/bin/python benchmarks/ws_fanout.py [--quick] [--clients 200] [--changes 100]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import selectors
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

BADGE = re.compile(rb'class="badge mode [^"]*" data-mode="([^"]+)"')


class Page:
    """One open dashboard: a websocket after a hand-made handshake; frames are parsed by the Reader."""

    def __init__(self, server: common.Server, cookie: str, row_id: bytes):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?topics=dashboard HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\nOrigin: {server.url}\r\nCookie: {cookie}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"the server closed the websocket handshake: {head!r}")
            head += chunk
        status, _, self.buffer = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"websocket refused: {status[:200]!r}")
        self.sock.setblocking(False)
        self.row_id = row_id
        self.seen: list[tuple[float, str]] = []  # (arrival, mode shown in our deployment's row)
        self.closed = False

    def feed(self, arrival: float) -> None:
        """Read what arrived and parse every complete frame in the buffer."""
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        if not data:
            self.closed = True
            return
        self.buffer += data
        while True:
            frame = self._next_frame()
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 0x9:  # ping: the server drops clients that never answer
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.closed = True
            elif opcode in (0x1, 0x2) and self.row_id in payload:
                match = BADGE.search(payload)
                if match:
                    self.seen.append((arrival, match.group(1).decode()))

    def _next_frame(self):
        buffer = self.buffer
        if len(buffer) < 2:
            return None
        opcode, length, offset = buffer[0] & 0x0F, buffer[1] & 0x7F, 2
        if length == 126:
            if len(buffer) < 4:
                return None
            length, offset = struct.unpack("!H", buffer[2:4])[0], 4
        elif length == 127:
            if len(buffer) < 10:
                return None
            length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
        if len(buffer) < offset + length:
            return None
        self.buffer = buffer[offset + length:]
        return opcode, buffer[offset:offset + length]

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)  # client frames must be masked
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.setblocking(True)
        self.sock.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)
        self.sock.setblocking(False)

    def close(self) -> None:
        try:
            self._send(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Reader:
    """One thread reads every page's socket; the arrival time is taken as soon as select returns."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.stopping = False
        self.thread = common.run_in_thread(self._run, name="ws-reader")

    def add(self, page: Page) -> None:
        with self.lock:
            self.selector.register(page.sock, selectors.EVENT_READ, page)

    def _run(self) -> None:
        while not self.stopping:
            with self.lock:
                if not self.selector.get_map():
                    ready = None
                else:
                    ready = self.selector.select(timeout=0.05)
                    arrival = time.monotonic()
                    for key, _ in ready:
                        page = key.data
                        page.feed(arrival)
                        if page.closed:
                            self.selector.unregister(page.sock)
            if ready is None:
                time.sleep(0.01)  # no page yet

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(5)


def change_and_wait(server, token, stack, target, pages, timeout: float = 20) -> tuple[list[float], float]:
    """PUT the mode; wait until every page has seen its row in ``target``; each page's latency in s."""
    began = time.monotonic()
    response = common.put_mode(server, stack, target, common.bearer(token), timeout=60, reason="fan-out benchmark")
    put_seconds = time.monotonic() - began
    if response.status_code != 200:
        raise RuntimeError(f"PUT {target}: {response.status_code} {response.text[:300]}")

    def arrival_of(page: Page):
        return next((t for t, mode in list(page.seen) if t >= began and mode == target), None)

    deadline = time.monotonic() + timeout
    while True:
        arrivals = [arrival_of(page) for page in pages]
        if all(a is not None for a in arrivals) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    missing = sum(a is None for a in arrivals)
    if missing:
        raise RuntimeError(f"{missing} of {len(pages)} clients never received the {target} fragment")
    return [a - began for a in arrivals], put_seconds


def measure(server, token, stack, pages, changes: int) -> tuple[list[float], list[float], list[float]]:
    """Latencies of every client for every change, the PUT's own times, and per change the first
    client's latency (the render-and-publish pipeline) — the rest of the spread is the fan-out."""
    latencies, puts, firsts = [], [], []
    for index in range(changes):
        target = "Migrating" if index % 2 == 0 else "Normal"
        page_latencies, put_seconds = change_and_wait(server, token, stack, target, pages)
        latencies += page_latencies
        puts.append(put_seconds)
        firsts.append(min(page_latencies))
        time.sleep(0.3)  # let the server go idle: each change is measured on its own
    return latencies, puts, firsts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 clients, 10 changes")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--changes", type=int)
    parser.add_argument("--threads", type=int, help="RSGO_THREADS, for HTTP requests (default: 60; the websockets "
                        "get threads of their own: RSGO_MAX_LIVE_CONNECTIONS is set to the number of clients)")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the worker during the measurement with all clients "
                        "(py-spy installed separately) into FILE, collapsed stacks")
    args = parser.parse_args(argv)
    clients = args.clients or (20 if args.quick else 200)
    changes = args.changes or (10 if args.quick else 100)
    threads = args.threads or 60
    common.terminate_on_sigterm()

    stack = f"bench-ws-{common.RUN_ID}"
    # Every client is the same signed-in user: both websocket caps are raised to the number of clients.
    server = common.Server("ws", {"RSGO_THREADS": str(threads), "RSGO_MAX_LIVE_CONNECTIONS": str(clients),
                                  "RSGO_MAX_LIVE_CONNECTIONS_PER_USER": str(clients)})
    config = server.workdir / "rsgo.yml"
    config.write_text(f"stacks:\n  {stack}:\n")  # declared, so it exists without containers
    server.env["RSGO_CONFIG"] = str(config)
    reader, pages = None, []
    try:
        with common.time_limit(180 + changes * 10):
            token = server.create_token("operate")
            server.start()
            deployment_id = common.deployment_ids(server, token, {stack})[stack]
            cookie = server.cookie_header(server.login())
            row_id = f'id="deployment-{deployment_id}"'.encode()
            reader = Reader()

            def connect():
                page = Page(server, cookie, row_id)
                reader.add(page)
                pages.append(page)

            connect()
            # Registered with the hub once it has seen a change: a warm-up change, not measured, not a sleep.
            change_and_wait(server, token, stack, "Migrating", pages)
            change_and_wait(server, token, stack, "Normal", pages)
            baseline, baseline_puts, _ = measure(server, token, stack, pages, changes)
            print(f"  1 client: p50 {common.median(baseline) * 1000:.1f} ms, "
                  f"p99 {common.percentile(baseline, 99) * 1000:.1f} ms", flush=True)
            for _ in range(clients - 1):
                connect()
            change_and_wait(server, token, stack, "Migrating", pages, timeout=60)  # every page registered
            change_and_wait(server, token, stack, "Normal", pages)
            profiler = common.start_profiler(server.worker_pid(), args.py_spy) if args.py_spy else None
            latencies, puts, firsts = measure(server, token, stack, pages, changes)
            if profiler is not None:
                common.stop_profiler(profiler)
            print(f"  {clients} clients: p50 {common.median(latencies) * 1000:.1f} ms, "
                  f"p99 {common.percentile(latencies, 99) * 1000:.1f} ms", flush=True)
            rss_mb = server.rss_mb()
    finally:
        if reader is not None:
            reader.stop()  # before the sockets close: its select would read a closed one (EBADF)
        for page in pages:
            page.close()
        server.cleanup()

    p50, p99 = common.median(latencies) * 1000, common.percentile(latencies, 99) * 1000
    base_p50, base_p99 = common.median(baseline) * 1000, common.percentile(baseline, 99) * 1000
    slowest = common.spread([max(latencies[i * clients:(i + 1) * clients]) * 1000 for i in range(changes)])
    figures = [
        common.figure(f"mode change → dashboard fragment at {clients} websocket clients, p99 ({changes} isolated "
                      "changes)", p99, "ms", "p99 ≤ 100 ms", p99 <= 100, base_p99, "1 client, p99", p99 / base_p99,
                      note=f"p50 {p50:.1f} ms (1 client: {base_p50:.1f} ms); each change's slowest client: median "
                           f"{slowest['median']:.1f} ms, IQR {slowest['p25']:.1f}–{slowest['p75']:.1f}, max "
                           f"{slowest['max']:.1f}; the clock starts before the PUT (wait=true), so the API's own "
                           "answer time is included"),
    ]
    details = {"clients": clients, "changes": changes, "rsgoThreads": threads,
               "p50Ms": p50, "p90Ms": common.percentile(latencies, 90) * 1000, "p99Ms": p99,
               "maxMs": max(latencies) * 1000, "baselineP50Ms": base_p50, "baselineP99Ms": base_p99,
               "firstClientMedianMs": common.median(firsts) * 1000,
               "slowestClientPerChangeMs": slowest,
               "putMedianMs": common.median(puts) * 1000, "baselinePutMedianMs": common.median(baseline_puts) * 1000,
               "serverRssMbWithClients": rss_mb}
    # A profiled run is slowed by the profiler: it never replaces a real result.
    return common.write_result("ws_fanout" + ("-profiled" if args.py_spy else ""), figures, details, args.quick)


if __name__ == "__main__":
    main()
