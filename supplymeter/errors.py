"""The one error hierarchy every part of supplymeter raises.

Library exceptions are converted at the edge (``raise ... from exc``) so the cause survives;
whether an error is retryable is decided where it is raised.
"""

from __future__ import annotations

from collections.abc import Sequence


class SupplymeterError(Exception):
    """Base of every error supplymeter raises on purpose."""


class Problem(str):
    """One problem in an input file, as text (``FILE:LINE: where: key: rule (got value)
    [code]``) that also carries its parts: ``code`` is stable (``unknown_key``,
    ``invalid_value``, ``unknown_reference``...) for scripts and tests to match on, ``file``
    and ``line`` say where to look (``line`` is ``None`` when the file has no line for it)."""

    code: str
    file: str
    line: int | None

    def __new__(cls, file: str, line: int | None, text: str, code: str) -> Problem:
        where = f"{file}:{line}" if line is not None else file
        self = super().__new__(cls, f"{where}: {text} [{code}]")
        self.code, self.file, self.line = code, file, line
        return self


class ConfigError(SupplymeterError):
    """The configuration or registry is invalid; nothing should start.

    ``problems`` lists every problem found, each already naming file, key, rule and value.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SourceUnavailable(SupplymeterError):
    """A server (broker, database, SMTP) could not be reached or answered with a transient
    failure. Retrying later may succeed."""

    retryable = True
    reason = ""
    """The cause in a few words (``connection refused``), where known."""


class RequestRejected(SupplymeterError):
    """A server understood the request and refused it (bad query, type conflict, auth).
    Retrying the same request will fail the same way."""

    retryable = False


class BadReading(SupplymeterError):
    """Input from the outside world that does not follow the gateway protocol.

    ``code`` is a stable reason code (``invalid_json``, ``unknown_meter``...) that metrics,
    alerts and dashboards match on; the message is for people.
    """

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")
