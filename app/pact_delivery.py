"""Events this PACT host sends to data recipients, one durable queue per recipient.

A RequestCreatedEvent is answered (RequestFulfilledEvent or RequestRejectedEvent) and newly
published footprints are announced (PublishedEvent) by POSTing a CloudEvent to the Events
endpoint configured for the client (never to an event's ``source``: no SSRF), with a token
from its token endpoint (PACT v3 §Action Events).

* **Durable**: an event is written to ``<dir>/<client>/`` before the request that caused it
  is answered, and leaves only once the recipient accepted it (``sent`` in the events file) or
  after ``callback.attempts`` tries (moved to ``abandoned/`` with its reason, ``abandoned`` in
  the events file). A restart carries on with what waits.
* **One recipient cannot delay another**: each recipient has its own worker thread; a
  recipient that hangs holds only its own queue (each POST has a timeout).
* **One sender at a time**: a worker holds its recipient's lock while it sends, so the server
  and a one-shot ``pact publish`` never send the same event twice.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from supplymeter.config import PactCallback, PactClient
from supplymeter.errors import SupplymeterError
from supplymeter.files import locked, write_json_atomic

log = logging.getLogger(__name__)

POST_TIMEOUT_S = 20.0
"""Longest wait for a recipient's token endpoint or Events endpoint, per request."""
MAX_BACKOFF_S = 600.0


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:80]


