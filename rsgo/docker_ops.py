"""All access to the Docker engine; the only module that imports ``docker`` (docs/design.md#composition).

Every SDK or transport error leaves this module as a ``DockerError`` whose
message says what rsgo tried to do and what the engine (or the socket) said
(``_translated`` does it, once, around every call).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import docker
import docker.errors
import requests.exceptions

STACK_LABEL = "rsgo.stack"
MAINTENANCE_LABEL = "rsgo.maintenance"
DEPENDS_ON_LABEL = "rsgo.depends_on"
STOP_TIMEOUT_LABEL = "rsgo.stop_timeout"
START_TIMEOUT_LABEL = "rsgo.start_timeout"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_DEPENDS_ON_LABEL = "com.docker.compose.depends_on"


class DockerError(Exception):
    """Docker refused or failed an operation; the message is meant for people."""


class DockerUnreachable(DockerError):
    """The engine did not answer at all (socket missing, daemon down, timeout)."""


class ContainerNotFound(DockerError):
    """No container of that name or id exists (any more)."""


@dataclass(frozen=True)
class ContainerInfo:
    """What rsgo knows of one container carrying the ``rsgo.stack`` label."""

    id: str
    name: str
    image: str
    state: str  # created, running, paused, restarting, removing, exited, dead
    health: str  # healthy, unhealthy, starting, none
    labels: dict = field(default_factory=dict, compare=False, hash=False)
    own_stop_timeout: float | None = None  # Config.StopTimeout (compose stop_grace_period)
    has_healthcheck: bool = False
    started_at: str | None = None
    finished_at: str | None = None

    @property
    def stack(self) -> str:
        return self.labels.get(STACK_LABEL, "")

    @property
    def service(self) -> str:
        return self.labels.get(COMPOSE_SERVICE_LABEL, "")

    @property
    def ignored(self) -> bool:
        """``rsgo.maintenance: ignore`` (any case) keeps a container running in Maintenance."""
        return self.labels.get(MAINTENANCE_LABEL, "").strip().lower() == "ignore"

    @property
    def running(self) -> bool:
        return self.state in ("running", "restarting")

    @property
    def ready(self) -> bool:
        """Running, and healthy if it has a healthcheck: what a dependent may start after."""
        return self.state == "running" and (not self.has_healthcheck or self.health == "healthy")


_HEALTH_IN_STATUS = re.compile(r"\((healthy|unhealthy|health: starting)\)")


def _from_summary(summary: dict) -> ContainerInfo:
    """From a ``GET /containers/json`` row: cheap, but without stop timeout or healthcheck config."""
    match = _HEALTH_IN_STATUS.search(summary.get("Status") or "")
    health = "none" if not match else match.group(1).replace("health: ", "")
    return ContainerInfo(
        id=summary["Id"],
        name=(summary.get("Names") or ["/" + summary["Id"][:12]])[0].lstrip("/"),
        image=summary.get("Image", ""),
        state=summary.get("State", "unknown"),
        health=health,
        labels=dict(summary.get("Labels") or {}),
        has_healthcheck=match is not None,
    )


def _from_inspect(attrs: dict) -> ContainerInfo:
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    healthcheck = (config.get("Healthcheck") or {}).get("Test") or []
    return ContainerInfo(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        state=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status", "none"),
        labels=dict(config.get("Labels") or {}),
        own_stop_timeout=config.get("StopTimeout"),
        has_healthcheck=bool(healthcheck) and healthcheck[0] != "NONE",
        started_at=state.get("StartedAt"),
        finished_at=state.get("FinishedAt"),
    )


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
        text = text[-200:]
    return text


class DockerGateway:
    """One Docker engine. Thread-safe: the SDK client is created lazily and shared."""

    def __init__(self, base_url: str | None = None, timeout: float = 30, pool_size: int = 64):
        self._base_url = base_url
        self._timeout = timeout
        self._pool_size = pool_size
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    def _new_client(self, timeout: float | None) -> docker.DockerClient:
        kwargs = {"version": "auto", "timeout": timeout, "max_pool_size": self._pool_size}
        if self._base_url:
            return docker.DockerClient(base_url=self._base_url, **kwargs)
        return docker.from_env(**kwargs)

    def _api(self):
        with self._lock:
            if self._client is None:
                with _translated("connecting to Docker"):  # not cached on failure: the next call tries again
                    self._client = self._new_client(self._timeout)
            return self._client.api

    @property
    def endpoint(self) -> str:
        return self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def ping(self) -> None:
        with _translated("pinging Docker"):
            self._api().ping()

    def list_stack_containers(self, stack: str | None = None) -> list[ContainerInfo]:
        """Every container (running or not) labelled ``rsgo.stack`` (or ``rsgo.stack=<stack>``)."""
        label = STACK_LABEL if stack is None else f"{STACK_LABEL}={stack}"
        with _translated("listing containers"):
            return [_from_summary(row) for row in self._api().containers(all=True, filters={"label": label})]

    def inspect(self, name_or_id: str) -> ContainerInfo:
        with _translated(f"inspecting {name_or_id}"):
            return _from_inspect(self._api().inspect_container(name_or_id))

    def inspect_stack(self, stack: str) -> list[ContainerInfo]:
        """Full details (stop timeout, healthcheck) of a stack's containers, as a transition needs.

        Inspected concurrently: one by one, a 30-container stack waits 30 round trips before acting.
        """
        summaries = self.list_stack_containers(stack)

        def inspect_or_none(summary: ContainerInfo) -> ContainerInfo | None:
            try:
                return self.inspect(summary.id)
            except ContainerNotFound:
                return None  # removed between list and inspect

        with ThreadPoolExecutor(max_workers=max(1, min(16, len(summaries))),
                                thread_name_prefix="rsgo-inspect") as pool:
            return [info for info in pool.map(inspect_or_none, summaries) if info is not None]

    def stop(self, name: str, grace_seconds: float) -> None:
        with _translated(f"stopping {name}"):
            # The SDK adds the grace period to the HTTP timeout, so a slow stop is not cut short.
            self._api().stop(name, timeout=max(0, int(round(grace_seconds))))

    def start(self, name: str) -> None:
        with _translated(f"starting {name}"):
            self._api().start(name)

    def event_stream(self, since: dt.datetime | None = None) -> EventStream:
        """Container events of labelled containers, on a connection of its own (no read timeout)."""
        with _translated("subscribing to Docker events"):
            client = self._new_client(None)
            stream = client.api.events(
                since=since, decode=True, filters={"type": "container", "label": STACK_LABEL}
            )
        return EventStream(client, stream)


class EventStream:
    """Iterate to receive events; ``close()`` from another thread ends the iteration."""

    def __init__(self, client, stream):
        self._client = client
        self._stream = stream

    def __iter__(self) -> Iterator[dict]:
        with _translated("reading Docker events"):
            for event in self._stream:
                yield {
                    "action": event.get("Action") or event.get("status", ""),
                    "id": event.get("id") or (event.get("Actor") or {}).get("ID", ""),
                    "name": ((event.get("Actor") or {}).get("Attributes") or {}).get("name", ""),
                }

    def close(self) -> None:
        """Best effort: the stream or the client may already be closed, or the engine gone."""
        with contextlib.suppress(Exception):
            self._stream.close()
        with contextlib.suppress(Exception):
            self._client.close()
