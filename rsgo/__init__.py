"""rsgo: operation modes for Docker stacks."""

from __future__ import annotations

import logging
import os
import secrets
from typing import TYPE_CHECKING

from rsgo.settings import Settings, load_settings

if TYPE_CHECKING:  # imported by create_app: the gunicorn master imports this package but serves nothing
    from flask import Flask

log = logging.getLogger(__name__)


def _secret_key(settings: Settings) -> str:
    """RSGO_SECRET_KEY, or a key generated once and kept (mode 0600) in the data dir."""
    if settings.secret_key:
        return settings.secret_key
    path = os.path.join(settings.data_dir, "secret_key")
    os.makedirs(settings.data_dir, exist_ok=True)
    try:
        with open(path, encoding="utf-8") as key_file:
            return key_file.read().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(48)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as key_file:
            key_file.write(key)
        return key


def create_app(settings: Settings | None = None, *, background: bool = True, gateway=None) -> Flask:
    """Build the app. ``background`` starts discovery, enforcement and resumption (off in unit tests)."""
    from flask import Flask
    from htmx_flask import Htmx

    from rsgo import db, log_safety
    from rsgo.runtime import Runtime
    from rsgo.security import web
    from rsgo.web import admin, api, api_upgrades, errors, http_input, login, metrics, pages, probes, ws
    from rsgo.web.live_push import LivePush
    from rsgo.web.ws import sock

    settings = settings or load_settings()
    from rsgo.assets import asset_folder  # inside the installed package, or the checkout's top level
    app = Flask(__name__, template_folder=asset_folder("templates"), static_folder=asset_folder("static"))
    http_input.install(app)  # body size, unreadable bodies, ids in paths: before any route is added
    log_safety.hide_sql_parameters()
    app.config["SECRET_KEY"] = _secret_key(settings)
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False

    db.open_database(settings)
    db.migrate()

    runtime = Runtime(settings, gateway=gateway)
    app.extensions["rsgo"] = runtime
    runtime.reload_config()
    web.first_start(settings, runtime.scheduler if background else None)

    Htmx(app)
    errors.register(app)
    web.register(app, settings)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(api_upgrades.blueprint)
    from rsgo.web import api_stacks, stack_pages  # forgetting stacks, bulk mode changes
    app.register_blueprint(api_stacks.blueprint)
    app.register_blueprint(stack_pages.blueprint)
    from rsgo.web import upgrade_pages  # the deployment page's Upgrade panel
    app.register_blueprint(upgrade_pages.blueprint)
    app.register_blueprint(probes.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(login.blueprint)
    app.register_blueprint(admin.blueprint)
    metrics.register(app, runtime, settings)
    # simple-websocket pings idle browsers, so a vanished one is noticed and its thread freed.
    app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": ws.PING_SECONDS}
    sock.init_app(app)

    from rsgo.web.row_cache import DeploymentCache  # the dashboard's and the list API's rows between events
    runtime.deployment_cache = DeploymentCache(runtime.bus)
    runtime.live_push = LivePush(app, runtime)
    runtime.on_stop(runtime.live_push.close)

    @app.teardown_appcontext
    def close_connection(_error):
        # Request threads are pooled; give each request a fresh connection instead of keeping one per thread.
        db.release_thread_connection()

    if background:
        runtime.start()
        _reload_on_sighup(runtime)
    # The thread that built the app keeps no connection (one opened while the disk was read-only would
    # keep SQLite's shared memory read-only for the whole process); a connection of its own keeps the
    # database's log files in place.
    db.release_thread_connection()
    db.keep_log_files_open()
    return app


def _reload_on_sighup(runtime) -> None:
    """``kill -HUP`` re-reads the config file in place (``rsgo serve`` forwards it to the worker)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # signals can only be handled in the main thread (tests build apps elsewhere)

    def reload(_signum, _frame):
        threading.Thread(target=runtime.reload_from_signal, name="rsgo-reload", daemon=True).start()

    signal.signal(signal.SIGHUP, reload)
