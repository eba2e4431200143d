"""Health in mode context (rsgo/health.py): a finished one-shot job is completed, not a fault."""

from __future__ import annotations

from dataclasses import replace

from rsgo.docker_ops import ContainerInfo
from rsgo.docker_ops.containers import _from_inspect, _from_summary
from rsgo.health import assess, completed
from rsgo.modes import Mode


def _container(name: str, state: str = "running", exit_code: int | None = None, **labels) -> ContainerInfo:
    return ContainerInfo(id=name, name=name, image="x", state=state, health="none", labels=labels,
                         exit_code=exit_code)


def test_a_job_that_exited_0_by_itself_is_completed_and_needs_nobody():
    stack = [_container("api"), _container("migrate", "exited", 0)]
    health = assess(Mode.NORMAL, stack, stopped_set=set(), engine_problem=None)
    assert (health.status, health.needs_attention, health.problems) == ("Healthy", False, ())
    assert completed(stack[1], set())


def test_an_exit_code_other_than_0_still_needs_attention_and_says_the_code():
    stack = [_container("api"), _container("migrate", "exited", 0), _container("import", "exited", 3)]
    health = assess(Mode.NORMAL, stack, stopped_set=set(), engine_problem=None)
    assert (health.status, health.needs_attention) == ("Degraded", True)
    assert health.problems == ("import exited with code 3",)


def test_a_container_rsgo_stopped_is_not_a_finished_job():
    # Stopped by rsgo in Maintenance, it exited 0 too; back in Normal it must run again, or someone must look.
    api = _container("api", "exited", 0)
    assert not completed(api, {"api"})
    health = assess(Mode.NORMAL, [api, _container("db")], stopped_set={"api"}, engine_problem=None)
    assert (health.status, health.needs_attention, health.problems) == ("Degraded", True, ("api exited with code 0",))


def test_a_service_stopped_by_hand_that_exited_0_is_down_not_done():
    # docker stop: the app ended cleanly on SIGTERM (0), but someone asked it to stop (rsgo saw the event).
    web = replace(_container("web", "exited", 0), stop_requested=True)
    assert not completed(web, set())
    health = assess(Mode.NORMAL, [web, _container("db")], stopped_set=set(), engine_problem=None)
    assert (health.status, health.needs_attention, health.problems) == ("Degraded", True, ("web exited with code 0",))


def test_every_running_container_down_is_unhealthy_even_beside_a_finished_job():
    stack = [_container("api", "exited", 137), _container("migrate", "exited", 0)]
    assert assess(Mode.NORMAL, stack, set(), None).status == "Unhealthy"


def test_a_finished_job_in_maintenance_is_not_a_problem_of_an_ignored_container():
    stack = [_container("seed", "exited", 0, **{"rsgo.maintenance": "ignore"}),
             _container("db", "exited", 1, **{"rsgo.maintenance": "ignore"})]
    health = assess(Mode.MAINTENANCE, stack, set(), None)
    assert health.problems == ("db should keep running in Maintenance but exited with code 1",)


def test_a_created_container_that_never_ran_has_no_exit_code():
    # Docker reports ExitCode 0 for a container that never started: that is not a completed job.
    never = _from_inspect({"Id": "c", "Name": "/c", "Config": {}, "State": {"Status": "created", "ExitCode": 0}})
    assert never.exit_code is None and not completed(never, set())
    row = {"Id": "c", "Names": ["/c"], "State": "exited", "Status": "Exited (3) 2 minutes ago"}
    assert _from_summary(row).exit_code == 3
    assert _from_inspect({"Id": "c", "Name": "/c", "Config": {}, "State": {"Status": "exited", "ExitCode": 0}}
                         ).exit_code == 0
