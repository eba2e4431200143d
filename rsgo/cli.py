"""The ``rsgo`` command: ``serve`` runs the production server, ``check-config`` validates, ``user`` and
``token`` manage accounts in the data directory; the client commands (``rsgo.client.COMMANDS``: status,
mode, maintenance, history, check) talk to a running rsgo over its API instead."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rsgo import client
from rsgo.security import permissions
from rsgo.settings import SettingsError, load_settings

# Libraries whose DEBUG lines hold secrets: urllib3 logs every request's URL with its query (an http
# observer's ?token=...). Even at RSGO_LOG_LEVEL=DEBUG they log from INFO up.
_SECRET_LEAKING_LOGGERS = ("urllib3",)
# APScheduler logs two INFO lines per run of every job ("Running job …", "Job … executed successfully"),
# plus each job added and removed: with a window check every 5 s and a check per observer that buried
# everything else. Below DEBUG only its warnings (missed runs) and job errors reach the log.
_CHATTY_LOGGERS = ("apscheduler",)


def _configure_logging(level: str, stream=sys.stdout) -> None:
    from rsgo import log_safety

    # Names, reasons and labels come from outside: the formatter escapes their control characters, so
    # each record stays one line. SQL parameters (password and token hashes) are never logged.
    logging.basicConfig(level=level, handlers=[log_safety.escaping_handler(stream)])
    log_safety.hide_sql_parameters()
    for name in _SECRET_LEAKING_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def serve(settings) -> int:
    """gunicorn, one worker (one in-process scheduler and websocket hub), many threads."""
    import signal

    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    from rsgo import create_app, gunicorn_worker

    _fewer_malloc_arenas()
    # A config file that cannot be used at all stops the start here, before anything stored is touched.
    code = _in_child(lambda: _config_usable(settings))
    if code != 0:
        return code

    class ForwardingArbiter(Arbiter):
        def handle_hup(self):
            # gunicorn would restart the worker, losing running transitions; rsgo reloads its config in place.
            self.log.info("SIGHUP: asking the worker to reload the stack config")
            self.kill_workers(signal.SIGHUP)

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", 1)
            # gthread with a read timeout on requests: a client that stops sending part-way frees its thread.
            self.cfg.set("worker_class", "rsgo.gunicorn_worker.ThreadWorker")
            # RSGO_THREADS for requests, plus one for each websocket the hub admits (each holds its
            # thread while open): websockets can never take the threads HTTP requests need.
            self.cfg.set("threads", settings.threads + settings.max_live_connections)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 30)
            self.cfg.set("accesslog", "-")
            # gunicorn's default format with the user name left out: it is the decoded Basic-auth user,
            # as the client sent it (line breaks and escape sequences included). gunicorn refuses C0
            # controls in the request line and headers (400); the logger escapes the C1 ones it lets through.
            self.cfg.set("logger_class", "rsgo.gunicorn_worker.Logger")
            self.cfg.set("access_log_format", '%(h)s %(l)s - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"')
            self.cfg.set("errorlog", "-")
            # One shared control socket path would clash between instances (and tests) on one host.
            self.cfg.set("control_socket_disable", True)
            self.cfg.set("worker_exit", finish_background_work)

        def load(self):
            return create_app(settings)

        def run(self):
            ForwardingArbiter(self).run()

    def finish_background_work(_server, worker):
        """On SIGTERM gunicorn lets requests finish; this lets background transitions finish too,
        bounded by the graceful timeout. What is still running then stays resumable (it is persisted)."""
        app = getattr(worker, "wsgi", None)
        runtime = app.extensions.get("rsgo") if app is not None else None
        if runtime is not None:
            runtime.stop(timeout=25)

    gunicorn_worker.REQUEST_TIMEOUT_SECONDS = settings.request_timeout
    logging.getLogger(__name__).info("rsgo serving on http://%s:%s/", settings.host, settings.port)
    Server().run()
    return 0


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads that allocate at once arenas of their own, up to eight per core; with the
    worker's request, websocket and observer threads, memory freed in one arena stays resident for
    that arena alone. Two arenas (what ``MALLOC_ARENA_MAX=2`` would set) keep it reusable. Set in the
    master before any thread exists, the worker inherits it; a libc without ``mallopt`` is left alone."""
    import ctypes

    try:
        ctypes.CDLL(None).mallopt(-8, arenas)  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def _config_usable(settings) -> int:
    from rsgo.stack_config import load_config

    config = load_config(settings.config_path, required=bool(settings.config), settings=settings)
    if config.fatal:
        for problem in config.problems:
            if problem.fatal:
                print(f"rsgo: cannot start: {problem}", file=sys.stderr)
        return 2
    return 0


