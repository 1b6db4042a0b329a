"""docker/: what can be checked without a Docker engine (none here, nor `docker compose`).

compose.yaml is parsed and its wiring checked; the services' commands are checked against
the real tools (every flag they use exists) and two of them are run natively: the MLflow
server with compose's flags (its --allowed-hosts must accept the `mlflow:5000` Host header
the other containers send) and the dashboard's shell entrypoint.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo.settings import Settings, redact

DOCKER = Path(__file__).parent.parent / "docker"
BIN = Path(sys.executable).parent
PLACEHOLDERS = {"POSTGRES_PASSWORD": "s3cret-pw", "RAY_AUTH_TOKEN": "tok"}
_VAR = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _substitute(value: Any) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, with the placeholders set."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: PLACEHOLDERS.get(m[1], m[2] or ""), value).replace("$$", "$")
    if isinstance(value, list):
        return [_substitute(v) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, Any]:
    return dict(_substitute(raw["services"]))


def _command(service: dict[str, Any]) -> list[str]:
    entrypoint = service.get("entrypoint", ["hpo"])
    return [*entrypoint, *service.get("command", [])]


def test_services_health_checks_and_ports(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "mlflow", "dashboard", "ray-head", "ray-worker", "hpo"}
    for name in ("postgres", "mlflow", "dashboard", "ray-head"):
        assert services[name]["healthcheck"]["test"], name
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    published = [p for s in services.values() for p in s.get("ports", [])]
    assert published == ["127.0.0.1:5000:5000", "127.0.0.1:8080:8080"]
    # Scalable: no fixed name or host port on the workers.
    assert not {"container_name", "ports"} & set(services["ray-worker"])
    for name, service in services.items():
        for needed, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[needed], (name, needed)


def test_driver_and_workers_are_wired_by_environment(services: dict[str, Any]) -> None:
    driver = services["hpo"]
    assert _command(driver)[:2] == ["hpo", "study"]
    assert "--address" in driver["command"]
    assert driver["command"][driver["command"].index("--address") + 1] == "ray-head:6379"
    env = driver["environment"]
    settings = Settings.resolve(env=env)  # the URL's driver (psycopg) is installed
    assert settings.storage_url.startswith("postgresql+psycopg://hpo:")
    assert "@postgres:5432/optuna" in settings.storage_url
    assert "s3cret-pw" not in redact(settings.storage_url)
    assert settings.tracking_uri == "http://mlflow:5000"
    mlflow_cmd = _command(services["mlflow"])
    assert mlflow_cmd[mlflow_cmd.index("--port") + 1] == "5000"
    assert "@postgres:5432/mlflow" in mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1]
    # Trials write under HPO_HOME and read /data on the workers: same volumes everywhere.
    for name in ("ray-head", "ray-worker", "hpo"):
        assert services[name]["volumes"] == driver["volumes"], name
        assert services[name]["environment"] == env, name  # one Ray token, one storage
    assert env["HPO_HOME"].startswith("/hpo/")
    assert any(v.startswith("hpo-home:/hpo") for v in driver["volumes"])
    assert any(v.endswith(":/data:ro") for v in driver["volumes"])
    assert "--address" in _command(services["ray-worker"])


def test_no_secret_in_the_files(raw: dict[str, Any]) -> None:
    text = (DOCKER / "compose.yaml").read_text()
    # Secrets come from docker/.env only, with no default to fall back on.
    assert re.findall(r"\$\{(POSTGRES_PASSWORD|RAY_AUTH_TOKEN)([^}]*)\}", text)
    assert all(rest.startswith(":?") for _, rest in re.findall(
        r"\$\{(POSTGRES_PASSWORD|RAY_AUTH_TOKEN)([^}]*)\}", text))
    example = dict(
        line.split("=", 1) for line in (DOCKER / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example["POSTGRES_PASSWORD"] == example["RAY_AUTH_TOKEN"] == "change-me"
    ignored = (DOCKER.parent / ".gitignore").read_text().splitlines()
    assert "docker/.env" in ignored


def _flags(command: list[str]) -> set[str]:
    return {part.split("=")[0] for part in command if part.startswith("--")}


def _help(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_every_flag_in_the_commands_exists(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]["entrypoint"][-1].split()
    commands = {
        "hpo study": (_command(services["hpo"]), [sys.executable, "-m", "hpo", "study"]),
        "mlflow server": (_command(services["mlflow"]), [str(BIN / "mlflow"), "server"]),
        "ray start (head)": (_command(services["ray-head"]), [str(BIN / "ray"), "start"]),
        "ray start (worker)": (_command(services["ray-worker"]), [str(BIN / "ray"), "start"]),
        "ray health-check": (services["ray-head"]["healthcheck"]["test"][1:],
                             [str(BIN / "ray"), "health-check"]),
        "optuna-dashboard": (dashboard, [str(BIN / "optuna-dashboard")]),
    }
    for name, (command, tool) in commands.items():
        text = _help(*tool, "--help")
        missing = {flag for flag in _flags(command) if flag not in text}
        assert not missing, f"{name}: {missing}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, host: str | None = None, timeout: float = 5) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _wait_up(process: subprocess.Popen[str], url: str, deadline_s: float = 240) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        try:
            _get(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} not up after {deadline_s}s")


@pytest.mark.integration
def test_compose_commands_run_natively(services: dict[str, Any], tmp_path: Path) -> None:
    """The MLflow and dashboard services' commands, with SQLite and loopback ports."""
    mlflow_port, dashboard_port = _free_port(), _free_port()
    local = {
        services["mlflow"]["command"][2]: f"sqlite:///{tmp_path / 'mlflow.db'}",
        "/mlartifacts": str(tmp_path / "artifacts"),
        "0.0.0.0": "127.0.0.1",
        "5000": str(mlflow_port),
    }
    # One worker process instead of the server's default few: this machine is small.
    mlflow_cmd = [*(local.get(part, part) for part in _command(services["mlflow"])),
                  "--workers", "1"]
    dashboard_cmd = [
        part.replace("0.0.0.0", "127.0.0.1").replace("8080", str(dashboard_port))
        for part in services["dashboard"]["entrypoint"]
    ]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "HPO_STORAGE": f"sqlite:///{tmp_path / 'optuna.db'}"}
    processes = [
        subprocess.Popen(command, cwd=tmp_path, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for command in (mlflow_cmd, dashboard_cmd)
    ]
    try:
        base = f"http://127.0.0.1:{mlflow_port}"
        _wait_up(processes[0], f"{base}/health")
        assert _get(f"{base}/health") == 200  # compose's health check
        # The driver's requests carry `Host: mlflow:5000`; a stranger's are refused.
        api = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(api, host="mlflow:5000") == 200
        assert _get(api, host="evil.example:5000") == 403
        _wait_up(processes[1], f"http://127.0.0.1:{dashboard_port}/")
        assert _get(f"http://127.0.0.1:{dashboard_port}/") == 200
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
