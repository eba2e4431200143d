"""Loading deployments and their stopped-sets from the database."""

from __future__ import annotations

import json

import peewee

from rsgo.db import MAX_ID
from rsgo.models import Deployment, StoppedSetEntry, Transition


class DeploymentNotFound(LookupError):
    def __init__(self, ref):
        super().__init__(f"no deployment {ref!r}")


class DeploymentForgotten(DeploymentNotFound):
    """A forgotten stack (rsgo/forgetting.py): gone for everything but its history."""

    def __init__(self, deployment: Deployment):
        LookupError.__init__(self, f"{deployment.name} (id {deployment.id}) was forgotten; its history stays at "
                                   f"/api/deployments/{deployment.id}/history, and it comes back when its "
                                   "containers do")
        self.deployment = deployment


class AmbiguousDeployment(LookupError):
    """A ref that could mean more than one deployment: a name on several environments, or one
    deployment's name and another's id. ``candidates`` say which, and how each matched."""

    def __init__(self, ref: str, by_name: list[Deployment], by_id: Deployment | None = None):
        everyone = [*by_name, *([by_id] if by_id is not None else [])]
        self.environments = sorted({d.environment for d in everyone})
        self.candidates = [{"id": d.id, "name": d.name, "environment": d.environment, "matches": "name"}
                           for d in by_name]
        if by_id is None:
            super().__init__(
                f"the name {ref!r} exists on several environments ({', '.join(self.environments)}); "
                "add ?environment=<name> or use the numeric id"
            )
            return
        self.candidates.append({"id": by_id.id, "name": by_id.name, "environment": by_id.environment,
                                "matches": "id"})
        where = len(self.environments) > 1
        named = " and ".join(f"the stack named {d.name} (id {d.id}{f', environment {d.environment}' if where else ''})"
                             for d in by_name)
        super().__init__(
            f"{ref!r} is ambiguous: it is {named}, and the deployment with id {ref} ({by_id.name}); ask for the "
            f"stack named {ref} by its id and for the deployment with id {ref} by its name {by_id.name!r} "
            "(add ?environment=<name> when that name exists on several environments)"
        )


def id_in(ref: str) -> int | None:
    """The id ``ref`` spells, if it spells one: ASCII digits in their plain form ("4", not "04", "４",
    "٤" or "²"), at most SQLite's largest integer."""
    if not (ref.isascii() and ref.isdigit()) or (len(ref) > 1 and ref.startswith("0")) or len(ref) > 19:
        return None
    number = int(ref)
    return number if number <= MAX_ID else None


def find_deployment(ref: str, environment: str | None = None, visible=None, forgotten: bool = False) -> Deployment:
    """A deployment by stack name (unique per environment) or by numeric id.

    A ref that names one deployment and is another's id is ambiguous (409), never silently either
    of them; a name that is also its own deployment's id is that deployment. ``visible`` (a
    predicate) limits the deployments the caller may know of: the others do not exist for it, so
    they neither match nor make a ref ambiguous, and asking for one is the unknown-ref 404. A forgotten
    deployment is found only where its history is read (``forgotten``); elsewhere asking for it is a 404
    that says it was forgotten.
    """
    try:
        return _find(ref, environment, visible, forgotten)
    except DeploymentNotFound:
        if forgotten:
            raise
        found = _find(ref, environment, visible, True)
        raise DeploymentForgotten(found) from None


def _find(ref: str, environment: str | None, visible, forgotten: bool) -> Deployment:
    def known(deployment: Deployment | None) -> bool:
        return deployment is not None and (not environment or deployment.environment == environment) and (
            visible is None or visible(deployment)) and (forgotten or deployment.forgotten_at is None)

    query = Deployment.select().where(Deployment.name == ref)
    if environment:
        query = query.where(Deployment.environment == environment)
    by_name = [d for d in query if known(d)]
    number = id_in(ref)
    by_id = Deployment.get_or_none(Deployment.id == number) if number is not None else None
    by_id = by_id if known(by_id) else None
    if by_id is not None and by_name and all(d.id != by_id.id for d in by_name):
        raise AmbiguousDeployment(ref, by_name, by_id)
    if not by_name:
        if by_id is None:
            raise DeploymentNotFound(ref)
        return by_id
    if len(by_name) > 1:
        raise AmbiguousDeployment(ref, by_name)
    return by_name[0]


def ensure_deployments(environment: str, names: set[str]) -> list[Deployment]:
    """Create a row (mode Normal) for every stack name not seen before, and bring back every forgotten
    one (rsgo/forgetting.py); returns those rows (a revived one carries its audit entry as ``revived``)."""
    if not names:
        return []
    from rsgo import forgetting  # imported here: it imports the environments, which import this module

    rows = list(Deployment.select(Deployment.id, Deployment.name, Deployment.mode, Deployment.environment,
                                  Deployment.forgotten_at).where(
        (Deployment.environment == environment) & (Deployment.name.in_(list(names)))))
    known = {d.name for d in rows}
    created = []
    for deployment in rows:
        if deployment.forgotten_at is not None:
            deployment.revived = forgetting.revive(deployment)
            if deployment.revived is not None:
                created.append(deployment)
    for name in sorted(names - known):
        try:
            created.append(Deployment.create(environment=environment, name=name))
        except peewee.IntegrityError:
            pass  # created concurrently by the events thread or the resync thread
    return created


def stopped_set_names(deployment_id: int) -> set[str]:
    return {e.container_name for e in StoppedSetEntry.select().where(StoppedSetEntry.deployment == deployment_id)}


def stopped_set_memos(deployment_id: int) -> dict[str, dict]:
    """What the stopped-set recorded of its Swarm services (name -> memo), for Normal to restore."""
    return {e.container_name: json.loads(e.memo) for e in StoppedSetEntry.select().where(
        (StoppedSetEntry.deployment == deployment_id) & StoppedSetEntry.memo.is_null(False))}


def stopped_sets_by_deployment() -> dict[int, set[str]]:
    """All stopped-sets in one query (the dashboard lists every deployment)."""
    result: dict[int, set[str]] = {}
    for entry in StoppedSetEntry.select(StoppedSetEntry.deployment, StoppedSetEntry.container_name):
        result.setdefault(entry.deployment_id, set()).add(entry.container_name)
    return result


def running_transition(deployment_id: int) -> Transition | None:
    return (
        Transition.select()
        .where((Transition.deployment == deployment_id) & (Transition.status == "running"))
        .order_by(Transition.id.desc())
        .first()
    )


def running_transitions() -> dict[int, Transition]:
    """Every deployment's running transition, by deployment id, in one query."""
    return {t.deployment_id: t for t in Transition.select().where(Transition.status == "running")}
