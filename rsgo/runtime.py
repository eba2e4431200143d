"""The long-lived parts of one rsgo process, how they are wired to each other, and their start and
stop order (docs/design.md#composition). Views reach it with ``rsgo.web.current_runtime()``."""

from __future__ import annotations

import datetime
import logging
import os
import threading
from dataclasses import dataclass

from rsgo import events
from rsgo.alertmanager import SilenceService
from rsgo.db import keep_log_files_open, release_thread_connection, utcnow
from rsgo.docker_ops import DockerError, DockerGateway
from rsgo.enforcement import Enforcer
from rsgo.environments import Environments
from rsgo.events import EventBus
from rsgo.jobs import Scheduler
from rsgo.notifications import NotificationDispatcher
from rsgo.observers.service import ObserverService
from rsgo.overdue import OverdueService
from rsgo.security.rate_limit import FailureWindow
from rsgo.stack_config import Config, ConfigProblem, ConfigRejected, load_config
from rsgo.timeline_store import RecentModeChanges
from rsgo.transitions import TransitionService
from rsgo.upgrades.service import UpgradeService
from rsgo.web.hub import Hub
from rsgo.webhooks import WebhookDispatcher
from rsgo.windows import WindowService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReloadFailure:
    at: datetime.datetime
    problems: tuple[ConfigProblem, ...]


HELD_FAILURE_RETRY_SECONDS = 2
# Background transitions (and the resumption) of this many stacks run at once; more wait their turn.
LONG_JOB_THREADS = 32
# The sixth failed sign-in within the window is refused (429), per user name and per address.
LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW_SECONDS = 15 * 60