def _in_child(work) -> int:
    """``work()``'s exit code, run in a forked child. Checking the config imports nearly all of rsgo
    (Docker, the database, the notification plugins): in the gunicorn master, which never serves, those
    modules would stay for nothing, in its resident memory and, forked, in the worker's (README
    "Performance", memory). The worker imports what it needs itself."""
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            code = work()
        except BaseException:  # reported like an uncaught error, then the child ends
            logging.getLogger(__name__).exception("checking the config failed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])


def check_config(settings) -> int:
    """Validate the settings (already parsed) and the stack config file; 1 if anything is wrong."""
    from rsgo.stack_config import load_config

    print(f"settings ok: data dir {settings.data_dir}, "
          f"database {'PostgreSQL' if settings.database_url else 'SQLite'}")
    config = load_config(settings.config_path, required=bool(settings.config), settings=settings)
    for problem in config.problems:
        print(f"error: {problem}", file=sys.stderr)
    if config.problems:
        print(f"{settings.config_path}: {len(config.problems)} problem(s)", file=sys.stderr)
        return 1
    observers = [s.observer for s in config.stacks.values() if s.observer]
    print(f"config ok: {config.path}: {len(config.stacks)} stack(s), {len(observers)} observer(s)")
    if config.environments is None:
        print(f"  environment {settings.environment}: {os.environ.get('DOCKER_HOST') or 'the local socket'}")
    for spec in (config.environments or {}).values():
        print(f"  environment {spec.name}: {spec.masked_url}{' (TLS)' if spec.tls else ''}, timeout {spec.timeout:g}s")
    for observer in observers:
        print(f"  {observer.stack}: {observer.type} every {observer.interval:g}s, {observer.target()}")
    return 0


def _open_database(settings) -> None:
    from rsgo import db

    db.open_database(settings)
    db.migrate()


def create_user(settings, args) -> int:
    from rsgo.security import accounts

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else _ask_password()
    _open_database(settings)
    try:
        user = accounts.create_user(args.name, password, args.role)
    except accounts.AccountError as error:
        print(f"rsgo: {error}", file=sys.stderr)
        return 1
    _security_event("user.created", f"{user.username} ({user.role})")
    print(f"created {user.role} {user.username}")
    return 0


def _ask_password() -> str:
    import getpass

    password = getpass.getpass("password: ")
    if password != getpass.getpass("again: "):
        print("rsgo: the passwords differ", file=sys.stderr)
        sys.exit(1)
    return password


def create_token(settings, args) -> int:
    from rsgo.security import tokens

    _open_database(settings)
    try:
        row, clear = tokens.create_token(args.name, args.scope, created_by="cli",
                                         stacks=(args.stacks or "").split(","),
                                         expires_at=tokens.expiry(args.expires_in))
    except tokens.TokenError as error:
        print(f"rsgo: {error}", file=sys.stderr)
        return 1
    _security_event("token.created", f"{row.name} ({row.scope})")
    # Only the token on stdout, so scripts can capture it; it is never shown again.
    print(clear)
    return 0


def _security_event(kind: str, detail: str) -> None:
    import getpass

    from rsgo.security import event_log

    event_log.record(kind, actor=f"cli:{getpass.getuser()}", address="local", detail=detail)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in client.COMMANDS:
        # A client of a running rsgo (RSGO_URL, RSGO_TOKEN_FILE): no settings, no data directory.
        return client.run(argv)
    parser = argparse.ArgumentParser(prog="rsgo", description="Operation modes for Docker stacks.",
                                     epilog="rsgo COMMAND --help explains each command, with an example.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the web server (settings from RSGO_* environment variables)")
    commands.add_parser("check-config", help="validate the settings and the stack config file without starting")
    user = commands.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    user_create = user.add_parser("create", help="create a user")
    user_create.add_argument("name")
    user_create.add_argument("--role", choices=permissions.ROLES, default="viewer")
    user_create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    token = commands.add_parser("token", help="manage API tokens").add_subparsers(dest="action", required=True)
    token_create = token.add_parser("create", help="create an API token and print it (once)")
    token_create.add_argument("name")
    token_create.add_argument("--scope", choices=permissions.SCOPES, default="read")
    token_create.add_argument("--stacks", help="comma-separated stacks the token is limited to")
    token_create.add_argument("--expires-in", help="e.g. 30d or 12h; default: never")
    for name, summary in client.COMMANDS.items():  # listed here; rsgo.client parses them (see above)
        commands.add_parser(name, help=summary, add_help=False)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"rsgo: invalid setting: {error}", file=sys.stderr)
        return 2
    # The server logs to stdout; the other commands keep stdout for their answer (a token, say).
    _configure_logging(settings.log_level, sys.stdout if args.command == "serve" else sys.stderr)
    if args.command == "serve":
        return serve(settings)
    if args.command == "user":
        return create_user(settings, args)
    if args.command == "token":
        return create_token(settings, args)
    return check_config(settings)


if __name__ == "__main__":
    sys.exit(main())
