"""The rsgo client: commands that talk to a running rsgo over its HTTP API (README "Scripts").

``rsgo.cli`` hands it every command named in ``COMMANDS``; the admin commands (serve, check-config,
user, token) work on the data directory instead and stay in ``rsgo.cli``.
"""

from __future__ import annotations

import os
import sys

from rsgo.client import commands, upgrade
from rsgo.client.arguments import COMMANDS, parser_for
from rsgo.client.http import Api, ClientError, base_url, read_token
from rsgo.client.maintenance import Wrapper
from rsgo.client.output import print_json

__all__ = ["COMMANDS", "run"]


def _maintenance(api: Api, args) -> int:
    return Wrapper(api, args.stack, args.command, reason=args.reason, duration=args.duration).run()


HANDLERS = {"status": commands.status, "mode": commands.mode, "history": commands.history,
            "check": commands.check, "maintenance": _maintenance, "upgrade": upgrade.upgrade,
            "rollback": upgrade.rollback}


def run(argv: list[str]) -> int:
    """``argv`` starts with the command's name; the exit code (README "Scripts")."""
    name, rest = argv[0], argv[1:]
    parser = parser_for(name)
    command = []
    if name == "maintenance" and "--" in rest:
        split = rest.index("--")
        rest, command = rest[:split], rest[split + 1:]
    if name == "maintenance" and not command and not {"-h", "--help"} & set(rest):
        parser.error("give the command to run after --: rsgo maintenance STACK [OPTIONS] -- CMD [ARGS...]")
    args = parser.parse_args(rest)
    args.command = command
    try:
        api = Api(base_url(args.url), read_token(args.token_file), args.environment)
        return HANDLERS[name](api, args)
    except ClientError as error:
        if getattr(args, "json", False) and error.problem:
            print_json(error.problem)
        print(f"rsgo: {error}", file=sys.stderr)
        return error.exit_code
    except BrokenPipeError:
        # The reader went away (`rsgo status | head -1`): nothing more to say, and nobody to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("rsgo: interrupted (a change already asked for goes on in rsgo: see rsgo status)", file=sys.stderr)
        return 130
