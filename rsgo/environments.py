"""The Docker engines rsgo manages (docs/design.md#environments, README "Environments"): one gateway,
one inventory and one discovery (events stream and resync loop) per environment, so an engine that
is down or hangs delays nothing of the others.

Environments come from the config file's ``environments:`` section; without one, rsgo manages one
engine named ``RSGO_ENVIRONMENT`` (``DOCKER_HOST`` or the local socket). A reload starts new ones,
stops removed ones and reconnects changed ones; deployments of a removed environment keep their
history and are never acted on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from rsgo.discovery import DiscoveryService, Inventory, Unit
from rsgo.docker_ops import DockerGateway, DockerUnreachable
from rsgo.environment_config import EnvironmentSpec, mask_url
from rsgo.events import EventBus

log = logging.getLogger(__name__)


class EnvironmentUnavailable(DockerUnreachable):
    """The environment cannot be acted on now: disabled by a config problem, or known unreachable."""


class EngineClaimPending(EnvironmentUnavailable):
    """An environment declared before this one has not answered yet, so whether this one may manage its
    engine is not known yet: a matter of seconds (discovery asks again), not a configuration problem."""


class WaitingForEarlier(str):
    """The reason an environment may not act yet when it only waits for an earlier one to answer."""


class EnvironmentRemoved(Exception):
    """The deployment's environment is no longer in the config: rsgo keeps its history, never acts on it."""

    def __init__(self, name: str):
        super().__init__(f"environment {name!r} was removed from the config; rsgo no longer acts on its stacks "
                         "(add it back to manage them again)")
        self.name = name


@dataclass(frozen=True)
class EnvironmentView:
    """What ``GET /api/environments`` and the dashboard show of one environment."""

    name: str
    kind: str | None  # engine, swarm; None until the engine answered once
    url: str  # masked
    state: str  # connecting, reachable, unreachable, disabled, removed
    reachable: bool | None
    last_error: str | None
    engine_version: str | None
    last_event_at: object  # datetime or None


class Environment:
    def __init__(self, spec: EnvironmentSpec, gateway: DockerGateway | None, bus: EventBus, resync_interval: float,
                 conflict=lambda facts: None):
        self.spec = spec
        self.name = spec.name
        self._conflict = conflict  # why this engine may not be managed under this name (another has it), or None
        self.gateway = gateway
        self.inventory = Inventory(spec.name, bus)
        self.discovery = None if spec.error else DiscoveryService(gateway, self.inventory, resync_interval, conflict)

    @property
    def disabled(self) -> bool:
        return self.spec.error is not None

    def _is_swarm(self) -> bool:
        if self.inventory.facts is None:
            # Never guess: a transition on a swarm that missed its services would stop only half the stack.
            self.inventory.note_facts(self.gateway.engine_facts())
        return self.inventory.facts.swarm_manager

    def read_stack(self, stack: str) -> list[Unit]:
        """The stack's containers in full detail, and on a Swarm manager its services: what a transition
        acts on. Raises ``DockerError``."""
        swarm = self._is_swarm()
        conflict = self._conflict(self.inventory.facts)
        if conflict:
            raise (EngineClaimPending if isinstance(conflict, WaitingForEarlier) else EnvironmentUnavailable)(conflict)
        units: list[Unit] = list(self.gateway.inspect_stack(stack))
        if swarm:
            units += self.gateway.list_stack_services(stack)
        return units

    def list_stack(self, stack: str) -> list[Unit]:
        """The stack as a list row shows it (cheaper than ``read_stack``). Raises ``DockerError``."""
        units: list[Unit] = list(self.gateway.list_stack_containers(stack))
        if self._is_swarm():
            units += self.gateway.list_stack_services(stack)
        return units

    def view(self) -> EnvironmentView:
        inventory = self.inventory
        facts = inventory.facts
        if self.disabled:
            state = "disabled"
        else:
            state = {None: "connecting", True: "reachable", False: "unreachable"}[inventory.reachable]
        return EnvironmentView(
            name=self.name, kind=None if facts is None else ("swarm" if facts.swarm_manager else "engine"),
            url=mask_url(self.spec.url), state=state, reachable=None if self.disabled else inventory.reachable,
            last_error=self.spec.error or inventory.last_error,
            engine_version=None if facts is None else facts.version, last_event_at=inventory.last_event_at)


