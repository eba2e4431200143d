"""Real Alertmanager and Prometheus (the Debian packages scripts/test installs) for the tests: each a
process on a free port with a config the test writes, and the README's rules as the README says them.

No pytest in here, like support.py: a helper fails with ``AssertionError`` saying what it waited for.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import requests
import yaml

from support import ROOT, wait_until

ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMETHEUS = "/usr/bin/prometheus"


class _Process:
    binary = ""
    name = ""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # The port stays bound (not listening) until start(): until then a connection is refused, and no
        # other test's server can take it meanwhile (the tests start rsgo before and after Alertmanager).
        self._reserved: socket.socket | None = socket.socket()
        self._reserved.bind(("127.0.0.1", 0))
        self.port = self._reserved.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.root / f"{self.name}.log"
        self.process: subprocess.Popen | None = None
        self.client = requests.Session()  # how the test itself reaches it (TLS and credentials, if any)

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60):
        if not os.access(self.binary, os.X_OK):
            raise AssertionError(f"{self.binary} is missing: scripts/test installs it")
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([self.binary, *self.arguments()], stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-2000:]}")
            try:
                return self.client.get(f"{self.url}/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, timeout, interval=0.1, message=f"{self.name} to be ready (log: {self.log_path})")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._reserved is not None:
            self._reserved.close()
            self._reserved = None
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


class Alertmanager(_Process):
    """``prometheus-alertmanager`` with no cluster peer, its silences kept in ``root`` across restarts.

    ``tls`` (tests/tls_material.py's files) serves HTTPS and requires a client certificate;
    ``users`` ({name: password}) requires basic auth. The test's own ``client`` carries both."""

    binary = ALERTMANAGER
    name = "alertmanager"

    def __init__(self, root: Path, config: dict | None = None, *, tls: dict | None = None,
                 users: dict[str, str] | None = None):
        super().__init__(root)
        self.config_path = self.root / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config or {"route": {"receiver": "null"},
                                                              "receivers": [{"name": "null"}]}))
        self.web_config: Path | None = None
        web: dict = {}
        if tls:
            web["tls_server_config"] = {"cert_file": str(tls["server-cert.pem"]),
                                        "key_file": str(tls["server-key.pem"]),
                                        "client_auth_type": "RequireAndVerifyClientCert",
                                        "client_ca_file": str(tls["ca.pem"])}
            self.url = f"https://127.0.0.1:{self.port}"
            self.client.verify, self.client.cert = str(tls["ca.pem"]), (str(tls["cert.pem"]), str(tls["key.pem"]))
            # Else REQUESTS_CA_BUNDLE, when set, wins over the session's own CA (a requests rule).
            self.client.trust_env = False
        if users:
            import bcrypt  # installed with paramiko; Alertmanager keeps its users' passwords as bcrypt hashes

            web["basic_auth_users"] = {name: bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
                                       for name, password in users.items()}
            self.client.auth = next(iter(users.items()))
        if web:
            self.web_config = self.root / "web.yml"
            self.web_config.write_text(yaml.safe_dump(web))

    def arguments(self) -> list[str]:
        return [f"--config.file={self.config_path}", f"--storage.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=", "--log.level=warn",
                *([f"--web.config.file={self.web_config}"] if self.web_config else [])]

    def silences(self) -> list[dict]:
        answer = self.client.get(f"{self.url}/api/v2/silences", timeout=5)
        answer.raise_for_status()
        return answer.json()

    def silence(self, silence_id: str) -> dict:
        return next(s for s in self.silences() if s["id"] == silence_id)

    def alerts(self, alertname: str) -> list[dict]:
        answer = self.client.get(f"{self.url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"'},
                              timeout=5)
        answer.raise_for_status()
        return answer.json()


class Prometheus(_Process):
    binary = PROMETHEUS
    name = "prometheus"

    def __init__(self, root: Path, config: dict, rule_files: dict[str, dict]):
        super().__init__(root)
        for name, rules in rule_files.items():
            (self.root / name).write_text(yaml.safe_dump(rules))
        self.config_path = self.root / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump({**config, "rule_files": [str(self.root / n) for n in rule_files]}))

    def arguments(self) -> list[str]:
        # A resend delay of 1 s: a firing alert reaches Alertmanager again within a second of any change there.
        return [f"--config.file={self.config_path}", f"--storage.tsdb.path={self.root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--rules.alert.resend-delay=1s", "--log.level=warn"]

    def alert_states(self) -> dict[str, str]:
        answer = requests.get(f"{self.url}/api/v1/alerts", timeout=5)
        answer.raise_for_status()
        return {alert["labels"]["alertname"]: alert["state"] for alert in answer.json()["data"]["alerts"]}

    def target_health(self) -> list[tuple[str, str]]:
        answer = requests.get(f"{self.url}/api/v1/targets", timeout=5)
        answer.raise_for_status()
        return [(t["health"], t.get("lastError", "")) for t in answer.json()["data"]["activeTargets"]]


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    if match is None:
        raise AssertionError(f"README.md has no section {title!r}")
    return match.group(1)


def readme_rules() -> tuple[dict, list[dict]]:
    """The README's Prometheus rule file and its Alertmanager ``inhibit_rules`` (section "Metrics"), as
    written there: one YAML block, the rule file first, then ``# alertmanager.yml``."""
    blocks = re.findall(r"```yaml\n(.*?)```", readme_section("Metrics"), re.S)
    block = next((b for b in blocks if "# Prometheus rule" in b and "# alertmanager.yml" in b), None)
    if block is None:
        raise AssertionError("README 'Metrics' has no YAML block with '# Prometheus rule' and '# alertmanager.yml'")
    rules, inhibition = block.split("# alertmanager.yml", 1)
    return yaml.safe_load(rules), yaml.safe_load(inhibition)["inhibit_rules"]
