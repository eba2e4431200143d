"""The health gate a started container passes before the next dependency level starts (README "Upgrades"):
``healthy`` within the health timeout when it has a healthcheck, else running for the stable time
without a restart."""

from __future__ import annotations

import time

from rsgo.docker_ops import ContainerNotFound, DockerGateway

POLL_SECONDS = 0.1  # a level's dependents start this much after it passed, at most


class GateFailed(Exception):
    """The container did not pass; the message says what it did instead."""


def pass_gate(gateway: DockerGateway, name: str, *, health_timeout: float, stable_for: float) -> str:
    """Waits until ``name`` passes; returns how it passed ("healthy", "running 10s"). Raises GateFailed.

    An ``unhealthy`` report fails at once: Docker reports it only after the healthcheck's retries."""
    try:
        first = gateway.inspect(name)
    except ContainerNotFound:
        raise GateFailed(f"{name} is gone") from None
    if first.has_healthcheck:
        deadline = time.monotonic() + health_timeout
        current = first
        while True:
            if not current.running:
                raise GateFailed(f"{name} {current.state} before it was healthy")
            if current.health == "healthy":
                return "healthy"
            if current.health == "unhealthy":
                raise GateFailed(f"{name} is unhealthy (its healthcheck failed)")
            if time.monotonic() >= deadline:
                raise GateFailed(f"{name} not healthy after {health_timeout:g}s (health: {current.health})")
            time.sleep(POLL_SECONDS)
            current = _inspect(gateway, name)
    deadline = time.monotonic() + stable_for
    current = first
    while True:
        if not current.running or current.state == "restarting":
            raise GateFailed(f"{name} {current.state} within {stable_for:g}s of starting")
        if current.restart_count != first.restart_count or current.started_at != first.started_at:
            raise GateFailed(f"{name} restarted within {stable_for:g}s of starting")
        if time.monotonic() >= deadline:
            return f"running {stable_for:g}s"
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        current = _inspect(gateway, name)


def still_passing(gateway: DockerGateway, name: str) -> str | None:
    """After every level passed: None if ``name`` still runs (and is not unhealthy), else what it does."""
    current = _inspect(gateway, name)
    if not current.running or current.state == "restarting":
        return f"{name} {current.state}"
    if current.has_healthcheck and current.health == "unhealthy":
        return f"{name} is unhealthy"
    return None


def _inspect(gateway: DockerGateway, name: str):
    try:
        return gateway.inspect(name)
    except ContainerNotFound:
        raise GateFailed(f"{name} is gone") from None
