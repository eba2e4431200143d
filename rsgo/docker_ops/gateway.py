"""One Docker engine: the SDK client, the container and Swarm service calls, and the events stream."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import docker
import docker.auth
import docker.errors
import docker.tls
import docker.utils
import requests.exceptions

from rsgo.docker_ops.containers import STACK_LABEL, ContainerInfo, _from_inspect, _from_summary, _is_stack_member
from rsgo.docker_ops.errors import ContainerNotFound, DockerError, NotFound, ServiceStillStopping, _translated
from rsgo.docker_ops.recreate import CreationRequest, RunOutcome
from rsgo.docker_ops.services import (
    ServiceInfo,
    _from_service,
    _is_stack_service,
    _mode_of,
    _restored_spec,
    _stopped_spec,
)

# Swarm gives each task its own stop grace period; this is the margin for the orchestrator and the agent.
SERVICE_STOP_MARGIN = 10
SERVICE_POLL_INTERVAL = 0.25
PULL_STALL_SECONDS = 600  # a pull fails after this long without a progress line (or the client's timeout if longer)


@dataclass(frozen=True)
class EngineFacts:
    version: str  # the engine's version, e.g. 20.10.24
    api_version: str
    swarm_manager: bool  # services can be listed and changed here
    # Info.ID, Name and DockerRootDir: the same for two URLs of one engine. The ID alone is not enough:
    # dockerds sharing /etc/docker (two on one host, cloned machines) share it.
    engine_id: str = ""


# Callers that queued behind a failed connect (each would wait the whole timeout again) fail with it
# within this long; later ones try again.
CONNECT_FAILURE_SHARED_SECONDS = 2.0
# Docker 20.10: the oldest engine rsgo supports (service task counts need it).
MINIMUM_API_VERSION = "1.41"


class DockerGateway:
    """One Docker engine. Thread-safe: the SDK client is created lazily and shared.

    ``tls`` has ``ca``, ``cert`` and ``key`` (file paths, any may be None). The client is built on the
    first call, so a bad certificate path fails there as a ``DockerError``, not in the constructor.
    """

    def __init__(self, base_url: str | None = None, *, tls=None, timeout: float = 30, pool_size: int = 64):
        self._base_url = base_url
        self._tls = tls
        self._timeout = timeout
        self._pool_size = pool_size
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()
        self._connect_failure: tuple[float, DockerError] | None = None  # (when, why) the last connect failed

    def _new_client(self, timeout: float | None) -> docker.DockerClient:
        kwargs = {"version": "auto", "timeout": timeout, "max_pool_size": self._pool_size}
        if not self._base_url:
            return docker.from_env(**kwargs)
        # Always from the explicit URL: docker-py 7.2's from_env would honour the Docker CLI context instead.
        if self._tls is not None:
            return self._new_tls_client(kwargs)
        # ssh:// goes through paramiko (pinned in pyproject.toml), which reads ~/.ssh/config and the keys in
        # ~/.ssh: the container image needs no ssh binary. The remote user runs `docker system dial-stdio`.
        return docker.DockerClient(base_url=self._base_url, **kwargs)

    def _new_tls_client(self, kwargs: dict) -> docker.DockerClient:
        """requests lets REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE replace a session's own CA file, and the SDK's
        "auto" version asks the engine before the session can be told otherwise: so the version is asked
        first on a session that ignores the process environment. The engine's CA is the one the config names."""
        cert, key, ca = self._tls.cert, self._tls.key, self._tls.ca
        kwargs = {**kwargs, "tls": docker.tls.TLSConfig(client_cert=(cert, key) if cert else None, ca_cert=ca,
                                                        verify=bool(ca))}
        probe = docker.DockerClient(base_url=self._base_url, **{**kwargs, "version": MINIMUM_API_VERSION})
        probe.api.trust_env = False
        try:
            version = probe.api.version(api_version=False)["ApiVersion"]
        finally:
            probe.close()
        client = docker.DockerClient(base_url=self._base_url, **{**kwargs, "version": version})
        client.api.trust_env = False
        return client

    def _api(self):
        with self._lock:
            if self._client is None:
                failed = self._connect_failure
                if failed is not None and time.monotonic() - failed[0] < CONNECT_FAILURE_SHARED_SECONDS:
                    # Callers queued behind an attempt that just waited the whole timeout fail with it at once,
                    # instead of each waiting the timeout again (a hung engine would hold them for minutes).
                    raise type(failed[1])(str(failed[1]))
                try:
                    with _translated("connecting to Docker"):  # not cached on failure: a later call tries again
                        self._client = self._new_client(self._timeout)
                except DockerError as error:
                    self._connect_failure = (time.monotonic(), error)
                    raise
                self._connect_failure = None
            return self._client.api

    @property
    def endpoint(self) -> str:
        return self._base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"

    def ping(self) -> None:
        with _translated("pinging Docker"):
            self._api().ping()

    def engine_facts(self) -> EngineFacts:
        with _translated("asking Docker what it is"):
            version = self._api().version()
            info = self._api().info()
            swarm = info.get("Swarm") or {}
        return EngineFacts(version=version.get("Version", ""), api_version=version.get("ApiVersion", ""),
                           swarm_manager=bool(swarm.get("ControlAvailable")),
                           engine_id="|".join(str(info.get(key) or "") for key in ("ID", "Name", "DockerRootDir")))

    def list_stack_containers(self, stack: str | None = None) -> list[ContainerInfo]:
        """Every container (running or not) labelled ``rsgo.stack`` (or ``rsgo.stack=<stack>``).

        Never a Swarm task's container (its service is what rsgo acts on), nor one an upgrade keeps aside.
        """
        label = STACK_LABEL if stack is None else f"{STACK_LABEL}={stack}"
        with _translated("listing containers"):
            rows = self._api().containers(all=True, filters={"label": label})
        return [_from_summary(row) for row in rows if _is_stack_member(row)]

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

    def inspect_raw(self, name_or_id: str) -> dict:
        with _translated(f"inspecting {name_or_id}"):
            return self._api().inspect_container(name_or_id)

    def image_inspect(self, ref: str) -> dict | None:
        with _translated(f"inspecting image {ref}"), contextlib.suppress(docker.errors.ImageNotFound):
            return self._api().inspect_image(ref)
        return None  # the engine does not have it

    def pull(self, ref: str) -> dict:
        """Pull ``ref`` (``[host[:port]/]repo[:tag|@digest]``) with the Docker config's credentials; its image
        inspect. Not the SDK's pull: that reads without a timeout, so a stalled registry would hold it forever."""
        doing = f"pulling {ref}"
        repository, tag = docker.utils.parse_repository_tag(ref)  # a digest comes back as the tag: Docker takes it
        with _translated(doing):
            auth = docker.auth.get_config_header(self._api(), docker.auth.resolve_repository_name(repository)[0])
            params = {"fromImage": repository, "tag": tag or "latest"}  # no tag would pull every tag
            with contextlib.closing(_post(self._api(), "/images/create", params=params, stream=True,
                                          headers={"X-Registry-Auth": auth} if auth else {},
                                          timeout=(self._timeout, max(self._timeout, PULL_STALL_SECONDS)))) as answer:
                for line in answer.iter_lines():  # progress lines, or an error once the answer has begun
                    if line and (error := json.loads(line).get("error")):
                        raise DockerError(f"{doing}: {error}")
        if (image := self.image_inspect(ref)) is None:
            raise DockerError(f"{doing}: Docker reported no error but does not have the image")
        return image

    def rename(self, name_or_id: str, new_name: str) -> None:
        with _translated(f"renaming {name_or_id} to {new_name}"):
            self._api().rename(name_or_id, new_name)

    def set_restart_policy(self, name_or_id: str, policy: dict) -> None:  # {"Name": "always", "MaximumRetryCount": 0}
        with _translated(f"setting the restart policy of {name_or_id} to {policy.get('Name')}"):
            self._api().update_container(name_or_id, restart_policy=policy)

    def create(self, request: CreationRequest) -> str:
        """Create, connect the later networks (raw: the SDK takes only some fields); a failed connect removes it."""
        with _translated(f"creating {request.name}"):
            container_id = self._api().create_container_from_config(request.body, request.name)["Id"]
        try:
            for network, endpoint in request.later_networks.items():
                with _translated(f"connecting {request.name} to {network}"):
                    _post(self._api(), f"/networks/{urllib.parse.quote(network, safe='')}/connect",
                          json={"Container": container_id, "EndpointConfig": endpoint}, timeout=self._timeout).close()
        except DockerError:
            with contextlib.suppress(DockerError):
                self.remove(container_id, anonymous_volumes=True)
            raise
        return container_id

    def remove(self, name_or_id: str, *, anonymous_volumes: bool = False) -> None:
        """Kill and remove, keeping its volumes; with ``anonymous_volumes`` not those Docker made empty for it."""
        with _translated(f"removing {name_or_id}"):
            self._api().remove_container(name_or_id, v=anonymous_volumes, force=True)

    def run_once(self, request: CreationRequest, timeout: float, log_lines: int = 100) -> RunOutcome:
        """Create, start, wait up to ``timeout`` s, read the last ``log_lines`` lines of output, remove (killing it)
        with the volumes Docker made empty for it, never one it names. A failed remove is left to the label cleanup."""
        container_id = self.create(request)
        try:
            with _translated(f"starting {request.name}"):
                self._api().start(container_id)
            with _translated(f"waiting for {request.name}"):
                started = time.monotonic()
                try:
                    exit_code = self._api().wait(container_id, timeout=timeout)["StatusCode"]
                except requests.exceptions.RequestException:  # its deadline: a read timeout, typed by the transport
                    if time.monotonic() - started < timeout:
                        raise  # not the deadline: a real failure
                    exit_code = None
            with _translated(f"reading the output of {request.name}"):
                output = self._api().logs(container_id, stdout=True, stderr=True, tail=log_lines)
        finally:
            with contextlib.suppress(DockerError):  # it must not hide how the run ended
                self.remove(container_id, anonymous_volumes=True)
        return RunOutcome(exit_code=exit_code, timed_out=exit_code is None, container_id=container_id,
                          log_tail=output.decode("utf-8", "replace").splitlines()[-log_lines:])

    def containers_labelled(self, label: str) -> list[dict]:  # rows, running or not; label like "rsgo.upgrade=17"
        with _translated(f"listing containers labelled {label}"):
            return self._api().containers(all=True, filters={"label": label})

    # -- Swarm services --------------------------------------------------------------------------

    def list_stack_services(self, stack: str | None = None) -> list[ServiceInfo]:
        """Services labelled ``rsgo.stack`` or ``com.docker.stack.namespace`` (of ``stack``), with task counts."""
        with _translated("listing services"):
            # One call filtered here: the label filter cannot say "this label or that one".
            rows = self._api().services(status=True)
        services = [_from_service(row) for row in rows if _is_stack_service(row)]
        return [service for service in services if stack is None or service.stack == stack]

    def inspect_service(self, name_or_id: str) -> ServiceInfo:
        return _from_service(self._service_with_status(name_or_id, f"inspecting service {name_or_id}"))

    def _service_with_status(self, name_or_id: str, doing: str) -> dict:
        with _service_translated(doing):
            # Inspect resolves a name or id as docker does; only the list carries the task counts, and
            # its filters match prefixes, so the row is picked by its exact id.
            service_id = self._api().inspect_service(name_or_id)["ID"]
            rows = self._api().services(filters={"id": service_id}, status=True)
        row = next((row for row in rows if row["ID"] == service_id), None)
        if row is None:
            raise NotFound(f"{doing}: no such service")  # removed between the two calls
        return row

    def _inspect_service_spec(self, name: str, doing: str) -> dict:
        with _service_translated(doing):
            return self._api().inspect_service(name)

    def _update_service_spec(self, current: dict, spec: dict, doing: str) -> None:
        """Send ``spec`` whole, against the version it was read at: if anyone changed the service since,
        Swarm refuses the update ("update out of sequence") instead of rsgo overwriting their change."""
        task_template = spec.get("TaskTemplate") or {}
        # The deprecated top-level Networks move into the task template, as the docker CLI does.
        networks = None if task_template.get("Networks") else spec.get("Networks")
        with _service_translated(doing):
            self._api().update_service(
                current["ID"], current["Version"]["Index"], task_template=task_template, name=spec.get("Name"),
                labels=spec.get("Labels"), mode=spec.get("Mode"), update_config=spec.get("UpdateConfig"),
                rollback_config=spec.get("RollbackConfig"), networks=networks, endpoint_spec=spec.get("EndpointSpec"))

    def stop_service(self, name: str, grace_seconds: float) -> ServiceInfo:
        """Replicated: scale to 0; global: add rsgo's unsatisfiable constraint (once). Nothing else of
        the spec changes. Waits until no task runs; returns the service as rsgo left it."""
        doing = f"stopping {name}"
        current = self._inspect_service_spec(name, doing)
        if _mode_of(current["Spec"]).endswith("-job"):
            raise DockerError(f"{doing}: {name} is a job: left alone")
        stopped = _stopped_spec(current["Spec"])
        if stopped is not None:
            self._update_service_spec(current, stopped, doing)
        wait = grace_seconds + SERVICE_STOP_MARGIN
        deadline = time.monotonic() + wait
        while True:
            info = _from_service(self._service_with_status(name, doing))
            if info.running_tasks == 0:
                return info  # read after the tasks stopped: its version is the one Normal compares with
            if time.monotonic() >= deadline:
                raise ServiceStillStopping(f"{doing}: {info.running_tasks} task(s) still running after {wait:g}s",
                                           info)
            time.sleep(SERVICE_POLL_INTERVAL)

    def start_service(self, name: str, memo: dict) -> tuple[ServiceInfo, str | None]:
        """Set back only what ``memo`` (``ServiceInfo.memo()``) recorded, on the current spec; does not wait
        for tasks. The second value warns when the service was changed while rsgo had it stopped."""
        doing = f"starting {name}"
        current = self._inspect_service_spec(name, doing)
        mode = _mode_of(current["Spec"])
        if mode.endswith("-job"):
            raise DockerError(f"{doing}: {name} is a job: left alone")
        if mode != memo["mode"]:
            raise DockerError(f"{doing}: rsgo stopped it as a {memo['mode']} service but it is {mode} now: left alone")
        restored, what = _restored_spec(current["Spec"], memo)
        if restored != current["Spec"]:
            self._update_service_spec(current, restored, doing)
        warning = None
        version = current["Version"]["Index"]
        if version != memo["version"]:
            warning = (f"{name} was changed while rsgo had it stopped (spec version {memo['version']} → {version}): "
                       f"only its {what} was restored; the change was kept")
        return self.inspect_service(name), warning

    # -- events -----------------------------------------------------------------------------------

    def event_stream(self, since: dt.datetime | None = None, services: bool = False) -> EventStream:
        """Events on a connection of its own (no read timeout): of labelled containers, or with
        ``services`` of every container and service (service events carry no labels to filter on)."""
        filters = {"type": ["container", "service"]} if services else {"type": "container", "label": STACK_LABEL}
        with _translated("subscribing to Docker events"):
            # The client's timeout bounds connecting and the version handshake (a hung engine fails
            # here, and discovery retries); docker-py reads the events response itself without one.
            client = self._new_client(self._timeout)
            stream = client.api.events(since=since, decode=True, filters=filters)
        return EventStream(client, stream)


