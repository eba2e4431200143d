"""Docker failures as rsgo's own exceptions: every SDK or transport error leaves the package as a
``DockerError`` whose message says what rsgo tried to do and what the engine (or the socket) said."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker.errors
import requests.exceptions


class DockerError(Exception):
    """Docker refused or failed an operation; the message is meant for people."""


class DockerUnreachable(DockerError):
    """The engine did not answer at all (socket missing, daemon down, timeout)."""


class ContainerNotFound(DockerError):
    """No container of that name or id exists (any more)."""


NotFound = ContainerNotFound  # the same error for a service: code that handles both need not name containers


class ServiceStillStopping(DockerError):
    """rsgo changed the service's spec to stop it, but tasks still ran when it stopped waiting.

    ``service`` is the service as rsgo left it: its spec says stopped (Swarm ends the tasks on its own), so
    the stop is half-done and what Normal restores must be kept, though the action failed."""

    def __init__(self, message: str, service):
        super().__init__(message)
        self.service = service



def _explain(error: Exception, doing: str) -> DockerError:
    if isinstance(error, docker.errors.NotFound):
        return ContainerNotFound(f"{doing}: no such container")
    if isinstance(error, docker.errors.APIError):
        detail = error.explanation or str(error)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return DockerError(f"{doing}: Docker answered {error.status_code}: {detail}")
    if isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, FileNotFoundError,
                          ConnectionError)):
        return DockerUnreachable(f"{doing}: the Docker engine is unreachable ({_short(error)})")
    if isinstance(error, docker.errors.DockerException):
        text = str(error)
        if "connection" in text.lower() or "no such file" in text.lower():
            return DockerUnreachable(f"{doing}: the Docker engine is unreachable ({_short(error)})")
        return DockerError(f"{doing}: {text}")
    return DockerError(f"{doing}: {_short(error)}")


@contextlib.contextmanager
def _translated(doing: str) -> Iterator[None]:
    """Whatever the SDK or the transport raises inside leaves as a ``DockerError`` saying ``doing``."""
    try:
        yield
    except DockerError:
        raise
    except Exception as error:  # noqa: BLE001 - every failure is translated; the message names its cause
        raise _explain(error, doing) from None


def _short(error: Exception) -> str:
    text = str(error) or type(error).__name__
    # requests nests the real cause deep inside a long repr; the tail names it.
    if "(" in text and len(text) > 200:
        tail = text[-200:]
        text = "…" + tail[tail.find(" ") + 1:] if " " in tail else tail  # from a word's start, not mid-word
    return text


