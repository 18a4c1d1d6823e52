"""Every dashboard against the JSON Schema generated from Grafana's own published types (npm
``@grafana/schema``, pinned in ``dashboards/grafana_schema/package-lock.json``): the dashboard
model, and each panel's options and field config against its panel type's types."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import subprocess
from typing import Any

import jsonschema
import pytest

from dashboards.model import all_dashboards
from supplymeter.config import Config
from tests.conftest import ROOT

SOURCE = ROOT / "dashboards" / "grafana_schema"


@pytest.fixture(scope="session")
def grafana_schema() -> dict[str, Any]:
    """Generated once per lockfile under build/ (npm ci + ts-json-schema-generator)."""
    files = ("package.json", "package-lock.json", "generate.mjs")
    digest = hashlib.sha256(b"".join((SOURCE / f).read_bytes() for f in files)).hexdigest()
    work = ROOT / "build" / "grafana-schema" / digest[:16]
    out = work / "schema.json"
    if not out.exists():
        for tool in ("node", "npm"):
            assert shutil.which(tool), f"{tool} is missing: `make test` installs it (nodejs, npm)"
        work.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(SOURCE / f, work / f)
        for cmd in (["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                    ["node", "generate.mjs", "schema.json.tmp"]):  # fmt: skip
            done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{' '.join(cmd)}: {done.stderr[-2000:]}"
        (work / "schema.json.tmp").replace(out)
    schema = json.loads(out.read_text())
    # Grafana types an annotation's ``target`` as its built-in datasource's query (the type's
    # own comment: "this should just be a normal query target"); every other datasource, the
    # InfluxDB one included, keeps its own query there.
    target = schema["dashboard"]["definitions"]["AnnotationTarget"]
    target["additionalProperties"] = True
    target["required"] = []
    return schema


def problems(dashboard: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Everything Grafana's types reject in a dashboard, one line each."""
    uid = dashboard.get("uid", "?")
    errors = jsonschema.Draft7Validator(schema["dashboard"]).iter_errors(dashboard)
    found = [f"{uid} {'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    for panel in dashboard.get("panels", []):
        where = f"{uid} panel {panel.get('id')} ({panel.get('type')})"
        kind = schema["panels"].get(panel.get("type"))
        if kind is None:
            found.append(f"{where}: no Grafana schema for this panel type")
            continue
        for e in jsonschema.Draft7Validator(kind["options"]).iter_errors(panel.get("options", {})):
            found.append(f"{where} options/{'/'.join(map(str, e.absolute_path))}: {e.message}")
        custom = panel.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None and kind["fieldConfig"] is not None:
            for e in jsonschema.Draft7Validator(kind["fieldConfig"]).iter_errors(custom):
                found.append(f"{where} fieldConfig.defaults.custom: {e.message}")
    return found


def test_every_dashboard_is_valid_against_grafanas_published_schema(
    example_config: Config, grafana_schema: dict[str, Any]
) -> None:
    dashboards = all_dashboards(example_config)
    assert [p for d in dashboards for p in problems(d, grafana_schema)] == []
    shipped = sorted((ROOT / "deploy/compose/grafana/dashboards").glob("*.json"))
    for path in shipped:  # what a Grafana admin provisions from files
        assert problems(json.loads(path.read_text()), grafana_schema) == [], path.name


def test_the_schema_rejects_what_grafana_does_not_define(
    example_config: Config, grafana_schema: dict[str, Any]
) -> None:
    [dashboard] = [d for d in all_dashboards(example_config) if d["uid"] == "sm-scope3"]
    bad = copy.deepcopy(dashboard)
    bad["refreshEvery"] = "1m"  # not a dashboard key
    bad["panels"][0]["options"]["legend"]["placment"] = "right"  # a typo
    bad["panels"][0]["fieldConfig"]["defaults"]["custom"]["drawStyle"] = "columns"
    bad["panels"][1]["type"] = "graph-2000"
    found = "\n".join(problems(bad, grafana_schema))
    assert "refreshEvery" in found and "placment" in found
    assert "fieldConfig.defaults.custom" in found and "no Grafana schema" in found