class Delivery:
    """A queued event: ``result()`` waits until it was delivered (True) or abandoned (False)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def done(self) -> bool:
        return not self.path.exists()

    def result(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.path.exists():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{self.path.name} still waits for its recipient")
            time.sleep(0.05)
        return not (self.path.parent / "abandoned" / self.path.name).exists()


class Responder:
    """The per-recipient queues under ``directory`` and their workers.

    ``record(entry)`` appends to the events file; ``environ`` holds the callbacks' secrets;
    ``base_delay_s`` is the first retry's wait (doubling, at most ``MAX_BACKOFF_S``);
    ``timeout_s`` bounds each request to a recipient."""

    def __init__(self, record: Callable[[dict[str, Any]], None], directory: Path,
                 environ: Any = os.environ, base_delay_s: float = 2.0,
                 timeout_s: float = POST_TIMEOUT_S) -> None:  # fmt: skip
        self._timeout = timeout_s
        self._record = record
        self.dir = directory
        self._environ = environ
        self._delay = base_delay_s
        self._stop = threading.Event()
        self._workers: dict[str, threading.Thread] = {}
        self._wake: dict[str, threading.Event] = {}
        self._clients: dict[str, PactClient] = {}
        self._lock = threading.Lock()

    # --- queueing (any thread) -------------------------------------------------------------

    def start(self, clients: list[PactClient]) -> None:
        """Start the workers of clients with a callback whose queues hold events (after a
        restart: what was waiting is delivered now)."""
        for client in clients:
            if client.callback is not None and any((self.dir / client.id).glob("*.json")):
                self._ensure_worker(client)

    def submit(self, client: PactClient, event: dict[str, Any], found: list[dict[str, Any]],
               source: str) -> Delivery:  # fmt: skip
        """Queue the answer to a RequestCreatedEvent (fulfilled with ``found``, else
        rejected)."""
        answer = self.response(event, found, source)
        return self.enqueue(client, answer, {"request": event["id"], "footprints": len(found)})

    def notify(self, client: PactClient, pf_ids: list[str], source: str) -> Delivery:
        """Queue a ``PublishedEvent`` naming footprints the client may see."""
        event = {"type": "org.wbcsd.pact.ProductFootprint.PublishedEvent.3",
                 "specversion": "1.0", "id": str(uuid.uuid4()), "source": source,
                 "time": _now_text(), "data": {"pfIds": pf_ids}}  # fmt: skip
        return self.enqueue(client, event, {"footprints": len(pf_ids)})

    def enqueue(self, client: PactClient, event: dict[str, Any], note: dict[str, Any]
                ) -> Delivery:  # fmt: skip
        """Write ``event`` to the client's queue (durable on return) and wake its worker."""
        if client.callback is None:
            raise SupplymeterError(f"PACT client {client.id} has no callback")
        path = self.dir / client.id / f"{time.time_ns():020d}-{_safe(event['id'])}.json"
        write_json_atomic(path, {"client": client.id, "event": event, "note": note,
                                 "attempts": 0, "next_at": 0.0})  # fmt: skip
        self._ensure_worker(client)
        self._wake[client.id].set()
        return Delivery(path)

    @staticmethod
    def response(event: dict[str, Any], found: list[dict[str, Any]], source: str
                 ) -> dict[str, Any]:  # fmt: skip
        kind = "RequestFulfilledEvent" if found else "RequestRejectedEvent"
        data: dict[str, Any] = {"requestEventId": event["id"]}
        if found:
            data["pfs"] = found
        else:
            data["error"] = {"code": "NotFound",
                             "message": "No footprint matches the request's criteria."}  # fmt: skip
        return {"type": f"org.wbcsd.pact.ProductFootprint.{kind}.3", "specversion": "1.0",
                "id": str(uuid.uuid4()), "source": source, "time": _now_text(),
                "data": data}  # fmt: skip

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the workers. What waits stays queued for the next start; an event being sent
        when the wait ends may be sent again then (recipients know it by its id)."""
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        deadline = time.monotonic() + timeout_s
        for worker in list(self._workers.values()):
            worker.join(max(0.0, deadline - time.monotonic()))

    # --- the workers ----------------------------------------------------------------------

    def _ensure_worker(self, client: PactClient) -> None:
        with self._lock:
            self._clients[client.id] = client
            if client.id in self._workers and self._workers[client.id].is_alive():
                return
            self._wake[client.id] = threading.Event()
            worker = threading.Thread(target=self._run, args=(client.id,), daemon=True,
                                      name=f"pact-deliver-{client.id}")  # fmt: skip
            self._workers[client.id] = worker
            worker.start()

    def _run(self, client_id: str) -> None:
        wake = self._wake[client_id]
        while not self._stop.is_set():
            try:
                wait = self._pass(self._clients[client_id])
            except Exception:  # a worker must survive anything one event does to it
                log.exception("PACT API: delivering to %s", client_id)
                wait = 5.0
            wake.wait(wait)
            wake.clear()

    def _pass(self, client: PactClient) -> float:
        """Send what is due, in order; the seconds until the next is due (at most 1)."""
        directory = self.dir / client.id
        try:
            with locked(directory / ".lock", timeout_s=0):
                return self._send_due(client, directory)
        except SupplymeterError:  # another process is sending to this recipient
            return 1.0

    def _send_due(self, client: PactClient, directory: Path) -> float:
        wait = 1.0
        for path in sorted(directory.glob("*.json")):
            if self._stop.is_set():
                break
            try:
                item = json.loads(path.read_text())
            except FileNotFoundError:
                continue
            except ValueError:
                self._abandon(client, path, None, "unreadable queue file")
                continue
            now = time.time()
            if item["next_at"] > now:
                wait = min(wait, item["next_at"] - now)
                continue
            self._attempt(client, path, item)
        return max(wait, 0.01)

    def _attempt(self, client: PactClient, path: Path, item: dict[str, Any]) -> None:
        cb = client.callback
        assert cb is not None
        event = item["event"]
        kind = event["type"].split(".")[-2]
        item["attempts"] += 1
        try:
            self._post(cb, event)
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            problem = str(exc)[:300]
            log.warning("PACT API: sending %s to %s, attempt %d of %d: %s", kind, client.id,
                        item["attempts"], cb.attempts, problem)  # fmt: skip
            if item["attempts"] >= cb.attempts:
                self._abandon(client, path, item, problem)
                return
            delay = min(self._delay * 2 ** (item["attempts"] - 1), MAX_BACKOFF_S)
            item["next_at"] = time.time() + delay
            item["last_error"] = problem
            write_json_atomic(path, item)
            return
        self._record({"sent": kind, "client": client.id, "event": event["id"],
                      "attempts": item["attempts"], **item["note"]})  # fmt: skip
        path.unlink()

    def _abandon(self, client: PactClient, path: Path, item: dict[str, Any] | None,
                 reason: str) -> None:  # fmt: skip
        aside = path.parent / "abandoned"
        aside.mkdir(exist_ok=True)
        if item is not None:
            item["abandoned"] = reason
            write_json_atomic(path, item)
        with contextlib.suppress(FileNotFoundError):
            os.replace(path, aside / path.name)
        event = (item or {}).get("event", {})
        self._record({"abandoned": str(event.get("type", "?")).split(".")[-2],
                      "client": client.id, "event": event.get("id"), "reason": reason,
                      **(item or {}).get("note", {})})  # fmt: skip

    def _post(self, cb: PactCallback, event: dict[str, Any]) -> None:
        token = self._token(cb)
        request = urllib.request.Request(
            cb.events_url, data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/cloudevents+json; charset=UTF-8",
                     "Authorization": f"Bearer {token}"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=self._timeout) as r:
            r.read()

    def _token(self, cb: PactCallback) -> str:
        secret = self._environ.get(cb.secret_env)
        if not secret:
            raise ValueError(f"{cb.secret_env} is not set: no secret for {cb.client_id}")
        parts = urlsplit(cb.events_url)
        url = cb.auth_url or f"{parts.scheme}://{parts.netloc}/auth/token"
        basic = base64.b64encode(f"{quote(cb.client_id, safe='')}:{quote(secret, safe='')}"
                                 .encode()).decode()  # fmt: skip
        request = urllib.request.Request(url, data=b"grant_type=client_credentials",
                                         method="POST", headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Authorization": f"Basic {basic}", "Accept": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=self._timeout) as r:
            return str(json.loads(r.read())["access_token"])
