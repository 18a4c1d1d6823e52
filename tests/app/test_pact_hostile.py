"""The PACT API under hostile clients and faults, served for real by uvicorn: oversized and
deeply nested bodies, guessed secrets, forged Host headers, hanging recipients, restarts with
answers pending, requests posted again."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.pact import Tokens, create_app, hash_secret
from app.pact_delivery import Responder
from deploy.stack import free_port
from processing.accounting.footprints import FootprintLog, footprint_content
from processing.accounting.scope3 import Month
from supplymeter.config import load_config
from tests.app.test_pact_api import OTHER_SUPPLIER, REGISTRY, _period, call
from tests.conftest import write_config
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

SECRETS = {"buyer-erp": "buyer-erp-secret-0123456789", "carmaker": "carmaker-secret-0123456789",
           "slowpoke": "slowpoke-secret-0123456789"}  # fmt: skip
NUT = "urn:pact:nut-f.example:supplier-id:N-M8"


class Served:
    """A uvicorn server in a thread, on a port of its own; ``stop()`` ends it."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="error"))  # fmt: skip
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert wait_until(lambda: self.server.started, 10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def recipient(received: list[dict[str, Any]], hang: bool = False) -> FastAPI:
    """A data recipient's token and Events endpoints; ``hang``: its Events endpoint never
    answers."""
    app = FastAPI()

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        return JSONResponse({"access_token": "recipient-token", "token_type": "Bearer"})

    @app.post("/3/events")
    async def events(request: Request) -> Response:
        if hang:
            await asyncio.sleep(3600)
        received.append(json.loads(await request.body()))
        return Response(status_code=200)

    return app


def _clients(callbacks: dict[str, int]) -> str:
    out = ""
    for cid, secret in SECRETS.items():
        out += (f'[[pact.clients]]\nid = "{cid}"\nsecret_hash = "{hash_secret(secret, 1000)}"\n'
                f'suppliers = ["*"]\n')  # fmt: skip
        if cid in callbacks:
            out += (f'callback = {{ events_url = "http://127.0.0.1:{callbacks[cid]}/3/events", '
                    'client_id = "supplymeter", secret_env = "PACT_CB_SECRET", '
                    "attempts = 30 }\n")  # fmt: skip
    return out


class Host:
    """The PACT host over three footprints, restartable on the same files."""

    def __init__(self, tmp: Path, callbacks: dict[str, int]) -> None:
        self.tmp = tmp
        self.config = load_config(write_config(tmp / "cfg", REGISTRY + OTHER_SUPPLIER,
                                               f"[pact]\npage_size = 2\n{_clients(callbacks)}"),
                                  {})  # fmt: skip
        self.log = FootprintLog(tmp / "pf.jsonl")
        if not self.log.footprints():
            month = Month(2025, 10)
            self.log.publish([
                (s, p, f"{s}/{p}/{month}", footprint_content(
                    _period(self.config, s, p, units, kg), month, month, {}))
                for s, p, units, kg in (("bolt-e", "m8-bolt", 1000, 150.0),
                                        ("bolt-e", "m16-bolt", 500, 300.0),
                                        ("nut-f", "m8-nut", 20000, 80.0))])  # fmt: skip
        self.served: Served | None = None

    def start(self, port: int | None = None, base_url: str | None = None) -> Served:
        port = port or free_port()
        app = create_app(
            self.config.pact, self.log, self.tmp / "events.jsonl", Tokens(b"k" * 32, 3600),
            lambda record, queues: Responder(record, queues, {"PACT_CB_SECRET": "cb"}, 0.2,
                                             timeout_s=2.0),
            base_url=base_url or f"http://127.0.0.1:{port}",
        )  # fmt: skip
        self.served = Served(app, port)
        return self.served

    def token(self, client: str) -> str:
        assert self.served is not None
        basic = base64.b64encode(f"{client}:{SECRETS[client]}".encode()).decode()
        status, _, body = call(self.served.url + "/auth/token", "POST", {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded"},
            b"grant_type=client_credentials")  # fmt: skip
        assert status == 200, body
        return str(body["access_token"])

    def request(self, client: str, event_id: str) -> int:
        assert self.served is not None
        event = {"specversion": "1.0", "id": event_id, "source": "https://x.example",
                 "time": "2025-11-05T10:30:00Z",
                 "type": "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3",
                 "data": {"productId": [NUT]}}  # fmt: skip
        return call(self.served.url + "/3/events", "POST",
                    {"Authorization": f"Bearer {self.token(client)}",
                     "Content-Type": "application/cloudevents+json"},
                    json.dumps(event).encode())[0]  # fmt: skip


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path, {})
    h.start()
    yield h
    assert h.served is not None
    h.served.stop()


def raw_post(port: int, path: str, headers: dict[str, str], chunks: Iterator[bytes]
             ) -> tuple[int, bytes]:  # fmt: skip
    """POST ``chunks`` with chunked transfer encoding; the answer, even if the server
    answered before the body was sent whole."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        try:
            for chunk in chunks:
                conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: read the answer it sent
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_large_bodies_are_refused_before_they_are_read(host: Host) -> None:
    """A 50 MB form to /auth/token and 50 MB to /3/events: refused by their Content-Length, or
    sent in chunks, as soon as the limit is passed — the server reads at most the limit."""
    assert host.served is not None
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    conn = http.client.HTTPConnection("127.0.0.1", host.served.port, timeout=30)
    conn.putrequest("POST", "/auth/token")
    conn.putheader("Content-Type", form["Content-Type"])
    conn.putheader("Content-Length", str(50_000_000))  # declared, then only begun
    conn.endheaders(b"grant_type=client_credentials&pad=xxxx")
    response = conn.getresponse()
    assert response.status == 413 and b"over 16384 bytes" in response.read()
    conn.close()
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        for _ in range(800):  # 800 × 64 KiB = 50 MB, unless refused on the way
            sent += 65536
            yield b"x" * 65536

    status, raw = raw_post(host.served.port, "/3/events",
                           {"Authorization": f"Bearer {host.token('carmaker')}",
                            "Content-Type": "application/cloudevents+json"}, chunks())  # fmt: skip
    assert status == 413 and b"over 1000000 bytes" in raw
    status, raw = raw_post(host.served.port, "/auth/token", form, iter([b"a" * 20000]))
    assert status == 413
    # the server is fine afterwards
    assert host.token("buyer-erp")


def test_malformed_tokens_and_bodies_are_400_or_401_never_500(host: Host) -> None:
    assert host.served is not None
    url = host.served.url
    for token in ("tökén", "ä.ö", "x" * 10_000, "Bearer", "a.b.c"):
        conn = http.client.HTTPConnection("127.0.0.1", host.served.port, timeout=10)
        conn.putrequest("GET", "/3/footprints")
        conn.putheader("Authorization", b"Bearer " + token.encode("utf-8"))
        conn.endheaders()
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        assert (response.status, body["code"]) == (401, "BadRequest"), token
    headers = {"Authorization": f"Bearer {host.token('carmaker')}",
               "Content-Type": "application/cloudevents+json"}  # fmt: skip
    deep = b"[" * 100_000 + b"]" * 100_000  # 200 kB: within the limit, too deep to parse
    status, _, body = call(url + "/3/events", "POST", headers, deep)
    assert (status, body["code"]) == (400, "BadRequest")
    basic = {"Authorization": "Basic " + base64.b64encode("ü:ö".encode("latin-1")).decode(),
             "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
    status, _, body = call(url + "/auth/token", "POST", basic, b"grant_type=client_credentials")
    assert status == 401 and body["error"] == "invalid_client"
    status, _, body = call(url + "/auth/token", "POST",
                           {"Content-Type": "application/x-www-form-urlencoded"},
                           b"\xff\xfe=\x00")  # fmt: skip
    assert status in (400, 401)


def test_guessing_is_throttled_per_address_and_unknown_ids_are_hashed_too(host: Host) -> None:
    """Wrong secrets from one address: after 10 the address must wait (429, Retry-After) —
    also for a right secret, until the wait is over; an unknown client id counts the same."""
    assert host.served is not None
    url = host.served.url + "/auth/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def attempt(client: str, secret: str) -> tuple[int, dict[str, str], Any]:
        basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
        return call(url, "POST", {**form, "Authorization": f"Basic {basic}"},
                    b"grant_type=client_credentials")  # fmt: skip

    answers = [attempt("carmaker" if n % 2 else "nobody-knows-me", "guess")[0] for n in range(10)]
    assert answers == [401] * 10
    status, headers, body = attempt("carmaker", SECRETS["carmaker"])
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "retry after" in body["error_description"]


def test_a_hanging_recipient_delays_no_one_else(tmp_path: Path) -> None:
    """The slowpoke's Events endpoint hangs; the carmaker's answer still arrives at once (each
    recipient has its own queue and worker; before, two threads served every recipient)."""
    received: list[dict[str, Any]] = []
    hung: list[dict[str, Any]] = []
    good, bad = Served(recipient(received)), Served(recipient(hung, hang=True))
    h = Host(tmp_path, {"carmaker": good.port, "slowpoke": bad.port})
    h.start()
    try:
        for n in range(3):
            assert h.request("slowpoke", f"slow-{n}") == 200
        assert h.request("carmaker", "fast-1") == 200
        assert wait_until(lambda: len(received) == 1, 5)
        assert received[0]["data"]["requestEventId"] == "fast-1"
        assert hung == []
    finally:
        assert h.served is not None
        h.served.stop()
        good.stop()
        bad.stop()


def test_an_answer_pending_at_a_restart_is_delivered_after_it_and_once(tmp_path: Path) -> None:
    """The recipient is down when a request arrives; the host restarts; the recipient comes
    back: the answer waiting on disk is delivered — once, even though the client posted the
    same request ten times."""
    received: list[dict[str, Any]] = []
    port = free_port()
    h = Host(tmp_path, {"carmaker": port})
    h.start()
    assert h.served is not None
    for _ in range(10):
        assert h.request("carmaker", "again-and-again") == 200
    time.sleep(0.5)  # a failed attempt or two against nobody
    h.served.stop()
    queued = list((tmp_path / "deliveries" / "carmaker").glob("*.json"))
    assert len(queued) == 1
    back = Served(recipient(received), port)
    h.start()  # a new process would see exactly these files
    try:
        assert wait_until(lambda: len(received) == 1, 10)
        assert received[0]["data"]["requestEventId"] == "again-and-again"
        assert h.request("carmaker", "again-and-again") == 200  # after the restart too
        time.sleep(1.0)
        assert len(received) == 1
        assert not list((tmp_path / "deliveries" / "carmaker").glob("*.json"))
    finally:
        assert h.served is not None
        h.served.stop()
        back.stop()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert sum("received" in e for e in events) == 1
    assert sum("duplicate" in e for e in events) == 10
    assert sum("sent" in e for e in events) == 1


def test_urls_come_from_the_configured_address_not_the_host_header(tmp_path: Path) -> None:
    h = Host(tmp_path, {})
    served = h.start(base_url="https://pact.buyer.example")
    try:
        headers = {"Authorization": f"Bearer {h.token('carmaker')}", "Host": "evil.example"}
        status, head, _ = call(served.url + "/3/footprints", headers=headers)
        assert status == 200
        assert head["link"].startswith("<https://pact.buyer.example/3/footprints?")
        status, _, body = call(served.url + "/.well-known/openid-configuration",
                               headers={"Host": "evil.example"})  # fmt: skip
        assert body["issuer"] == "https://pact.buyer.example"
        assert body["token_endpoint"] == "https://pact.buyer.example/auth/token"
    finally:
        served.stop()
