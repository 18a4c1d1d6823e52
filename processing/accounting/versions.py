"""What a version of an exported dataset is, when a new one is due, and why.

Every dataset the programme signs or sends — the monthly scope-3 files, the product footprints
of a reference period, the CBAM workbook, a progress report — is a *versioned dataset*:
``<dir>/v1/``, ``<dir>/v2/``... each written whole (staged, then renamed)
with a ``manifest.json`` holding the figures a restatement is judged on (``totals``), the
inputs it was made from and the reasons it was written. Old versions are never touched.

A new version is due when, compared with the latest one:

* a total (emissions, allocated emissions) moved by more than the restatement threshold
  (``[jobs] restate_threshold_pct``, default 0.1%);
* a quality figure changed at all beyond rounding — the estimated energy of a carrier
  (> 0.001 of its unit), completeness or primary-data share (> 0.001 percentage points): a
  signed file must not say "estimated" about energy that has since been measured (measured
  energy is judged like the totals, by the threshold);
* a flag changed (provisional factor) or an input changed (allocation share, certificates).

* a text figure changed (a footprint's content digest: PACT republishes on any change).

The diff written beside the new version lists every change and the reasons the pipeline
recorded for it (late data, a meter event, a new factor, an allocation).
:func:`publish_if_changed` applies these rules for every dataset but the scope-3 export,
whose manifest adds its inputs' digest and method (:func:`.export.publish_month`).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

QUALITY_TOLERANCE = 1e-3
"""Absolute change below which a quality figure is rounding, not a change. [unit or %-points]"""

DIFF_COLUMNS = ("supplier", "metric", "previous", "new", "change", "change_pct", "why")


def versions(directory: Path) -> list[int]:
    """Version numbers written in ``directory``, ascending."""
    if not directory.is_dir():
        return []
    found = []
    for child in directory.iterdir():
        versioned = child.name.startswith("v") and child.name[1:].isdigit()
        if versioned and (child / "manifest.json").exists():
            found.append(int(child.name[1:]))
    return sorted(found)


def latest_manifest(directory: Path) -> dict[str, Any] | None:
    """The newest version's manifest, or ``None`` when nothing was written yet."""
    found = versions(directory)
    if not found:
        return None
    return json.loads((directory / f"v{found[-1]}" / "manifest.json").read_text())


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def is_quality(metric: str) -> bool:
    """Quality figures: any change beyond rounding makes a new version."""
    return metric.startswith("estimated_") or metric in (
        "completeness_pct", "primary_data_share_pct",
    )  # fmt: skip


def differences(
    old: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], threshold_pct: float
) -> list[list[str]]:
    """Rows ``supplier, metric, previous, new, change, change_pct, why`` for every change
    that makes a new version (see the module docstring)."""
    rows = []
    for supplier in sorted(set(old) | set(new)):
        before, after = old.get(supplier, {}), new.get(supplier, {})
        for metric in sorted(set(before) | set(after)):
            a, b = before.get(metric), after.get(metric)
            if (
                isinstance(a, bool)
                or isinstance(b, bool)
                or isinstance(a, str)
                or isinstance(b, str)
            ):
                if a != b:
                    rows.append([supplier, metric, str(a), str(b), "", "", ""])
                continue
            if a is None or b is None:
                if a != b:
                    rows.append([supplier, metric, _fmt(a), _fmt(b), "", "", ""])
                continue
            change = b - a
            if is_quality(metric) or metric == "allocation_share_pct":
                if abs(change) > (QUALITY_TOLERANCE if is_quality(metric) else 1e-7):
                    rows.append([supplier, metric, _fmt(a), _fmt(b), _fmt(change), "", ""])
                continue
            pct = 100 * change / a if a else (math.inf if change else 0.0)
            if abs(pct) > threshold_pct:
                rows.append([supplier, metric, _fmt(a), _fmt(b), _fmt(change), _fmt(pct, 4), ""])
    return rows


@dataclass(frozen=True)
class Published:
    version: int
    directory: Path
    diff_path: Path | None


