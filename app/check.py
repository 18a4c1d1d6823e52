"""``supplymeter check``: every input file, every layer, every cross-reference, in one pass.

The services file, the registry (types, then the rules the failing keys stood in front of),
the emission factors, allocations, certificates and bills are all read even when an earlier
one failed, and each CSV row is checked against the registry's ids: a row for a supplier or
site the registry does not have would otherwise be ignored without a word. Every problem is
one line ``FILE:LINE: where: rule (got value) [code]`` with a stable code
(:data:`CODES`), sorted by file and line.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supplymeter.config import Config, inspect_config
from supplymeter.errors import ConfigError, Problem

CODES = {
    "not_toml": "the file is not valid TOML (or not UTF-8)",
    "file_not_found": "a file named by the configuration does not exist",
    "unknown_key": "a key the file format does not have (misspelt, or a secret)",
    "missing_key": "a required key is not given",
    "invalid_value": "a value breaks its rule (type, range, format, one of a list)",
    "inconsistent": "values that are fine alone break a rule together",
    "duplicate_id": "an id appears twice where ids must be unique",
    "duplicate_row": "a CSV row repeats another's key",
    "missing_column": "a CSV header lacks a column",
    "unknown_reference": "an id that names nothing in the registry",
    "not_writable": "a directory the services write into is not writable",
}
"""Every problem code ``check`` reports, and what it means."""


@dataclass(frozen=True)
class CheckReport:
    problems: list[str]
    checked: list[str]
    config: Config | None


def _sites(registry: dict[str, Any]) -> dict[str, set[str]]:
    """Supplier id → its site ids, as written in the registry file (also when it failed to
    validate: its ids are still what the other files must name)."""
    out: dict[str, set[str]] = {}
    for supplier in registry.get("suppliers", []) if isinstance(registry, dict) else []:
        if isinstance(supplier, dict) and isinstance(supplier.get("id"), str):
            sites = supplier.get("sites") if isinstance(supplier.get("sites"), list) else []
            out[supplier["id"]] = {
                s["id"] for s in sites if isinstance(s, dict) and isinstance(s.get("id"), str)
            }
    return out


def _sort_key(problem: str) -> tuple[str, int]:
    if isinstance(problem, Problem):
        return problem.file, problem.line or 0
    return problem, 0


def run_check(path: Path | str | None = None, environ: Mapping[str, str] | None = None
              ) -> CheckReport:  # fmt: skip
    """Check everything; nothing is raised for a problem in the files."""
    from processing.accounting.inputs import (
        load_allocations,
        load_bills,
        load_certificates,
        unknown_references,
    )
    from processing.emissions import FactorLibrary

    found = inspect_config(path, environ)
    problems: list[str] = list(found.problems)
    checked: list[str] = []
    config = found.config
    jobs = found.services.get("jobs")
    jobs = jobs if isinstance(jobs, dict) else {}
    sites = _sites(found.registry) if found.registry else None

    def named(key: str) -> Path | None:
        value = jobs.get(key)
        if not isinstance(value, str) or not value:
            return None
        return Path(value) if Path(value).is_absolute() else found.path.parent / value

    factors_file = named("factors_file")
    loaders: list[tuple[str, Path | None, Callable[[], object], bool]] = [
        ("emission factors", factors_file, lambda: FactorLibrary.load(factors_file), False),
    ]
    for name, key, load in (
        ("allocations", "allocations_file", load_allocations),
        ("certificates", "certificates_file",
         lambda p: load_certificates(p, config.registry if config else None)),
        ("bills", "bills_file", load_bills),
    ):  # fmt: skip
        file = named(key)
        if file is not None:
            loaders.append((name, file, lambda load=load, file=file: load(file), True))
    for name, file, load, has_ids in loaders:
        try:
            load()
            checked.append(f"{name} {file.name if file else '(shipped)'}")
        except ConfigError as exc:
            problems += exc.problems
        except OSError as exc:
            code = "file_not_found" if isinstance(exc, FileNotFoundError) else "not_writable"
            problems.append(Problem(str(file), None, f"jobs: {name} file: {exc.strerror}", code))
            continue
        if has_ids and file is not None and sites is not None:
            with contextlib.suppress(ConfigError):  # no supplier column: reported above
                problems += unknown_references(file, sites)
    if config is not None:
        problems += _writable(config, checked)
    problems.sort(key=_sort_key)
    return CheckReport(problems, checked, config)


def _writable(config: Config, checked: list[str]) -> list[str]:
    """The directories the jobs write into (found now, not at the first alert), and the CA
    files of SMTP and MQTT."""
    problems: list[str] = []
    for key, directory in (("alerts.state_dir", config.alerts.state_dir),
                           ("jobs.export_dir", config.jobs.export_dir)):  # fmt: skip
        where = config.resolve(directory)
        try:
            where.mkdir(parents=True, exist_ok=True)
            probe = where / ".supplymeter-write-check"
            probe.write_text("ok")
            probe.unlink()
            checked.append(f"{key} writable")
        except OSError as exc:
            text = f"{key}: must be a writable directory ({where}: {exc.strerror})"
            problems.append(Problem(str(config.path), None, text, "not_writable"))
    smtp_ca = config.smtp.ca_file and config.resolve(config.smtp.ca_file)
    for key, file in (("smtp.ca_file", smtp_ca), ("mqtt.tls_ca_file", config.mqtt.tls_ca_file)):
        if file is not None and not os.path.isfile(file):
            problems.append(Problem(str(config.path), None, f"{key}: file not found ({file})",
                                    "file_not_found"))  # fmt: skip
    return problems
