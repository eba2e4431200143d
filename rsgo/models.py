"""Tables: deployments, their stopped-sets, transitions with per-container actions, audit entries,
observer status, windows, webhooks, users, tokens and the security log. What writes them:
docs/design.md#transitions, docs/design.md#audit, docs/design.md#security."""

from __future__ import annotations

import secrets

import peewee

from rsgo.db import database, utcnow


class BaseModel(peewee.Model):
    class Meta:
        database = database


class Deployment(BaseModel):
    """A stack on one environment, with the operation mode rsgo keeps for it."""

    environment = peewee.CharField()
    name = peewee.CharField()
    mode = peewee.CharField(default="Normal")
    trigger_source = peewee.CharField(default="system")
    trigger_actor = peewee.CharField(default="system")
    trigger_reason = peewee.TextField(default="")
    trigger_observed_value = peewee.TextField(null=True)
    mode_changed_at = peewee.DateTimeField(default=utcnow)
    discovered_at = peewee.DateTimeField(default=utcnow)
    # Set when a person forgot the stack after its containers were gone (README "The dashboard"): hidden
    # from the dashboard and the list, its history kept; cleared when discovery sees it again.
    forgotten_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "deployments"
        indexes = ((("environment", "name"), True),)


class Transition(BaseModel):
    """One mode change and its container actions; written before the first Docker call."""

    deployment = peewee.ForeignKeyField(Deployment, backref="transitions", on_delete="CASCADE")
    previous_mode = peewee.CharField()
    target_mode = peewee.CharField()
    status = peewee.CharField(default="running", index=True)  # running, succeeded, failed
    source = peewee.CharField()
    actor = peewee.CharField()
    reason = peewee.TextField(default="")
    observed_value = peewee.TextField(null=True)
    force = peewee.BooleanField(default=False)
    resumed = peewee.BooleanField(default=False)
    error = peewee.TextField(null=True)
    requested_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(null=True)
    address = peewee.CharField(null=True)  # who asked, from where: carried into the audit entry

    class Meta:
        table_name = "transitions"


class TransitionAction(BaseModel):
    """One planned action on a container or Swarm service of a transition and, once done, its result."""

    transition = peewee.ForeignKeyField(Transition, backref="actions", on_delete="CASCADE")
    container_name = peewee.CharField()  # or the service's name
    kind = peewee.CharField(default="container")  # container, service
    # A service's state before it is stopped ({"mode", "replicas" | "constraints", "version"}, JSON),
    # written before the first Docker call: what Normal restores, even after a crash.
    memo = peewee.TextField(null=True)
    action = peewee.CharField()  # stop, start, none
    level = peewee.IntegerField(default=0)
    # stopped, started, ignored, already-stopped, already-running, missing, left-alone (a Swarm job), failed
    result = peewee.CharField(null=True)
    error = peewee.TextField(null=True)
    duration_ms = peewee.IntegerField(null=True)
    finished_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "transition_actions"


class StoppedSetEntry(BaseModel):
    """A container (or Swarm service) rsgo stopped for the current mode; only these are started again."""

    deployment = peewee.ForeignKeyField(Deployment, backref="stopped_set", on_delete="CASCADE")
    container_name = peewee.CharField()  # or the service's name
    kind = peewee.CharField(default="container")  # container, service
    memo = peewee.TextField(null=True)  # a service's: what Normal restores, and its spec version after the stop
    transition = peewee.ForeignKeyField(Transition, null=True, on_delete="SET NULL")
    added_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "stopped_set"
        indexes = ((("deployment", "container_name"), True),)


