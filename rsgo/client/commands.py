"""``rsgo status``, ``history``, ``mode`` and ``check``: one API call each (and following a transition)."""

from __future__ import annotations

import functools
import sys
import time

from rsgo.client.http import FAILED, USAGE, Api, ClientError, retrying
from rsgo.client.output import Progress, key_values, print_json, progress_text, table, trigger_text, when

POLL_SECONDS = 0.3
FOLLOW_RETRY_SECONDS = 60  # rsgo restarting while a transition runs: it resumes it, the client waits


def follow(api: Api, transition: dict, progress: Progress | None) -> dict:
    """Poll the transition until it is no longer running; the finished transition."""
    read = functools.partial(api.transition, transition["id"])
    while True:
        if progress is not None:
            progress.show(transition)
        if transition.get("outcome") != "running":
            break
        time.sleep(POLL_SECONDS)
        transition = retrying(read, seconds=FOLLOW_RETRY_SECONDS)
    if progress is not None:
        progress.done()
    return transition


def settle(api: Api, ref: str, progress_stream) -> dict:
    """The stack's operation mode once no transition is running (following one that is)."""
    while True:
        state = api.stack("GET", ref, "/operation-mode").body
        running = state.get("transitionInProgress")
        if not running:
            return state
        transition = api.transition(running["id"])
        follow(api, transition, Progress(progress_stream, f"{ref} -> {transition.get('targetMode')}"))


def request_mode(api: Api, ref: str, mode: str, *, reason: str | None, force: bool = False) -> dict:
    """``PUT .../operation-mode`` without waiting: 200 (noop) or 202 (running, with its transition)."""
    body = {"newMode": mode, "wait": False, "force": force, "source": "cli"}
    if reason is not None:
        body["reason"] = reason
    return api.stack("PUT", ref, "/operation-mode", body=body).body


def mode(api: Api, args) -> int:
    answer = request_mode(api, args.stack, args.mode, reason=args.reason, force=args.force)
    name = answer.get("deployment", {}).get("name", args.stack)
    transition = answer.get("transition")
    if answer.get("outcome") == "running" and not args.no_wait:
        stream = sys.stderr if args.json else sys.stdout
        transition = follow(api, transition, Progress(stream, f"{name} -> {answer.get('newMode')}"))
        answer = {**answer, "outcome": transition["outcome"], "success": transition["outcome"] == "succeeded",
                  "transition": transition, "deployment": api.stack("GET", args.stack).body}
    outcome = answer.get("outcome")
    if args.json:
        print_json(answer)
    elif outcome == "running":
        print(f"{name} is changing from {answer.get('previousMode')} to {answer.get('newMode')}: transition "
              f"{transition['id']} ({transition.get('url')}); see it with: rsgo status {args.stack}")
    elif outcome == "succeeded":
        print(f"{name} changed from {answer.get('previousMode')} to {answer.get('newMode')} "
              f"({progress_text(transition)})")
    elif outcome != "failed":
        print(answer.get("message") or f"{name}: {outcome}")
    if outcome == "failed":
        raise ClientError(f"{name} is now Failed: {transition.get('error') or 'a container action failed'}", FAILED)
    return 0


def _deployment_rows(items: list[dict]) -> list[list]:
    rows = []
    for item in items:
        changing = " (changing)" if item.get("transitionInProgress") else ""
        containers = item.get("containers") or {}
        rows.append([item.get("name"), item.get("environment"), f"{item.get('operationMode')}{changing}",
                     item.get("health"), f"{containers.get('running', 0)}/{containers.get('total', 0)}",
                     when(item.get("modeChangedAt")), trigger_text(item.get("trigger")),
                     (item.get("trigger") or {}).get("reason") or ""])
    return rows


def _environment_names(api: Api) -> list[str]:
    return [env.get("name") for env in api.call("GET", "/api/environments").body.get("items", [])]


