"""InfluxDB through the v1-compatible HTTP API: line protocol on ``/write``, InfluxQL on ``/query``.

Every InfluxDB generation serves this API (native in 1.x, the compatibility API with DBRP
mappings in 2.x, InfluxDB 3 Core/Enterprise/Cloud), so nothing here depends on Flux or
``/api/v2``. Plain HTTP with keep-alive, timeouts and bounded retries (urllib3); line
protocol is serialized elsewhere with influxdb-client's ``Point``.

Writes are idempotent in InfluxDB: a point is keyed by measurement + tag set + timestamp,
so retrying a write whose answer was lost cannot double-count.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import urllib3

from supplymeter.config import InfluxSettings, Secrets
from supplymeter.errors import RequestRejected, SourceUnavailable

log = logging.getLogger(__name__)

_RETRY_STATUS = {429, 500, 502, 503, 504}


def quote_literal(value: str) -> str:
    """An InfluxQL string literal: ``'it\\'s'``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_ident(value: str) -> str:
    """An InfluxQL identifier: ``"my-db"``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(value: str) -> str:
    """An InfluxQL string literal: ``'it\\'s'``."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def rfc3339(ts: datetime) -> str:
    """A UTC timestamp literal for an InfluxQL ``WHERE time ...`` clause."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return "'" + ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "'"


@dataclass
class Series:
    """One series of a query result: rows of ``columns`` for one tag set."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """The values as dicts keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


