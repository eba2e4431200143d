"""One mode change for several stacks (README "The dashboard", Bulk changes): each stack gets its own
request to the transition service, exactly as if it had been asked alone, and its own result. A
refusal stops nothing but that stack's change: never all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rsgo.db import STORAGE_ERRORS, note_storage_failure, storage_error_text
from rsgo.mode_change import ModeChangeRefused
from rsgo.models import Deployment

MAX_STACKS = 500  # one request; a page never shows more rows than this at once


@dataclass
class BulkResult:
    """What one stack's change led to: ``started`` (its transition runs), ``unchanged`` (already in
    that mode), or ``refused`` (``code`` and ``message`` say why, as the single change's problem would)."""

    ref: str
    deployment: Deployment | None
    result: str  # started, unchanged, refused
    status: int  # the status the single change would have answered: 202, 200, 404, 409, 503
    message: str
    code: str | None = None
    transition_id: int | None = None
    extra: dict = field(default_factory=dict)


# A refusal's status, as the single change's error handler answers it (rsgo/web/errors.py).
_REFUSAL_STATUS = {"docker_unreachable": 503, "storage_unavailable": 503}


Missing = tuple[int, str, str]  # why a ref names no deployment: status, code, message


def change_modes(runtime, targets: list[tuple[str, Deployment | None, Missing | None]], mode: str, *, source: str,
                 actor: str, reason: str, force: bool = False, address: str | None = None) -> list[BulkResult]:
    """``targets``: (the ref asked for, its deployment or None and why it could not be found). Every
    change is started without waiting; its progress and end come as they do for a single change."""
    results = []
    seen: set[int] = set()
    for ref, deployment, missing in targets:
        if deployment is None:
            status, code, message = missing or (404, "not_found", f"no deployment {ref!r}")
            results.append(BulkResult(ref, None, "refused", status, message, code))
            continue
        if deployment.id in seen:
            results.append(BulkResult(ref, deployment, "refused", 409, f"{deployment.name} is listed twice; "
                                      "its change was asked once", "duplicate"))
            continue
        seen.add(deployment.id)
        results.append(_change_one(runtime, ref, deployment, mode, source=source, actor=actor, reason=reason,
                                   force=force, address=address))
    return results


def _change_one(runtime, ref: str, deployment: Deployment, mode: str, **request) -> BulkResult:
    try:
        change = runtime.transitions.change_mode(deployment.id, mode, wait=False, **request)
    except ModeChangeRefused as refusal:
        return BulkResult(ref, deployment, "refused", _REFUSAL_STATUS.get(refusal.code, 409), refusal.detail,
                          refusal.code, extra=dict(refusal.extra))
    except STORAGE_ERRORS as error:  # this stack's change was not started; the next ones are still tried
        note_storage_failure()
        return BulkResult(ref, deployment, "refused", 503, f"rsgo cannot use its database: "
                          f"{storage_error_text(error)}; {deployment.name} was not changed", "storage_unavailable")
    if change.outcome == "noop":
        return BulkResult(ref, deployment, "unchanged", 200,
                          f"{deployment.name} is already in {change.new_mode.value}; nothing was done")
    return BulkResult(ref, deployment, "started", 202,
                      f"{deployment.name} is changing from {change.previous_mode.value} to {change.new_mode.value}",
                      transition_id=change.transition.id)
