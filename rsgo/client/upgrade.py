"""``rsgo upgrade`` and ``rsgo rollback``: start one over the API and follow it to its end (README "Upgrades")."""

from __future__ import annotations

import functools
import sys
import time

from rsgo.client.http import FAILED, USAGE, Api, ClientError, retrying
from rsgo.client.output import print_json

POLL_SECONDS = 0.5
FOLLOW_RETRY_SECONDS = 300  # rsgo restarting mid-upgrade rolls it back at its start: the client waits for that
LOG_LINES_SHOWN = 20


def _images(pairs: list[str]) -> dict[str, str]:
    images = {}
    for pair in pairs:
        service, separator, ref = pair.partition("=")
        if not separator or not service.strip() or not ref.strip():
            raise ClientError(f"--image {pair!r}: write SERVICE=IMAGE, e.g. --image api=shop/api:2.1", USAGE)
        images[service.strip()] = ref.strip()
    return images


def upgrade_body(args) -> dict:
    """The request the arguments describe; a usage error before anything is sent."""
    images = _images(args.image or [])
    if not images:
        raise ClientError("name at least one service and its new image: --image SERVICE=IMAGE", USAGE)
    body: dict = {"images": images, "wait": False, "source": "cli", "pull": args.pull}
    for field, value in (("reason", args.reason), ("healthTimeout", args.health_timeout),
                         ("stableFor", args.stable_for)):
        if value is not None:
            body[field] = value
    if args.migrate is not None:
        service = args.migrate_service
        if service is None:
            if len(images) != 1:
                raise ClientError("--migrate runs from one service's new image: name it with --migrate-service",
                                  USAGE)
            service = next(iter(images))
        body["migration"] = {"service": service, "command": args.migrate}
        if args.migration_timeout is not None:
            body["migration"]["timeout"] = args.migration_timeout
    return body


def _line(upgrade: dict) -> str:
    step = next((s for s in reversed(upgrade.get("steps") or []) if s.get("result") == "running"), None)
    doing = f" ({step['step']})" if step and step["step"] != upgrade.get("status") else ""
    return f"{upgrade.get('kind')} {upgrade.get('id')}: {upgrade.get('status')}{doing}"


def follow(api: Api, upgrade: dict, stream) -> dict:
    """Poll the upgrade until it has finished, one line per new status or step; the finished upgrade."""
    read = functools.partial(api.call, "GET", f"/api/upgrades/{int(upgrade['id'])}")
    last = None
    while True:
        line = _line(upgrade)
        if line != last:
            print(line, file=stream, flush=True)
            last = line
        if upgrade.get("finished"):
            return upgrade
        time.sleep(POLL_SECONDS)
        upgrade = retrying(read, seconds=FOLLOW_RETRY_SECONDS).body


def _report(args, upgrade: dict) -> int:
    if args.json:
        print_json(upgrade)
    changes = ", ".join(f"{c['name']}: {(c.get('from') or {}).get('ref')} → {(c.get('to') or {}).get('ref')}"
                        for c in upgrade.get("containers") or [] if c.get("role") == "recreate")
    if upgrade.get("status") == "succeeded":
        if not args.json:
            print(f"{args.stack}: {upgrade['kind']} {upgrade['id']} succeeded ({changes})")
        return 0
    migration = upgrade.get("migration") or {}
    for line in (migration.get("log") or [])[-LOG_LINES_SHOWN:]:
        print(f"  migration | {line}", file=sys.stderr)
    what = "rolled back; the stack is Normal" if upgrade.get("status") == "rolled-back" else "the stack is Failed"
    raise ClientError(f"{args.stack}: {upgrade['kind']} {upgrade['id']} {upgrade.get('status')}: "
                      f"{upgrade.get('error')} ({what})", FAILED)


def _start(api: Api, args, suffix: str, body: dict) -> int:
    started = api.stack("POST", args.stack, suffix, body=body).body
    if args.no_wait:
        if args.json:
            print_json(started)
        else:
            print(f"{args.stack}: {started['kind']} {started['id']} started; follow it at {started['url']}")
        return 0
    return _report(args, follow(api, started, sys.stderr if args.json else sys.stdout))


def upgrade(api: Api, args) -> int:
    return _start(api, args, "/upgrade", upgrade_body(args))


def rollback(api: Api, args) -> int:
    body = {"wait": False, "source": "cli", **({"reason": args.reason} if args.reason is not None else {})}
    return _start(api, args, "/rollback", body)
