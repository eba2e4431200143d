"""Which containers an upgrade recreates, which it only stops and starts again, and which keep running,
decided while the stack is still Normal (README "Upgrades")."""

from __future__ import annotations

from dataclasses import dataclass

from rsgo.docker_ops import ContainerInfo
from rsgo.lifecycle import dependency_levels, resolve_dependencies
from rsgo.upgrades.request import UpgradeRequest, UpgradeRequestInvalid

RECREATE = "recreate"  # gets the new image the request names
REJOIN = "rejoin"  # shares a recreated container's network namespace: recreated with its own image to follow it
STOP = "stop"  # depends on a recreated container: stopped before it, started after it


@dataclass
class PlannedContainer:
    name: str
    role: str
    level: int
    was_running: bool
    old_id: str
    old_ref: str  # the image reference it was created from (Config.Image)
    old_image_id: str
    new_ref: str | None  # recreate: the requested reference; rejoin: its own; stop: None
    restart_policy: dict
    inspect: dict  # the full inspect answer: what a rollback recreates it from if it vanished


@dataclass
class UpgradePlan:
    containers: list[PlannedContainer]
    kept_running: list[str]  # running containers the upgrade does not touch
    migration_source: str | None  # the container whose environment and volumes the migration runs with

    def recreated(self) -> list[PlannedContainer]:
        return [c for c in self.containers if c.role in (RECREATE, REJOIN)]

    def by_name(self, name: str) -> PlannedContainer:
        return next(c for c in self.containers if c.name == name)


def _network_parent(inspect: dict) -> str | None:
    mode = (inspect.get("HostConfig") or {}).get("NetworkMode") or ""
    return mode.partition(":")[2] or None if mode.startswith("container:") else None


def _matches(container: ContainerInfo, inspect: dict, ref: str) -> bool:
    """Whether ``container:<ref>`` names this container (by name, full id or an id prefix, as docker does)."""
    return ref in (container.name, inspect.get("Name", "").lstrip("/")) or (len(ref) >= 12
                                                                            and container.id.startswith(ref))


def _targets(units: list[ContainerInfo], request: UpgradeRequest) -> dict[str, str]:
    """Container name -> new reference, for every service or container ``images`` names."""
    targets: dict[str, str] = {}
    for key, ref in request.images.items():
        matched = [unit.name for unit in units if key in (unit.service, unit.name)]
        if not matched:
            names = sorted({unit.service or unit.name for unit in units})
            raise UpgradeRequestInvalid(f"images.{key}: the stack has no service or container {key!r}; it has "
                                        f"{', '.join(names) or 'no containers'}; nothing was touched", f"images.{key}")
        for name in matched:
            if name in targets and targets[name] != ref:
                raise UpgradeRequestInvalid(f"images: {name} is named twice with different images", f"images.{key}")
            targets[name] = ref
    return targets


def is_service_row(row: PlannedContainer) -> bool:
    """A Swarm service's row: its stored inspect answer is a service's (``Spec``), not a container's."""
    return "Spec" in row.inspect