class Runtime:
    def __init__(self, settings, gateway: DockerGateway | None = None):
        self.settings = settings
        self.bus = EventBus()
        # The engines, each with its gateway, inventory and discovery; set from the config file on load.
        self.environments = Environments(self.bus, settings, gateway)
        self.scheduler = Scheduler(settings.observer_threads, LONG_JOB_THREADS)
        self.transitions = TransitionService(self.environments, self.bus, settings, self.scheduler)
        self.upgrades = UpgradeService(self.environments, self.transitions, self.bus, settings, self.scheduler)
        # While an upgrade owns a stack (or a restart left one unfinished), mode changes are refused.
        self.transitions.upgrade_in_progress = self.upgrades.in_progress
        self.observers = ObserverService(self.transitions, self.bus, settings.observer_threads)
        self.windows = WindowService(self.transitions, self.bus)
        # Every stack's recent mode changes, for the dashboard's timelines without a query per request.
        self.timelines = RecentModeChanges(self.bus)
        # Ownership of Maintenance (docs/design.md#modes-and-ownership): the transition service asks and
        # tells the observer and window services through these hooks, assigned here and nowhere else.
        self.transitions.observer_holds_maintenance = self.observers.holds_maintenance
        self.transitions.observer_overridden = self.observers.suppress
        self.transitions.schedule_overridden = self.windows.suppress_current
        # Forgotten maintenance: a stay an observer or a window holds is theirs to end, never overdue.
        self.overdue = OverdueService(
            self.bus, settings, holds_maintenance=self.observers.holds_maintenance,
            window_active=lambda deployment: self.windows.active_until(deployment, self.windows.clock()) is not None)
        self.webhooks = WebhookDispatcher(self.bus, settings.environment, outbound=settings.outbound_deny)
        # Alertmanager silences end with the window that holds the stack, when one does.
        self.silences = SilenceService(self.bus, window_end=self._window_end, public_url=settings.public_url,
                                       outbound=settings.outbound_deny)
        self.notifications = NotificationDispatcher(self.bus, public_url=settings.public_url)
        # Open websockets, capped overall and per user (each holds a request thread of its own).
        self.hub = Hub(max_connections=settings.max_live_connections,
                       max_per_user=settings.max_live_connections_per_user)
        self.login_limiter = FailureWindow(LOGIN_FAILURES_ALLOWED, LOGIN_WINDOW_SECONDS)
        self.metrics = None  # rsgo.web.metrics.Metrics, registered with the app
        self.live_push = None  # rsgo.web.live_push.LivePush: renders with the app, so made with it
        self.config: Config | None = None
        self.reload_failure: ReloadFailure | None = None  # the last reload's rejection, until one succeeds
        self._config_file_seen = False  # a config file was loaded once: from then on it must stay
        self._reload_lock = threading.Lock()
        self.enforcer: Enforcer | None = None
        # A transition's results land in the view at once, so its own answer shows the new states.
        self.bus.subscribe(self._refresh_acted_container)
        self._stopping = threading.Event()
        self.started = False
        self._stop_hooks = []

    def _refresh_acted_container(self, kind: str, payload: dict) -> None:
        """A finished transition's stack is read once more at once, so the transition's own answer
        (and the pushes after it) show the new states without waiting for the events stream."""
        if kind != events.TRANSITION_FINISHED:
            return
        from rsgo.models import Deployment, TransitionAction

        # Migrating and Failed, or a stack with nothing to stop or start: no container changed, no Docker call.
        if not TransitionAction.select().where((TransitionAction.transition == payload["transition_id"])
                                               & TransitionAction.action.in_(("stop", "start"))).exists():
            return
        deployment = Deployment.get_or_none(Deployment.id == payload["deployment_id"])
        env = None if deployment is None else self.environments.get(deployment.environment)
        if env is None or env.disabled:
            return
        try:
            for unit in env.list_stack(deployment.name):
                env.inventory.update(unit)
        except DockerError:
            pass  # the events stream or the next resync will bring it

    def _window_end(self, deployment_id: int) -> datetime.datetime | None:
        active = self.windows.active_until(deployment_id, self.windows.clock())
        return None if active is None else active[0].astimezone(datetime.UTC).replace(tzinfo=None)

    def reload_config(self) -> Config:
        """Read the stack config file again and apply it; observers keep their status if unchanged.

        All or nothing. At start-up a file that cannot be used as a whole (unreadable, not YAML,
        over the size limits, the wrong shape) raises ``ConfigRejected``: rsgo does not start
        rather than run without its observers and webhooks, and nothing stored is touched; a
        problem inside one observer, window or webhook disables only that one. Once running
        (SIGHUP, ``POST /api/config/reload``), any problem rejects the new file: the running
        config stays, and ``reload_failure`` says why until a reload succeeds.
        """
        with self._reload_lock:
            starting = self.config is None
            # Once a file was in use, its disappearance (an editor that deletes before it writes, a wrong
            # path) is a problem like any other, not "no config": that would drop every observer.
            required = bool(self.settings.config) or self._config_file_seen
            config = load_config(self.settings.config_path, required=required, settings=self.settings)
            if config.fatal or (config.problems and not starting):
                for problem in config.problems:
                    log.error("config: %s", problem)
                if not starting:
                    self.reload_failure = ReloadFailure(utcnow(), tuple(config.problems))
                    log.error("config reload failed: %d problem(s) in %s; the running config stays",
                              len(config.problems), config.path)
                raise ConfigRejected(config)
            for problem in config.problems:
                log.warning("config: %s", problem)
            self.environments.apply(config.environments)
            self.observers.apply(config)
            self._apply_windows(config)
            self.overdue.apply(config)
            self.webhooks.sync_config(config.webhooks, keep=config.kept_webhooks)
            self.silences.apply(config)
            self.notifications.apply(config)
            self.config = config
            self._config_file_seen = self._config_file_seen or os.path.exists(self.settings.config_path)
            self.reload_failure = None
            if not os.path.exists(config.path):  # no file, and none required: nothing to load, say so
                log.info("config file not found: %s (no observers; see README 'Observers')",
                         os.path.abspath(config.path))
            else:
                log.info("config %s loaded: %d stacks, %d observers, %d problems", config.path, len(config.stacks),
                         sum(1 for s in config.stacks.values() if s.observer), len(config.problems))
            return config

    def reload_from_signal(self) -> None:
        """SIGHUP: reload; a rejected file is logged (by ``reload_config``) and shown on the dashboard."""
        try:
            self.reload_config()
        except ConfigRejected:
            pass
        except Exception:
            log.exception("config reload failed unexpectedly; the running config stays")

    def _apply_windows(self, config: Config) -> None:
        from rsgo.models import Deployment

        for stack in config.stacks.values():
            deployment = Deployment.get((Deployment.environment == stack.environment)
                                        & (Deployment.name == stack.name))
            self.windows.sync_config(deployment, stack.windows)
        self.bus.publish(events.WINDOWS_CHANGED, deployment_id=None)

    def start(self) -> None:
        """Start discovery, enforcement, observers and the resumption of interrupted transitions. Once."""
        if self.started:
            return
        self.started = True
        # Windows are looked at every few seconds, and at once: started inside a window enters it now.
        self.scheduler.every("windows", self.settings.window_check_interval, self._evaluate_windows)
        # A transition whose record could not be written is written as soon as the database takes writes.
        self.scheduler.every("held-failures", HELD_FAILURE_RETRY_SECONDS, self._write_held_failures)
        self.scheduler.every("overdue", self.settings.overdue_check_interval, self.overdue.run_scheduled)
        self.scheduler.every("silences", min(60.0, self.silences.horizon / 4), self.silences.renew_due)
        self.scheduler.start()
        self.observers.start()  # after the scheduler: its start refuses a second one in this process
        self.scheduler.run_once("resume", "resuming interrupted transitions", self._resume)
        self.scheduler.run_once("recover-upgrades", "rolling back upgrades a restart interrupted",
                                self._recover_upgrades)
        if self.settings.enforce_modes:
            self.enforcer = Enforcer(self.environments, self.transitions, self.bus,
                                     self.settings.default_stop_timeout)
        self.environments.start()
        self.webhooks.start()
        self.silences.start()
        self.notifications.start()

    def _evaluate_windows(self) -> None:
        try:
            self.windows.evaluate()
        finally:
            release_thread_connection()

    def _write_held_failures(self) -> None:
        try:
            keep_log_files_open()
            self.transitions.write_held_failures()
        finally:
            release_thread_connection()

    def _resume(self) -> None:
        try:
            resumed = self.transitions.resume_interrupted(self._stopping)
        finally:
            release_thread_connection()
        if resumed:
            log.info("resumed interrupted transitions %s", resumed)

    def _recover_upgrades(self) -> None:
        recovered = self.upgrades.recover(self._stopping)
        if recovered:
            log.info("rolled back upgrades interrupted by a restart: %s", recovered)

    def on_stop(self, hook) -> None:
        self._stop_hooks.append(hook)

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        self.scheduler.pause()  # no new window evaluations; running transitions go on
        self.observers.pause()  # no new observer checks
        if not self.transitions.wait_idle(timeout):
            log.warning("stopping with transitions still running (%s); they resume at the next start",
                        ", ".join(self.scheduler.one_off_jobs().values()))
        self.scheduler.shutdown()
        self.observers.stop()
        for hook in self._stop_hooks:
            hook()
        self.webhooks.stop()
        self.silences.stop()
        self.notifications.stop()
        self.environments.stop()
        if self.enforcer is not None:
            self.enforcer.close()
