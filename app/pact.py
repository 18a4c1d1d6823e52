"""The PACT v3 host API: ``supplymeter pact serve``.

Actions (PACT Technical Specifications v3.0.3, ``rest-api.md`` and ``openapi.yaml``):

* **Authenticate** — ``POST /auth/token``, OAuth 2.0 client credentials (RFC 6749 §4.4): the
  client authenticates with HTTP Basic (or ``client_id``/``client_secret`` in the form body,
  §2.3.1); errors follow RFC 6749 §5.2 (``invalid_client`` 401, ``invalid_request``,
  ``unsupported_grant_type`` 400). ``/.well-known/openid-configuration`` names the endpoint.
* **ListFootprints** — ``GET /3/footprints`` with the spec's filters (OR within a criterion,
  AND across; names case-insensitive), ``limit`` and an absolute ``Link: <…>; rel="next"``
  on the request's own host while more remain.
* **GetFootprint** — ``GET /3/footprints/{id}``.
* **Events** — ``POST /3/events``, CloudEvents structured mode: the four PACT event types are
  validated and recorded in ``[pact] events_file``.

Access tokens are HMAC-SHA256-signed (client, expiry, a fingerprint of the client's secret
hash): no server state, and rotating a client's secret or removing the client revokes its
tokens at once. The key comes from ``SUPPLYMETER_PACT_TOKEN_KEY`` (base64, ≥ 32 bytes), else a
random one per process (tokens then end at a restart).

Errors of the footprint actions are PACT ``Error`` objects. A token that is missing or not
ours is ``401`` with the code ``BadRequest`` (rest-api.md: "in all other cases BadRequest";
OAuth client libraries fetch a new token only on a 401, and the PACT conformance service
accepts 400 or 401), an expired one ``401 TokenExpired``, an unknown id or a footprint the
client may not see ``404`` with ``[pact] not_found_code`` (a 403 would confirm it exists).

Hostile clients (docs/security.md): request bodies are bounded while read
(:class:`~app.http_limits.BodyLimit`), failed logins throttled per address and client id
(:class:`~app.http_limits.Throttle`), secrets checked off the event loop with a decoy hash for
unknown ids, absolute URLs written from ``[pact] public_url``; events to recipients wait in
durable per-recipient queues (:mod:`app.pact_delivery`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.http_limits import BodyLimit, Throttle
from app.pact_delivery import Delivery, Responder
from processing.accounting.footprints import FootprintLog
from supplymeter.calendar import add_years
from supplymeter.config import PactClient, PactSettings
from supplymeter.files import append_lines, read_json_lines

log = logging.getLogger(__name__)

TOKEN_KEY_ENV = "SUPPLYMETER_PACT_TOKEN_KEY"
PBKDF2_ITERATIONS = 600_000
"""PBKDF2-HMAC-SHA256 iterations of a new client secret hash (OWASP Password Storage Cheat
Sheet, 2023 recommendation for PBKDF2-HMAC-SHA256)."""

EVENT_TYPES = {
    "org.wbcsd.pact.ProductFootprint.RequestCreatedEvent.3",
    "org.wbcsd.pact.ProductFootprint.RequestFulfilledEvent.3",
    "org.wbcsd.pact.ProductFootprint.RequestRejectedEvent.3",
    "org.wbcsd.pact.ProductFootprint.PublishedEvent.3",
}
LIST_FILTERS = ("productId", "companyId", "geography", "classification")
DATE_FILTERS = ("validOn", "validAfter", "validBefore")
PARAMS = {name.lower(): name for name in (*LIST_FILTERS, *DATE_FILTERS, "status", "limit",
                                          "offset")}  # fmt: skip


# --- secrets and tokens --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, iterations: int = PBKDF2_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hash>`` of a client secret (for ``[pact]``)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` matches ``stored`` (PBKDF2: hundreds of ms; keep it off the event
    loop)."""
    _, iterations, salt, digest = stored.split("$")
    got = hashlib.pbkdf2_hmac("sha256", secret.encode(), _unb64(salt), int(iterations))
    return hmac.compare_digest(got, _unb64(digest))


class TokenError(Exception):
    def __init__(self, expired: bool, message: str) -> None:
        super().__init__(message)
        self.expired = expired


