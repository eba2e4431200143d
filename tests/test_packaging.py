"""The wheel: ``pip wheel .`` installed into a fresh venv serves the dashboard with its CSS.

The repository keeps ``templates/`` and ``static/`` at its top level; pyproject.toml ships them
inside the package (``rsgo/templates``, ``rsgo/static``). This test builds the wheel from a
snapshot of the tree (the build writes ``build/`` and ``*.egg-info`` next to the sources, and
others may edit the tree meanwhile), installs it with ``--no-deps`` into a new venv whose only
other packages are the project venv's (one ``.pth`` line: nothing is downloaded but the build
backend), and runs ``rsgo serve`` from there, outside the repository. Nothing is skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ["pyproject.toml", "README.md", "rsgo", "templates", "static"]

pytestmark = pytest.mark.timeout(420)


def _run(*command, timeout: float, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                            cwd=cwd)
    assert result.returncode == 0, f"{command} exited with {result.returncode}:\n{result.stdout[-3000:]}\n" \
                                   f"{result.stderr[-3000:]}"
    return result


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(the source snapshot, the wheel built from it)."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    source.mkdir()
    for name in SNAPSHOT:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, source / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--quiet",
         "--wheel-dir", work / "wheels", source, timeout=300, cwd=work)
    (wheel,) = (work / "wheels").glob("rsgo-*.whl")
    return source, wheel


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable); the dependencies come from the project venv."""
    _, wheel = built
    root = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", root, timeout=120, cwd=root)
    python = root / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--quiet", wheel, timeout=120, cwd=root)
    site_packages = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                              timeout=30, cwd=root).stdout.strip())
    # A plain path line: appended after the venv's own site-packages, and the project venv's .pth
    # files (its editable rsgo among them) are not run, so `import rsgo` finds the installed wheel.
    (site_packages / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def test_the_wheel_holds_every_module_template_and_static_file(built):
    source, wheel = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {str(path.relative_to(source)) for path in (source / "rsgo").rglob("*.py")}
    expected |= {"rsgo/" + str(path.relative_to(source)) for folder in ("templates", "static")
                 for path in (source / folder).rglob("*") if path.is_file()}
    assert expected - names == set(), "missing from the wheel (a new package not listed in pyproject.toml?)"


def test_the_installed_wheel_serves_the_login_page_with_its_css(venv, tmp_path):
    located = _run(venv / "bin" / "python", "-c", "import rsgo.assets as a; print(a.__file__); "
                   "print(a.asset_folder('templates')); print(a.asset_folder('static'))", timeout=60, cwd=tmp_path)
    module, templates, static = located.stdout.split()
    for path in (module, templates, static):
        assert path.startswith(str(venv)), f"{path} is not inside the installed package"

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("RSGO_", "PYTHON"))}
    environ.update(RSGO_DATA_DIR=str(tmp_path / "data"), RSGO_HOST="127.0.0.1", RSGO_PORT=str(port),
                   RSGO_ADMIN_PASSWORD="packaging-admin-password")
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([venv / "bin" / "rsgo", "serve"], env=environ, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"rsgo serve exited with {server.returncode}:\n{log_path.read_text()}"
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"rsgo serve did not answer /healthz:\n{log_path.read_text()}"
            time.sleep(0.2)

        login = requests.get(f"{url}/login", timeout=10)
        assert login.status_code == 200, login.text
        assert 'name="csrf_token"' in login.text
        stylesheets = re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', login.text)
        assert any("rsgo.css" in href for href in stylesheets), stylesheets
        for href in stylesheets:
            css = requests.get(requests.compat.urljoin(url + "/login", href), timeout=10)
            assert css.status_code == 200, (href, css.status_code)
            assert css.headers["Content-Type"].startswith("text/css"), (href, css.headers["Content-Type"])
            assert css.content, href
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=40)
