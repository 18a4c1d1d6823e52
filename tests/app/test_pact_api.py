"""The PACT v3 host API, served for real over HTTP by uvicorn, every response validated against
the spec's own OpenAPI schema (../shared/standards/pact-v3/openapi.yaml) with jsonschema."""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from hypothesis import given
from hypothesis import strategies as st

from app.pact import (
    EVENT_TYPES,
    BadRequest,
    Tokens,
    create_app,
    event_problem,
    hash_secret,
    parse_query,
    request_criteria,
)
from app.pact_delivery import Responder
from deploy.stack import free_port
from processing.accounting.footprints import FootprintLog, footprint_content
from processing.accounting.products import ProductPeriod
from processing.accounting.scope3 import Month
from supplymeter.config import Config, load_config
from tests.conftest import write_config
from tests.helpers import wait_until
from tests.pact_schema import check, load_spec, validate_at
from tests.processing.test_products import REGISTRY

OTHER_SUPPLIER = """
[[suppliers]]
id = "nut-f"
name = "Kaohsiung Nut Co."
domain = "nut-f.example"
company_ids = ["urn:pact:nut-f.example:company-id:87654321"]
allocation = { method = "dedicated", share = 1.0 }
  [[suppliers.sites]]
  id = "plant-1"
  lines = [ { id = "forming", meters = ["former"] } ]
  products = [ { id = "m8-nut", part_number = "N-M8", name = "Hex nut M8", cn_code = "731816", mass_kg = 0.005, line = "forming", counter = "former" } ]
    [[suppliers.sites.meters]]
    id = "former"
    carrier = "electricity"
"""  # noqa: E501

SECRETS = {"buyer-erp": "buyer-erp-secret-0123456789", "carmaker": "carmaker-secret-0123456789"}


# --- the schema --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded = load_spec()
    if loaded is None:
        pytest.skip("PACT v3 OpenAPI schema not found beside the project (../shared)")
    return loaded


def _serve(app: Any, port: int | None = None) -> tuple[uvicorn.Server, threading.Thread, int]:
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    return server, thread, port


def recipient_app(received: list[dict[str, Any]]) -> FastAPI:
    """A data recipient's host: its token endpoint and Events endpoint; the first event POST
    fails with 503 (the answer must be retried)."""
    app = FastAPI()
    failures = [1]

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        expected = "Basic " + base64.b64encode(b"supplymeter:cb-secret").decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": "recipient-token", "token_type": "Bearer"})

    @app.post("/3/events")
    async def events(request: Request) -> Response:
        if request.headers.get("authorization") != "Bearer recipient-token":
            return JSONResponse({"code": "BadRequest", "message": "token"}, status_code=400)
        if failures[0]:
            failures[0] -= 1
            return JSONResponse({"code": "InternalError", "message": "busy"}, status_code=503)
        received.append(json.loads(await request.body()))
        return Response(status_code=200)

    return app


# --- the server ------------------------------------------------------------------------------


def _period(config: Config, supplier: str, product: str, units: float, kg: float
            ) -> ProductPeriod:  # fmt: skip
    s = config.registry.supplier(supplier)
    assert s is not None
    site = s.sites[0]
    p = next(x for x in site.products if x.id == product)
    pp = ProductPeriod(s, site, p, units=units, indirect_kgco2e=kg, site_kgco2e=kg)
    pp.dqr_weighted.append((2.0, 1.0, 2.0, kg))
    return pp


