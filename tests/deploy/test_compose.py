"""The compose stack, its config, the generated Mosquitto files and the systemd units agree."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from app.cli import build_parser
from deploy.mosquitto import write_mosquitto
from supplymeter.config import Config, load_config
from tests.conftest import ROOT, with_settings

COMPOSE_DIR = ROOT / "deploy" / "compose"
RUNTIME = Path("/mosquitto/config")


@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())


@pytest.fixture
def config(tmp_path: Path) -> Config:
    loaded = load_config(COMPOSE_DIR / "supplymeter.toml", {})
    return with_settings(loaded, "broker", secrets_file=tmp_path / "secrets.toml")


def mounts(service: dict) -> dict[str, str]:  # type: ignore[type-arg]
    """{container path: host path} of a service's bind mounts and volumes."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        out[target] = source
    return out


def test_mosquitto_service_matches_the_generated_files(
    compose: dict,
    config: Config,
    tmp_path: Path,  # type: ignore[type-arg]
) -> None:
    files = write_mosquitto(config, tmp_path / "mosquitto", RUNTIME)
    conf = files.conf.read_text()
    broker = config.services.broker
    service = compose["services"]["mosquitto"]
    volumes = mounts(service)
    assert service["command"][-1] == str(RUNTIME / "mosquitto.conf")
    assert volumes[str(RUNTIME)] == "./mosquitto"
    assert f"plugin_opt_config_file {RUNTIME / 'dynamic-security.json'}" in conf
    assert "plugin /usr/lib/mosquitto_dynamic_security.so" in conf  # the image's path
    assert str(broker.persistence_dir) in volumes
    assert broker.certfile is not None and broker.keyfile is not None
    assert str(broker.certfile.parent) in volumes and str(broker.keyfile.parent) in volumes
    assert f"listener {broker.port} 0.0.0.0" in conf and f"listener {broker.tls_port}" in conf
    assert f"127.0.0.1:{broker.port}:{broker.port}" in service["ports"]  # plaintext: loopback
    assert f"{broker.tls_port}:{broker.tls_port}" in service["ports"]
    assert "allow_anonymous false" in conf
    grafana = compose["services"]["grafana"]["ports"]
    assert grafana == ["127.0.0.1:3000:3000"]  # plain HTTP: loopback only, a proxy in front


def test_services_find_each_other_and_their_config(compose: dict, config: Config) -> None:  # type: ignore[type-arg]
    services = compose["services"]
    assert config.mqtt.host in services and config.mqtt.port == config.services.broker.port
    influx = urlparse(config.influxdb.url)
    assert influx.hostname in services and influx.port == 8086
    assert (
        services["influxdb"]["environment"]["DOCKER_INFLUXDB_INIT_BUCKET"]
        == config.influxdb.database
    )
    for name in ("collector", "scheduler"):
        service = services[name]
        path = Path(service["environment"]["SUPPLYMETER_CONFIG"])
        volumes = mounts(service)
        assert volumes[str(path)] == "./supplymeter.toml"
        assert volumes[str(path.parent / config.services.registry)] == "./suppliers.toml"
        assert service["command"][0] == "supplymeter"
    health = " ".join(services["collector"]["healthcheck"]["test"])
    assert f":{config.collector.metrics_port}/healthz" in health
    datasource = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/supplymeter.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == config.influxdb.url
    assert datasource["jsonData"]["dbName"] == config.influxdb.database


def test_no_default_secrets(compose: dict) -> None:  # type: ignore[type-arg]
    text = (COMPOSE_DIR / "docker-compose.yml").read_text()
    example = (COMPOSE_DIR / ".env.example").read_text()
    secret_refs = re.findall(r"\$\{([A-Z_]*(?:PASSWORD|TOKEN)[A-Z_]*)(:[?-])", text)
    assert secret_refs
    for name, kind in secret_refs:
        assert f"\n{name}=" in "\n" + example, name
        if name != "SUPPLYMETER_SMTP_PASSWORD":  # optional: alerts may not use SMTP auth
            assert kind == ":?", f"{name} must be required, not defaulted"
    assert all("restart" in s for s in compose["services"].values())