def status(api: Api, args) -> int:
    if args.stack:
        detail = api.stack("GET", args.stack).body
        if args.json:
            print_json(detail)
        else:
            print(_detail_text(detail))
        return 0
    items = api.call("GET", "/api/deployments").body.get("items", [])
    if args.environment:
        known = _environment_names(api)
        if args.environment not in known:
            raise ClientError(f"no environment {args.environment} (known: {', '.join(known) or 'none'})", USAGE)
        items = [item for item in items if item.get("environment") == args.environment]
    if args.json:
        print_json({"items": items})
    elif not items:
        print("no stacks yet (rsgo lists containers labelled rsgo.stack=NAME)")
    else:
        print(table(["STACK", "ENVIRONMENT", "MODE", "HEALTH", "RUNNING", "SINCE", "BY", "REASON"],
                    _deployment_rows(items)))
    return 0


def _detail_text(detail: dict) -> str:
    trigger = detail.get("trigger") or {}
    pairs = [("stack", detail.get("name")), ("environment", detail.get("environment")),
             ("mode", detail.get("operationMode")), ("since", when(detail.get("modeChangedAt"))),
             ("by", trigger_text(trigger)), ("reason", trigger.get("reason") or "-"),
             ("health", detail.get("health"))]
    pairs += [("problem", problem) for problem in detail.get("problems") or []]
    if detail.get("transitionInProgress"):
        pairs.append(("changing", f"transition {detail['transitionInProgress']['id']}"))
    observer = detail.get("observer")
    if observer:
        pairs.append(("observer", f"{observer.get('type')} {observer.get('target')}: {observer.get('state')}, "
                                  f"last read {observer.get('lastValue')!r}"))
    pairs += [("window", _window_text(window)) for window in detail.get("windows") or []]
    pairs.append(("allowed modes", ", ".join(detail.get("allowedModes") or []) or "-"))
    text = key_values(pairs)
    containers = detail.get("containers") or []
    if containers:
        rows = [[c.get("name"), c.get("kind"), c.get("state"), c.get("health") or "",
                 "ignored" if c.get("ignored") else ("stopped by rsgo" if c.get("inStoppedSet") else "")]
                for c in containers]
        text += "\n\n" + table(["CONTAINER", "KIND", "STATE", "HEALTH", "NOTE"], rows)
    return text


def _window_text(window: dict) -> str:
    span = window.get("cron") or f"{when(window.get('start'))} - {when(window.get('end'))}"
    return f"{window.get('name')} ({span}){' active now' if window.get('active') else ''}"


def history(api: Api, args) -> int:
    answer = api.stack("GET", args.stack, "/history", params={"limit": args.limit}).body
    if args.json:
        print_json(answer)
        return 0
    rows = [[when(e.get("requestedAt")), _change_text(e), e.get("outcome"), e.get("source"), e.get("actor"),
             " ".join(part for part in (e.get("reason"), e.get("error") and f"[{e['error']}]") if part)]
            for e in answer.get("items", [])]
    print(table(["TIME", "CHANGE", "OUTCOME", "SOURCE", "ACTOR", "REASON"], rows) if rows else "no history yet")
    return 0


def _change_text(entry: dict) -> str:
    requested, new = entry.get("requestedMode") or entry.get("newMode"), entry.get("newMode")
    became = f" (became {new})" if entry.get("outcome") == "failed" and new and new != requested else ""
    return f"{entry.get('previousMode')} -> {requested}{became}"


def check(api: Api, args) -> int:
    observer = api.stack("POST", args.stack, "/observer/check").body
    state = api.stack("GET", args.stack, "/operation-mode").body
    if args.json:
        print_json(observer)
        return 0
    pairs = [("observer", f"{observer.get('type')} {observer.get('name') or ''}".strip()),
             ("target", observer.get("target")), ("read", repr(observer.get("lastValue"))),
             ("decision", observer.get("lastDecision") or "-"), ("state", observer.get("state"))]
    if observer.get("error"):
        pairs.append(("error", f"{observer['error']} ({observer.get('failures')} failure(s) in a row)"))
    pairs += [("next check", when(observer.get("nextCheckAt"))),
              ("mode", f"{state.get('operationMode')} since {when(state.get('modeChangedAt'))} by "
                       f"{trigger_text(state.get('trigger'))}")]
    print(key_values(pairs))
    return 0
