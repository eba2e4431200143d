"""The Docker side of an upgrade, one step at a time (README "Upgrades"). Each step writes the journal
before the Docker call it announces, so a restart knows what may have happened; ``restore`` puts the
previous containers back from any point of the sequence, from Docker's state and the journal alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from rsgo.docker_ops import (
    STACK_LABEL,
    ContainerInfo,
    ContainerNotFound,
    CreationRequest,
    DockerError,
    DockerGateway,
    aside_name,
    migration_request,
    recreation_request,
    service_updates,
)
from rsgo.lifecycle import stop_grace
from rsgo.upgrades import journal
from rsgo.upgrades.gate import GateFailed, pass_gate, still_passing
from rsgo.upgrades.planning import REJOIN, STOP, PlannedContainer, is_service_row
from rsgo.upgrades.request import MigrationRequest
from rsgo.upgrades.starting import start_in_order

log = logging.getLogger(__name__)

UPGRADE_LABEL = "rsgo.upgrade"  # on a migration's container: which upgrade ran it
MIGRATION_OF_LABEL = "rsgo.migration-of"  # and for which stack
MAX_PARALLEL = 16


def incoming_name(name: str, upgrade_id: int) -> str:
    """What a new container is called between its creation and the swap. It carries the aside mark, so
    discovery leaves it out of the stack as it does the old one."""
    return f"{aside_name(name, upgrade_id)}-incoming"


class StepFailed(Exception):
    """A step of the sequence failed; the message names the container and what Docker or the gate said."""


def _parallel(rows: list[PlannedContainer], work: Callable[[PlannedContainer], None]) -> list[str]:
    """``work`` on every row at once (one dependency level); the errors, each naming its container."""
    if not rows:
        return []
    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(rows)), thread_name_prefix="rsgo-upgrade") as pool:
        for row, future in [(row, pool.submit(work, row)) for row in rows]:
            try:
                future.result()
            except (DockerError, GateFailed, StepFailed) as error:
                errors.append(str(error) if row.name in str(error) else f"{row.name}: {error}")
    return errors


def _levels(rows: list[PlannedContainer], descending: bool = False) -> list[list[PlannedContainer]]:
    levels = sorted({row.level for row in rows}, reverse=descending)
    return [[row for row in rows if row.level == level] for level in levels]


class Procedure:
    """The steps of one upgrade (or rollback) of containers on one engine (Swarm services:
    ``rsgo.upgrades.swarm_procedure``)."""

    swarm = False

    def __init__(self, gateway: DockerGateway, upgrade_id: int, rows: list[PlannedContainer], *,
                 units: dict[str, ContainerInfo], default_stop_timeout: float, health_timeout: float,
                 stable_for: float):
        self.gateway = gateway
        self.upgrade_id = upgrade_id
        self.rows = rows
        self._units = units  # what the stack's containers were at the plan: their stop grace periods
        self._default_stop_timeout = default_stop_timeout
        self.health_timeout = health_timeout
        self.stable_for = stable_for
        self.new_images: dict[str, dict] = {}  # name -> the new image's inspect answer
        self._new_ids: dict[str, str] = {}  # name -> the new container made for it

    def _stack(self) -> str:
        """The stack's name, as its containers' labels say it (the journal keeps their inspect answers)."""
        labels = next(((row.inspect.get("Config") or {}).get("Labels") or {} for row in self.rows), {})
        return labels.get(STACK_LABEL, "")

    def _note(self, name: str, step: str, error: str | None = None, **fields) -> None:
        journal.container_step(self.upgrade_id, name, step, error, **fields)

    # -- before anything stops ---------------------------------------------------------------

    def resolve_images(self, pull: str, extra_refs: list[str]) -> dict[str, dict]:
        """Every new image present locally (pulled when missing, or always with ``pull: always``); the
        image inspect answers by reference. A container that only rejoins keeps its own image, never pulled."""
        refs: dict[str, dict] = {}
        wanted = [row.new_ref for row in self.rows if row.role not in (REJOIN, STOP) and row.new_ref] + extra_refs
        for ref in dict.fromkeys(wanted):
            present = None if pull == "always" else self.gateway.image_inspect(ref)
            refs[ref] = present if present is not None else self.gateway.pull(ref)
        for row in self.rows:
            if row.role == REJOIN:
                own = self.gateway.image_inspect(row.old_image_id)
                if own is None:
                    raise DockerError(f"{row.name}: its image {row.old_image_id[:19]} is gone")
                # By its reference when that still means the same image, else by the image's id.
                current = self.gateway.image_inspect(row.old_ref) if row.old_ref else None
                row.new_ref = row.old_ref if current is not None and current["Id"] == own["Id"] else own["Id"]
                refs[row.new_ref] = own
            if row.new_ref:
                self.new_images[row.name] = refs[row.new_ref]
                journal.note_new_image(self.upgrade_id, row.name, row.new_ref, refs[row.new_ref]["Id"])
        return refs

    # -- the sequence --------------------------------------------------------------------------

    def stop(self) -> None:
        """Dependents first, each level's containers at once."""
        running = [row for row in self.rows if row.was_running]
        for level in _levels(running, descending=True):
            errors = _parallel(level, self._stop_one)
            if errors:
                raise StepFailed("; ".join(errors))

    def _stop_one(self, row: PlannedContainer) -> None:
        self._note(row.name, "stopping")
        unit = self._units.get(row.name)
        grace = stop_grace(unit, self._default_stop_timeout) if unit else self._default_stop_timeout
        # By name: the container there now (the old one for an upgrade, the upgraded one for a rollback).
        self.gateway.stop(row.name, grace)
        self._note(row.name, "stopped")

    def set_aside(self) -> None:
        """The old containers out of the way, kept (they pin their images and anonymous volumes) and never
        restarted; the new ones under their names. Every container at once: the stack is down meanwhile."""
        errors = _parallel([row for row in self.rows if row.role != STOP], self._swap_one)
        if errors:
            raise StepFailed("; ".join(errors))

    def _swap_one(self, row: PlannedContainer) -> None:
        aside = aside_name(row.name, self.upgrade_id)
        self._note(row.name, "setting-aside", aside_name=aside)
        self.gateway.rename(row.old_id, aside)
        self.gateway.set_restart_policy(row.old_id, {"Name": "no", "MaximumRetryCount": 0})
        self.gateway.rename(self._new_ids[row.name], row.name)
        self._note(row.name, "aside")

    def migrate(self, migration: MigrationRequest, source: PlannedContainer | None, image_ref: str,
                image: dict, stack: str):
        """Run the migration to its end; returns its RunOutcome (the caller decides what it means)."""
        name = f"{stack}-rsgo-migration-{self.upgrade_id}"
        labels = {UPGRADE_LABEL: str(self.upgrade_id), "rsgo.role": "migration", MIGRATION_OF_LABEL: stack}
        if source is None:
            request = CreationRequest(name=name, body={"Image": image_ref, "Cmd": migration.command, "Labels": labels,
                                                       "HostConfig": {"RestartPolicy": {"Name": "no"}}},
                                      later_networks={})
        else:
            old_image = self.gateway.image_inspect(source.old_image_id)
            request = migration_request(source.inspect, old_image, image_ref, image, name=name,
                                        command=migration.command, labels=labels)
        return self.gateway.run_once(request, migration.timeout, journal.MIGRATION_LOG_LINES)

    def create(self) -> None:
        """Each listed container made again from its new image before anything stops (no downtime yet),
        under a name of its own until ``set_aside``; level by level, so a container sharing another's
        network namespace joins the new one."""
        new_ids: dict[str, str] = {}
        for row in [row for row in self.rows if row.role != STOP]:
            old_image = self.gateway.image_inspect(row.old_image_id)
            request = recreation_request(row.inspect, old_image, row.new_ref, self.new_images[row.name],
                                         network_container_ids=new_ids)
            self._note(row.name, "creating")
            new_id = self.gateway.create(replace(request, name=incoming_name(row.name, self.upgrade_id)))
            new_ids[row.old_id] = new_ids[row.name] = self._new_ids[row.name] = new_id
            self._note(row.name, "created", new_id=new_id)

    def start_and_gate(self, rows: list[PlannedContainer] | None = None) -> None:
        """Each container once its dependencies came far enough (rsgo.upgrades.starting), then gated."""
        errors = start_in_order([row for row in (rows or self.rows) if row.was_running], self._start_one,
                                self._gate_one)
        if errors:
            raise StepFailed("; ".join(errors))

    def _start_one(self, row: PlannedContainer) -> None:
        self._note(row.name, "starting")
        self.gateway.start(row.name)

    def _gate_one(self, row: PlannedContainer) -> None:
        try:
            passed = pass_gate(self.gateway, row.name, health_timeout=self.health_timeout,
                               stable_for=self.stable_for)
        except GateFailed as failure:
            self._note(row.name, "failed", str(failure))
            raise
        self._note(row.name, "healthy", None)
        log.info("upgrade %s: %s %s", self.upgrade_id, row.name, passed)

    def verify(self) -> None:
        """Everything started still passes once the last level passed (a crash loop shows here)."""
        errors = [problem for row in self.rows if row.was_running
                  if (problem := still_passing(self.gateway, row.name))]
        if errors:
            raise StepFailed("; ".join(errors))

    # -- putting the previous containers back ---------------------------------------------------

    def restore(self) -> list[str]:
        """The previous containers under their names again with their restart policies, then started in
        order and gated. Works from any point: only Docker's state and the journal are read. Returns the
        problems (empty: everything that ran before runs again)."""
        problems: list[str] = []
        # A stop announced but not seen to end (rsgo died during it) goes on in Docker: a start now would
        # find the container still running, and it would exit just after its gate. It is waited for first.
        cut_short = [row.name for row in journal.containers(self.upgrade_id) if row.step == "stopping"]
        for summary in self.gateway.containers_labelled(f"{UPGRADE_LABEL}={self.upgrade_id}"):
            if (summary.get("Labels") or {}).get(MIGRATION_OF_LABEL) != self._stack():
                continue  # another rsgo's upgrade with the same number (ids start at 1 in every database)
            try:
                self.gateway.remove(summary["Id"])  # a migration cut short by a restart
            except DockerError as error:
                problems.append(f"removing the migration's container: {error}")
        for row in sorted([row for row in self.rows if row.role != STOP], key=lambda r: -r.level):
            try:
                self._put_back(row)
            except DockerError as error:
                self._note(row.name, "failed", str(error))
                problems.append(str(error) if row.name in str(error) else f"{row.name}: {error}")
        for row in [row for row in self.rows if row.name in cut_short]:
            try:
                self._stop_one(row)  # returns once the stop under way has ended (Docker answers at once if it has)
            except DockerError as error:
                problems.append(str(error) if row.name in str(error) else f"{row.name}: {error}")
        if problems:
            return problems
        try:
            self.start_and_gate()
        except (StepFailed, DockerError) as error:
            problems.append(str(error))
        return problems

    def _put_back(self, row: PlannedContainer) -> None:
        try:  # made but not yet under its name
            self.gateway.remove(incoming_name(row.name, self.upgrade_id))
        except ContainerNotFound:
            pass
        try:
            current = self.gateway.inspect_raw(row.name)
        except ContainerNotFound:
            current = None
        if current is not None and current["Id"] != row.old_id:
            self._note(row.name, "removing-new")
            self.gateway.remove(current["Id"])
        try:
            old = self.gateway.inspect_raw(row.old_id)
        except ContainerNotFound:
            old = None
        if old is None:
            # The kept container vanished (someone removed it): made again from what the journal stored.
            image = self.gateway.image_inspect(row.old_image_id)
            if image is None:
                raise DockerError(f"{row.name}: its previous container and image {row.old_image_id[:19]} are both "
                                  "gone; it cannot be put back")
            self._note(row.name, "recreating-previous")
            request = recreation_request(row.inspect, None, row.old_image_id, image)
            row.old_id = self.gateway.create(request)
        elif old.get("Name", "").lstrip("/") != row.name:
            self.gateway.rename(row.old_id, row.name)
        self.gateway.set_restart_policy(row.old_id, row.restart_policy or {"Name": "no"})
        self._note(row.name, "restored", old_id=row.old_id)

    def remove_aside(self, rows: list[PlannedContainer], upgrade_id: int) -> list[str]:
        """The containers ``upgrade_id`` kept aside, removed (their volumes stay); the problems."""
        problems = []
        for row in rows:
            if row.role == STOP or is_service_row(row):
                continue
            try:
                self.gateway.remove(row.old_id)
            except ContainerNotFound:
                pass
            except DockerError as error:
                problems.append(f"removing {aside_name(row.name, upgrade_id)}: {error}")
        return problems


def inspect_all(gateway: DockerGateway, units: list[ContainerInfo]) -> dict[str, dict]:
    """Every unit's full inspect answer by name (a Swarm service's: its spec and version), concurrently."""
    if not units:
        return {}

    def inspect(unit: ContainerInfo) -> dict:
        if unit.kind == "container":
            return gateway.inspect_raw(unit.id)
        return service_updates.service_inspect(gateway, unit.id)

    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(units)), thread_name_prefix="rsgo-inspect") as pool:
        answers = list(pool.map(inspect, units))
    return {unit.name: answer for unit, answer in zip(units, answers, strict=True)}


def container_states(gateway: DockerGateway, names: list[str]) -> str:
    """"api running, worker exited": what a person finds after a failure."""
    states = []
    for name in names:
        try:
            states.append(f"{name} {gateway.inspect(name).state}")
        except DockerError:
            states.append(f"{name} missing")
    return ", ".join(states)
