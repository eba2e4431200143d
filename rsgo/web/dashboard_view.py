"""The dashboard's overview (README "The dashboard"): the counts bar, the state filter and the name
search, the order (stacks that need a person first) and the fold of stacks without containers.

Everything is computed from the one list of summaries the page reads anyway (``deployment_list``: one
database snapshot, no query per stack), so counting, filtering and ordering add no query.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import render_template, url_for

from rsgo.problems import Problem
from rsgo.web import page_context, row_cache
from rsgo.web.api_json import deployment_list, environment_list

# The counts bar, in its order: the URL's ?state= value -> its label.
STATES = {"normal": "Normal", "maintenance": "Maintenance", "migrating": "Migrating", "failed": "Failed",
          "stopped": "Stopped", "attention": "Needs attention", "overdue": "Overdue"}
MAX_QUERY_LENGTH = 200  # a stack name search; a longer one is refused, never cut silently


@dataclass(frozen=True)
class Filters:
    environment: str | None = None
    state: str | None = None
    q: str = ""

    @property
    def active(self) -> bool:
        """A state or a search narrows the list (the environment is a view of its own, not a filter)."""
        return bool(self.state or self.q)

    def url(self, **changes) -> str:
        """This view's URL with ``changes`` (None drops a parameter)."""
        values = {"environment": self.environment, "state": self.state, "q": self.q or None, **changes}
        return url_for("pages.dashboard", **{key: value for key, value in values.items() if value})


def parse_filters(args) -> Filters:
    """``?environment=&state=&q=`` from the URL; an unknown state or an overlong search is a 400 that
    says what is allowed."""
    state = (args.get("state") or "").strip().lower() or None
    if state is not None and state not in STATES:
        raise Problem(400, "invalid_request", f"there is no state {state[:40]!r} to filter by "
                                              f"(known: {', '.join(STATES)})")
    q = (args.get("q") or "").strip()
    if len(q) > MAX_QUERY_LENGTH:
        raise Problem(400, "invalid_request", f"the search is {len(q)} characters long; "
                                              f"at most {MAX_QUERY_LENGTH} are allowed")
    return Filters(environment=args.get("environment") or None, state=state, q=q)


def states_of(item: dict) -> set[str]:
    """The counts bar's states a summary is in: its mode, and needs attention / overdue."""
    states = {item["operationMode"].lower()}
    if item["needsAttention"]:
        states.add("attention")
    if item["overdue"]:
        states.add("overdue")
    return states


def needs_person(item: dict) -> bool:
    return item["operationMode"] == "Failed" or bool(item["needsAttention"]) or bool(item["overdue"])


def counts(items: list[dict]) -> dict[str, int]:
    """``{"all": n, "normal": n, ..., "overdue": n}`` over ``items``."""
    result = dict.fromkeys(("all", *STATES), 0)
    for item in items:
        result["all"] += 1
        for state in states_of(item):
            if state in result:
                result[state] += 1
    return result


def _matches(item: dict, filters: Filters) -> bool:
    if filters.state and filters.state not in states_of(item):
        return False
    return not filters.q or filters.q.casefold() in item["name"].casefold()


def _without_containers(item: dict, environment: dict | None) -> bool:
    """Its containers are all gone from an engine that answers (an unreachable engine's stacks show no
    containers too, but nothing is known about them then), and it needs nobody: those fold away."""
    return (item["containers"]["total"] == 0 and environment is not None and environment["state"] == "reachable"
            and not needs_person(item))


def context(runtime, args) -> dict:
    """The dashboard's template context for ``?environment=&state=&q=``."""
    filters = parse_filters(args)
    cache = row_cache.cache_of(runtime)
    environments = environment_list(runtime, deployments=cache.listed() if cache is not None else None)
    names = [view["name"] for view in environments]
    if filters.environment is not None and filters.environment not in names:
        raise Problem(404, "not_found", f"there is no environment named {filters.environment!r} "
                                        f"(known: {', '.join(names)})")
    items = page_context.dashboard_items(
        runtime, keep=lambda d: filters.environment is None or d.environment == filters.environment)
    views = {view["name"]: view for view in environments}
    # Sorted by name already: a stable sort puts the stacks that need a person first, each part by name.
    shown = sorted((item for item in items if _matches(item, filters)), key=lambda item: not needs_person(item))
    folded = [item for item in shown if _without_containers(item, views.get(item["environment"]))]
    folded_ids = {item["id"] for item in folded}
    groups = []
    for view in environments:
        if filters.environment is not None and view["name"] != filters.environment:
            continue
        mine = [item for item in items if item["environment"] == view["name"]]
        groups.append({"environment": view, "anchor": page_context.environment_anchor(view["name"]),
                       "counts": counts(mine),
                       "items": [item for item in shown if item["environment"] == view["name"]
                                 and item["id"] not in folded_ids]})
    return {"groups": groups, "folded": folded, "counts": counts(items), "filters": filters,
            "counts_scope": scope_key(filters.environment), "shown_count": len(shown),
            "shown_environment": filters.environment, "environment_names": names, "states": STATES}


def scope_key(environment: str | None) -> str:
    """The id part of a counts bar's numbers: all environments, or one."""
    return "all" if environment is None else f"env-{page_context.environment_anchor(environment)}"


def counts_fragment(runtime) -> str:
    """Every counts bar's numbers and every environment header's summary, each marked for an
    out-of-band swap by id: a page has the ones of the view it shows, and the others are dropped there.
    The numbers alone, not whole bars: a bar's links carry the page's own search and state."""
    cache = row_cache.cache_of(runtime)
    summaries = cache.summaries(runtime) if cache is not None else [
        summary for summary, _running in deployment_list(runtime)]
    scopes = [{"key": scope_key(None), "counts": counts(summaries)}]
    summaries_of = {}
    for summary in summaries:
        summaries_of.setdefault(summary["environment"], []).append(summary)
    headers = []
    for view in environment_list(runtime, deployments=cache.listed() if cache is not None else None):
        mine = counts(summaries_of.get(view["name"], []))
        scopes.append({"key": scope_key(view["name"]), "counts": mine})
        headers.append({"anchor": page_context.environment_anchor(view["name"]), "counts": mine})
    return render_template("dashboard/_counts_push.html", scopes=scopes, headers=headers, states=STATES)