def publish(
    directory: Path,
    manifest: dict[str, Any],
    build: Callable[[Path, int], None],
    diff_rows: list[list[str]],
    reasons: list[str],
) -> Published:
    """Write the next version of the dataset in ``directory``: ``build(staging_dir, version)``
    writes its files, then the manifest (with ``version``, ``restates``, ``written_utc``,
    ``reasons``) and the diff against the previous version; the version appears whole or not
    at all."""
    existing = versions(directory)
    version = (existing[-1] + 1) if existing else 1
    staging = directory / f".v{version}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    build(staging, version)
    manifest = manifest | {
        "version": version,
        "restates": existing[-1] if existing else None,
        "written_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "reasons": reasons,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    diff_name = None
    if existing:
        diff_name = f"diff-v{existing[-1]}.csv"
        with (staging / diff_name).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(DIFF_COLUMNS)
            writer.writerows(with_reasons(diff_rows, reasons))
    target = directory / f"v{version}"
    staging.rename(target)
    return Published(version, target, target / diff_name if diff_name else None)


def version_rows(
    directory: Path, diff_rows: list[list[str]], reasons: list[str]
) -> list[list[str]]:
    """Every version of the dataset so far and the one being written, for the reader of the
    new one: ``version, written_utc, restates, supplier, metric, previous, new, change,
    change_pct, why`` — each earlier version's diff and reasons as written beside it, then the
    new version's (written "now")."""
    rows: list[list[str]] = []
    found = versions(directory)
    for v in found:
        manifest = json.loads((directory / f"v{v}" / "manifest.json").read_text())
        head = [str(v), manifest.get("written_utc", ""), str(manifest.get("restates") or "")]
        diff = directory / f"v{v}" / f"diff-v{manifest.get('restates')}.csv"
        if not diff.exists():
            rows.append([*head, "*", "first version", "", "", "", "", ""])
            continue
        with diff.open(newline="", encoding="utf-8") as fh:
            rows += [[*head, *row] for row in list(csv.reader(fh))[1:]]
    head = [str((found[-1] + 1) if found else 1), "this version", str(found[-1] if found else "")]
    if not found:
        return [[*head, "*", "first version", "", "", "", "", ""]]
    rows += [[*head, *row] for row in with_reasons(diff_rows, reasons)]
    return rows


def with_reasons(diff_rows: list[list[str]], reasons: list[str]) -> list[list[str]]:
    """Diff rows each carrying the reasons recorded for the version in its ``why`` column (a
    reader filtering one supplier's rows still sees why); a version due to its reasons alone
    (a method or input change that moved no figure) gets one row per reason."""
    why = "; ".join(reasons)
    if not diff_rows:
        return [["*", "reason", "", "", "", "", r] for r in reasons]
    return [[*row[:6], row[6] or why] for row in diff_rows]


@dataclass(frozen=True)
class Standing:
    """The version of a dataset that stands after :func:`publish_if_changed`."""

    version: int
    directory: Path
    written: bool
    """True when this call wrote it (new or restated)."""
    diff_path: Path | None = None


def publish_if_changed(
    directory: Path, totals: dict[str, dict[str, Any]], build: Callable[[Path, int], None],
    threshold_pct: float, reasons: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Standing:  # fmt: skip
    """A new version of the dataset in ``directory`` only when ``totals`` differ from the
    latest version's (:func:`differences`) or an ``extra`` manifest entry changed (each such
    entry is named in the reasons); otherwise the latest version stands, untouched."""
    latest = latest_manifest(directory)
    diff_rows: list[list[str]] = []
    why = list(reasons or [])
    extra = extra or {}
    if latest is not None:
        diff_rows = differences(latest["totals"], totals, threshold_pct)
        moved = [k for k in sorted(extra) if latest.get(k) != extra[k]]
        if not diff_rows and not moved:
            v = latest["version"]
            return Standing(v, directory / f"v{v}", False)
        why += [f"{k} changed: {latest.get(k)} → {extra[k]}" for k in moved]
        if diff_rows and not reasons:
            why.append("figures changed")
    done = publish(directory, {"totals": totals, **extra}, build, diff_rows, why)
    return Standing(done.version, done.directory, True, done.diff_path)
