"""Settings: declared once, parsed strictly, documented in the README."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rsgo.settings import SETTINGS, SettingsError, load_settings, parse_duration

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_documents_every_setting_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `((?:RSGO_|DATABASE_)[A-Z_]+)` \|", readme, flags=re.MULTILINE))
    assert documented == {s.name for s in SETTINGS}


def test_defaults_parse():
    settings = load_settings({})
    assert settings.port == 8080
    assert settings.enforce_modes is True
    assert settings.resync_interval == 30
    assert settings.host == "0.0.0.0"  # every route but the probes needs a sign-in or a token


@pytest.mark.parametrize("name, value", [
    ("RSGO_PORT", "eighty"), ("RSGO_PORT", "70000"), ("RSGO_ENFORCE_MODES", "maybe"),
    ("RSGO_RESYNC_INTERVAL", "5 minutes"), ("RSGO_RESYNC_INTERVAL", "0s"), ("RSGO_ACTION_CONCURRENCY", "-1"),
    ("RSGO_LOG_LEVEL", "LOUD"), ("RSGO_THREADS", "-1"),
])
def test_a_bad_value_is_refused_naming_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}: "):
        load_settings({name: value})


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1m30s", 90), ("45", 45),
                                           ("250ms", 0.25)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_secrets_can_come_from_a_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("s3cret\n")
    assert load_settings({"RSGO_SECRET_KEY_FILE": str(secret)}).secret_key == "s3cret"


def test_a_secret_given_twice_or_unreadable_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="RSGO_SECRET_KEY and RSGO_SECRET_KEY_FILE"):
        load_settings({"RSGO_SECRET_KEY": "a", "RSGO_SECRET_KEY_FILE": str(tmp_path)})
    with pytest.raises(SettingsError, match="RSGO_SECRET_KEY_FILE: cannot read"):
        load_settings({"RSGO_SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_the_command_stops_at_start_up_naming_the_bad_variable(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rsgo.cli", "serve"], capture_output=True, text=True,
                            env={"RSGO_PORT": "http", "RSGO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            timeout=60, cwd=ROOT)
    assert result.returncode == 2
    assert "RSGO_PORT" in result.stderr and "'http' is not a whole number" in result.stderr


def test_check_config_accepts_good_settings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rsgo.cli", "check-config"], capture_output=True, text=True,
                            env={"RSGO_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "settings ok" in result.stdout


def test_the_generated_secret_key_is_private_and_kept(tmp_path):
    from rsgo import create_app

    settings = load_settings({"RSGO_DATA_DIR": str(tmp_path)})
    first = create_app(settings, background=False).config["SECRET_KEY"]
    second = create_app(settings, background=False).config["SECRET_KEY"]
    assert first == second and len(first) >= 32
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
