"""The short, human messages notifications carry (README "Notifications"):
"🔧 shop entered Maintenance — alice: nightly backup (2 of 3 stopped, shop-db-1 keeps running)".

Built from the database at the moment of the event, in the publisher's thread, so a message says what
was true then even when it is sent (or retried) later.
"""

from __future__ import annotations

from rsgo.models import Deployment, ObserverStatus, Transition, TransitionAction, Upgrade

MODE_ICONS = {"Maintenance": "🔧", "Stopped": "⏹️", "Migrating": "🚚", "Normal": "✅", "Failed": "❌"}


def _who(actor: str | None, reason: str | None) -> str:
    actor = actor or "rsgo"
    return f"{actor}: {reason}" if reason else actor


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)} s"
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _counts(transition: Transition) -> str:
    """"2 of 3 stopped, db keeps running" from the transition's actions."""
    actions = list(TransitionAction.select().where(TransitionAction.transition == transition.id))
    if not actions:
        return ""
    verb = "started" if transition.target_mode == "Normal" else "stopped"
    done = sum(1 for a in actions if a.result in (verb, f"already-{'running' if verb == 'started' else verb}"))
    parts = [f"{done} of {len(actions)} {verb}"]
    kept = [a.container_name for a in actions if a.action == "none" and a.result == "ignored"]
    if kept:
        parts.append(f"{', '.join(kept)} {'keeps' if len(kept) == 1 else 'keep'} running")
    return f" ({', '.join(parts)})"


def message(event: str, payload: dict, deployment: Deployment, public_url: str = "") -> tuple[str, str]:
    """(title, body) of one event about ``deployment``."""
    name = deployment.name
    if event in ("mode.changed", "transition.failed"):
        transition = Transition.get_or_none(Transition.id == payload["transition_id"])
        actor = transition.actor if transition else deployment.trigger_actor
        reason = transition.reason if transition else deployment.trigger_reason
        mode = payload.get("new_mode") or deployment.mode
        if event == "transition.failed":
            target = transition.target_mode if transition else "?"
            error = f" ({transition.error})" if transition and transition.error else ""
            text = f"❌ {name} failed going to {target} — {_who(actor, reason)}{error}"
        else:
            counts = _counts(transition) if transition else ""
            verb = "is back to" if mode == "Normal" else "entered"
            text = f"{MODE_ICONS.get(mode, '•')} {name} {verb} {mode} — {_who(actor, reason)}{counts}"
    elif event == "observer.failing":
        text = (f"⚠️ {name}: observer {payload.get('observer')} failing ({payload.get('failures')} in a row): "
                f"{payload.get('error')}")
    elif event == "observer.recovered":
        status = ObserverStatus.get_or_none(ObserverStatus.deployment == deployment.id)
        read = f" (reads “{status.last_value}”)" if status and status.last_value is not None else ""
        text = f"✔️ {name}: observer {payload.get('observer')} works again{read}"
    elif event == "maintenance.overdue":
        text = (f"⏰ {name} still in {payload['mode']} after {_duration(payload['seconds'])} — "
                f"{_who(payload.get('by'), deployment.trigger_reason)}")
    elif event == "upgrade.finished":
        upgrade = Upgrade.get_by_id(payload["upgrade_id"])
        icon = {"succeeded": "⬆️", "rolled-back": "↩️"}.get(payload["outcome"], "❌")
        text = f"{icon} {name} {upgrade.kind} {payload['outcome']} — {_who(upgrade.actor, upgrade.reason)}"
        if upgrade.error:
            text += f": {upgrade.error}"
    else:
        raise ValueError(f"no message for {event}")
    if public_url:
        text += f"\n{public_url}/deployments/{deployment.id}"
    return f"rsgo: {name}", text
