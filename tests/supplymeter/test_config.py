from __future__ import annotations

from pathlib import Path

import pytest

from supplymeter.carriers import CARRIERS
from supplymeter.config import Config, load_config
from supplymeter.errors import ConfigError
from tests.conftest import SMALL_REGISTRY, write_config


def problems(tmp_path: Path, registry: str = SMALL_REGISTRY, services: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, registry, services), {})
    return caught.value.problems


def test_example_config_describes_four_supplier_kinds(example_config: Config) -> None:
    suppliers = example_config.registry.suppliers
    assert {s.kind for s in suppliers} == {"forging", "springs", "heat_treatment", "machining"}
    assert all(s.allocation.share > 0 for s in suppliers)
    carriers = {m.meter.carrier for m in example_config.registry.meters()}
    assert carriers == set(CARRIERS)  # every carrier of the table is exercised by the demo
    ref = example_config.registry.meter("heat-c", "kaohsiung-1", "main")
    assert ref is not None and ref.meter.rollover == 100000 and ref.site.timezone == "Asia/Taipei"


def test_error_names_file_key_rule_and_value(tmp_path: Path) -> None:
    found = problems(tmp_path, services="[mqtt]\nqos = 3\n")
    config = tmp_path / "supplymeter.toml"
    line = config.read_text().splitlines().index("qos = 3") + 1
    assert found == [f"{config}:{line}: mqtt.qos: must be 0, 1 or 2 (got 3) [invalid_value]"]
    assert found[0].code == "invalid_value" and found[0].line == line


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    registry = SMALL_REGISTRY.replace('carrier = "natural_gas"', 'carrier = "hydrogen"').replace(
        'id = "cnc-d"', 'id = "CNC D"'
    )
    found = problems(tmp_path, registry, services="[influxdb]\nurl = 'localhost:8086'\n")
    text = "\n".join(found)
    assert "influxdb.url: must be an http:// or https:// URL (got 'localhost:8086')" in text
    assert "suppliers.toml:17: supplier forge-a / site plant-1 / meter gas: carrier" in text
    assert "'hydrogen'" in text
    assert "suppliers[1].id: must match" in text and "'CNC D'" in text
    assert len(found) == 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('timezone = "Asia/Taipei"', 'timezone = "Asia/Taipeh"'), "must be an IANA timezone"),
        (("interval_s = 300", "interval_s = 700"), "must divide 3600"),
        (("share = 1.0", "share = 0.5"), "must be 1 when method is 'dedicated'"),
        (('id = "gas"', 'id = "main"'), "id 'main' appears more than once"),
        (("multiplier = 40", "multiplier = 0"), "greater than 0"),
        (('id = "gas"', 'id = "gateway"'), "'gateway' is reserved"),
    ],
)
def test_registry_rules(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    registry = SMALL_REGISTRY.replace(*change)
    if "timezone" in change[1]:
        registry = registry.replace('gateway = "gw1"', f'gateway = "gw1"\n{change[1]}', 1)
    found = problems(tmp_path, registry)
    assert any(message in p and "suppliers.toml" in p for p in found), found


def test_secret_in_file_is_refused_and_points_to_env(tmp_path: Path) -> None:
    found = problems(tmp_path, services="[mqtt]\npassword = 'hunter2'\n")
    assert found == [
        f"{tmp_path / 'supplymeter.toml'}:3: mqtt.password: unknown key (misspelt? "
        "secrets come from SUPPLYMETER_* environment variables) [unknown_key]"
    ]


def test_secrets_come_from_environment_and_are_not_printed(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, SMALL_REGISTRY),
        {"SUPPLYMETER_INFLUXDB_TOKEN": "s3cret-token", "SUPPLYMETER_MQTT_PASSWORD": "pw"},
    )
    assert config.secrets.influxdb_token is not None
    assert config.secrets.influxdb_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(config) and "s3cret-token" not in str(config.secrets)


def test_missing_registry_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "supplymeter.toml"
    path.write_text('registry = "nowhere.toml"\n')
    with pytest.raises(ConfigError, match=r"nowhere.toml: file not found"):
        load_config(path, {})
    path.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match=r"supplymeter.toml:1: not valid TOML"):
        load_config(path, {})


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = write_config(tmp_path, SMALL_REGISTRY)
    config = load_config(None, {"SUPPLYMETER_CONFIG": str(path)})
    assert config.path == path and len(config.registry.meters()) == 3


def test_types_are_checked_not_coerced_and_every_problem_listed(tmp_path: Path) -> None:
    services = ('[mqtt]\nqos = true\nport = "11883"\n[influxdb]\ncreate_database = "yes"\n'
                "[smtp]\nadmins = ['ok@x.example', 'nope', 'also nope']\n")  # fmt: skip
    found = "\n".join(problems(tmp_path, services=services))
    assert "mqtt.qos: must be a number (got True)" in found
    assert "mqtt.port: must be a number (got '11883')" in found
    assert "influxdb.create_database: must be true or false (got 'yes')" in found
    assert "'nope'" in found and "'also nope'" in found


def test_credentials_in_the_influxdb_url_are_refused_and_never_echoed(tmp_path: Path) -> None:
    found = "\n".join(problems(tmp_path, services=(
        '[influxdb]\nurl = "http://admin:s3cret-pw@127.0.0.1:8086"\n')))  # fmt: skip
    assert "influxdb.url: must not hold credentials" in found and "s3cret-pw" not in found


def test_an_id_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    found = "\n".join(problems(tmp_path, SMALL_REGISTRY.replace('id = "forge-a"',
                                                                'id = "forge-a\\n"')))  # fmt: skip
    assert "suppliers[0].id: must match" in found


def test_a_registry_that_is_not_a_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "supplymeter.toml").write_text("registry = 5\n[mqtt]\nqos = 7\n")
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "supplymeter.toml", {})
    found = "\n".join(caught.value.problems)
    assert "registry: must be the path of the registry file (got 5)" in found
    assert "mqtt.qos: must be 0, 1 or 2" in found


def test_services_sharing_a_config_log_in_to_influxdb_as_themselves(tmp_path: Path) -> None:
    path = write_config(tmp_path, SMALL_REGISTRY, '[influxdb]\nusername = "admin"\n')
    assert load_config(path, {}).influxdb.username == "admin"
    env = {"SUPPLYMETER_INFLUXDB_USERNAME": "collector", "SUPPLYMETER_INFLUXDB_PASSWORD": "pw"}
    config = load_config(path, env)
    assert config.influxdb.username == "collector"
    assert config.secrets.influxdb_password is not None
