"""One Docker engine: the SDK client, the container calls and the events stream."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import docker

from rsgo.docker_ops.containers import STACK_LABEL, ContainerInfo, _from_inspect, _from_summary
from rsgo.docker_ops.errors import ContainerNotFound, _translated


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
