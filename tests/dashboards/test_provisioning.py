"""What a Grafana admin drops in: provisioning files, the dashboards, and a read-only InfluxDB
user (on a real InfluxDB with authentication on) that can read the database and nothing
else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboards.model import all_dashboards, datasource
from dashboards.push import READER_PASSWORD_ENV, provision
from deploy.stack import InfluxDB, free_port
from supplymeter.config import Config
from supplymeter.errors import RequestRejected
from supplymeter.influx import InfluxClient


def test_provisioning_files_for_the_buyers_grafana(example_config: Config, tmp_path: Path) -> None:
    paths = provision(example_config, tmp_path, reader="grafana-ro")
    source = yaml.safe_load((tmp_path / "provisioning/datasources/supplymeter.yaml").read_text())
    [ds] = source["datasources"]
    wanted = datasource(example_config)
    assert (ds["uid"], ds["type"], ds["url"]) == (wanted["uid"], "influxdb", wanted["url"])
    assert ds["jsonData"]["dbName"] == example_config.influxdb.database
    assert ds["user"] == "grafana-ro" and ds["editable"] is False
    assert ds["secureJsonData"] == {"password": "${" + READER_PASSWORD_ENV + "}"}
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/supplymeter.yaml").read_text())
    [p] = provider["providers"]
    assert p["type"] == "file" and p["options"]["path"] == "/var/lib/grafana/dashboards/supplymeter"
    assert p["allowUiUpdates"] is False and p["folderUid"] == example_config.grafana.folder_uid
    shipped = {json.loads(path.read_text())["uid"]: json.loads(path.read_text())
               for path in paths if path.suffix == ".json"}  # fmt: skip
    for dashboard in all_dashboards(example_config):
        assert shipped[dashboard["uid"]] == dashboard
        uids = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
        assert uids == {ds["uid"]}, "every panel reads the provisioned datasource"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB]:
    server = InfluxDB(root=tmp_path_factory.mktemp("influx-auth"), port=free_port(),
                      rpc_port=free_port(), auth=True)  # fmt: skip
    server.start(detach=False)
    try:
        # the first user of a server with authentication on must be an admin
        bootstrap = InfluxClient(url=server.url, database="supplymeter")
        bootstrap.query("CREATE USER \"admin\" WITH PASSWORD 'admin-pw' WITH ALL PRIVILEGES")
        yield server
    finally:
        server.stop()


def test_the_read_only_user_reads_and_cannot_write(secured: InfluxDB) -> None:
    admin = InfluxClient(url=secured.url, database="supplymeter", username="admin",
                         password="admin-pw", retries=0)  # fmt: skip
    admin.ensure_database()
    admin.write_lines(["site_hourly,supplier=a,site=s purchased_kwh=12.5 1700000000000000000"])
    other = InfluxClient(url=secured.url, database="private", username="admin",
                         password="admin-pw", retries=0)  # fmt: skip
    other.ensure_database()
    password = "it's a \\ secret"
    admin.create_reader("grafana", password)
    admin.create_reader("grafana", password)  # again: no error
    reader = InfluxClient(url=secured.url, database="supplymeter", username="grafana",
                          password=password, retries=0)  # fmt: skip
    [series] = reader.query('SELECT sum("purchased_kwh") FROM "site_hourly"')
    assert series.values[0][1] == 12.5
    with pytest.raises(RequestRejected):
        reader.write_lines(["site_hourly,supplier=a,site=s purchased_kwh=99 1700000000000000000"])
    with pytest.raises(RequestRejected):
        reader.query('DROP MEASUREMENT "site_hourly"')
    outsider = InfluxClient(url=secured.url, database="private", username="grafana",
                            password=password, retries=0)  # fmt: skip
    with pytest.raises(RequestRejected):
        outsider.query('SELECT * FROM "anything"')
    admin.create_reader("grafana", "rotated")  # a new password replaces the old one
    with pytest.raises(RequestRejected):
        reader.query('SELECT sum("purchased_kwh") FROM "site_hourly"')
    with pytest.raises(ValueError):
        admin.create_reader("grafana", "")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(password=st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40))
def test_any_password_survives_the_quoting(secured: InfluxDB, password: str) -> None:
    """Quotes, backslashes and any script in a password: the reader logs in with it."""
    admin = InfluxClient(url=secured.url, database="supplymeter", username="admin",
                         password="admin-pw", retries=0)  # fmt: skip
    admin.ensure_database()
    admin.create_reader("prop", password)
    reader = InfluxClient(url=secured.url, database="supplymeter", username="prop",
                          password=password, retries=0)  # fmt: skip
    reader.query("SHOW MEASUREMENTS")
