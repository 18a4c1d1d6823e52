"""The PACT v3 OpenAPI schema (../shared/standards/pact-v3/openapi.yaml) as a validator: a
response or a document checked against the spec's own schemas with jsonschema, refs resolved
in the spec document itself."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import ROOT

SPEC_PATHS = (ROOT.parent / "shared" / "standards" / "pact-v3" / "openapi.yaml",
              Path("/work/shared/standards/pact-v3/openapi.yaml"))  # fmt: skip
BASE = "urn:supplymeter:pact-openapi"


@functools.cache
def load_spec() -> dict[str, Any] | None:
    """The spec, or ``None`` outside the team's workspace (a clone elsewhere)."""
    for path in SPEC_PATHS:
        if path.exists():
            return yaml.safe_load(path.read_text())  # type: ignore[no-any-return]
    return None


def _pointer(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def check(spec: dict[str, Any], path: str, method: str, status: int, body: Any) -> None:
    """``body`` against the schema the spec gives for this operation and status, its refs
    resolved in the spec document itself."""
    pointer = "#/" + "/".join(_escape(p) for p in ("paths", path, method, "responses",
                                                    str(status)))  # fmt: skip
    while "$ref" in (response := _pointer(spec, pointer)):
        pointer = response["$ref"]
    validate_at(spec, pointer + "/content/application~1json/schema", body)


def validate_at(spec: dict[str, Any], pointer: str, body: Any) -> None:
    registry = Registry().with_resource(BASE, Resource.from_contents(
        spec, default_specification=DRAFT202012))  # fmt: skip
    checker = jsonschema.FormatChecker()

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        return datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": BASE + pointer}
    jsonschema.Draft202012Validator(schema, registry=registry,
                                    format_checker=checker).validate(body)  # fmt: skip
