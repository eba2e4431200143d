"""The client commands' arguments and ``--help`` texts (each with an example and the exit codes)."""

from __future__ import annotations

import argparse
import sys

from rsgo.client.http import CONNECTION_HELP, EXIT_CODES, USAGE


class ClientParser(argparse.ArgumentParser):
    """Usage errors exit with 1, as the client's exit codes say (argparse's own default is 2)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"{self.prog}: error: {message}\n")


COMMANDS = {
    "status": "show the stacks and their modes, or one stack in detail (over rsgo's API)",
    "mode": "change a stack's mode and follow the transition (over rsgo's API)",
    "maintenance": "run a command while a stack is in Maintenance; it returns to Normal after (over rsgo's API)",
    "history": "a stack's history of mode changes (over rsgo's API)",
    "check": "run a stack's observer now (over rsgo's API)",
    "upgrade": "recreate a stack's services from new images, with a migration and rollback (over rsgo's API)",
    "rollback": "put back the containers a stack's last upgrade replaced (over rsgo's API)",
}

_DESCRIPTIONS = {
    "status": ("Without STACK: every stack with its mode, health, running containers and who changed it last.\n"
               "With STACK: its containers, observer and windows.",
               "rsgo status\n  rsgo status my-app --json | jq -r .operationMode"),
    "mode": ("Ask rsgo to change STACK's mode and follow the transition until it is done (the live progress\n"
             "shows on a terminal, one line per step otherwise). --no-wait returns as soon as it started.",
             'rsgo mode my-app Maintenance --reason "disk swap"\n  rsgo mode my-app Normal'),
    "maintenance": ("Put STACK into Maintenance (waiting until it is), run CMD with this process's stdin, stdout\n"
                    "and stderr, and return STACK to Normal afterwards: when CMD succeeds, fails, or this wrapper\n"
                    "gets SIGINT, SIGTERM or SIGHUP (passed on to CMD first; the wrapper waits for CMD to end).\n"
                    "A stack that was already in Maintenance, or that someone changed meanwhile, is left as it is.\n"
                    "--for makes it a maintenance window that rsgo ends by itself after DURATION, even if this\n"
                    "process is killed or its machine dies. The wrapper's own messages go to stderr.",
                    'rsgo maintenance my-app --reason "nightly backup" --for 1h -- pg_dump -Fc -f app.dump app\n'
                    "  # from cron, with the token in a file (never on the command line):\n"
                    "  RSGO_TOKEN_FILE=/etc/rsgo/backup.token rsgo maintenance my-app --for 1h -- /opt/backup.sh"),
    "history": ("STACK's mode changes, newest first: who, from where, why, and what came of it.",
                "rsgo history my-app --limit 5"),
    "check": ("Run STACK's observer now and act on what it reads, as a scheduled check would.",
              "rsgo check my-app"),
    "upgrade": ("Recreate STACK's named services from new images in Migrating: every image is pulled first (a\n"
                "missing one stops nothing), dependents stop with them, the optional migration runs from the new\n"
                "image, each dependency level must be healthy before the next starts. A failure puts the previous\n"
                "containers back (Normal if no migration ran, else Failed). Follows it to its end.",
                "rsgo upgrade shop --image api=registry.example.com/shop/api:2.1 --migrate './manage migrate' "
                '--reason "release 2.1"'),
    "rollback": ("Put back the containers STACK's last succeeded upgrade replaced (rsgo keeps them, stopped,\n"
                 "until the next upgrade succeeds; no registry is needed). Follows it to its end.",
                 'rsgo rollback shop --reason "2.1 is slow"'),
}

_MAINTENANCE_CODES = """exit codes: CMD's exit code (128+N when CMD ended by signal N, or when this wrapper got signal N
and CMD exited 0; 127 if CMD was not found). When Maintenance could not be entered, CMD is not run
and the code says why; when the stack could not be returned to Normal, the code says why and the
message names the command that ends the Maintenance:
""" + EXIT_CODES.split("\n", 1)[1]


def _parser(name: str) -> ClientParser:
    description, example = _DESCRIPTIONS[name]
    codes = _MAINTENANCE_CODES if name == "maintenance" else EXIT_CODES
    parser = ClientParser(prog=f"rsgo {name}", description=description,
                          epilog=f"example:\n  {example}\n\n{CONNECTION_HELP}\n\n{codes}",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    if name == "maintenance":
        parser.usage = ("rsgo maintenance STACK [--reason R] [--for DURATION] [--environment E] [--url URL] "
                        "[--token-file FILE] -- CMD [ARGS...]")
    return parser


def _connection(parser: ClientParser, *, json: bool = True) -> None:
    parser.add_argument("--environment", metavar="E",
                        help="the engine the stack is on, when its name exists on several")
    parser.add_argument("--url", help="rsgo's address (default: RSGO_URL, else http://localhost:8080)")
    parser.add_argument("--token-file", metavar="FILE", help="a file holding the API token (default: "
                                                             "RSGO_TOKEN_FILE or RSGO_TOKEN)")
    if json:
        parser.add_argument("--json", action="store_true", help="print rsgo's JSON answer (for scripts)")


def parser_for(name: str) -> ClientParser:
    parser = _parser(name)
    if name == "status":
        parser.add_argument("stack", nargs="?", metavar="STACK")
    elif name == "mode":
        parser.add_argument("stack", metavar="STACK")
        parser.add_argument("mode", metavar="MODE", help="Normal, Maintenance, Migrating, Failed or Stopped")
        parser.add_argument("--reason", help="why (shown in the history)")
        parser.add_argument("--force", action="store_true",
                            help="end Maintenance an observer owns while it still reads maintenance")
        parser.add_argument("--no-wait", action="store_true", help="return once the transition has started")
    elif name == "maintenance":
        parser.add_argument("stack", metavar="STACK")
        parser.add_argument("--reason", help="why (shown in the history and on the dashboard)")
        parser.add_argument("--for", dest="duration", metavar="DURATION",
                            help="e.g. 45m or 2h: rsgo ends the Maintenance by itself after that long")
    elif name == "upgrade":
        parser.add_argument("stack", metavar="STACK")
        parser.add_argument("--image", action="append", metavar="SERVICE=IMAGE",
                            help="a compose service (or container name) and its new image; repeat for more")
        parser.add_argument("--migrate", metavar="CMD", help="a migration command, run once from the new image")
        parser.add_argument("--migrate-service", metavar="SERVICE",
                            help="whose new image, environment and volumes the migration runs with "
                                 "(default: the one --image service)")
        parser.add_argument("--migration-timeout", metavar="DURATION", help="default 15m")
        parser.add_argument("--pull", choices=("missing", "always"), default="missing",
                            help="pull only images not present (default) or always")
        parser.add_argument("--health-timeout", metavar="DURATION", help="how long a container may take to be "
                                                                         "healthy (default 2m)")
        parser.add_argument("--stable-for", metavar="DURATION", help="how long one without a healthcheck must run "
                                                                     "without a restart (default 10s)")
        parser.add_argument("--reason", help="why (shown in the history)")
        parser.add_argument("--no-wait", action="store_true", help="return once the upgrade has started")
    elif name == "rollback":
        parser.add_argument("stack", metavar="STACK")
        parser.add_argument("--reason", help="why (shown in the history)")
        parser.add_argument("--no-wait", action="store_true", help="return once the rollback has started")
    elif name == "history":
        parser.add_argument("stack", metavar="STACK")
        parser.add_argument("--limit", type=int, default=20, help="how many entries (1-500, default 20)")
    else:
        parser.add_argument("stack", metavar="STACK")
    _connection(parser, json=name != "maintenance")
    return parser