def test_systemd_units_run_real_commands() -> None:
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        exec_start = re.search(r"^ExecStart=(.*)$", unit.read_text(), re.M)
        assert exec_start, unit
        assert exec_start[1].split()[-1] in commands, unit
        assert "EnvironmentFile=" in unit.read_text() and "User=supplymeter" in unit.read_text()


@pytest.mark.skipif(
    subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    if shutil.which("docker") else True,
    reason="docker compose is not installed here (a Docker engine is not needed for `config`)",
)  # fmt: skip
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("INFLUXDB_ADMIN_PASSWORD=x\nSUPPLYMETER_INFLUXDB_TOKEN=x\n"
                   "GRAFANA_ADMIN_PASSWORD=x\nSUPPLYMETER_MQTT_PASSWORD=x\n")  # fmt: skip
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(env), "-f", str(COMPOSE_DIR / "docker-compose.yml"),
         "config", "--quiet"], capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_scheduler_keeps_its_state_on_volumes(compose: dict, config: Config) -> None:  # type: ignore[type-arg]
    """Exports and alert state (open incidents, the outbox) survive a container restart."""
    volumes = mounts(compose["services"]["scheduler"])
    for directory in (config.jobs.export_dir, config.alerts.state_dir):
        assert directory.is_absolute() and str(directory) in volumes, directory
        assert volumes[str(directory)] in compose["volumes"]


def test_each_service_has_its_own_least_privilege_influxdb_user(compose: dict) -> None:  # type: ignore[type-arg]
    """No service holds the admin token: the collector writes, the scheduler reads and
    writes, Grafana reads — each with its own user, created at InfluxDB's first start."""
    services = compose["services"]
    script = (COMPOSE_DIR / "influxdb-init" / "10-service-users.sh").read_text()
    rights = {"collector": ["--write-bucket"], "scheduler": ["--read-bucket", "--write-bucket"],
              "grafana": ["--read-bucket"]}  # fmt: skip
    for user, flags in rights.items():
        [command] = [c for c in script.split("influx v1 auth create")[1:]
                     if f"--username {user}" in c]  # fmt: skip
        assert sorted(re.findall(r"--(?:read|write)-bucket", command)) == sorted(flags), user
    for name in ("collector", "scheduler"):
        env = services[name]["environment"]
        assert env["SUPPLYMETER_INFLUXDB_USERNAME"] == name
        assert "SUPPLYMETER_INFLUXDB_TOKEN" not in env
    assert "/docker-entrypoint-initdb.d" in mounts(services["influxdb"])
    datasource = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/supplymeter.yml").read_text()
    )["datasources"][0]
    assert datasource["user"] == "grafana" and "Token" not in str(datasource)
    assert all("ADMIN_TOKEN" not in str(s.get("environment", {}))
               for n, s in services.items() if n != "influxdb")  # fmt: skip


def test_the_console_and_the_jobs_share_the_postgresql_operations_database(
    compose: dict,  # type: ignore[type-arg]
    config: Config,
) -> None:
    """The scheduler and the console open the same PostgreSQL (a service of the stack, its
    password required); the console listens in plain HTTP on loopback only, behind a proxy."""
    services = compose["services"]
    url = urlparse(config.operations.database.replace("+psycopg", ""))
    assert url.scheme == "postgresql" and url.hostname in services
    assert services[url.hostname]["environment"]["POSTGRES_DB"] == url.path.lstrip("/")
    for name in ("scheduler", "console"):
        env = services[name]["environment"]
        assert env["SUPPLYMETER_OPERATIONS_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
        assert url.hostname in services[name]["depends_on"]
    assert services["console"]["ports"] == [f"127.0.0.1:{config.console.port}:8080"]
    assert config.console.behind_tls_proxy and config.console.port == 8080
