"""Push the datasource, folder and dashboards to Grafana through its HTTP API (grafana-client).

Idempotent: what is already there and equal is left alone (a second push changes nothing);
a changed dashboard is posted with ``overwrite`` and Grafana bumps its version. ``dry_run``
reports the plan without writing. Credentials: the service-account token from
``SUPPLYMETER_GRAFANA_TOKEN``; the datasource's InfluxDB token or password from
``SUPPLYMETER_INFLUXDB_TOKEN`` / ``SUPPLYMETER_INFLUXDB_PASSWORD``, sent only when the
datasource is created or changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dashboards.model import all_dashboards, datasource
from supplymeter.config import Config
from supplymeter.errors import ConfigError, SourceUnavailable


def _missing(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


def _same(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(existing.get(k) == v for k, v in wanted.items())


def _strip(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


def connect(config: Config) -> Any:
    """A ``grafana_client.GrafanaApi`` for ``[grafana] url`` with the service-account token."""
    from grafana_client import GrafanaApi

    token = config.secrets.grafana_token
    if token is None:
        raise ConfigError(
            ["SUPPLYMETER_GRAFANA_TOKEN is not set (a Grafana service-account token)"]
        )
    return GrafanaApi.from_url(config.grafana.url, credential=token.get_secret_value(), timeout=10)


def push(config: Config, api: Any, dry_run: bool = False) -> list[str]:
    """Upsert the datasource, the folder and every dashboard; returns one line per item."""
    from grafana_client.client import GrafanaClientError

    plan: list[str] = []
    try:
        ds = datasource(config)
        try:
            existing = api.datasource.get_datasource_by_uid(ds["uid"])
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            existing = None
        secure = _secure(config)
        if existing is None:
            plan.append(f"datasource {ds['uid']}: create")
            if not dry_run:
                api.datasource.create_datasource({**ds, **secure})
        elif not _same(
            existing, {k: v for k, v in {**ds, **secure}.items() if k != "secureJsonData"}
        ):  # Grafana never returns secrets
            plan.append(f"datasource {ds['uid']}: update")
            if not dry_run:
                api.datasource.update_datasource_by_uid(ds["uid"], {**ds, **secure})
        else:
            plan.append(f"datasource {ds['uid']}: unchanged")
        g = config.grafana
        try:
            api.folder.get_folder(g.folder_uid)
            plan.append(f"folder {g.folder_uid}: unchanged")
        except GrafanaClientError as exc:
            if not _missing(exc):
                raise
            plan.append(f"folder {g.folder_uid}: create")
            if not dry_run:
                api.folder.create_folder(g.folder, uid=g.folder_uid)
        for dashboard in all_dashboards(config):
            uid = dashboard["uid"]
            try:
                current = api.dashboard.get_dashboard(uid)
            except GrafanaClientError as exc:
                if not _missing(exc):
                    raise
                current = None
            if (
                current is not None
                and _strip(current["dashboard"]) == _strip(dashboard)
                and (current.get("meta", {}).get("folderUid") == g.folder_uid)
            ):
                plan.append(f"dashboard {uid}: unchanged")
                continue
            plan.append(f"dashboard {uid}: {'create' if current is None else 'update'}")
            if not dry_run:
                api.dashboard.update_dashboard({
                    "dashboard": {**dashboard, "id": None}, "folderUid": g.folder_uid,
                    "overwrite": True, "message": "supplymeter dashboards push",
                })  # fmt: skip
    except GrafanaClientError as exc:
        raise SourceUnavailable(f"Grafana refused: {exc}") from exc
    except OSError as exc:
        raise SourceUnavailable(f"Grafana at {config.grafana.url} not reachable: {exc}") from exc
    return plan


def _secure(config: Config) -> dict[str, Any]:
    s = config.secrets
    if s.influxdb_token is not None:
        header = f"Token {s.influxdb_token.get_secret_value()}"
        json_data = {**datasource(config)["jsonData"], "httpHeaderName1": "Authorization"}
        return {"jsonData": json_data, "secureJsonData": {"httpHeaderValue1": header}}
    if s.influxdb_password is not None:
        return {"secureJsonData": {"password": s.influxdb_password.get_secret_value()}}
    return {}


READER_PASSWORD_ENV = "SUPPLYMETER_GRAFANA_READER_PASSWORD"
"""Where the read-only InfluxDB user's password comes from: set for ``dashboards reader`` and
in Grafana's environment (its provisioning files expand ``${…}``)."""


def provision(
    config: Config, out: Path, reader: str = "grafana",
    dashboards_path: str = "/var/lib/grafana/dashboards/supplymeter",
) -> list[Path]:  # fmt: skip
    """Grafana file provisioning for the buyer's Grafana, to drop into its configuration:
    ``provisioning/datasources/supplymeter.yaml`` (the InfluxDB datasource as the read-only
    user ``reader``, password from ``${SUPPLYMETER_GRAFANA_READER_PASSWORD}``),
    ``provisioning/dashboards/supplymeter.yaml`` (a file provider reading
    ``dashboards_path``) and ``dashboards/<uid>.json`` (to copy to that path)."""
    import yaml

    ds = datasource(config)
    source = {
        "apiVersion": 1,
        "datasources": [{
            "name": ds["name"], "uid": ds["uid"], "type": ds["type"], "access": ds["access"],
            "url": ds["url"], "user": reader, "jsonData": ds["jsonData"],
            "secureJsonData": {"password": "${" + READER_PASSWORD_ENV + "}"},
            "editable": False,
        }],
    }  # fmt: skip
    g = config.grafana
    provider = {
        "apiVersion": 1,
        "providers": [{
            "name": "supplymeter", "folder": g.folder, "folderUid": g.folder_uid, "type": "file",
            "disableDeletion": True, "allowUiUpdates": False, "updateIntervalSeconds": 60,
            "options": {"path": dashboards_path},
        }],
    }  # fmt: skip
    head = "# written by `supplymeter dashboards provision`; see docs/operations.md\n"
    paths = []
    for rel, content in (("provisioning/datasources/supplymeter.yaml", source),
                         ("provisioning/dashboards/supplymeter.yaml", provider)):  # fmt: skip
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(head + yaml.safe_dump(content, sort_keys=False))
        paths.append(path)
    return paths + export(config, out / "dashboards")


def export(config: Config, directory: Path) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` for Grafana's file provisioning."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for dashboard in all_dashboards(config):
        path = directory / f"{dashboard['uid']}.json"
        path.write_text(json.dumps(dashboard, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths
