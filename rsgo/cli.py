"""The ``rsgo`` command: ``serve`` runs the production server, ``check-config`` validates."""

from __future__ import annotations

import argparse
import logging
import sys

from rsgo.settings import SettingsError, load_settings


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(settings) -> int:
    """gunicorn, one worker (one in-process scheduler and websocket hub), many threads."""
    import signal

    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter

    from rsgo import create_app

    class ForwardingArbiter(Arbiter):
        def handle_hup(self):
            # gunicorn would restart the worker, losing running transitions; rsgo reloads its config in place.
            self.log.info("SIGHUP: asking the worker to reload the stack config")
            self.kill_workers(signal.SIGHUP)

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{settings.host}:{settings.port}")
            self.cfg.set("workers", 1)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", settings.threads)
            self.cfg.set("timeout", 120)
            self.cfg.set("graceful_timeout", 30)
            self.cfg.set("accesslog", "-")
            self.cfg.set("errorlog", "-")
            # One shared control socket path would clash between instances (and tests) on one host.
            self.cfg.set("control_socket_disable", True)

        def load(self):
            return create_app(settings)

        def run(self):
            ForwardingArbiter(self).run()

    logging.getLogger(__name__).info("rsgo serving on http://%s:%s/", settings.host, settings.port)
    Server().run()
    return 0


def check_config(settings) -> int:
    """Validate the settings (already parsed) and the stack config file; 1 if anything is wrong."""
    from rsgo.stack_config import load_config

    print(f"settings ok: data dir {settings.data_dir}, environment {settings.environment}, "
          f"database {'PostgreSQL' if settings.database_url else 'SQLite'}")
    config = load_config(settings.config_path, required=bool(settings.config))
    for problem in config.problems:
        print(f"error: {problem}", file=sys.stderr)
    if config.problems:
        print(f"{settings.config_path}: {len(config.problems)} problem(s)", file=sys.stderr)
        return 1
    observers = [s.observer for s in config.stacks.values() if s.observer]
    print(f"config ok: {config.path}: {len(config.stacks)} stack(s), {len(observers)} observer(s)")
    for observer in observers:
        print(f"  {observer.stack}: {observer.type} every {observer.interval:g}s, {observer.target()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rsgo", description="Operation modes for Docker stacks.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the web server (settings from RSGO_* environment variables)")
    commands.add_parser("check-config", help="validate the settings without starting")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"rsgo: invalid setting: {error}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    if args.command == "serve":
        return serve(settings)
    return check_config(settings)


if __name__ == "__main__":
    sys.exit(main())