def in_words(exc: BaseException) -> str:
    """A connection failure as a person reads it (``connection refused``, ``timed out``),
    without urllib3's pool and object reprs."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if errno:
        return errno.group(1).strip().lower()
    if "timed out" in text.lower() or isinstance(reason, urllib3.exceptions.TimeoutError):
        return "timed out"
    return re.sub(r"<[^>]* object at 0x[0-9a-f]+>:\s*", "", text)[:200]


class InfluxClient:
    """A small client for ``/ping``, ``/write`` and ``/query``. Use as a context manager.

    Parameters are keyword-only. ``token`` sends ``Authorization: Token`` (2.x/3.x);
    ``username``/``password`` send HTTP basic auth (1.x). ``retries`` bounds attempts on
    connection errors and 429/5xx answers; waits double from ``backoff_s`` up to 10 s.
    """

    def __init__(
        self,
        *,
        url: str,
        database: str,
        retention_policy: str | None = None,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.retries = retries
        self.backoff_s = backoff_s
        self._sleep = sleep
        self._headers: dict[str, str] = {}
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username:
            basic = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {basic}"
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=4,
            retries=False,
            timeout=urllib3.Timeout(connect=min(timeout_s, 5.0), read=timeout_s),
        )

    @classmethod
    def from_settings(cls, settings: InfluxSettings, secrets: Secrets) -> InfluxClient:
        """A client for the configured database, with credentials from the environment."""
        token = secrets.influxdb_token.get_secret_value() if secrets.influxdb_token else None
        password = (
            secrets.influxdb_password.get_secret_value() if secrets.influxdb_password else None
        )
        return cls(
            url=settings.url,
            database=settings.database,
            retention_policy=settings.retention_policy,
            token=token,
            username=settings.username,
            password=password,
            timeout_s=settings.timeout_s,
            retries=settings.retries,
        )

    def __enter__(self) -> InfluxClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.clear()

    # --- plumbing -----------------------------------------------------------------------

    def _request(
        self, method: str, path: str, params: dict[str, str], body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> urllib3.BaseHTTPResponse:  # fmt: skip
        url = f"{self.url}{path}?{urlencode(params)}"
        headers = self._headers | (headers or {})
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(min(10.0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                resp = self._http.request(
                    method, url, body=body, headers=headers, preload_content=True
                )
            except urllib3.exceptions.HTTPError as exc:
                last = in_words(exc)
                log.debug("influxdb %s %s failed (attempt %d): %s", method, path, attempt, last)
                continue
            if resp.status in _RETRY_STATUS:
                last = f"HTTP {resp.status}: {resp.data[:200]!r}"
                continue
            if resp.status >= 400:
                raise RequestRejected(
                    f"InfluxDB {path} refused the request: HTTP {resp.status}: "
                    f"{resp.data[:500].decode('utf-8', 'replace')}"
                )
            return resp
        err = SourceUnavailable(
            f"InfluxDB at {self.url} unavailable after {self.retries + 1} "
            f"attempt{'s' if self.retries else ''}: {last}"
        )
        err.reason = last
        raise err

    def _db_params(self) -> dict[str, str]:
        params = {"db": self.database}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        return params

    # --- API ----------------------------------------------------------------------------

    def ping(self) -> bool:
        """True when the server answers ``/ping`` (no retries)."""
        try:
            resp = self._http.request("GET", f"{self.url}/ping", headers=self._headers)
        except urllib3.exceptions.HTTPError:
            return False
        return resp.status in (200, 204)

    def write_lines(self, lines: Iterable[str], precision: str = "ns") -> int:
        """Write line-protocol lines (timestamps in ``precision``); returns how many.

        Raises :class:`SourceUnavailable` (retryable) or :class:`RequestRejected`.
        """
        body = "\n".join(lines)
        if not body:
            return 0
        params = self._db_params() | {"precision": precision}
        self._request("POST", "/write", params, body.encode("utf-8"))
        return body.count("\n") + 1

    def query(self, q: str, *, epoch: str = "ns", chunk_size: int = 20_000) -> list[Series]:
        """Run InfluxQL and return every series of every statement, chunks merged.

        Uses chunked responses so no server-side row limit truncates a long result.
        Times come back as integers in ``epoch`` units.
        """
        params = self._db_params() | {
            "epoch": epoch,
            "chunked": "true",
            "chunk_size": str(chunk_size),
        }
        # The statement goes in the form body: a query naming many meters outgrows a URL.
        form = urlencode({"q": q}).encode()
        resp = self._request("POST", "/query", params, form,
                             {"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        merged: dict[tuple[Any, ...], Series] = {}
        for line in resp.data.splitlines():
            if not line.strip():
                continue
            payload = json.loads(line)
            if "error" in payload:
                raise RequestRejected(f"InfluxQL error: {payload['error']} in {q!r}")
            for result in payload.get("results", []):
                if "error" in result:
                    raise RequestRejected(f"InfluxQL error: {result['error']} in {q!r}")
                for s in result.get("series", []):
                    tags = s.get("tags") or {}
                    key = (result.get("statement_id"), s["name"], tuple(sorted(tags.items())))
                    if key in merged:
                        merged[key].values.extend(s.get("values", []))
                    else:
                        merged[key] = Series(s["name"], tags, s["columns"], s.get("values", []))
        return list(merged.values())

    def execute(self, q: str) -> None:
        """Run a statement that returns nothing (``CREATE DATABASE``, ``DROP SERIES``...)."""
        self.query(q)

    def ensure_database(self) -> None:
        """``CREATE DATABASE`` (a no-op when it exists). Only for 1.x; 2.x/3.x map buckets."""
        params = {"q": f"CREATE DATABASE {quote_ident(self.database)}"}
        resp = self._request("POST", "/query", params)
        for result in json.loads(resp.data).get("results", []):
            if "error" in result:
                raise RequestRejected(f"cannot create database: {result['error']}")

    def create_reader(self, user: str, password: str) -> None:
        """A user that can only read this database (InfluxDB 1.x ``CREATE USER`` + ``GRANT
        READ``), e.g. for Grafana: it cannot write, delete or see other databases. An existing
        user gets the new password and the grant. Needs an admin connection when the server
        has ``auth-enabled``."""
        if not user or not password:
            raise ValueError("a reader needs a user name and a password")
        statements = [
            f"CREATE USER {quote_ident(user)} WITH PASSWORD {quote_string(password)}",
            f"SET PASSWORD FOR {quote_ident(user)} = {quote_string(password)}",
            f"GRANT READ ON {quote_ident(self.database)} TO {quote_ident(user)}",
        ]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        for statement in statements:  # in the body: a password never sits in a logged URL
            resp = self._request("POST", "/query", {}, urlencode({"q": statement}).encode(), form)
            for result in json.loads(resp.data).get("results", []):
                if "error" in result and "already exists" not in result["error"]:
                    raise RequestRejected(f"cannot create reader {user!r}: {result['error']}")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until ``/ping`` answers, or raise :class:`SourceUnavailable`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.1)
        raise SourceUnavailable(f"InfluxDB at {self.url} did not answer /ping in {timeout_s} s")
