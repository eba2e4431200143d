"""Unit tests at one seam: dependency levels and plans from ContainerInfo values (no Docker)."""

from __future__ import annotations

import pytest

from rsgo.docker_ops import ContainerInfo
from rsgo.lifecycle import DependencyCycle, dependency_levels, plan, stop_grace
from rsgo.modes import Mode


def container(name, state="running", **labels):
    return ContainerInfo(id=name, name=name, image="x", state=state, health="none",
                         labels={"rsgo.stack": "s", **{k.replace("_", "."): v for k, v in labels.items()}})


def test_levels_follow_both_label_styles():
    db = container("db", com_docker_compose_service="db")
    api = ContainerInfo(id="api", name="app-api-1", image="x", state="running", health="none",
                        labels={"rsgo.stack": "s", "com.docker.compose.service": "api",
                                "com.docker.compose.depends_on": "db:service_healthy:false,cache:service_started:true"})
    web = ContainerInfo(id="web", name="web", image="x", state="running", health="none",
                        labels={"rsgo.stack": "s", "rsgo.depends_on": "api, db"})
    assert dependency_levels([db, api, web]) == {"db": 0, "app-api-1": 1, "web": 2}


def test_a_cycle_names_its_members():
    a = ContainerInfo(id="a", name="a", image="x", state="running", health="none", labels={"rsgo.depends_on": "b"})
    b = ContainerInfo(id="b", name="b", image="x", state="running", health="none", labels={"rsgo.depends_on": "c"})
    c = ContainerInfo(id="c", name="c", image="x", state="running", health="none", labels={"rsgo.depends_on": "a"})
    with pytest.raises(DependencyCycle, match="a -> b -> c -> a"):
        dependency_levels([a, b, c])


def test_maintenance_plan_ignores_labelled_and_stopped_containers():
    db = ContainerInfo(id="db", name="db", image="x", state="running", health="none",
                       labels={"rsgo.maintenance": " Ignore "})
    job = container("job", state="exited")
    api = container("api")
    actions = {a.container_name: (a.action, a.result) for a in plan(Mode.MAINTENANCE, [db, job, api], set())}
    assert actions == {"db": ("none", "ignored"), "job": ("none", "already-stopped"), "api": ("stop", None)}
    stopped = {a.container_name: a.action for a in plan(Mode.STOPPED, [db, job, api], set())}
    assert stopped == {"db": "stop", "job": "none", "api": "stop"}


def test_normal_plan_starts_only_the_stopped_set_and_notes_missing_ones():
    actions = {a.container_name: (a.action, a.result)
               for a in plan(Mode.NORMAL, [container("api", "exited"), container("job", "exited")], {"api", "gone"})}
    assert actions == {"api": ("start", None), "gone": ("none", "missing")}


def test_grace_comes_from_the_label_then_the_container_then_the_default():
    labelled = ContainerInfo(id="a", name="a", image="x", state="running", health="none",
                             labels={"rsgo.stop_timeout": "1m"}, own_stop_timeout=5)
    own = ContainerInfo(id="b", name="b", image="x", state="running", health="none", own_stop_timeout=5)
    plain = ContainerInfo(id="c", name="c", image="x", state="running", health="none")
    assert (stop_grace(labelled, 10), stop_grace(own, 10), stop_grace(plain, 10)) == (60, 5, 10)