class AuditEntry(BaseModel):
    """Who changed which deployment's mode, when, from what to what, why, and how it ended."""

    deployment = peewee.ForeignKeyField(Deployment, backref="audit_entries", on_delete="CASCADE")
    previous_mode = peewee.CharField()
    new_mode = peewee.CharField()
    requested_mode = peewee.CharField(null=True)
    outcome = peewee.CharField()  # succeeded, failed, noop, rejected, enforced, resumed
    source = peewee.CharField()  # ui, api, cli, observer, schedule, system
    actor = peewee.CharField()
    reason = peewee.TextField(default="")
    observed_value = peewee.TextField(null=True)
    error = peewee.TextField(null=True)
    requested_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(default=utcnow)
    transition = peewee.ForeignKeyField(Transition, null=True, on_delete="SET NULL")
    address = peewee.CharField(null=True)  # the caller's network address, for requests from outside

    class Meta:
        table_name = "audit_entries"


class ObserverStatus(BaseModel):
    """An observer's last result, kept in the database so a restart or a config reload loses nothing:
    the failure count, the confirmation streak and a suppression after a forced exit all survive."""

    deployment = peewee.ForeignKeyField(Deployment, backref="observer_status", unique=True, on_delete="CASCADE")
    fingerprint = peewee.CharField(default="")  # of the config it ran with; a changed config starts afresh
    last_value = peewee.TextField(null=True)
    last_decision = peewee.CharField(null=True)  # maintenance, normal
    last_error = peewee.TextField(null=True)
    last_check_at = peewee.DateTimeField(null=True)
    failures = peewee.IntegerField(default=0)  # consecutive
    failing = peewee.BooleanField(default=False)  # reached failureThreshold; "recovered" is announced once
    suppressed = peewee.BooleanField(default=False)  # forced out of its Maintenance; until it reads normal
    streak_decision = peewee.CharField(null=True)
    streak_count = peewee.IntegerField(default=0)

    class Meta:
        table_name = "observer_status"


def new_session_key() -> str:
    """32 random bytes, URL-safe: a user's session key (a secret; only signed cookies carry it)."""
    return secrets.token_urlsafe(32)


class User(BaseModel):
    username = peewee.CharField(unique=True)
    password_hash = peewee.CharField()  # Argon2id
    role = peewee.CharField()  # viewer, operator, admin
    # What a session cookie names: random, never reused (ids are), replaced to end every session of the user.
    session_key = peewee.CharField(unique=True, default=new_session_key)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "users"


class ApiToken(BaseModel):
    name = peewee.CharField(unique=True)
    token_hash = peewee.CharField(unique=True)  # SHA-256 of the token; the token itself is never stored
    hint = peewee.CharField()  # the first characters after the prefix, to tell tokens apart
    scope = peewee.CharField()  # read, operate, admin
    stacks = peewee.TextField(null=True)  # comma-separated; null: every stack
    expires_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    created_by = peewee.CharField()
    created_at = peewee.DateTimeField(default=utcnow)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "api_tokens"


class SetupToken(BaseModel):
    token_hash = peewee.CharField(unique=True)
    created_at = peewee.DateTimeField(default=utcnow)
    used_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "setup_tokens"


class SecurityEvent(BaseModel):
    kind = peewee.CharField()
    actor = peewee.CharField()
    address = peewee.CharField(null=True)
    detail = peewee.TextField(default="")
    at = peewee.DateTimeField(default=utcnow, index=True)

    class Meta:
        table_name = "security_events"


class MaintenanceWindow(BaseModel):
    """A scheduled maintenance period: one-time (start/end) or recurring (cron, duration, time zone)."""

    deployment = peewee.ForeignKeyField(Deployment, backref="windows", on_delete="CASCADE")
    name = peewee.CharField()
    starts_at = peewee.DateTimeField(null=True)  # one-time, UTC
    ends_at = peewee.DateTimeField(null=True)
    cron = peewee.CharField(null=True)  # recurring
    timezone = peewee.CharField(default="UTC")
    duration_seconds = peewee.IntegerField(null=True)
    reason = peewee.TextField(default="")
    origin = peewee.CharField()  # config, api, ui
    created_by = peewee.CharField()
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "maintenance_windows"


