"""Every TOML, JSON and CSV example in the documentation parses; a registry fragment (a meter
with its events) also passes the registry's checks, as `supplymeter check` would run them."""

from __future__ import annotations

import csv
import io
import json
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

from supplymeter.config import load_config
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(toml|json|csv)\n(.*?)^```", re.M | re.S)

EXAMPLES = [(doc, kind, body) for doc in DOCS for kind, body in FENCE.findall(doc.read_text())]
METER_REGISTRY = """
[[suppliers]]
id = "forge-a"
kind = "forging"
allocation = { method = "physical", share = 0.5 }
  [[suppliers.sites]]
  id = "plant-1"
  gateway = "gw1"
"""


def test_the_documentation_has_examples() -> None:
    kinds = {kind for _, kind, _ in EXAMPLES}
    assert {"toml", "json"} <= kinds


IDS = [f"{doc.name}-{kind}-{n}" for n, (doc, kind, _) in enumerate(EXAMPLES)]


@pytest.mark.parametrize(("doc", "kind", "body"), EXAMPLES, ids=IDS)
def test_every_example_parses(doc: Path, kind: str, body: str, tmp_path: Path) -> None:
    text = textwrap.dedent(body)
    if kind == "json":
        json.loads(text)
    elif kind == "csv":
        rows = list(csv.reader(io.StringIO(text)))
        assert rows and all(len(r) == len(rows[0]) for r in rows), doc
    else:
        tomllib.loads(text)
        if text.lstrip().startswith("[[suppliers.sites.meters]]"):
            path = write_config(tmp_path, METER_REGISTRY + text)
            config = load_config(path, {})
            [meter] = config.registry.suppliers[0].sites[0].meters
            assert meter.id