class Environments:
    """The registry of environments by name; safe to read from any thread while a reload applies."""

    def __init__(self, bus: EventBus, settings, default_gateway: DockerGateway | None = None):
        self._bus = bus
        self._settings = settings
        self._default_gateway = default_gateway  # the implicit environment's (tests pass a fake one)
        self._by_name: dict[str, Environment] = {}
        self._lock = threading.Lock()
        self._started = False

    # -- configuration ---------------------------------------------------------------------

    def apply(self, specs: dict[str, EnvironmentSpec] | None) -> None:
        """Take the environments of a (re)loaded config: unchanged ones keep running."""
        if specs is None:
            gateway = self._default_gateway or DockerGateway()
            specs = {self._settings.environment: EnvironmentSpec(self._settings.environment, gateway.endpoint)}
        with self._lock:
            old = self._by_name
            kept = {name: env for name, env in old.items() if name in specs and env.spec == specs[name]}
            # In the order of the file: of two names for one engine, the one declared first keeps it.
            new = {name: kept.get(name) or Environment(spec, self._gateway_for_spec(spec), self._bus,
                                                       self._settings.resync_interval,
                                                       lambda facts, name=name: self._same_engine(name, facts))
                   for name, spec in specs.items()}
            self._by_name = new
            started = self._started
        for name, env in old.items():
            if kept.get(name) is not env:
                log.info("environment %s %s", name, "reconnecting with its new settings" if name in specs
                         else "removed from the config: its stacks keep their history and are left alone")
                if started and env.discovery is not None:
                    env.discovery.stop(wait=False)
        for name, env in new.items():
            if env.disabled:
                log.error("environment %s is disabled: %s", name, env.spec.error)
            elif started and kept.get(name) is not env:
                env.discovery.start()

    def _gateway_for_spec(self, spec: EnvironmentSpec) -> DockerGateway | None:
        if spec.error:
            return None
        if self._default_gateway is not None and spec.url == self._default_gateway.endpoint:
            return self._default_gateway
        return DockerGateway(spec.url, tls=spec.tls, timeout=spec.timeout)

    def _same_engine(self, name: str, facts) -> str | None:
        """Why ``name`` may not manage the engine ``facts`` describe: an environment declared before it
        reaches the same engine (two names for one engine would make every stack two deployments, and
        a mode change of one would move the other's containers)."""
        if facts is None or not facts.engine_id:
            return None
        with self._lock:
            earlier = list(self._by_name.values())
        for other in earlier:
            if other.name == name:
                return None
            other_facts = other.inventory.facts
            if other_facts is None and not other.disabled and other.inventory.reachable is not False:
                # Not asked yet: claiming the engine now could make its stacks this name's deployments
                # before the earlier name turns out to reach the same engine. Retried within seconds.
                return WaitingForEarlier(f"environment {name} waits for environment {other.name} to answer first "
                                         f"(an engine is managed under one name only, the one declared first)")
            if other_facts is not None and other_facts.engine_id == facts.engine_id:
                return (f"environment {name} reaches the same Docker engine as environment {other.name} "
                        f"({facts.engine_id.replace('|', ', ')}); an engine is managed under one name only: remove "
                        f"one of them from the config")
        return None

    # -- lookups ---------------------------------------------------------------------------

    def all(self) -> list[Environment]:
        with self._lock:
            return sorted(self._by_name.values(), key=lambda env: env.name)

    def get(self, name: str) -> Environment | None:
        with self._lock:
            return self._by_name.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._by_name)

    def inventory_for(self, name: str) -> Inventory | None:
        env = self.get(name)
        return None if env is None else env.inventory

    def usable(self, name: str, *, known_unreachable_fails: bool = True) -> Environment:
        """The environment, to act on. Raises ``EnvironmentRemoved`` for an environment no longer
        configured, ``EnvironmentUnavailable`` for a disabled one or (unless told otherwise) for one
        whose engine is known not to answer: a request then fails at once instead of holding a thread
        for the whole timeout of a hung engine. Discovery notices within seconds when it is back."""
        env = self.get(name)
        if env is None:
            raise EnvironmentRemoved(name)
        if env.disabled:
            raise EnvironmentUnavailable(f"environment {name} is disabled: {env.spec.error}")
        if known_unreachable_fails and env.inventory.reachable is False:
            raise EnvironmentUnavailable(f"environment {name} is unreachable: {env.inventory.last_error}")
        return env

    def mark_unreachable(self, name: str, error: str) -> None:
        """A call to the engine timed out or could not connect (outside discovery)."""
        env = self.get(name)
        if env is not None:
            env.inventory.mark_unreachable(error)

    # -- running ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            self._started = True
            running = list(self._by_name.values())
        for env in running:
            if not env.disabled:
                env.discovery.start()

    def stop(self) -> None:
        with self._lock:
            self._started = False
            running = list(self._by_name.values())
        for env in running:
            self._stop_one(env)

    @staticmethod
    def _stop_one(env: Environment) -> None:
        if env.discovery is not None:
            env.discovery.stop()

    def resync_all(self) -> None:
        """A full resync of every environment now (start-up, tests)."""
        for env in self.all():
            if env.discovery is not None:
                env.discovery.resync()
