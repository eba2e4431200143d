"""A failed outbound HTTP request, in a few words for people: the one describer of the http
observer and the webhook sender (README "Observers" and "Webhooks").

Described from the exception's type and the causes it wraps, never from ``str(error)``:
requests puts the URL (whose userinfo or query may be a token) and header values there.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import requests
import urllib3

from rsgo.outbound import OutboundDenied


def causes(error: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps: requests and urllib3 nest the real cause in args and ``reason``."""
    seen, pending = set(), [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        nested = [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]
        pending.extend(item for item in nested if isinstance(item, BaseException))


def find(error: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]):
    """The first of ``error`` and its causes that is a ``kind``, else None."""
    return next((cause for cause in causes(error) if isinstance(cause, kind)), None)


def describe(error: BaseException, timeout: float) -> str:
    """``connection refused``, ``timed out after 10s``, ``TLS handshake failed (…)`` and the like."""
    denied = find(error, OutboundDenied)
    if denied is not None:
        return str(denied)  # names the denied host or network, never the URL
    verification = find(error, ssl.SSLCertVerificationError)
    if verification is not None:
        return f"TLS certificate verification failed ({verification.verify_message or 'untrusted certificate'})"
    # Before timeouts: urllib3's "new connection failed" is a subclass of its connect-timeout error.
    if find(error, ConnectionRefusedError):
        return "connection refused"
    if find(error, socket.gaierror):
        return "host name could not be resolved"
    if isinstance(error, requests.Timeout) or find(error, TimeoutError):
        return f"timed out after {timeout:g}s"
    tls = find(error, ssl.SSLError)
    if tls is not None:
        return f"TLS handshake failed ({tls.reason or type(tls).__name__})"
    if isinstance(error, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(error, (requests.ConnectionError, urllib3.exceptions.ProtocolError)):
        cause = next((c for c in causes(error) if isinstance(c, OSError) and c.strerror), None)
        return f"connection failed ({cause.strerror})" if cause is not None else "connection failed"
    return f"request failed ({type(error).__name__})"
