"""All access to the Docker engine; the only package that imports ``docker`` (docs/design.md#composition).

``gateway`` holds the SDK client and the calls, ``containers`` what rsgo reads of a container,
``services`` what it reads of a Swarm service and the one spec field it changes to stop or start one,
``service_updates`` a service's image changed by Swarm's rolling update and a stored spec put back (through
the gateway's client: it imports no ``docker``),
``errors`` the translation of every SDK or transport failure into a ``DockerError`` that says what
rsgo tried and what the engine said (``_translated`` does it, once, around every call), ``recreate``
the create requests that replace a container with one of a new image (upgrades, migrations).
"""

from rsgo.docker_ops.containers import (
    ASIDE_MARK,
    COMPOSE_DEPENDS_ON_LABEL,
    COMPOSE_SERVICE_LABEL,
    DEPENDS_ON_LABEL,
    MAINTENANCE_LABEL,
    STACK_LABEL,
    START_TIMEOUT_LABEL,
    STOP_TIMEOUT_LABEL,
    SWARM_TASK_LABEL,
    ContainerInfo,
    aside_name,
)
from rsgo.docker_ops.errors import ContainerNotFound, DockerError, DockerUnreachable, NotFound, ServiceStillStopping
from rsgo.docker_ops.gateway import DockerGateway, EngineFacts, EventStream
from rsgo.docker_ops.recreate import CreationRequest, RunOutcome, migration_request, recreation_request
from rsgo.docker_ops.services import STACK_NAMESPACE_LABEL, UNSCHEDULABLE_CONSTRAINT, ServiceInfo

__all__ = [
    "ASIDE_MARK",
    "COMPOSE_DEPENDS_ON_LABEL", "COMPOSE_SERVICE_LABEL", "DEPENDS_ON_LABEL", "MAINTENANCE_LABEL", "STACK_LABEL",
    "STACK_NAMESPACE_LABEL", "START_TIMEOUT_LABEL", "STOP_TIMEOUT_LABEL", "SWARM_TASK_LABEL",
    "UNSCHEDULABLE_CONSTRAINT", "ContainerInfo", "ContainerNotFound", "DockerError", "DockerGateway",
    "DockerUnreachable", "EngineFacts", "EventStream", "NotFound", "ServiceInfo", "ServiceStillStopping",
    "CreationRequest", "RunOutcome", "aside_name", "migration_request", "recreation_request",
]
