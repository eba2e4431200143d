"""gunicorn's gthread worker with a read timeout on requests.

gthread waits (without a thread) for a connection's first byte, but then reads the request's
headers and body on a blocking socket with no timeout: a client that sends part of a request and
stops holds its thread for as long as it keeps the connection open, and a few hundred such
connections hold them all. Here every read of a request (headers, and the body the app reads)
times out after ``RSGO_REQUEST_TIMEOUT``: the thread is freed and the connection closed. A body read
that times out is a 408 from the app (werkzeug's ``RequestTimeout``), not a 500. Websocket upgrades
lift the timeout once their headers have arrived: an open websocket may be idle indefinitely
(``/ws`` pings it and closes it when the pings go unanswered).

gthread (gunicorn 27) calls ``sock.setblocking(True)`` then ``conn.init()`` before every request,
kept-alive ones included, so ``init`` is where the timeout is set each time. gthread also closes
connections on its main thread with a close that waits for the peer: ``TConn.close`` does not wait.
"""

from __future__ import annotations

import socket

from gunicorn import glogging, util
from gunicorn.http.errors import NoMoreData
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread
from werkzeug.exceptions import RequestTimeout

from rsgo.log_safety import escape_controls

# ``rsgo serve`` sets it from the settings before the worker starts (``RSGO_REQUEST_TIMEOUT``).
REQUEST_TIMEOUT_SECONDS = 10.0


class RequestBodyTimeout(RequestTimeout):
    """The client stopped sending the request body the app was reading."""

    description = "the request did not arrive in time; nothing was done"


class TimedSocketUnreader(SocketUnreader):
    """The parser's socket reads: a timeout while the headers arrive ends the connection quietly
    (as a client that went away does); one while the app reads the body is a 408."""

    reading_body = False

    def chunk(self, size_hint=None):
        try:
            return super().chunk(size_hint)
        except TimeoutError:
            if self.reading_body:
                raise RequestBodyTimeout() from None
            raise NoMoreData(b"") from None


class TConn(gthread.TConn):
    def init(self):
        super().init()
        if not self.is_http2 and self.parser is not None:
            unreader = self.parser.unreader
            if type(unreader) is SocketUnreader:
                unreader.__class__ = TimedSocketUnreader
            if isinstance(unreader, TimedSocketUnreader):
                unreader.reading_body = False
        self.sock.settimeout(REQUEST_TIMEOUT_SECONDS)

    def close(self, graceful=False):
        """gthread closes connections on its main thread, and a graceful close there lingers up to
        2 s for the peer to close first: clients that keep their end open would stall accepting and
        every other connection, 2 s each. Here the close drains what has already arrived (so that
        unread request bytes do not turn the close into a reset) and never waits."""
        if graceful:
            try:
                self.sock.setblocking(False)
                self.sock.shutdown(socket.SHUT_WR)
                for _ in range(16):  # at most 64 KiB already received
                    if not self.sock.recv(4096):
                        break
            except OSError:  # nothing more has arrived, or the peer is gone
                pass
        util.close(self.sock)


class ThreadWorker(gthread.ThreadWorker):
    def enqueue_req(self, conn):
        if type(conn) is gthread.TConn:
            conn.__class__ = TConn
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        if _is_websocket_upgrade(req):
            conn.sock.settimeout(None)  # the connection stays open while the page does
            return super().handle_request(req, conn)
        unreader = conn.parser.unreader
        if not isinstance(unreader, TimedSocketUnreader):
            return super().handle_request(req, conn)
        unreader.reading_body = True  # the headers are in; the app reads the body
        try:
            return super().handle_request(req, conn)
        finally:
            # gthread's own drain of an unread body expects the socket's TimeoutError.
            unreader.reading_body = False


def _is_websocket_upgrade(req) -> bool:
    return any(name == "UPGRADE" and value.strip().lower() == "websocket" for name, value in req.headers)


class Logger(glogging.Logger):
    """gunicorn's logger, with control characters in access-log fields escaped: gunicorn refuses C0
    controls in the request line and headers, but lets C1 ones (U+0080-U+009F, such as the CSI
    U+009B) through in header values such as User-Agent and Referer."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: escape_controls(value) if isinstance(value, str) else value for key, value in atoms.items()}
