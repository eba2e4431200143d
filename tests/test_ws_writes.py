"""How a websocket connection writes (rsgo/web/ws.py ``_WholeWrites``), on real loopback TCP sockets with
small buffers, to a reader that reads slowly.

Two threads write one connection's socket: the page's (fragments) and simple-websocket's own (pings,
the close). A plain ``socket.send`` to a full socket may take only the start of the data; what it did not
take would be lost, and the page would read a cut frame. Each write here is whole and one at a time.
"""

from __future__ import annotations

import socket
import threading
import time

from rsgo.web.ws import _WholeWrites

SIZE = 512 * 1024


def _pair() -> tuple[socket.socket, socket.socket]:
    """(writer, reader) over loopback: 4 KiB buffers each way, set before the connection is made."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        reader.connect(listener.getsockname())
        writer, _ = listener.accept()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer.settimeout(30)  # as rsgo/web/ws.py sets it: a socket in timeout mode, as simple-websocket's is
    return writer, reader


def _read_slowly(reader: socket.socket, size: int, into: bytearray) -> threading.Thread:
    def read():
        reader.settimeout(30)
        while len(into) < size:
            time.sleep(0.001)
            chunk = reader.recv(2048)
            if not chunk:
                return
            into.extend(chunk)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_a_plain_send_to_a_slow_reader_takes_only_part():
    """Why: the hazard is real on these sockets (else the tests below would prove nothing)."""
    writer, reader = _pair()
    with writer, reader:
        received = bytearray()
        thread = _read_slowly(reader, SIZE, received)
        taken = writer.send(b"x" * SIZE)
        writer.close()
        thread.join(timeout=30)
        assert 0 < taken < SIZE and len(received) == taken


def test_a_write_to_a_slow_reader_is_whole():
    writer, reader = _pair()
    with writer, reader:
        payload = bytes(range(256)) * (SIZE // 256)
        received = bytearray()
        thread = _read_slowly(reader, SIZE, received)
        assert _WholeWrites(writer).send(payload) == SIZE
        thread.join(timeout=30)
        assert bytes(received) == payload


def test_writes_of_two_threads_never_interleave():
    writer, reader = _pair()
    with writer, reader:
        received = bytearray()
        thread = _read_slowly(reader, 2 * SIZE, received)
        whole = _WholeWrites(writer)
        start = threading.Barrier(2)

        def write(byte: bytes):
            start.wait()
            whole.send(byte * SIZE)

        writers = [threading.Thread(target=write, args=(b,)) for b in (b"a", b"b")]
        for t in writers:
            t.start()
        for t in writers:
            t.join(timeout=60)
        thread.join(timeout=30)
        assert bytes(received) in (b"a" * SIZE + b"b" * SIZE, b"b" * SIZE + b"a" * SIZE), "interleaved"
