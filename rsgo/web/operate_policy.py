"""Who may change modes, for the API and the pages alike: a caller without the operate permission
is refused with 403, and the refusal is recorded in the stack's history (who, from where, what they
asked for), so an attempt is never silent. Also what the pages say before anyone asks: whether an
observer holds the stack's Maintenance."""

from __future__ import annotations

from rsgo import audit
from rsgo.models import Deployment
from rsgo.modes import Mode
from rsgo.observers.decision import NORMAL
from rsgo.problems import Problem
from rsgo.security.principal import client_address, current
from rsgo.web import current_runtime


def require_operator(deployment: Deployment, *, requested_mode: str, source: str, reason: str) -> None:
    principal = current()
    if principal.can("operate"):
        return
    refusal = Problem(403, "forbidden", f"{principal.name} may not change modes (needs operate)")
    entry = audit.record_refusal(deployment, requested_mode=requested_mode, source=source, actor=principal.name,
                                 reason=reason, error=f"{refusal.code}: {refusal.detail}", address=client_address())
    audit.announce(current_runtime().bus, entry)
    raise refusal


def observer_hold(d: dict) -> dict | None:
    """The observer that holds a stack's Maintenance, for the pages to say so before anyone clicks
    (README "Observers"): the transition service refuses a change by hand without ``force`` while it
    holds. The same test as ``ObserverService.holds_maintenance``, on the page's representation of
    the stack (a dashboard row or the detail), so a row and its refusal always agree."""
    observer = d.get("observer")
    trigger = d.get("trigger") or {}
    if d.get("operationMode") != Mode.MAINTENANCE.value or trigger.get("source") != "observer" or not observer:
        return None
    if observer.get("lastDecision") == NORMAL:
        return None
    value = observer.get("lastValue") if observer.get("lastCheckAt") else trigger.get("observedValue")
    return {"observer": trigger.get("actor") or observer.get("name"), "value": value,
            "refused": list(d.get("allowedModes", []))}