class ScheduleSuppression(BaseModel):
    """A person ended a schedule's Maintenance: the schedule stays out until this instant."""

    deployment = peewee.ForeignKeyField(Deployment, unique=True, on_delete="CASCADE")
    until = peewee.DateTimeField()

    class Meta:
        table_name = "schedule_suppressions"


class MaintenanceReminder(BaseModel):
    """An overdue stay in Maintenance or Stopped (README "Modes", Forgotten maintenance): when the reminder
    clock started and the reminders announced, so a restart does not announce the same stay again.
    It belongs to the stay that began at ``since`` (the deployment's ``mode_changed_at``); another stay
    starts afresh."""

    deployment = peewee.ForeignKeyField(Deployment, unique=True, on_delete="CASCADE")
    since = peewee.DateTimeField()
    clock_from = peewee.DateTimeField()  # the stay's start, or when an observer or window stopped holding it
    reminders = peewee.IntegerField(default=0)
    reminded_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "maintenance_reminders"


class Webhook(BaseModel):
    """Where rsgo POSTs its events; from the config file (kept in step with it) or added in the admin UI."""

    name = peewee.CharField()
    url = peewee.TextField()
    secret = peewee.TextField(null=True)  # signs the body (HMAC-SHA256); never shown, never logged
    # Comma-separated: mode.changed, transition.failed, observer.failing, observer.recovered, maintenance.overdue.
    events = peewee.TextField()
    origin = peewee.CharField()  # config, ui
    created_by = peewee.CharField(default="config")
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "webhooks"

    @property
    def event_list(self) -> list[str]:
        return [event for event in self.events.split(",") if event]


class WebhookDelivery(BaseModel):
    """One event sent to one webhook: the exact body, and every attempt at sending it."""

    webhook = peewee.ForeignKeyField(Webhook, backref="deliveries", on_delete="CASCADE")
    delivery_id = peewee.CharField(unique=True)  # X-RSGO-Delivery and the body's deliveryId
    event = peewee.CharField()
    body = peewee.TextField()  # the JSON sent, byte for byte (ASCII)
    status = peewee.CharField(default="pending", index=True)  # pending, delivered, failed
    attempts = peewee.IntegerField(default=0)
    attempt_log = peewee.TextField(default="[]")  # JSON list: {at, statusCode, error, durationMs}
    last_status_code = peewee.IntegerField(null=True)
    last_error = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    delivered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "webhook_deliveries"


class Upgrade(BaseModel):
    """An upgrade of some of a stack's containers to new images (README "Upgrades"), or a rollback to the
    containers an upgrade kept aside (``kind`` rollback, ``rollback_of`` that upgrade). Written before the
    first Docker call; with its containers' rows it is the journal a restart rolls back from."""

    deployment = peewee.ForeignKeyField(Deployment, backref="upgrades", on_delete="CASCADE")
    kind = peewee.CharField(default="upgrade")  # upgrade, rollback
    rollback_of = peewee.IntegerField(null=True)  # a rollback's upgrade; an upgrade's: the rollback that undid it
    # pulling, stopping, migrating, starting, verifying, rolling-back, succeeded, rolled-back, failed
    status = peewee.CharField(default="pulling", index=True)
    request = peewee.TextField(default="{}")  # JSON: images, migration, pull, healthTimeout, stableFor
    source = peewee.CharField()
    actor = peewee.CharField()
    reason = peewee.TextField(default="")
    address = peewee.CharField(null=True)
    requested_at = peewee.DateTimeField(default=utcnow)
    finished_at = peewee.DateTimeField(null=True)
    error = peewee.TextField(null=True)
    migration_started = peewee.BooleanField(default=False)  # from here on a failure leaves the stack Failed
    migration_exit_code = peewee.IntegerField(null=True)
    migration_timed_out = peewee.BooleanField(default=False)
    migration_log = peewee.TextField(default="[]")  # JSON list: the last lines of its output
    steps = peewee.TextField(default="[]")  # JSON list: {step, result, startedAt, finishedAt, durationMs, error}
    aside_removed = peewee.BooleanField(default=False)  # its previous containers are gone (or restored)
    recovered = peewee.BooleanField(default=False)  # rolled back at a start after rsgo stopped during it

    class Meta:
        table_name = "upgrades"