@dataclass(frozen=True)
class Tokens:
    """Signed bearer tokens: ``<payload>.<signature>``, both url-safe base64."""

    key: bytes
    lifetime_s: int
    clock: Callable[[], float] = time.time

    def issue(self, client: PactClient) -> str:
        payload = {"sub": client.id, "exp": int(self.clock()) + self.lifetime_s,
                   "ver": _fingerprint(client)}  # fmt: skip
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self.key, body.encode(), hashlib.sha256).digest())

    def check(self, token: str, clients: dict[str, PactClient]) -> PactClient:
        if not token.isascii() or len(token) > 4096:
            raise TokenError(False, "Invalid token provided")
        body, _, signature = token.partition(".")
        if not signature or not hmac.compare_digest(signature, self._sign(body)):
            raise TokenError(False, "Invalid token provided")
        try:
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error) as exc:
            raise TokenError(False, "Invalid token provided") from exc
        client = clients.get(payload.get("sub", ""))
        if client is None or payload.get("ver") != _fingerprint(client):
            raise TokenError(False, "Invalid token provided: the client's credentials changed")
        if payload.get("exp", 0) <= self.clock():
            raise TokenError(True, "The specified access token has expired")
        return client


def _fingerprint(client: PactClient) -> str:
    return hashlib.sha256(client.secret_hash.encode()).hexdigest()[:16]


def token_key(environ: dict[str, str] | os._Environ[str] = os.environ) -> bytes:
    """The signing key from ``SUPPLYMETER_PACT_TOKEN_KEY``, else a fresh random one."""
    text = environ.get(TOKEN_KEY_ENV)
    if not text:
        return secrets.token_bytes(32)
    try:
        key = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"{TOKEN_KEY_ENV} is not base64") from exc
    if len(key) < 32:
        raise ValueError(f"{TOKEN_KEY_ENV} must hold at least 32 bytes")
    return key


# --- requests ------------------------------------------------------------------------------------


class BadRequest(Exception):
    pass


@dataclass(frozen=True)
class Query:
    """ListFootprints criteria (each list: any of its values; criteria: all of them)."""

    lists: dict[str, tuple[str, ...]]
    valid_on: datetime | None = None
    valid_after: datetime | None = None
    valid_before: datetime | None = None
    status: str | None = None
    limit: int | None = None
    offset: int = 0


def _datetime(name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name}: not an RFC 3339 date-time: {text!r}") from exc
    if value.tzinfo is None:
        raise BadRequest(f"{name}: a date-time needs its offset (e.g. Z): {text!r}")
    return value


def _count(name: str, text: str, minimum: int) -> int:
    if not re.fullmatch(r"\d{1,9}", text) or int(text) < minimum:
        raise BadRequest(f"{name}: must be an integer ≥ {minimum} (got {text!r})")
    return int(text)


def parse_query(pairs: list[tuple[str, str]]) -> Query:
    """ListFootprints parameters → :class:`Query`; :class:`BadRequest` naming what is wrong.

    Names match case-insensitively (``productid``) and with a leading ``$`` (v2's style);
    ``x-…`` extensions this host does not offer are ignored, as the spec lets hosts add them.
    """
    lists: dict[str, list[str]] = {}
    single: dict[str, str] = {}
    for raw, value in pairs:
        key = raw.lstrip("$").lower()
        if key.startswith("x-"):
            continue
        name = PARAMS.get(key)
        if name is None:
            raise BadRequest(f"unknown parameter {raw!r}; filters are "
                             f"{', '.join(PARAMS.values())}")  # fmt: skip
        if name in LIST_FILTERS:
            lists.setdefault(name, []).append(value)
        elif name in single:
            raise BadRequest(f"{name} given more than once")
        else:
            single[name] = value
    status = single.get("status")
    if status is not None:  # an unknown status matches nothing, as any other filter value
        status = {"active": "Active", "deprecated": "Deprecated"}.get(status.lower(), status)
    return Query(
        lists={k: tuple(v.lower() for v in vs) for k, vs in lists.items()},
        valid_on=_datetime("validOn", single["validOn"]) if "validOn" in single else None,
        valid_after=_datetime("validAfter", single["validAfter"]) if "validAfter" in single
        else None,
        valid_before=_datetime("validBefore", single["validBefore"]) if "validBefore" in single
        else None,
        status=status,
        # 0 (the schema's minimum): no limit of the client's; the host's page size applies
        limit=(_count("limit", single["limit"], 0) or None) if "limit" in single else None,
        offset=_count("offset", single["offset"], 0) if "offset" in single else 0,
    )  # fmt: skip


