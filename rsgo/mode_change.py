"""What a mode change is asked with, what it leads to, and why one is refused
(docs/design.md#transitions). The web layer turns a refusal into problem+json by its ``code``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from rsgo.models import Deployment, Transition
from rsgo.modes import Mode


@dataclass(frozen=True)
class ModeChangeRequest:
    """One request, built once by ``TransitionService.change_mode`` and passed whole from the checks
    to the transition row and the audit entries it causes."""

    target: Mode
    source: str  # ui, api, cli, observer, schedule, system
    actor: str
    requested_at: dt.datetime
    reason: str = ""
    force: bool = False
    observed_value: str | None = None
    address: str | None = None  # the caller's network address, for requests from outside
    # A periodic retry (the window check) whose last attempt was refused with this code: the same
    # refusal again is not recorded a second time, so the history shows it once, not every few seconds.
    recorded_refusal: str | None = None

    def audit_fields(self) -> dict:
        """The fields every audit entry of this request carries."""
        return {"source": self.source, "actor": self.actor, "reason": self.reason,
                "requested_mode": self.target.value, "observed_value": self.observed_value,
                "requested_at": self.requested_at, "address": self.address}


@dataclass
class ModeChange:
    """What a mode-change request led to."""

    deployment: Deployment
    previous_mode: Mode
    new_mode: Mode
    outcome: str  # noop, succeeded, failed, running
    transition: Transition | None = None


class ModeChangeRefused(Exception):
    """A mode change that was not carried out; ``code`` names why (the API's problem code)."""

    code = "transition_not_allowed"

    def __init__(self, detail: str, **extra):
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class TransitionNotAllowed(ModeChangeRefused):
    code = "transition_not_allowed"


class TransitionInProgress(ModeChangeRefused):
    code = "transition_in_progress"


class ObserverOwnsMaintenance(ModeChangeRefused):
    code = "observer_owns_maintenance"


class DependencyCycleRefused(ModeChangeRefused):
    code = "dependency_cycle"


class DockerUnavailable(ModeChangeRefused):
    code = "docker_unreachable"


class EnvironmentRemovedRefused(ModeChangeRefused):
    """The stack's environment is no longer configured: its history stays, its containers are left alone."""

    code = "environment_removed"


class StorageUnavailable(ModeChangeRefused):
    """The database cannot be written: nothing new may start where bookkeeping could not be kept."""

    code = "storage_unavailable"
