"""Limits for HTTP servers facing the outside world: request bodies bounded while they are
read, and failed logins throttled per client and per address.

Both exist because a server that reads a body whole before checking its size, or hashes every
guessed secret on demand, lets one hostile client spend the memory and CPU every other client
needs (measured on the PACT API: a 200 MB form took it from 57 to 857 MB; six loops of wrong
secrets took a valid client's list call from 2 ms to 1.5 s).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """ASGI middleware: a request body larger than its path's limit is answered ``413`` without
    being read further — by its ``Content-Length`` before any of it is read, or, sent in chunks,
    as soon as the running total passes the limit. A body within the limit is read here (at most
    ``limit`` bytes in memory) and handed on unchanged. ``error(status, message)`` makes the
    JSON body of the refusal."""

    def __init__(self, app: ASGIApp, *, limits: dict[str, int], default: int,
                 error: Callable[[int, str], dict[str, Any]]) -> None:  # fmt: skip
        self.app, self.limits, self.default, self.error = app, limits, default, error

    def limit_for(self, path: str) -> int:
        return self.limits.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._refuse(send, 400, "Content-Length is not a number")
                return
            if declared > limit:
                await self._refuse(send, 413, f"request body over {limit} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await self._refuse(send, 413, f"request body over {limit} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = json.dumps(self.error(status, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    blocked_until: float = 0.0
    lockouts: int = 0


class Throttle:
    """Failed attempts per key (``client:<id>``, ``addr:<ip>``): after ``max_failures`` within
    ``window_s`` the key is refused for ``base_lockout_s``, doubling with each further lockout
    up to ``max_lockout_s``; a success clears it. A refused attempt costs nothing (no secret is
    hashed for it), so guessing is bounded by the lockout, not by the server's CPU.

    A client id locked by someone else's guesses is locked for its owner too (the price of
    per-account lockout): the per-address limit is lower, so one guessing address is stopped
    long before the client is; and the lockout is short and says when to retry."""

    def __init__(self, *, max_failures: int, window_s: float = 300.0,
                 base_lockout_s: float = 30.0, max_lockout_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.max_failures, self.window_s = max_failures, window_s
        self.base_lockout_s, self.max_lockout_s = base_lockout_s, max_lockout_s
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0: now)."""
        with self._lock:
            record = self._records.get(key)
            return max(0.0, record.blocked_until - self.clock()) if record else 0.0

    def failed(self, key: str) -> None:
        now = self.clock()
        with self._lock:
            if len(self._records) > 100_000:  # bounded memory under a spray of addresses
                self._forget(now)
            record = self._records.setdefault(key, _Record())
            record.failures = [t for t in record.failures if now - t < self.window_s] + [now]
            if len(record.failures) >= self.max_failures:
                lockout = min(self.base_lockout_s * 2**record.lockouts, self.max_lockout_s)
                record.blocked_until = now + lockout
                record.lockouts += 1
                record.failures = []

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def _forget(self, now: float) -> None:
        self._records = {k: r for k, r in self._records.items()
                         if r.blocked_until > now or (r.failures and now - r.failures[-1]
                                                      < self.window_s)}  # fmt: skip
