"""Loading deployments and their stopped-sets from the database."""

from __future__ import annotations

import peewee

from rsgo.models import Deployment, StoppedSetEntry, Transition


class DeploymentNotFound(LookupError):
    def __init__(self, ref):
        super().__init__(f"no deployment {ref!r}")


class AmbiguousDeployment(LookupError):
    def __init__(self, name, environments):
        super().__init__(
            f"the name {name!r} exists on several environments ({', '.join(sorted(environments))}); "
            "add ?environment=<name> or use the numeric id"
        )
        self.environments = environments


def find_deployment(ref: str, environment: str | None = None) -> Deployment:
    """A deployment by numeric id or by stack name (unique per environment); an id wins over a name."""
    if ref.isdigit():
        deployment = Deployment.get_or_none(Deployment.id == int(ref))
        if deployment is not None and (not environment or deployment.environment == environment):
            return deployment
        # Not an id: a stack may well be named "2024".
    query = Deployment.select().where(Deployment.name == ref)
    if environment:
        query = query.where(Deployment.environment == environment)
    matches = list(query)
    if not matches:
        raise DeploymentNotFound(ref)
    if len(matches) > 1:
        raise AmbiguousDeployment(ref, [d.environment for d in matches])
    return matches[0]


def ensure_deployments(environment: str, names: set[str]) -> list[Deployment]:
    """Create a row (mode Normal) for every stack name not seen before; returns the new rows."""
    if not names:
        return []
    known = {
        d.name
        for d in Deployment.select(Deployment.name).where(
            (Deployment.environment == environment) & (Deployment.name.in_(list(names)))
        )
    }
    created = []
    for name in sorted(names - known):
        try:
            created.append(Deployment.create(environment=environment, name=name))
        except peewee.IntegrityError:
            pass  # created concurrently by the events thread or the resync thread
    return created


def stopped_set_names(deployment_id: int) -> set[str]:
    return {e.container_name for e in StoppedSetEntry.select().where(StoppedSetEntry.deployment == deployment_id)}


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