@pytest.fixture
def host(tmp_path: Path) -> Iterator[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    r_server, r_thread, r_port = _serve(recipient_app(received))
    callback = (f'callback = {{ events_url = "http://127.0.0.1:{r_port}/3/events", '
                'client_id = "supplymeter", secret_env = "PACT_CB_SECRET" }\n')  # fmt: skip
    clients = "".join(
        f'[[pact.clients]]\nid = "{cid}"\nsecret_hash = "{hash_secret(secret, 1000)}"\n'
        f"suppliers = {['bolt-e'] if cid == 'buyer-erp' else ['*']!r}\n"
        + (callback if cid == "carmaker" else "")
        for cid, secret in SECRETS.items()
    ).replace("'", '"')
    config = load_config(write_config(tmp_path / "cfg", REGISTRY + OTHER_SUPPLIER,
                                      f"[pact]\npage_size = 2\n{clients}"), {})  # fmt: skip
    log = FootprintLog(tmp_path / "pf.jsonl")
    factors: dict[str, Any] = {}
    month = Month(2025, 10)
    contents = []
    for supplier, product, units, kg in (("bolt-e", "m8-bolt", 1000, 150.0),
                                         ("bolt-e", "m16-bolt", 500, 300.0),
                                         ("nut-f", "m8-nut", 20000, 80.0)):  # fmt: skip
        doc = footprint_content(_period(config, supplier, product, units, kg), month, month,
                                factors)  # fmt: skip
        contents.append((supplier, product, f"{supplier}/{product}/{month}", doc))
    log.publish(contents, datetime(2025, 11, 3, tzinfo=UTC))
    clock = [time.time()]
    tokens = Tokens(b"k" * 32, 3600, clock=lambda: clock[0])
    port = free_port()
    app = create_app(
        config.pact,
        log,
        tmp_path / "events.jsonl",
        tokens,
        lambda record, queues: Responder(record, queues, {"PACT_CB_SECRET": "cb-secret"}, 0.05),
        base_url=f"http://127.0.0.1:{port}",
    )
    server, thread, port = _serve(app, port)
    yield {"url": f"http://127.0.0.1:{port}", "log": log, "clock": clock, "config": config,
           "events": tmp_path / "events.jsonl", "contents": contents,
           "received": received}  # fmt: skip
    server.should_exit = True
    r_server.should_exit = True
    thread.join(10)
    r_thread.join(10)


def call(url: str, method: str = "GET", headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            status, head, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, dict(exc.headers), exc.read()
    return status, {k.lower(): v for k, v in head.items()}, json.loads(raw) if raw else None


def token_for(h: dict[str, Any], client: str = "buyer-erp") -> str:
    basic = base64.b64encode(f"{client}:{SECRETS[client]}".encode()).decode()
    status, _, body = call(
        h["url"] + "/auth/token",
        "POST",
        {"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        b"grant_type=client_credentials",
    )
    assert status == 200, body
    return body["access_token"]


def get(h: dict[str, Any], path: str, token: str | None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return call(h["url"] + path, headers=headers)


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_authenticate(host: dict[str, Any]) -> None:
    url = host["url"] + "/auth/token"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    status, headers, body = call(url, "POST", {**form, "Authorization": "Basic " +
                                 base64.b64encode(b"buyer-erp:buyer-erp-secret-0123456789")
                                 .decode()}, b"grant_type=client_credentials")  # fmt: skip
    assert status == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert headers["cache-control"] == "no-store"
    wrong = "Basic " + base64.b64encode(b"buyer-erp:guess").decode()
    status, headers, body = call(url, "POST", {**form, "Authorization": wrong},
                                 b"grant_type=client_credentials")  # fmt: skip
    assert (status, body["error"]) == (401, "invalid_client")
    assert "www-authenticate" in headers
    status, _, body = call(url, "POST", form, b"grant_type=client_credentials&client_id="
                           b"carmaker&client_secret=carmaker-secret-0123456789")  # fmt: skip
    assert status == 200  # credentials in the body (RFC 6749 §2.3.1)
    status, _, body = call(
        url,
        "POST",
        {
            **form,
            "Authorization": "Basic "
            + base64.b64encode(b"carmaker:carmaker-secret-0123456789").decode(),
        },
        b"grant_type=password",
    )
    assert (status, body["error"]) == (400, "unsupported_grant_type")
    status, _, body = call(url, "POST", {"Content-Type": "application/json"}, b"{}")
    assert (status, body["error"]) == (400, "invalid_request")
    status, _, body = call(host["url"] + "/.well-known/openid-configuration")
    assert body["token_endpoint"] == url


@pytest.mark.integration
def test_tokens_refused_with_the_spec_errors(host: dict[str, Any], spec: dict[str, Any]) -> None:
    # 401 (OAuth libraries fetch a new token only then) with PACT's BadRequest code
    for token in (None, "very-invalid-access-token-x", token_for(host)[:-2] + "AA", "tökén"):
        status, headers, body = get(host, "/3/footprints", token)
        assert (status, body["code"]) == (401, "BadRequest"), token
        assert headers["www-authenticate"].startswith("Bearer")
        check(spec, "/3/footprints", "get", 401, body)
    token = token_for(host)
    host["clock"][0] += 3601  # an hour later
    status, headers, body = get(host, "/3/footprints", token)
    assert (status, body["code"]) == (401, "TokenExpired")
    assert "invalid_token" in headers["www-authenticate"]
    check(spec, "/3/footprints", "get", 401, body)
    pf_id = host["contents"] and host["log"].footprints()[0][0]["id"]
    status, _, body = get(host, f"/3/footprints/{pf_id}", token)
    assert status == 401
    check(spec, "/3/footprints/{id}", "get", 401, body)


@pytest.mark.integration
def test_each_client_sees_its_own(host: dict[str, Any], spec: dict[str, Any]) -> None:
    buyer, carmaker = token_for(host), token_for(host, "carmaker")
    everything = []
    url: str | None = host["url"] + "/3/footprints"
    while url:  # page_size 2: follow the links
        status, headers, body = call(url, headers={"Authorization": f"Bearer {carmaker}"})
        assert status == 200
        check(spec, "/3/footprints", "get", 200, body)
        everything += body["data"]
        link = headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert len(everything) == 3
    status, _, body = get(host, "/3/footprints", buyer)
    assert {pf["productNameCompany"] for pf in body["data"]} == {
        "Hex bolt M8x30",
        "Hex bolt M16x60",
    }
    nut = next(pf for pf in everything if pf["productNameCompany"] == "Hex nut M8")
    status, _, body = get(host, f"/3/footprints/{nut['id']}", buyer)
    # Another supplier's footprint: not found (a 403 would confirm that it exists).
    assert (status, body["code"]) == (404, "NotFound")
    check(spec, "/3/footprints/{id}", "get", 404, body)
    status, _, body = get(host, f"/3/footprints/{nut['id']}", carmaker)
    assert status == 200 and body["data"] == nut
    check(spec, "/3/footprints/{id}", "get", 200, body)
    for missing in ("079e425a-464f-528d-341d-4a944a1dfd70", "random-string-as-id-x"):
        status, _, body = get(host, f"/3/footprints/{missing}", carmaker)
        assert (status, body["code"]) == (404, "NotFound")
        check(spec, "/3/footprints/{id}", "get", 404, body)


@pytest.mark.integration
def test_pagination_links(host: dict[str, Any]) -> None:
    token = token_for(host, "carmaker")
    status, headers, body = get(host, "/3/footprints?limit=1&geography=TW", token)
    assert status == 200 and len(body["data"]) == 1
    link = headers["link"]
    target = link[1 : link.index(">")]
    assert link.endswith('rel="next"')
    parts = urlsplit(target)
    assert parts.scheme == "http" and parts.netloc == urlsplit(host["url"]).netloc  # absolute
    assert "geography=TW" in parts.query and "limit=1" in parts.query
    seen = [body["data"][0]["id"]]
    for _ in range(2):  # the link can be called more than once
        status, _, again = call(target, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and len(again["data"]) == 1
    seen.append(again["data"][0]["id"])
    status, headers3, last = get(host, "/3/footprints?limit=1&offset=2", token)
    seen.append(last["data"][0]["id"])
    assert "link" not in headers3 and len(set(seen)) == 3


@pytest.mark.integration
def test_filters(host: dict[str, Any], spec: dict[str, Any]) -> None:
    token = token_for(host, "carmaker")

    def ids(query: str) -> set[str]:
        status, _, body = get(host, "/3/footprints?limit=10&" + query, token)
        assert status == 200, body
        check(spec, "/3/footprints", "get", 200, body)
        return {pf["productNameCompany"] for pf in body["data"]}

    bolt = "urn:pact:bolt-e.example:supplier-id:M8x30%208.8"
    assert ids(f"productId={quote(bolt.upper(), safe='')}") == {"Hex bolt M8x30"}
    assert ids(f"productId={quote(bolt)}&productid=urn:pact:nut-f.example:supplier-id:N-M8") == {
        "Hex bolt M8x30",
        "Hex nut M8",
    }
    assert ids("classification=urn:pact:taxation-customs.ec.europa.eu:cn:731816") == {"Hex nut M8"}
    assert ids("companyId=urn:pact:nut-f.example:company-id:87654321") == {"Hex nut M8"}
    assert ids("geography=tw&status=active") == {"Hex bolt M8x30", "Hex bolt M16x60", "Hex nut M8"}
    assert ids("geography=DE") == set()
    # Valid from the end of the reference period (31 Oct 2025 16:00Z) for three years.
    assert len(ids("validOn=2026-06-01T00:00:00Z")) == 3
    assert ids("validOn=2025-10-01T00:00:00Z") == set()
    assert len(ids("validAfter=2025-10-30T00:00:00Z")) == 3
    assert ids("validAfter=2025-11-01T00:00:00Z") == set()
    assert len(ids("validBefore=2028-11-01T00:00:00Z")) == 3
    assert ids("$status=Deprecated") == set()
    assert ids("status=BogusStatus1a2b") == set()  # unknown values match nothing (TC37)
    status, headers, body = get(host, "/3/footprints?limit=0", token)  # the schema's minimum
    assert status == 200 and len(body["data"]) == 2 and "link" in headers  # the page size
    for bad in ("limit=-1", "limit=x", "validOn=yesterday", "colour=red"):
        status, _, body = get(host, "/3/footprints?" + bad, token)
        assert (status, body["code"]) == (400, "BadRequest"), bad
        check(spec, "/3/footprints", "get", 400, body)


@pytest.mark.integration
def test_restated_footprint_deprecates_the_old(host: dict[str, Any]) -> None:
    token = token_for(host, "carmaker")
    config = host["config"]
    supplier, product, key, _ = host["contents"][2]
    doc = footprint_content(_period(config, "nut-f", "m8-nut", 20000, 90.0), Month(2025, 10),
                            Month(2025, 10), {})  # fmt: skip
    published = host["log"].publish([(supplier, product, key, doc)])
    new = published.created[0]
    status, _, body = get(host, "/3/footprints?status=Deprecated", token)
    assert [pf["id"] for pf in body["data"]] == new["precedingPfIds"]
    status, _, body = get(host, f"/3/footprints/{new['precedingPfIds'][0]}", token)
    assert status == 200 and body["data"]["status"] == "Deprecated"


@pytest.mark.integration
def test_events(host: dict[str, Any], spec: dict[str, Any]) -> None:
    token = token_for(host, "carmaker")
    headers = {"Authorization": f"Bearer {token}",
               "Content-Type": "application/cloudevents+json; charset=UTF-8"}  # fmt: skip
    nut = "urn:pact:nut-f.example:supplier-id:N-M8"
    request = {"specversion": "1.0", "id": "run-1", "source": "https://webhook.example.com",
               "time": "2025-11-05T10:30:00Z",
               "type": "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3",
               "data": {"productId": [nut]}}  # fmt: skip
    conformance = {
        **request,
        "id": "run-2",
        "data": {"pf": {"productIds": [nut]}, "comment": "Please send PCF data."},
    }
    unknown = {**request, "id": "run-3", "data": {"productId": "urn:pact:x.example:p:1"}}
    for event in (request, conformance, unknown):
        status, _, body = call(host["url"] + "/3/events", "POST", headers,
                               json.dumps(event).encode())  # fmt: skip
        assert status == 200 and body is None
    # Answered in the background, at the client's own Events endpoint (after one 503).
    assert wait_until(lambda: len(host["received"]) == 3, 20)
    by_request = {e["data"]["requestEventId"]: e for e in host["received"]}
    for rid in ("run-1", "run-2"):
        answer = by_request[rid]
        assert answer["type"] == "org.wbcsd.pact.ProductFootprint.RequestFulfilledEvent.3"
        assert [pf["productIds"][0] for pf in answer["data"]["pfs"]] == [nut]
        for pf in answer["data"]["pfs"]:
            validate_at(spec, "#/components/schemas/ProductFootprint", pf)
    rejected = by_request["run-3"]
    assert rejected["type"].endswith("RequestRejectedEvent.3")
    validate_at(spec, "#/components/schemas/Error", rejected["data"]["error"])
    published = {**request, "id": "run-4", "data": {"pfIds": [
        "079e425a-464f-528d-341d-4a944a1dfd70"]},
        "type": "org.wbcsd.pact.ProductFootprint.PublishedEvent.3"}  # fmt: skip
    assert call(host["url"] + "/3/events", "POST", headers,
                json.dumps(published).encode())[0] == 200  # fmt: skip
    recorded = [json.loads(line) for line in host["events"].read_text().splitlines()]
    assert [r["event"]["id"] for r in recorded if "received" in r] == [
        "run-1",
        "run-2",
        "run-3",
        "run-4",
    ]

    # "sent" is recorded once the recipient answered 2xx: it may follow the recipient's receipt.
    def sent() -> list[str]:
        lines = host["events"].read_text().splitlines()
        return sorted(r["request"] for r in map(json.loads, lines) if "sent" in r)

    wait_until(lambda: len(sent()) == 3, 20)
    assert sent() == ["run-1", "run-2", "run-3"]
    for broken in ({**request, "type": "org.example.Other"}, {**request, "data": "x"},
                   {k: v for k, v in request.items() if k != "time"}, [1, 2],
                   {**request, "data": {"validOn": "soon"}}):  # fmt: skip
        status, _, body = call(host["url"] + "/3/events", "POST", headers,
                               json.dumps(broken).encode())  # fmt: skip
        assert (status, body["code"]) == (400, "BadRequest")
    status, _, body = call(host["url"] + "/3/events", "POST", headers, b"{not json")
    assert status == 400
    status, _, body = call(host["url"] + "/3/events", "POST",
                           {**headers, "Authorization": "Bearer nope"},
                           json.dumps(request).encode())  # fmt: skip
    assert (status, body["code"]) == (401, "BadRequest")
    # TC40: a PublishedEvent whose pfIds are not footprint ids (UUIDs)
    for ids in (["urn:gtin:4712345060507"], [], ["079e425a-464f-528d-341d-4a944a1dfd7"]):
        malformed = {**published, "id": f"bad-{len(ids)}", "data": {"pfIds": ids}}
        status, _, body = call(host["url"] + "/3/events", "POST", headers,
                               json.dumps(malformed).encode())  # fmt: skip
        assert (status, body["code"]) == (400, "BadRequest"), ids
    # A client without a callback cannot be answered: refused at once, as the spec asks.
    buyer = {**headers, "Authorization": f"Bearer {token_for(host)}"}
    status, _, body = call(host["url"] + "/3/events", "POST", buyer, json.dumps(request).encode())
    assert (status, body["code"]) == (400, "NotImplemented")


@given(st.lists(st.tuples(
    st.sampled_from(["productId", "productid", "$status", "status", "limit", "offset", "validOn",
                     "validAfter", "geography", "x-acme-invoice", "other", ""]),
    st.text(max_size=30)), max_size=6))  # fmt: skip
def test_query_parser_decides_every_input(pairs: list[tuple[str, str]]) -> None:
    """Outside input: every query either parses or is refused with a reason, never crashes."""
    try:
        q = parse_query(pairs)
    except BadRequest as exc:
        assert str(exc)
        return
    assert q.offset >= 0 and (q.limit is None or q.limit >= 1)
    assert q.status is None or isinstance(q.status, str)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(st.one_of(_json, st.fixed_dictionaries({
    "type": st.sampled_from([*sorted(EVENT_TYPES), "x"]), "specversion": st.just("1.0"),
    "id": st.text(max_size=8), "source": st.text(max_size=8),
    "time": st.sampled_from(["2025-01-01T00:00:00Z", "yesterday", ""]),
    "data": _json})))  # fmt: skip
def test_event_checks_decide_every_body(event: object) -> None:
    """Outside input: any JSON body is either accepted or refused with a reason; the criteria
    of an accepted request either parse or are refused."""
    problem = event_problem(event)
    assert isinstance(problem, str)
    if not problem and isinstance(event, dict) and event["type"].endswith("CreatedEvent.3"):
        try:
            request_criteria(event["data"])
        except BadRequest as exc:
            assert str(exc)


@pytest.mark.integration
def test_recipients_are_told_of_published_footprints(host: dict[str, Any]) -> None:
    """A restated footprint: each client with a callback gets a PublishedEvent naming the new
    footprints it may see (the buyer's system has no callback: nothing sent to it)."""
    from app.pact import delivery_dir, events_recorder, notify_published

    config = host["config"]
    supplier, product, key, _ = host["contents"][0]
    doc = footprint_content(_period(config, "bolt-e", "m8-bolt", 1000, 160.0), Month(2025, 10),
                            Month(2025, 10), {})  # fmt: skip
    new = host["log"].publish([(supplier, product, key, doc)]).created[0]
    responder = Responder(events_recorder(host["events"]), delivery_dir(host["events"]),
                          {"PACT_CB_SECRET": "cb-secret"}, 0.05)  # fmt: skip
    try:
        sent = notify_published(config.pact, host["log"], [new["id"]], responder,
                                config.pact.event_source)  # fmt: skip
        assert [f.result(20) for f in sent] == [True]  # the carmaker only
    finally:
        responder.close()
    (event,) = [e for e in host["received"] if e["type"].endswith("PublishedEvent.3")]
    assert event["data"]["pfIds"] == [new["id"]]
    assert event["source"] == "//127.0.0.1:8443/3/events"
    assert event_problem(event) == ""
