"""What any request may carry, checked once for every route: the body's size, a body that can be
read at all (a malformed chunked body is the caller's error, not the server's), and ids in paths.
"""

from __future__ import annotations

from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from rsgo.db import MAX_ID

MAX_REQUEST_BYTES = 1024 * 1024  # 1 MiB: rsgo's bodies are a mode and a reason; anything near this is abuse
MAX_REQUEST_TEXT = "1 MiB"

try:  # gunicorn parses chunked bodies lazily, while the app reads them
    from gunicorn.http.errors import ParseException as _GunicornParseError
except ImportError:  # pragma: no cover - gunicorn is a dependency; other servers raise OSError or nothing
    _GunicornParseError = OSError

# What reading a request body can raise when the client sent a broken one (a bad chunk size, a chunk
# without its CRLF, a bad chunk extension) or stopped sending before its end (NoMoreData, a reset).
_UNREADABLE = (_GunicornParseError, OSError)


class IdConverter(IntegerConverter):
    """``<int:...>`` in every route: ASCII digits only (``\\d`` would also take "４" or "٤" and read
    them as numbers) and at most SQLite's largest integer, so a bigger number is no such row (404)."""

    regex = r"[0-9]{1,19}"

    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


class _CheckedBody:
    """``wsgi.input`` whose read errors become a 400 (the body is the caller's, so is its being broken),
    and which refuses a body over the limit with 413 even when no Content-Length announced its size:
    werkzeug's own limit on such a stream stops reading at the limit and hands on a cut body."""

    def __init__(self, stream):
        self._stream = stream
        self._total = 0
        if hasattr(stream, "readinto"):  # werkzeug prefers it when the stream has one
            self.readinto = lambda buffer: self._counted(self._guarded(stream.readinto, buffer))

    def _guarded(self, read, *args):
        try:
            return read(*args)
        except _UNREADABLE as error:
            raise BadRequest(f"the request body could not be read: {type(error).__name__}: {error}"[:300]) from None

    def _counted(self, got):
        self._total += got if isinstance(got, int) else len(got or b"")
        if self._total > MAX_REQUEST_BYTES or (self._total == MAX_REQUEST_BYTES
                                               and self._guarded(self._stream.read, 1)):
            raise RequestEntityTooLarge()
        return got

    def read(self, *args):
        return self._counted(self._guarded(self._stream.read, *args))

    def readline(self, *args):
        return self._counted(self._guarded(self._stream.readline, *args))

    def readlines(self, *args):
        lines = self._guarded(self._stream.readlines, *args)
        self._counted(sum(len(line) for line in lines))
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name):  # anything else a server or a library looks for (rfile, raw, close)
        return getattr(self._stream, name)


def install(app) -> None:
    """Before any blueprint is registered: the converter applies to the rules added afterwards."""
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES  # 413 before reading when Content-Length says more
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_REQUEST_BYTES  # one limit for forms too (Flask's default is less)
    app.url_map.converters["int"] = IdConverter
    wsgi_app = app.wsgi_app

    def checked_bodies(environ, start_response):
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _CheckedBody(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    app.wsgi_app = checked_bodies