def _swarm_plan(units: list[ContainerInfo], inspects: dict[str, dict], request: UpgradeRequest,
                targets: dict[str, str]) -> UpgradePlan:
    """Services only, in dependency order; each is updated in place by Swarm, so nothing else stops."""
    by_name = {unit.name: unit for unit in units}
    containers = sorted(name for name in targets if by_name[name].kind == "container")
    if containers:
        services = sorted(name for name in targets if name not in containers)
        raise UpgradeRequestInvalid(f"images names containers ({', '.join(containers)}) and Swarm services "
                                    f"({', '.join(services)}): upgrade them in separate requests; nothing was "
                                    "touched", "images")
    jobs = sorted(name for name in targets if by_name[name].job)
    if jobs:
        raise UpgradeRequestInvalid(f"{', '.join(jobs)}: a Swarm job has no rolling update and is not upgraded; "
                                    "nothing was touched", "images")
    if request.migration is not None:
        raise UpgradeRequestInvalid("migration is not supported for Swarm services (run it as a job of its own "
                                    "first); nothing was touched", "migration")
    levels = dependency_levels(units)
    planned = []
    for name in sorted(targets, key=lambda n: (levels[n], n)):
        unit, inspect = by_name[name], inspects[name]
        image = ((inspect["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image", "")
        planned.append(PlannedContainer(name=name, role=RECREATE, level=levels[name], was_running=unit.running,
                                        old_id=unit.id, old_ref=image, old_image_id="", new_ref=targets[name],
                                        restart_policy={}, inspect=inspect))
    kept = sorted(unit.name for unit in units if unit.name not in targets and unit.running)
    return UpgradePlan(planned, kept, None)


def plan_upgrade(units: list[ContainerInfo], inspects: dict[str, dict], request: UpgradeRequest) -> UpgradePlan:
    """``units``: the stack's containers (on a Swarm manager also its services); ``inspects``: each one's full
    inspect answer by name. Named services make a Swarm plan; named containers never touch a service."""
    targets = _targets(units, request)
    if any(unit.kind == "service" and unit.name in targets for unit in units):
        return _swarm_plan(units, inspects, request, targets)
    everything, units = units, [unit for unit in units if unit.kind == "container"]
    by_name = {unit.name: unit for unit in units}
    levels = dependency_levels(units)
    depends = resolve_dependencies(units)
    roles: dict[str, str] = dict.fromkeys(targets, RECREATE)
    # Followers of a recreated container's network namespace must be recreated to join the new one.
    changed = True
    while changed:
        changed = False
        for unit in units:
            parent = _network_parent(inspects[unit.name])
            if unit.name in roles or parent is None:
                continue
            owner = next((name for name in roles if _matches(by_name[name], inspects[name], parent)), None)
            if owner is not None:
                roles[unit.name] = REJOIN
                levels[unit.name] = max(levels[unit.name], levels[owner] + 1)
                changed = True
    # Dependents of anything recreated stop first and start after it, as in Maintenance; an ignored one
    # (the database) keeps running.
    pending = list(roles)
    while pending:
        name = pending.pop()
        for unit in units:
            if unit.name not in roles and name in depends[unit.name] and unit.running and not unit.ignored:
                roles[unit.name] = STOP
                pending.append(unit.name)
    planned = []
    for name in sorted(roles, key=lambda n: (levels[n], n)):
        unit, inspect = by_name[name], inspects[name]
        role = roles[name]
        new_ref = targets.get(name) if role == RECREATE else (unit.image if role == REJOIN else None)
        planned.append(PlannedContainer(
            name=name, role=role, level=levels[name], was_running=unit.running, old_id=unit.id,
            old_ref=(inspect.get("Config") or {}).get("Image", ""), old_image_id=inspect.get("Image", ""),
            new_ref=new_ref, restart_policy=dict((inspect.get("HostConfig") or {}).get("RestartPolicy") or {}),
            inspect=inspect))
    kept = sorted(unit.name for unit in everything if unit.name not in roles and unit.running)
    source = None
    if request.migration is not None and request.migration.service is not None:
        wanted = request.migration.service
        source = next((c.name for c in planned if c.role == RECREATE
                       and wanted in (c.name, by_name[c.name].service)), None)
        if source is None and request.migration.image is not None:
            # Its own image: the service lends only its environment, volumes and networks.
            source = next((unit.name for unit in units if wanted in (unit.name, unit.service)), None)
        if source is None:
            raise UpgradeRequestInvalid(f"migration.service {wanted!r} is not among the containers this upgrade "
                                        "recreates; nothing was touched", "migration.service")
    return UpgradePlan(planned, kept, source)


def describe_changes(rows: list[PlannedContainer], *, backwards: bool = False) -> str:
    """"api: shop/api:2.0 → 2.1, worker: …" (the tag only when the repository stays the same)."""
    parts = []
    for row in rows:
        if row.role != RECREATE:
            continue
        before, after = (row.new_ref or "", row.old_ref) if backwards else (row.old_ref, row.new_ref or "")
        repository, _, tag = after.rpartition(":")
        shown_after = tag if repository and before.rpartition(":")[0] == repository and "/" not in tag else after
        parts.append(f"{row.name}: {before} → {shown_after}")
    return ", ".join(parts)
