"""What to send Docker to replace a container: the create request for an upgrade's new container under
the old name (``recreation_request``) and for a one-off migration container (``migration_request``).

Pure: both read inspect answers and return a ``CreationRequest``; the gateway sends it. The rule they
follow: what the user configured is kept, and where the old container merely carried its image's
default (command, env, labels, healthcheck...) the new image's default applies instead. An inspect
answer cannot tell the two apart, so "equal to the old image's value" is read as "the image's default".
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

COMPOSE_LABEL_PREFIX = "com.docker.compose."
COMPOSE_IMAGE_LABEL = "com.docker.compose.image"
# Docker refuses network-scoped aliases on these (they are not user-defined networks).
DEFAULT_NETWORKS = frozenset({"bridge", "host", "none"})
# Config fields that are the image's default when equal to the old image's value (Cmd: see _config).
IMAGE_DEFAULT_FIELDS = ("Entrypoint", "WorkingDir", "User", "Healthcheck", "StopSignal")
NO_HEALTHCHECK = {"Test": ["NONE"]}
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class CreationRequest:
    """A container to create: ``body`` is the ``POST /containers/create`` body (Config fields, "HostConfig",
    "NetworkingConfig" with at most one endpoint: API 1.41 refuses several at create), ``later_networks``
    the networks (name -> EndpointSettings) to connect after the create and before the start."""

    name: str
    body: dict
    later_networks: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """How a one-off container ended: its exit code (None when it was killed at the deadline) and the
    last lines of its output (stdout and stderr)."""

    exit_code: int | None
    timed_out: bool
    log_tail: list[str]
    container_id: str


def recreation_request(old: dict, old_image: dict | None, new_ref: str, new_image: dict, *,
                       network_container_ids: dict[str, str] | None = None,
                       extra_labels: dict | None = None) -> CreationRequest:
    """The container ``old`` (raw inspect) again under its name, running ``new_ref``.

    ``old_image`` and ``new_image`` are the raw image inspects of the old container's image (None when it
    is gone: then nothing counts as an image default) and of ``new_ref``. ``network_container_ids`` maps
    old container ids or names to the new ids, for a ``container:`` network mode to follow its recreated
    namespace owner. ``extra_labels`` are added last.
    """
    image_config = (old_image or {}).get("Config") or {}
    host_config = _host_config(old, network_container_ids or {})
    config = _config(old, image_config, new_ref, host_config)
    config["Labels"] = _labels(config.get("Labels") or {}, image_config, new_image, extra_labels or {})
    endpoints = {network: _endpoint(settings, old["Id"], network, aliases=True)
                 for network, settings in _networks(old).items()}
    return _request(old["Name"].lstrip("/"), config, host_config, endpoints)


def migration_request(source: dict, source_image: dict | None, new_ref: str, new_image: dict, *, name: str,
                      command: list[str], labels: dict,
                      network_container_ids: dict[str, str] | None = None) -> CreationRequest:
    """A one-off container ``name`` that runs ``command`` in ``new_ref`` with the service container
    ``source``'s volumes, env and networks, but nothing that makes it look like part of the stack or
    serve traffic: exactly ``labels`` (no rsgo.stack, no compose labels), no published ports, no network
    aliases, no healthcheck, no restart policy. ``new_image`` is taken for symmetry with
    ``recreation_request``: no label of a migration names the image's id."""
    image_config = (source_image or {}).get("Config") or {}
    host_config = _host_config(source, network_container_ids or {})
    host_config.update(PortBindings={}, PublishAllPorts=False, RestartPolicy={"Name": "no"}, AutoRemove=False)
    config = _config(source, image_config, new_ref, host_config)
    config.update(Cmd=list(command), Labels=dict(labels), Healthcheck=NO_HEALTHCHECK)
    endpoints = {network: _endpoint(settings, source["Id"], network, aliases=False)
                 for network, settings in _networks(source).items()}
    return _request(name, config, host_config, endpoints)


def _config(old: dict, image_config: dict, new_ref: str, host_config: dict) -> dict:
    config = copy.deepcopy(old.get("Config") or {})
    config["Image"] = new_ref
    # Docker fills in the image's Cmd only when the user set no Entrypoint: with one of their own, the
    # Cmd the container has is theirs too, even when it happens to equal the image's.
    users_entrypoint = config.get("Entrypoint") != image_config.get("Entrypoint")
    for key in IMAGE_DEFAULT_FIELDS:
        if config.get(key) == image_config.get(key):
            config.pop(key, None)
    if not users_entrypoint and config.get("Cmd") == image_config.get("Cmd"):
        config.pop("Cmd", None)
    image_env = set(image_config.get("Env") or [])
    config["Env"] = [entry for entry in config.get("Env") or [] if entry not in image_env]
    config["Volumes"] = _without(config.get("Volumes"), image_config.get("Volumes"))
    exposed = _without(config.get("ExposedPorts"), image_config.get("ExposedPorts")) or {}
    exposed.update({port: {} for port in host_config.get("PortBindings") or {}})
    config["ExposedPorts"] = exposed or None
    shares_namespace = (host_config.get("NetworkMode") or "").startswith("container:")
    # Docker refuses a hostname with a container: network mode; the short id is the default it gave.
    if shares_namespace or config.get("Hostname") == old["Id"][:12]:
        config.pop("Hostname", None)
    if shares_namespace:
        config.pop("Domainname", None)
    config.pop("MacAddress", None)  # the old container's address: two containers must not share it
    return config