def request_criteria(data: dict[str, Any]) -> Query:
    """A RequestCreatedEvent's criteria (the ListFootprints filters, each a value or a list;
    ``pf.productIds`` as the PACT conformance service sends them) → :class:`Query`."""
    pairs: list[tuple[str, str]] = []
    pf = data.get("pf")
    if isinstance(pf, dict) and isinstance(pf.get("productIds"), list):
        pairs += [("productId", str(v)) for v in pf["productIds"]]
    for key, value in data.items():
        if key in ("pf", "comment") or key.lower() in ("limit", "offset"):
            continue
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            raise BadRequest(f"data.{key}: criteria are strings or lists of strings")
        pairs += [(key, v) for v in values]
    return parse_query(pairs)


def _validity(pf: dict[str, Any]) -> tuple[datetime, datetime]:
    """The validity period: as given, else [referencePeriodEnd, + 3 years) (PACT v3
    §Validity Period)."""
    ref_end = datetime.fromisoformat(pf["pcf"]["referencePeriodEnd"].replace("Z", "+00:00"))
    start = pf.get("validityPeriodStart")
    end = pf.get("validityPeriodEnd")
    begin = datetime.fromisoformat(start.replace("Z", "+00:00")) if start else ref_end
    finish = (datetime.fromisoformat(end.replace("Z", "+00:00")) if end
              else add_years(ref_end, 3))  # fmt: skip
    return begin, finish


def matches(pf: dict[str, Any], q: Query) -> bool:
    def any_of(name: str, values: list[str]) -> bool:
        wanted = q.lists.get(name)
        return wanted is None or any(v.lower() in wanted for v in values)

    pcf = pf["pcf"]
    geography = [pcf[k] for k in ("geographyCountry", "geographyRegionOrSubregion",
                                  "geographyCountrySubdivision") if k in pcf]  # fmt: skip
    if not (any_of("productId", pf["productIds"]) and any_of("companyId", pf["companyIds"])
            and any_of("geography", geography)
            and any_of("classification", pf.get("productClassifications", []))):  # fmt: skip
        return False
    if q.status is not None and pf["status"] != q.status:
        return False
    begin, end = _validity(pf)
    if q.valid_on is not None and not begin <= q.valid_on <= end:
        return False
    if q.valid_after is not None and not begin > q.valid_after:
        return False
    return q.valid_before is None or end < q.valid_before


# --- answering asynchronous requests --------------------------------------------------------------


def notify_published(
    settings: PactSettings, footprints: FootprintLog, pf_ids: list[str], responder: Responder,
    source: str,
) -> list[Delivery]:  # fmt: skip
    """Send each client with a callback a ``PublishedEvent`` naming the new footprints it may
    see (PACT v3 §Action Events, case 1); returns the deliveries under way."""
    out = []
    for client in settings.clients:
        if client.callback is None:
            continue
        visible = [pid for pid in pf_ids
                   if (found := footprints.get(pid)) is not None
                   and client.may_see(found[1]["supplier"], found[1]["product"])]  # fmt: skip
        if visible:
            out.append(responder.notify(client, visible, source))
    return out


def delivery_dir(events_file: Path) -> Path:
    """Where the per-recipient queues live: beside the events file."""
    return events_file.parent / "deliveries"


def answered_requests(events_file: Path) -> set[tuple[str, str]]:
    """(client, event id) of every RequestCreatedEvent already received (and so queued for an
    answer): a client that posts the same event again is not answered again."""
    out = set()
    for _, entry in read_json_lines(events_file):
        if entry.get("received") == "RequestCreatedEvent" and isinstance(entry.get("event"), dict):
            out.add((str(entry.get("client")), str(entry["event"].get("id"))))
    return out


