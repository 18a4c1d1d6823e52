"""Every TOML, JSON and CSV example in the documentation is read by the product's own reader
for what it shows — a registry fragment by the registry's checks, a services section by the
configuration's, a history file by the importer, a factor row by the factor library — as
`supplymeter check` or the command it documents would read it. An example no reader takes
fails, so a new example cannot drift from the code unnoticed."""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collector.importer import read_history
from processing.accounting.inputs import load_allocations, load_bills, load_certificates
from processing.baselines import read_temperature
from processing.emissions import FactorLibrary
from supplymeter.config import RegistryFile, load_config
from supplymeter.records import datetime_to_ns
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^ *```(toml|json|csv)\n(.*?)^ *```", re.M | re.S)

EXAMPLES = [(doc, kind, textwrap.dedent(body))
            for doc in DOCS for kind, body in FENCE.findall(doc.read_text())]  # fmt: skip
METER_REGISTRY = """
[[suppliers]]
id = "forge-a"
kind = "forging"
allocation = { method = "physical", share = 0.5 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
"""
SMALL_REGISTRY = (
    METER_REGISTRY
    + """
    [[suppliers.sites.meters]]
    id = "main"
    carrier = "electricity"
"""
)


def test_the_documentation_has_examples() -> None:
    kinds = {kind for _, kind, _ in EXAMPLES}
    assert {"toml", "json", "csv"} <= kinds


IDS = [f"{doc.name}-{kind}-{n}" for n, (doc, kind, _) in enumerate(EXAMPLES)]


def _supplier_fragment(text: str, example: dict[str, Any]) -> None:
    """A supplier with targets and measures: completed with what the ``# ...`` elides (its
    allocation, and the sites and meters its measures name), then the registry's checks."""
    for supplier in example["suppliers"]:
        supplier.setdefault("allocation", {"method": "physical", "share": 0.5})
        sites: dict[str, set[str]] = {}
        for m in supplier.get("measures", []):
            sites.setdefault(m["site"], set()).update(m.get("meters") or ["main"])
        supplier.setdefault("sites", [
            {"id": site, "meters": [{"id": m, "carrier": "electricity"} for m in sorted(ms)]}
            for site, ms in (sites or {"plant-1": {"main"}}).items()
        ])  # fmt: skip
    registry = RegistryFile.model_validate(example)
    assert registry.suppliers[0].id, text


def _read_toml(text: str, tmp_path: Path) -> None:
    example = tomllib.loads(text)
    if text.lstrip().startswith("[[suppliers.sites.meters]]"):
        config = load_config(write_config(tmp_path, METER_REGISTRY + text), {})
        [meter] = config.registry.suppliers[0].sites[0].meters
        assert meter.id
    elif "suppliers" in example:
        _supplier_fragment(text, example)
    else:  # a section of the services file
        config = load_config(write_config(tmp_path, SMALL_REGISTRY, text), {})
        for section, values in example.items():
            settings = getattr(config.services, section)
            for key, value in values.items():
                assert getattr(settings, key) == value, (section, key)


def _read_csv(text: str, tmp_path: Path) -> None:
    header = next(csv.reader(io.StringIO(text)))
    path = tmp_path / "example.csv"
    path.write_text(text)
    if header[0] in ("ts", "interval_start"):
        config = load_config(write_config(tmp_path, SMALL_REGISTRY), {})
        ref = config.registry.meter("forge-a", "plant-1", "main")
        assert ref is not None
        now = datetime_to_ns(datetime(2030, 1, 1, tzinfo=UTC))
        assert read_history(text, "example.csv", ref, now).readings
    elif header == ["date", "mean_c"]:
        assert read_temperature(text)
    elif header[0] == "id" and "carrier" in header:
        shipped = FactorLibrary.load().factors
        added = FactorLibrary.load(path).factors
        assert added and not {f.id for f in added} & {f.id for f in shipped}
    elif "share" in header:
        assert load_allocations(path)
    elif "certificate_id" in header or "certificate" in header[0]:
        assert load_certificates(path)
    elif "bill_id" in header or "period_start" in header:
        assert load_bills(path)
    else:
        pytest.fail(f"no reader of the product takes a CSV with header {header}")


@pytest.mark.parametrize(("doc", "kind", "text"), EXAMPLES, ids=IDS)
def test_every_example_is_read_by_the_product(
    doc: Path, kind: str, text: str, tmp_path: Path
) -> None:  # fmt: skip
    if kind == "json":
        json.loads(text)
    elif kind == "toml":
        _read_toml(text, tmp_path)
    else:
        _read_csv(text, tmp_path)