def _without(mapping: dict | None, image_mapping: dict | None) -> dict | None:
    kept = {key: value for key, value in (mapping or {}).items() if key not in (image_mapping or {})}
    return kept or None


def _labels(labels: dict, image_config: dict, new_image: dict, extra_labels: dict) -> dict:
    image_labels = image_config.get("Labels") or {}
    kept = {key: value for key, value in labels.items()
            if key.startswith(COMPOSE_LABEL_PREFIX) or image_labels.get(key) != value}
    if COMPOSE_IMAGE_LABEL in kept:
        kept[COMPOSE_IMAGE_LABEL] = new_image["Id"]  # compose compares it with the image it would run
    return {**kept, **extra_labels}


def _host_config(old: dict, network_container_ids: dict[str, str]) -> dict:
    host_config = copy.deepcopy(old.get("HostConfig") or {})
    binds = [*(host_config.get("Binds") or []), *_anonymous_volume_binds(old, host_config)]
    host_config["Binds"] = binds or None
    mode = host_config.get("NetworkMode") or ""
    if mode.startswith("container:"):
        owner = _new_owner(mode.removeprefix("container:"), network_container_ids)
        if owner is not None:
            host_config["NetworkMode"] = f"container:{owner}"
    return host_config


def _anonymous_volume_binds(old: dict, host_config: dict) -> list[str]:
    """Binds that give the new container the old one's anonymous volumes (an image's VOLUME, ``-v /path``),
    which Docker would otherwise replace with empty ones. Named volumes are kept by Binds or Mounts as they
    are; an anonymous volume in HostConfig.Mounts (no Source) gets the old volume's name there instead."""
    volumes = {mount["Destination"]: mount for mount in old.get("Mounts") or [] if mount.get("Type") == "volume"}
    mounts = host_config.get("Mounts") or []
    for mount in mounts:
        if mount.get("Type") == "volume" and not mount.get("Source") and mount.get("Target") in volumes:
            mount["Source"] = volumes[mount["Target"]]["Name"]
    taken = {_bind_target(bind) for bind in host_config.get("Binds") or []} | {mount.get("Target") for mount in mounts}
    return [f"{mount['Name']}:{destination}" + ("" if mount.get("RW", True) else ":ro")
            for destination, mount in volumes.items() if destination not in taken]


def _bind_target(bind: str) -> str:
    """``source:target[:options]`` -> target."""
    parts = bind.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def _new_owner(reference: str, network_container_ids: dict[str, str]) -> str | None:
    """The new id for a ``container:`` reference: a key as it is, or an id prefix of a full-id key."""
    if reference in network_container_ids:
        return network_container_ids[reference]
    if _HEX.fullmatch(reference):
        matches = {new for old, new in network_container_ids.items()
                   if _FULL_ID.fullmatch(old) and old.startswith(reference)}
        if len(matches) == 1:
            return matches.pop()
    return None


def _networks(old: dict) -> dict:
    return (old.get("NetworkSettings") or {}).get("Networks") or {}


def _endpoint(settings: dict, old_id: str, network: str, *, aliases: bool) -> dict:
    """What was configured of one network endpoint; runtime facts (addresses the engine chose, ids, the
    MAC address) stay behind. Docker adds the new container's short id as an alias itself."""
    endpoint = {}
    kept_aliases = [alias for alias in settings.get("Aliases") or [] if alias != old_id[:12]]
    if aliases and kept_aliases and network not in DEFAULT_NETWORKS:
        endpoint["Aliases"] = kept_aliases
    if settings.get("Links"):
        endpoint["Links"] = list(settings["Links"])
    ipam = settings.get("IPAMConfig") or {}
    if any(ipam.get(key) for key in ("IPv4Address", "IPv6Address", "LinkLocalIPs")):
        endpoint["IPAMConfig"] = dict(ipam)
    if settings.get("DriverOpts"):
        endpoint["DriverOpts"] = dict(settings["DriverOpts"])
    return endpoint


def _request(name: str, config: dict, host_config: dict, endpoints: dict) -> CreationRequest:
    """One endpoint in the create body (the network mode's), the others connected later."""
    body = {**config, "HostConfig": host_config}
    mode = host_config.get("NetworkMode") or "default"
    if mode.startswith("container:") or mode in ("host", "none") or not endpoints:
        return CreationRequest(name=name, body=body, later_networks={})
    first = _first_network(mode, endpoints)
    if first != mode and not (mode == "default" and first == "bridge"):
        host_config["NetworkMode"] = first  # the mode's network was left: the container starts on one it is on
    body["NetworkingConfig"] = {"EndpointsConfig": {first: endpoints[first]}}
    return CreationRequest(name=name, body=body,
                           later_networks={network: endpoint for network, endpoint in endpoints.items()
                                           if network != first})


def _first_network(mode: str, endpoints: dict) -> str:
    if mode in endpoints:
        return mode
    if mode == "default" and "bridge" in endpoints:
        return "bridge"
    return next(iter(endpoints))