def events_recorder(path: Path) -> Callable[[dict[str, Any]], None]:
    """Append entries to the events file (one JSON object per line), thread-safe."""
    lock = threading.Lock()

    def record(entry: dict[str, Any]) -> None:
        line = json.dumps({"at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **entry},
                          ensure_ascii=False)  # fmt: skip
        with lock:
            append_lines(path, [line], fsync=False)

    return record


# --- the application -----------------------------------------------------------------------------


def error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def oauth_error(status: int, code: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="supplymeter"'
    return JSONResponse({"error": code, "error_description": description}, status_code=status,
                        headers=headers)  # fmt: skip


AUTH_BODY_LIMIT = 16 * 1024
"""Largest body of ``/auth/token`` [bytes]: a client-credentials form is a few hundred."""
EVENT_BODY_LIMIT = 1_000_000
"""Largest CloudEvent accepted on ``/3/events`` [bytes]."""
OTHER_BODY_LIMIT = 16 * 1024
ADDRESS_FAILURES = 10
"""Failed logins from one address within 5 min before it must wait (30 s, doubling)."""
CLIENT_FAILURES = 20
"""Failed logins for one client id (from anywhere) within 5 min before it must wait."""
HASHES_AT_ONCE = 2
"""Secret checks (PBKDF2) running at once; more wait their turn off the event loop."""


def create_app(
    settings: PactSettings,
    footprints: FootprintLog,
    events_file: Path,
    tokens: Tokens,
    responder_factory: Callable[[Callable[[dict[str, Any]], None], Path], Responder] | None = None,
    base_url: str | None = None,
) -> FastAPI:
    """The host system over a footprint log.

    ``base_url``: the API's address in the absolute URLs it writes (pagination links, the
    OpenID issuer, the ``source`` of the events it sends) — never the Host a request carried.
    Default: ``[pact] public_url``, else ``http://host:port``."""
    clients = {c.id: c for c in settings.clients}
    base = (base_url or settings.public_url or f"http://{settings.host}:{settings.port}").rstrip(
        "/")  # fmt: skip
    source = f"//{base.split('://', 1)[-1]}/3/events"
    record = events_recorder(events_file)
    queues = delivery_dir(events_file)
    responder = (responder_factory or Responder)(record, queues)
    answered = answered_requests(events_file)
    answered_lock = threading.Lock()
    by_address = Throttle(max_failures=ADDRESS_FAILURES)
    by_client = Throttle(max_failures=CLIENT_FAILURES)
    hashing = anyio.CapacityLimiter(HASHES_AT_ONCE)
    # An unknown client id is checked against this, so it costs what a known one costs.
    iterations = [int(c.secret_hash.split("$")[1]) for c in settings.clients]
    decoy = hash_secret(secrets.token_urlsafe(16),
                        max(set(iterations), key=iterations.count) if iterations
                        else PBKDF2_ITERATIONS)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        responder.start(settings.clients)
        yield
        await anyio.to_thread.run_sync(responder.close)

    app = FastAPI(title="supplymeter PACT v3 host", docs_url=None, redoc_url=None,
                  openapi_url=None, lifespan=lifespan)  # fmt: skip
    app.state.responder = responder
    app.add_middleware(
        BodyLimit, limits={"/auth/token": AUTH_BODY_LIMIT, "/3/events": EVENT_BODY_LIMIT},
        default=OTHER_BODY_LIMIT,
        error=lambda status, message: {"code": "BadRequest", "message": message},
    )  # type: ignore[arg-type]  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return error(404, settings.not_found_code, "No such action")
        if exc.status_code == 405:
            return error(405, "BadRequest", "Method not allowed for this action")
        return error(exc.status_code, "BadRequest", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> Response:
        log.exception("PACT API: unexpected error")
        return error(500, "InternalError", "An internal or unexpected error has occurred")

    @app.get("/.well-known/openid-configuration")
    async def openid(request: Request) -> Response:
        return JSONResponse({
            "issuer": base, "token_endpoint": f"{base}/auth/token",
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "response_types_supported": ["token"],
            "scopes_supported": ["footprint:list", "footprint:read"],
        })  # fmt: skip

    async def check_secret(client_id: str, secret: str, address: str) -> JSONResponse | None:
        """None when the credentials are right; the refusal otherwise. Throttled per address
        and per client id before any hashing; the hash runs off the event loop, and an
        unknown id is hashed like a known one (its answer takes as long)."""
        keys = (f"addr:{address}", f"client:{client_id}")
        wait = max(by_address.retry_after(keys[0]), by_client.retry_after(keys[1]))
        if wait > 0:
            response = oauth_error(429, "invalid_client", "Too many failed attempts: retry "
                                   f"after {wait:.0f} s")  # fmt: skip
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response
        client = clients.get(client_id)
        stored = client.secret_hash if client is not None else decoy
        ok = await anyio.to_thread.run_sync(verify_secret, secret, stored, limiter=hashing)
        if ok and client is not None:
            by_address.succeeded(keys[0])
            by_client.succeeded(keys[1])
            return None
        by_address.failed(keys[0])
        by_client.failed(keys[1])
        log.warning("PACT API: failed authentication for client %r from %s", client_id[:64],
                    address)  # fmt: skip
        return oauth_error(401, "invalid_client", "Authentication failed")

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return oauth_error(
                400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded"
            )
        try:
            form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True,
                                  strict_parsing=False))  # fmt: skip
        except (UnicodeDecodeError, ValueError):
            return oauth_error(400, "invalid_request", "the body is not a UTF-8 form")
        basic = request.headers.get("authorization", "")
        client_id = secret = None
        if basic[:6].lower() == "basic ":
            try:
                pair = base64.b64decode(basic[6:].strip(), validate=True).decode()
                user, _, password = pair.partition(":")
                client_id, secret = unquote(user), unquote(password)  # RFC 6749 §2.3.1
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return oauth_error(401, "invalid_client", "Authentication failed")
        elif "client_id" in form:
            client_id, secret = form.get("client_id"), form.get("client_secret", "")
        if client_id is None:
            return oauth_error(401, "invalid_client", "Authentication failed: no credentials")
        address = request.client.host if request.client else "?"
        refused = await check_secret(client_id, secret or "", address)
        if refused is not None:
            return refused
        client = clients[client_id]
        grant = form.get("grant_type")
        if grant is None:
            return oauth_error(400, "invalid_request", "grant_type is missing")
        if grant != "client_credentials":
            return oauth_error(400, "unsupported_grant_type",
                               "only client_credentials is supported")  # fmt: skip
        return JSONResponse(
            {"access_token": tokens.issue(client), "token_type": "Bearer",
             "expires_in": tokens.lifetime_s, "scope": "footprint:list footprint:read"},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )  # fmt: skip

    def authorize(request: Request) -> PactClient | JSONResponse:
        """The client a bearer token names, or the refusal: 401 (so OAuth libraries fetch a
        new token) with PACT's ``BadRequest`` code for a missing or invalid token — the
        conformance service accepts 400 or 401 — and ``TokenExpired`` for an expired one."""
        header = request.headers.get("authorization", "")
        challenge = 'Bearer realm="supplymeter", error="invalid_token"'
        if header[:7].lower() != "bearer " or not header[7:].strip():
            return error(401, "BadRequest", "Missing access token (Authorization: Bearer …)",
                         **{"WWW-Authenticate": 'Bearer realm="supplymeter"'})  # fmt: skip
        try:
            return tokens.check(header[7:].strip(), clients)
        except TokenError as exc:
            if exc.expired:
                return error(401, "TokenExpired", str(exc), **{"WWW-Authenticate": challenge})
            return error(401, "BadRequest", str(exc), **{"WWW-Authenticate": challenge})

    def visible(client: PactClient) -> list[dict[str, Any]]:
        return [pf for pf, meta in footprints.footprints()
                if client.may_see(meta["supplier"], meta["product"])]  # fmt: skip

    @app.get("/3/footprints")
    async def list_footprints(request: Request) -> Response:
        client = authorize(request)
        if isinstance(client, JSONResponse):
            return client
        try:
            q = parse_query(list(request.query_params.multi_items()))
        except BadRequest as exc:
            return error(400, "BadRequest", str(exc))
        found = [pf for pf in visible(client) if matches(pf, q)]
        size = q.limit or settings.page_size
        page = found[q.offset : q.offset + size]
        headers = {}
        if q.offset + size < len(found):
            pairs = [(k, v) for k, v in request.query_params.multi_items()
                     if k.lstrip("$").lower() != "offset"]  # fmt: skip
            pairs.append(("offset", str(q.offset + size)))
            headers["Link"] = f'<{base}/3/footprints?{urlencode(pairs)}>; rel="next"'
        return JSONResponse({"data": page}, headers=headers)

    @app.get("/3/footprints/{pf_id}")
    async def get_footprint(request: Request, pf_id: str) -> Response:
        client = authorize(request)
        if isinstance(client, JSONResponse):
            return client
        found = footprints.get(pf_id.lower())
        # Outside the client's scope is "not found" too: a 403 would confirm that another
        # supplier's footprint exists under that id.
        if found is None or not client.may_see(found[1]["supplier"], found[1]["product"]):
            return error(404, settings.not_found_code,
                         f"The specified footprint {pf_id[:64]!r} does not exist")  # fmt: skip
        return JSONResponse({"data": found[0]})

    @app.post("/3/events")
    async def events(request: Request) -> Response:
        client = authorize(request)
        if isinstance(client, JSONResponse):
            return client
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/cloudevents+json", "application/json"):
            return error(400, "BadRequest",
                         "Content-Type must be application/cloudevents+json")  # fmt: skip
        body = await request.body()  # at most EVENT_BODY_LIMIT (BodyLimit)
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return error(400, "BadRequest", "the body is not JSON (or nests too deep)")
        problem = event_problem(event)
        if problem:
            return error(400, "BadRequest", problem)
        kind = event["type"].rsplit(".", 2)[-2]
        found: list[dict[str, Any]] = []
        if kind == "RequestCreatedEvent":
            if client.callback is None:
                return error(400, "NotImplemented", "This host answers asynchronous requests "
                             "only for clients with a configured callback (Events endpoint); "
                             "use ListFootprints")  # fmt: skip
            try:
                q = request_criteria(event["data"])
            except BadRequest as exc:
                return error(400, "BadRequest", str(exc))
            found = [pf for pf in visible(client) if matches(pf, q)]
            key = (client.id, event["id"])
            with answered_lock:
                again = key in answered
                answered.add(key)
            if again:  # the same request posted again: answered once (CloudEvents id)
                record({"duplicate": kind, "client": client.id, "event_id": event["id"]})
                return Response(status_code=200)
            try:  # the answer is queued durably before the request is recorded and the 200
                await anyio.to_thread.run_sync(responder.submit, client, event, found, source)
            except BaseException:
                with answered_lock:
                    answered.discard(key)  # not queued: a retry of the client must count
                raise
        record({"received": kind, "client": client.id, "event": event})
        log.info("PACT API: %s from %s (id %s)", kind, client.id, str(event["id"])[:64])
        return Response(status_code=200)

    return app


def _is_uuid(text: str) -> bool:
    """RFC 9562 text form (8-4-4-4-12 hex digits), as the schema's ``format: uuid``."""
    return re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", text) is not None


def event_problem(event: Any) -> str:
    """What is wrong with a CloudEvent for ``/3/events`` ("" when nothing)."""
    if not isinstance(event, dict):
        return "the event must be a JSON object"
    missing = [k for k in ("type", "specversion", "id", "source", "time", "data")
               if k not in event]  # fmt: skip
    if missing:
        return f"missing CloudEvents attributes: {', '.join(missing)}"
    if event["type"] not in EVENT_TYPES:
        return f"unknown event type {str(event['type'])[:120]!r}"
    if event["specversion"] != "1.0":
        return "specversion must be 1.0"
    if not all(isinstance(event[k], str) and event[k] for k in ("id", "source", "time")):
        return "id, source and time must be non-empty strings"
    try:
        _datetime("time", event["time"])
    except BadRequest as exc:
        return str(exc)
    data = event["data"]
    if not isinstance(data, dict):
        return "data must be an object"
    kind = event["type"].split(".")[-2]
    if kind in ("RequestFulfilledEvent", "RequestRejectedEvent") and "requestEventId" not in data:
        return "data.requestEventId is missing"
    if kind == "RequestFulfilledEvent" and not (isinstance(data.get("pfs"), list)
                                                and data["pfs"]):  # fmt: skip
        return "data.pfs must be a non-empty list"
    if kind == "RequestRejectedEvent" and not isinstance(data.get("error"), dict):
        return "data.error must be an Error object"
    if kind == "PublishedEvent":
        ids = data.get("pfIds")
        if not isinstance(ids, list) or not ids:
            return "data.pfIds must be a non-empty list"
        if not all(isinstance(i, str) and _is_uuid(i) for i in ids):
            return "data.pfIds must hold footprint ids (UUIDs)"
    return ""
