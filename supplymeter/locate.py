"""Where a problem sits in a TOML file: the line a key is written on, and the key's path by
ids (``supplier forge-a / site taichung-1 / meter press-line: carier``) rather than by list
positions (``suppliers[0].sites[0].meters[1].carier``), which nobody can find in a file.

:func:`key_lines` is a line scanner, not a TOML parser: it runs on files that ``tomllib``
already parsed, and only has to find headers (``[table]``, ``[[array.of.tables]]``), keys at
the start of a line, and the items of multi-line arrays that start a line with ``{``. Anything
it cannot place falls back to the nearest enclosing key or table it did find.
"""

from __future__ import annotations

import re
from typing import Any

Loc = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _names(dotted: str) -> list[str]:
    return [part.strip().strip("\"'") for part in dotted.split(".")]


def _bracket_depth(line: str) -> int:
    """Net ``[`` minus ``]`` outside strings and comments on one line."""
    depth, quote = 0, ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
    return depth


def key_lines(text: str) -> dict[Loc, int]:
    """1-based line of every table, array-of-tables item, key, and multi-line array item of a
    TOML document, keyed by its path (list positions as ints, as pydantic reports them)."""
    found: dict[Loc, int] = {}
    latest: dict[tuple[str, ...], Loc] = {}  # names of a table path → its latest instance
    counts: dict[Loc, int] = {}
    table: Loc = ()
    array: Loc | None = None  # inside a multi-line array: its key path
    depth, item = 0, -1
    in_string = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count('"""') % 2 or line.count("'''") % 2:
            in_string = not in_string
            if not in_string:
                continue
        if in_string:
            continue
        if array is not None:
            if line.lstrip().startswith("{") and depth == 1:
                item += 1
                found.setdefault((*array, item), number)
            depth += _bracket_depth(line)
            if depth <= 0:
                array = None
            continue
        header = _HEADER.match(line)
        if header:
            names = _names(header.group(2))
            parent: Loc = latest.get(tuple(names[:-1]), tuple(names[:-1])) if names[:-1] else ()
            if header.group(1) == "[[":
                key = (*parent, names[-1])
                counts[key] = counts.get(key, -1) + 1
                table = (*key, counts[key])
            else:
                table = (*parent, names[-1])
            latest[tuple(names)] = table
            found.setdefault(table, number)
            continue
        key_match = _KEY.match(line)
        if key_match:
            loc = (*table, *_names(key_match.group(1)))
            found.setdefault(loc, number)
            rest = line[key_match.end() :]
            opened = _bracket_depth(rest)
            if opened > 0:
                array, depth, item = loc, opened, -1
    return found


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The line of ``loc``, or of the nearest enclosing key or table that has one."""
    for n in range(len(loc), 0, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


_SINGULAR = {"suppliers": "supplier", "sites": "site", "meters": "meter", "products": "product",
             "lines": "line", "events": "event", "inputs": "input", "clients": "client",
             "process_emissions": "process emission"}  # fmt: skip


_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")


def by_ids(raw: Any, loc: Loc) -> tuple[str, str]:
    """``(where, key)`` of ``loc`` in the parsed document ``raw``: list items named by their
    ``id`` (``supplier forge-a / site taichung-1``), the remaining keys dotted (``carier``,
    ``allocation.share``). Items without a valid id keep their position (``boundary[2]``)."""
    where: list[str] = []
    keys: list[str] = []
    node = raw
    for i, part in enumerate(loc):
        if isinstance(part, int):
            name = str(loc[i - 1]) if i else "item"
            item = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            if keys and keys[-1] == name:
                keys.pop()
            if isinstance(ident, str) and _ID.match(ident):
                where.append(f"{_SINGULAR.get(name, name)} {ident}")
            else:
                where.append(f"{'.'.join([*keys, name])}[{part}]")
            keys = []
            node = item
        else:
            keys.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return " / ".join(where), ".".join(keys)


def label(raw: Any, loc: Loc) -> str:
    """``loc`` for people: ``supplier forge-a / site s1 / meter m2: carier``, or
    ``suppliers[1].id`` where an item has no valid id, or ``mqtt.qos`` outside lists."""
    where, key = by_ids(raw, loc)
    if not (where and key):
        return where or key
    return f"{where}{'.' if where.endswith(']') else ': '}{key}"