class UpgradeContainer(BaseModel):
    """One container an upgrade recreates (``role`` recreate) or only stops and starts again (``stop``,
    a dependent). Holds what rolling back needs without Docker's help: the old container's id and full
    inspect answer, its image id and restart policy, the name it was kept aside under."""

    upgrade = peewee.ForeignKeyField(Upgrade, backref="containers", on_delete="CASCADE")
    name = peewee.CharField()
    role = peewee.CharField()  # recreate, stop
    level = peewee.IntegerField(default=0)
    was_running = peewee.BooleanField(default=True)
    old_id = peewee.CharField()
    old_ref = peewee.TextField(default="")
    old_image_id = peewee.CharField(default="")
    new_ref = peewee.TextField(null=True)
    new_image_id = peewee.CharField(null=True)
    new_id = peewee.CharField(null=True)
    aside_name = peewee.CharField(null=True)
    restart_policy = peewee.TextField(default="{}")  # JSON, as the old container had it
    inspect = peewee.TextField(default="{}")  # JSON: the old container's inspect answer
    # planned, stopped, aside, created, started, healthy, restored, failed
    step = peewee.CharField(default="planned")
    error = peewee.TextField(null=True)

    class Meta:
        table_name = "upgrade_containers"


class AlertSilence(BaseModel):
    """A stack's Alertmanager silence (README "Alertmanager"): what rsgo wants of it (``silence`` while
    the stack is in Maintenance, Stopped or Migrating, else ``expire``) and how far it got."""

    deployment = peewee.ForeignKeyField(Deployment, backref="silence", unique=True, on_delete="CASCADE")
    transition = peewee.ForeignKeyField(Transition, null=True, on_delete="SET NULL")  # the one that entered the mode
    want = peewee.CharField(default="silence")  # silence, expire
    state = peewee.CharField(default="pending")  # pending, silenced, expired
    silence_id = peewee.CharField(null=True)  # Alertmanager's
    alertmanager = peewee.CharField(default="")  # its URL (no userinfo), where silence_id lives
    ends_at = peewee.DateTimeField(null=True)
    error = peewee.TextField(null=True)  # the last attempt's, while pending
    failures = peewee.IntegerField(default=0)  # in a row; the backoff grows with them
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "alert_silences"


class NotificationDelivery(BaseModel):
    """One message to one ``notifications:`` entry (README "Notifications"), and every attempt at sending it.
    The entry's URL is never stored (it carries the secrets): the entry is named, its masked URL kept."""

    notification = peewee.CharField(index=True)  # the entry's name in the config file
    target = peewee.TextField()  # its URL, masked
    event = peewee.CharField()  # one of the notification events, or notification.test
    deployment = peewee.ForeignKeyField(Deployment, null=True, on_delete="CASCADE")
    title = peewee.TextField(default="")
    message = peewee.TextField()
    status = peewee.CharField(default="pending", index=True)  # pending, delivered, failed
    attempts = peewee.IntegerField(default=0)
    attempt_log = peewee.TextField(default="[]")  # JSON list: {at, error, durationMs}
    last_error = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    delivered_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "notification_deliveries"


ALL_MODELS = [Deployment, Transition, TransitionAction, StoppedSetEntry, AuditEntry, ObserverStatus, User, ApiToken,
              SetupToken, SecurityEvent, MaintenanceWindow, ScheduleSuppression, Webhook, WebhookDelivery,
              MaintenanceReminder, Upgrade, UpgradeContainer, AlertSilence,
              NotificationDelivery]
