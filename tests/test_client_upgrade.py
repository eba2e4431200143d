"""``rsgo upgrade`` and ``rsgo rollback`` (README "Upgrades") as a script runs them: the real command in a
subprocess, against a real ``rsgo serve`` and the real engine, with locally built images."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from conftest import RUN_ID, RUN_LABEL
from support import ROOT, wait_until
from test_client import client_env, one_clean_line
from upgrade_images import ComposeLikeStack, build_images, ref


@pytest.fixture(scope="module")
def images(docker_client):
    return build_images(docker_client)


@pytest.fixture
def served(make_server, docker_client, images, tmp_path):
    server = make_server()
    server.start()
    stack = ComposeLikeStack(docker_client, {RUN_LABEL: RUN_ID})
    stack.add("api")
    token = tmp_path / "token"
    token.write_text(server.create_token("operate", name="release-script") + "\n")

    def discovered():
        answer = requests.get(f"{server.url}/api/deployments/{stack.name}", headers=server.headers, timeout=30)
        return answer.status_code == 200

    wait_until(discovered, 30, message="the stack discovered")
    yield server, stack, client_env(server.url, str(token))
    stack.remove()


def rsgo(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rsgo.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_rsgo_upgrade_follows_the_upgrade_and_rollback_puts_the_old_image_back(served, images):
    server, stack, env = served
    done = rsgo(env, "upgrade", stack.name, "--image", f"api={ref('2')}", "--stable-for", "0.5s",
                "--reason", "release 2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("upgrade ") and len(lines) == len(set(lines)), "a line per status seen, once each"
    assert f"succeeded ({stack.name}-api-1: {ref('1')} → {ref('2')})" in done.stdout
    assert stack.inspect("api")["Image"] == images["2"]
    history = requests.get(f"{server.url}/api/deployments/{stack.name}/history", headers=server.headers,
                           timeout=30).json()["items"]
    assert history[1]["source"] == "cli" and history[1]["actor"] == "token:release-script"
    back = rsgo(env, "rollback", stack.name, "--json")
    assert back.returncode == 0, back.stderr
    assert '"kind": "rollback"' in back.stdout
    assert stack.inspect("api")["Image"] == images["1"]


def test_a_failed_migration_exits_3_with_its_log_and_says_the_stack_is_failed(served):
    _server, stack, env = served
    failed = rsgo(env, "upgrade", stack.name, "--image", f"api={ref('2')}", "--stable-for", "0.5s",
                  "--migrate", "sh -c 'echo schema step 1 of 2; exit 3'")
    assert failed.returncode == 3, failed.stderr
    assert "migration | schema step 1 of 2" in failed.stderr
    assert "the migration exited with code 3" in one_clean_line(failed.stderr)
    assert "the stack is Failed" in one_clean_line(failed.stderr)


def test_usage_errors_exit_1_before_anything_is_sent(served):
    _server, stack, env = served
    missing = rsgo(env, "upgrade", stack.name)
    assert missing.returncode == 1 and "--image SERVICE=IMAGE" in one_clean_line(missing.stderr)
    malformed = rsgo(env, "upgrade", stack.name, "--image", "api")
    assert malformed.returncode == 1 and "write SERVICE=IMAGE" in one_clean_line(malformed.stderr)
    unknown = rsgo(env, "upgrade", stack.name, "--image", f"payments={ref('2')}")
    assert unknown.returncode == 1 and "payments" in one_clean_line(unknown.stderr)
    assert rsgo(env, "rollback", stack.name).returncode == 2, "nothing to roll back is a refusal (409)"