class EventStream:
    """Iterate to receive events; ``close()`` from another thread ends the iteration."""

    def __init__(self, client, stream):
        self._client = client
        self._stream = stream

    def __iter__(self) -> Iterator[dict]:
        with _translated("reading Docker events"):
            for event in self._stream:
                actor = event.get("Actor") or {}
                attributes = dict(actor.get("Attributes") or {})
                yield {
                    "type": event.get("Type") or "container",
                    "action": event.get("Action") or event.get("status", ""),
                    "id": event.get("id") or actor.get("ID", ""),
                    "name": attributes.pop("name", ""),
                    "labels": attributes,  # a container event's attributes are its labels (and its name)
                }

    def close(self) -> None:
        """Best effort: the stream or the client may already be closed, or the engine gone."""
        with contextlib.suppress(Exception):
            self._stream.close()
        with contextlib.suppress(Exception):
            self._client.close()


def _post(api, path: str, **kwargs):
    """A POST the SDK cannot make as needed (no default timeout); errors as APIError (a 404 is no container's)."""
    response = api.post(f"{api.base_url}/v{api.api_version}{path}", **kwargs)
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as error:
        with contextlib.closing(response):  # after the error read the engine's message from it
            explained = docker.errors.create_api_error_from_http_exception(error)
            raise docker.errors.APIError(str(error), response, explanation=explained.explanation) from None
    return response


@contextlib.contextmanager
def _service_translated(doing: str) -> Iterator[None]:
    """``_translated``, with a missing service said as such (the shared translation says "container")."""
    with _translated(doing):
        try:
            yield
        except docker.errors.NotFound:
            raise NotFound(f"{doing}: no such service") from None
