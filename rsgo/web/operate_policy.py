"""Who may change modes, for the API and the pages alike: a caller without the operate permission
is refused with 403, and the refusal is recorded in the stack's history (who, from where, what they
asked for), so an attempt is never silent."""

from __future__ import annotations

from rsgo import audit
from rsgo.models import Deployment
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
