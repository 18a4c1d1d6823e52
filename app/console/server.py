"""The console's HTTP side: sign-in, sessions, CSRF, roles, and one route per page or form.

Security, in one place:
* sessions are server-side (the cookie holds a random token; the database only its SHA-256),
  ``HttpOnly``, ``SameSite=Lax``, ``Secure`` under TLS; they slide with use and end at
  sign-out or when the account is deactivated;
* every form and every JSON post carries the session's CSRF token (a hidden field, or the
  ``X-CSRF-Token`` header), compared in constant time; the sign-in form uses a double-submit
  cookie;
* sign-in is throttled per account and per address (``[console] login_max_failures`` within
  ``login_window_min``), and an unknown user costs the same Argon2 verification;
* scoping is decided on the server in every read (:mod:`app.console.views`): a supplier user
  asking for anything of another supplier — page, record, file — gets the same 404 as for
  something that does not exist, and the 404 page echoes nothing of the request;
* pages are served with a strict Content-Security-Policy (no inline script, nothing from
  another origin: the console works on a plant network cut off from the internet).
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
import secrets
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.console import i18n, views
from supplymeter.config import Config, MeterEvent
from supplymeter.errors import ConfigError
from supplymeter.operations import (
    LANGUAGES,
    ROLES,
    Operations,
    Refused,
    Throttled,
    User,
    with_recorded_events,
)
from supplymeter.store import Store

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "sm_session"
PRE_COOKIE = "sm_login"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Console:
    """The console's state: configuration (its registry as the file gives it), the store,
    the operations database, a clock, and caches."""

    def __init__(
        self, config: Config, store: Store, ops: Operations, clock: Callable[[], int] = time.time_ns
    ) -> None:
        from supplymeter.config import RegistryWatch

        self.config, self.store, self.ops, self.clock = config, store, ops, clock
        path = config.registry_path
        self.watch = RegistryWatch(path, config.registry) if path.exists() else None
        self.usual = views.UsualRanges()
        self._merged: tuple[tuple[int, ...], int, Any] | None = None

    @property
    def base_registry(self) -> Any:
        """The registry file's (new meter events are validated against it together with the
        console's own)."""
        if self.watch is not None:
            self.watch.poll()
            return self.watch.registry
        return self.config.registry

    def registry(self) -> Any:
        """The registry with the console's meter events (what the jobs run on)."""
        base = self.base_registry
        recorded = self.ops.meter_events()
        ids = tuple(r.id for r in recorded)
        if self._merged is None or self._merged[:2] != (ids, id(base)):
            self._merged = (ids, id(base), with_recorded_events(base, recorded))
        return self._merged[2]

    @property
    def lifetime(self) -> timedelta:
        return timedelta(hours=self.config.console.session_hours)


def create_app(console: Console) -> FastAPI:
    """The console as an ASGI app."""
    app = FastAPI(title="supplymeter console", docs_url=None, redoc_url=None, openapi_url=None)
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"])
    )
    env.globals.update(number=i18n.number, roles=ROLES, languages=LANGUAGES)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    cfg = console.config
    tz = cfg.jobs.timezone

    # --- plumbing ------------------------------------------------------------------------------

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        user: User | None = ctx.get("user")
        lang = user.language if user else _accept_language(request)
        # The page's own path, for the language form to come back to: never on an error page,
        # which must echo nothing of what was asked for.
        here = request.url.path if name != "error.html" else None
        ctx.update(
            t=i18n.translator(lang),
            lang=lang,
            here=here,
            when=lambda ts, zone=tz: i18n.when(ts, zone, lang),
            flash=request.query_params.get("saved") == "1",
        )
        body = env.get_template(name).render(request=request, **ctx)
        return HTMLResponse(body, status_code=status)

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[..., Any]) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        # A malformed id is a thing that does not exist: the same bare 404, nothing echoed.
        return render(
            request,
            "error.html",
            status=404,
            message="Not found.",
            user=getattr(request.state, "user", None),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 401:
            if request.headers.get("accept", "").startswith("application/json"):
                return JSONResponse({"error": "sign in"}, status_code=401)
            return RedirectResponse("/login", status_code=303)
        # Nothing of the request is echoed: a 404 says nothing about what was asked for.
        text = {404: "Not found.", 403: "Not found."}.get(exc.status_code, "Refused")
        status = 404 if exc.status_code == 403 else exc.status_code
        return render(
            request,
            "error.html",
            status=status,
            message=text,
            user=getattr(request.state, "user", None),
        )

    def current(request: Request) -> tuple[User, str]:
        token = request.cookies.get(COOKIE)
        found = console.ops.session(token, console.lifetime) if token else None
        if found is None:
            raise HTTPException(401)
        request.state.user = found[0]
        return found

    async def form_of(request: Request, csrf: str) -> dict[str, Any]:
        """The posted form, after its CSRF token is checked."""
        form = await request.form()
        sent = form.get("csrf") or request.headers.get("x-csrf-token") or ""
        if not isinstance(sent, str) or not hmac.compare_digest(sent, csrf):
            raise HTTPException(403)
        return dict(form)

    def writer(user: User) -> None:
        if not user.can_write:
            raise HTTPException(403)

    async def site_post(request: Request, field: str) -> tuple[User, str, dict[str, Any], Any,
                                                               str, str]:  # fmt: skip
        """A writer's checked form about one site (``field``: ``SUPPLIER/SITE``): (user, CSRF
        token, form, registry, supplier, site); a site the user may not see is a 404."""
        user, csrf = current(request)
        form = await form_of(request, csrf)
        writer(user)
        supplier, site = str(form.get(field, "/")).partition("/")[::2]
        registry = console.registry()
        if not views.site_visible(registry, user, supplier, site):
            raise HTTPException(404)
        return user, csrf, form, registry, supplier, site

    async def withdraw(
        request: Request,
        record_id: int,
        remove: Callable[..., None],
        default_reason: str,
        where: str,
    ) -> Response:
        """Withdraw a record (kept, marked, audited): another supplier's, or a guessed id,
        is a 404 like any record that does not exist."""
        user, csrf = current(request)
        form = await form_of(request, csrf)
        writer(user)
        try:
            remove(
                record_id,
                by=user.username,
                reason=str(form.get("reason") or default_reason),
                supplier=user.scope,
            )
        except Refused as exc:
            raise HTTPException(404) from exc
        return back(where)

    def back(path: str) -> RedirectResponse:
        return RedirectResponse(f"{path}{'&' if '?' in path else '?'}saved=1", status_code=303)

    def refused(request: Request, user: User, csrf: str, exc: Exception, where: str) -> Response:
        return render(
            request, "error.html", status=422, message=str(exc), user=user, csrf=csrf, back=where
        )

    # --- sign-in -------------------------------------------------------------------------------

    @app.get("/login")
    async def login_page(request: Request) -> Response:
        pre = secrets.token_urlsafe(24)
        response = render(request, "login.html", pre=pre, error=None)
        _cookie(response, PRE_COOKIE, pre, cfg.console.secure, max_age=3600)
        return response

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        pre = request.cookies.get(PRE_COOKIE, "")
        sent = form.get("pre")
        if not pre or not isinstance(sent, str) or not hmac.compare_digest(pre, sent):
            raise HTTPException(403)
        username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))
        address = request.client.host if request.client else "?"
        c = cfg.console
        try:
            user = console.ops.login(
                username,
                password,
                address,
                max_failures=c.login_max_failures,
                window=timedelta(minutes=c.login_window_min),
            )
        except Throttled as exc:
            response = render(
                request,
                "login.html",
                status=429,
                pre=pre,
                error="throttled",
                retry=exc.retry_after_s,
            )
            response.headers["Retry-After"] = str(exc.retry_after_s)
            return response
        if user is None:
            return render(request, "login.html", status=401, pre=pre, error="wrong")
        token, _ = console.ops.start_session(user, console.lifetime)
        response = RedirectResponse("/now", status_code=303)
        _cookie(response, COOKIE, token, c.secure, max_age=int(console.lifetime.total_seconds()))
        response.delete_cookie(PRE_COOKIE, path="/")
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        _, csrf = current(request)
        await form_of(request, csrf)
        console.ops.end_session(request.cookies.get(COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @app.post("/language")
    async def language(request: Request) -> Response:
        user, csrf = current(request)
        form = await form_of(request, csrf)
        try:
            console.ops.update_user(
                user.username,
                by=user.username,
                reason="language chosen",
                language=str(form.get("language", "")),
            )
        except Refused as exc:
            return refused(request, user, csrf, exc, "/now")
        return RedirectResponse(_local_path(str(form.get("next") or "")), status_code=303)

    @app.get("/")
    async def root() -> Response:
        return RedirectResponse("/now", status_code=303)

    # --- Now -----------------------------------------------------------------------------------

    @app.get("/now")
    async def now(request: Request, page: int = 1) -> Response:
        user, csrf = current(request)
        now_ns = console.clock()
        sites, pages = views.now_page(
            cfg, console.store, console.registry(), user, page, now_ns, console.usual
        )
        return render(
            request,
            "now.html",
            user=user,
            csrf=csrf,
            sites=sites,
            page=page,
            pages=pages,
            now_ns=now_ns,
            refresh_s=cfg.console.refresh_s,
        )

    @app.post("/now/changes")
    async def now_changes(request: Request, page: int = 1) -> Response:
        """Only what changed since the page (or the last poll) drew it: the client sends the
        digest of each row it shows; rows with another digest now come back whole."""
        user, csrf = current(request)
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), csrf):
            raise HTTPException(403)
        try:
            known = dict((await request.json()).get("rows", {}))
        except (ValueError, AttributeError, TypeError):
            known = {}
        now_ns = console.clock()
        sites, _ = views.now_page(
            cfg, console.store, console.registry(), user, page, now_ns, console.usual
        )
        lang = user.language
        t = i18n.translator(lang)
        changed = {}
        for s in sites:
            if known.get(f"site:{s.id}") != s.digest:
                changed[f"site:{s.id}"] = {
                    "digest": s.digest,
                    "gateway": t(
                        s.gateway_state
                        if s.gateway_state in ("online", "offline")
                        else "never seen"
                    ),
                    "gateway_class": s.gateway_state,
                    "gateway_seen": i18n.when(s.gateway_ns, s.timezone, lang),
                    "incidents": str(s.incidents),
                    "quality": str(s.quality),
                }
            for m in s.meters:
                if known.get(f"meter:{m.id}") != m.digest:
                    changed[f"meter:{m.id}"] = {
                        "digest": m.digest,
                        "power": i18n.number(m.power_kw),
                        "last": i18n.when(m.last_ns, s.timezone, lang),
                        "today": i18n.number(m.today),
                        "usual": (
                            f"{i18n.number(m.usual[0])} – {i18n.number(m.usual[1])}"
                            if m.usual
                            else t("no history")
                        ),
                        "state": t(
                            {
                                "above": "above usual",
                                "below": "below usual",
                                "within": "within usual",
                            }.get(m.state, "no history")
                        ),
                        "state_class": m.state,
                    }
        return JSONResponse({"rows": changed, "updated": i18n.when(now_ns, tz, lang)})

    # --- Meter ---------------------------------------------------------------------------------

    @app.get("/meter/{supplier}/{site}/{meter}")
    async def meter(request: Request, supplier: str, site: str, meter: str) -> Response:
        user, csrf = current(request)
        ref = views.find_meter(console.registry(), user, supplier, site, meter)
        if ref is None:
            raise HTTPException(404)
        now_ns = console.clock()
        data = views.meter_page(console.store, ref, now_ns)
        recorded = {
            r.event.time_ns: r
            for r in console.ops.meter_events(supplier)
            if (r.supplier, r.site, r.meter) == ref.key
        }
        return render(
            request, "meter.html", user=user, csrf=csrf, ref=ref, recorded=recorded, **data
        )

    # --- Incidents -----------------------------------------------------------------------------

    @app.get("/incidents")
    async def incidents(request: Request) -> Response:
        user, csrf = current(request)
        supplier = user.scope
        now_ns = console.clock()
        history = [
            h
            for h in console.store.alert_history(
                views.since(now_ns, 30), now_ns + 1, supplier=supplier
            )
            if user.sees(h.get("supplier") or "")
        ]
        registry = console.registry()
        sites = [
            (s.id, si.id, [m.id for m in si.meters])
            for s in registry.suppliers
            if user.sees(s.id)
            for si in s.sites
        ]
        clock_now = datetime.fromtimestamp(now_ns / 1e9, UTC)
        return render(
            request,
            "incidents.html",
            user=user,
            csrf=csrf,
            open=views.open_incidents(cfg, user),
            acks=console.ops.acknowledgements(supplier),
            silences=[s for s in console.ops.silences(supplier) if s.ends_at > clock_now],
            history=history,
            sites=sites,
            default_start=views.local(clock_now, tz),
            default_end=views.local(clock_now + timedelta(hours=4), tz),
        )

    @app.post("/incidents/acknowledge")
    async def acknowledge(request: Request) -> Response:
        user, csrf = current(request)
        form = await form_of(request, csrf)
        writer(user)
        incident = next(
            (i for i in views.open_incidents(cfg, user) if i.id == form.get("incident")), None
        )
        if incident is None:
            raise HTTPException(404)
        try:
            console.ops.acknowledge(
                incident.id,
                supplier=incident.supplier,
                site=incident.site,
                comment=str(form.get("comment", "")),
                by=user.username,
            )
        except Refused as exc:
            return refused(request, user, csrf, exc, "/incidents")
        return back("/incidents")

    @app.post("/incidents/silence")
    async def silence(request: Request) -> Response:
        user, csrf, form, registry, supplier, site = await site_post(request, "site_key")
        try:
            zone = ZoneInfo(registry.site(supplier, site)[1].timezone)
            console.ops.silence(
                registry,
                supplier=supplier,
                site=site,
                meter=str(form.get("meter") or "") or None,
                starts_at=_local_time(str(form.get("starts_at", "")), zone),
                ends_at=_local_time(str(form.get("ends_at", "")), zone),
                reason=str(form.get("reason", "")),
                by=user.username,
            )
        except Refused as exc:
            return refused(request, user, csrf, exc, "/incidents")
        return back("/incidents")

    @app.post("/incidents/silence/{record_id}/cancel")
    async def cancel_silence(request: Request, record_id: int) -> Response:
        return await withdraw(
            request, record_id, console.ops.cancel_silence, "maintenance over", "/incidents"
        )

    @app.post("/incidents/test")
    async def test_alert(request: Request) -> Response:
        user, csrf, _form, _registry, supplier, site = await site_post(request, "site_key")
        from processing.alerts import send_test

        try:
            to, sent, waiting = send_test(cfg, supplier, site, console.clock())
        except (OSError, KeyError) as exc:
            return refused(request, user, csrf, exc, "/incidents")
        console.ops.record_note(
            by=user.username,
            entity="test_alert",
            entity_id=f"{supplier}/{site}",
            supplier=supplier,
            reason=f"test alert to {', '.join(to) or 'nobody'}: sent {sent}, waiting {waiting}",
        )
        return back("/incidents")

    # --- Data quality --------------------------------------------------------------------------

    @app.get("/quality")
    async def quality(request: Request) -> Response:
        user, csrf = current(request)
        now_ns = console.clock()
        registry = console.registry()
        falls = views.fall_issues(cfg, console.store, registry, user, now_ns)
        for f in falls:
            before = console.store.meter_readings(
                f["key"], f["ts"] - 7 * views.DAY_NS, f["ts"], limit=1
            )
            reg = f["ref"].register_field
            f["old_final"] = before[0].get(reg) if before else None
            f["local"] = views.local(
                datetime.fromtimestamp(f["ts"] / 1e9, UTC), f["ref"].site.timezone
            )
        unknown = [
            r
            for r in console.store.rejections(
                views.since(now_ns, 30), now_ns + 1, reasons=views.UNKNOWN, limit=500
            )
            if user.role != "supplier" or r.supplier == user.supplier
        ]
        supplier = user.scope
        meters = [r for r in views.visible_meters(registry, user)]
        sites = sorted({(r.supplier.id, r.site.id) for r in meters})
        return render(
            request,
            "quality.html",
            user=user,
            csrf=csrf,
            falls=falls,
            unknown=unknown,
            events=console.ops.meter_events(supplier),
            bills=console.ops.bills(supplier),
            meters=meters,
            sites=sites,
            carriers=_carriers(),
        )

    @app.post("/quality/event")
    async def record_event(request: Request) -> Response:
        user, csrf = current(request)
        form = await form_of(request, csrf)
        writer(user)
        parts = str(form.get("meter", "")).split("/")
        ref = views.find_meter(console.registry(), user, *parts) if len(parts) == 3 else None
        if ref is None:
            raise HTTPException(404)
        try:
            zone = ZoneInfo(ref.site.timezone)
            event = _event(form, zone)
            console.ops.record_meter_event(
                console.base_registry,
                ref.key,
                event,
                by=user.username,
                reason=str(form.get("note") or "") or f"{event.type} recorded in the console",
            )
        except (Refused, ValueError) as exc:
            return refused(request, user, csrf, exc, "/quality")
        return back("/quality")

    @app.post("/quality/event/{record_id}/remove")
    async def remove_event(request: Request, record_id: int) -> Response:
        return await withdraw(
            request, record_id, console.ops.remove_meter_event, "withdrawn", "/quality"
        )

    @app.post("/quality/bill")
    async def add_bill(request: Request) -> Response:
        user, csrf, form, registry, supplier, site = await site_post(request, "site")
        try:
            console.ops.add_bill(
                registry,
                supplier=supplier,
                site=site,
                carrier=str(form.get("carrier", "")),
                account=str(form.get("account", "")),
                period_start=_date(form, "period_start"),
                period_end=_date(form, "period_end"),
                billed=_float(form, "billed"),
                bill_id=str(form.get("bill_id", "")),
                by=user.username,
            )
        except (Refused, ValueError) as exc:
            return refused(request, user, csrf, exc, "/quality")
        return back("/quality")

    @app.post("/quality/bills.csv")
    async def upload_bills(request: Request) -> Response:
        """A bills CSV (the ``[jobs] bills_file`` format): every row checked first; all or
        nothing."""
        user, csrf = current(request)
        form = await form_of(request, csrf)
        writer(user)
        upload = form.get("file")
        data = await upload.read(2_000_001) if hasattr(upload, "read") else b""
        from processing.accounting.inputs import load_bills

        try:
            if len(data) > 2_000_000:
                raise Refused("the file is over 2 MB")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "bills.csv"
                path.write_bytes(data)
                rows = load_bills(path)
            registry = console.registry()
            for b in rows:
                if not views.site_visible(registry, user, b.supplier, b.site):
                    raise Refused(f"{b.source}: no site {b.supplier}/{b.site} of yours")
            for b in rows:
                console.ops.add_bill(
                    registry,
                    supplier=b.supplier,
                    site=b.site,
                    carrier=b.carrier,
                    account=b.account,
                    period_start=b.period_start,
                    period_end=b.period_end,
                    billed=b.billed,
                    bill_id=b.bill_id,
                    by=user.username,
                    reason=f"uploaded ({b.source})",
                )
        except ConfigError as exc:
            return refused(request, user, csrf, ValueError("; ".join(exc.problems)), "/quality")
        except (Refused, UnicodeDecodeError) as exc:
            return refused(request, user, csrf, exc, "/quality")
        return back("/quality")

    @app.post("/quality/bill/{record_id}/remove")
    async def remove_bill(request: Request, record_id: int) -> Response:
        return await withdraw(request, record_id, console.ops.remove_bill, "withdrawn", "/quality")

    @app.get("/months")
    async def months(request: Request) -> Response:
        user, csrf = current(request)
        return render(
            request,
            "months.html",
            user=user,
            csrf=csrf,
            months=views.months(cfg, console.ops, user),
        )

    @app.get("/months/{month}/footprints/v{version}.json")
    async def footprints(request: Request, month: str, version: int) -> Response:
        user, _ = current(request)
        body = views.footprints_file(cfg, console.registry(), user, month, version)
        if body is None:
            raise HTTPException(404)
        name = f"footprints-{month}-v{version}.json"
        return Response(
            body,
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/months/{month}/v{version}/{name}")
    async def month_file(request: Request, month: str, version: int, name: str) -> Response:
        user, _ = current(request)
        found = views.month_file(cfg, user, month, version, name)
        if found is None:
            raise HTTPException(404)
        body, media = found
        return Response(
            body,
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.post("/months/{month}/review")
    async def review(request: Request, month: str) -> Response:
        user, csrf = current(request)
        form = await form_of(request, csrf)
        if user.role != "supplier" or user.supplier is None:
            raise HTTPException(403)
        view = next((m for m in views.months(cfg, console.ops, user) if m.month == month), None)
        if view is None or user.supplier not in view.totals:
            raise HTTPException(404)
        try:
            console.ops.review_month(
                supplier=user.supplier,
                month=month,
                version=view.version,
                status=str(form.get("status", "")),
                comment=str(form.get("comment", "")),
                by=user.username,
            )
        except Refused as exc:
            return refused(request, user, csrf, exc, "/months")
        return back("/months")

    # --- Admin and audit -----------------------------------------------------------------------

    def admin_only(user: User) -> None:
        if user.role != "admin":
            raise HTTPException(403)

    @app.get("/admin")
    async def admin(request: Request) -> Response:
        user, csrf = current(request)
        admin_only(user)
        return render(
            request,
            "admin.html",
            user=user,
            csrf=csrf,
            users=console.ops.users(),
            suppliers=[s.id for s in console.registry().suppliers],
        )

    @app.post("/admin/users")
    async def add_user(request: Request) -> Response:
        user, csrf = current(request)
        form = await form_of(request, csrf)
        admin_only(user)
        try:
            console.ops.add_user(
                str(form.get("username", "")),
                str(form.get("password", "")),
                str(form.get("role", "")),
                supplier=str(form.get("supplier") or "") or None,
                language=str(form.get("language") or "zh-TW"),
                by=user.username,
                registry=console.registry(),
                reason=str(form.get("reason") or "account created"),
            )
        except Refused as exc:
            return refused(request, user, csrf, exc, "/admin")
        return back("/admin")

    @app.post("/admin/users/{username}")
    async def update_user(request: Request, username: str) -> Response:
        user, csrf = current(request)
        form = await form_of(request, csrf)
        admin_only(user)
        active = {"on": True, "off": False}.get(str(form.get("active", "")))
        try:
            console.ops.update_user(
                username,
                by=user.username,
                reason=str(form.get("reason") or "account changed"),
                role=str(form.get("role") or "") or None,
                supplier=str(form.get("supplier") or "") or None,
                active=active,
                registry=console.registry(),
            )
        except Refused as exc:
            return refused(request, user, csrf, exc, "/admin")
        return back("/admin")

    def audit_rows(user: User) -> list[Any]:
        supplier = user.scope
        return console.ops.audit_trail(supplier=supplier)

    @app.get("/audit")
    async def audit_page(request: Request) -> Response:
        user, csrf = current(request)
        rows = audit_rows(user)[-500:]
        return render(request, "audit.html", user=user, csrf=csrf, rows=list(reversed(rows)))

    @app.get("/audit.csv")
    async def audit_csv(request: Request) -> Response:
        user, _ = current(request)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            [
                "id",
                "at_utc",
                "user",
                "action",
                "entity",
                "entity_id",
                "supplier",
                "before",
                "after",
                "reason",
            ]
        )
        for e in audit_rows(user):
            w.writerow(
                [
                    e.id,
                    e.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    e.username,
                    e.action,
                    e.entity,
                    e.entity_id,
                    e.supplier or "",
                    e.before or "",
                    e.after or "",
                    e.reason,
                ]
            )
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )

    return app


# --- helpers ---------------------------------------------------------------------------


def _local_path(text: str) -> str:
    """A path on this console to go back to; anything else (another host, ``//host``,
    ``/\\host``, a scheme) is the *Now* page: no open redirect."""
    ok = text.startswith("/") and not text.startswith(("//", "/\\")) and len(text) <= 200
    return text if ok and all(c.isprintable() and c != "\\" for c in text) else "/now"


def _cookie(response: Response, name: str, value: str, secure: bool, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
    )


def _accept_language(request: Request) -> str:
    header = request.headers.get("accept-language", "").lower()
    return "zh-TW" if header.startswith("zh") else "en"


def _carriers() -> list[str]:
    from supplymeter.carriers import CARRIERS

    return list(CARRIERS)


def _local_time(text: str, zone: ZoneInfo) -> datetime:
    """A ``datetime-local`` input (the site's local time) as an aware datetime."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise Refused(f"time: not a date and time ({text[:40]!r})") from exc
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _date(form: dict[str, Any], name: str) -> date:
    try:
        return date.fromisoformat(str(form.get(name, "")))
    except ValueError as exc:
        raise Refused(f"{name}: not a date (YYYY-MM-DD)") from exc


def _float(form: dict[str, Any], name: str, required: bool = True) -> float:
    text = str(form.get(name) or "").replace(",", "").strip()
    if not text and not required:
        return float("nan")
    try:
        value = float(text)
    except ValueError as exc:
        raise Refused(f"{name}: not a number") from exc
    if value != value or value in (float("inf"), float("-inf")):
        raise Refused(f"{name}: not a number")
    return value


def _event(form: dict[str, Any], zone: ZoneInfo) -> MeterEvent:
    """A meter event from the data-quality form, validated as the registry validates one."""
    from pydantic import ValidationError

    data: dict[str, Any] = {
        "type": str(form.get("type", "")),
        "time": _local_time(str(form.get("time", "")), zone),
        "note": str(form.get("note", ""))[:500],
    }
    for name in ("old_final_register", "new_first_register", "new_multiplier"):
        if str(form.get(name) or "").strip():
            data[name] = _float(form, name)
    try:
        return MeterEvent.model_validate(data)
    except ValidationError as exc:
        raise Refused(
            "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'event'}: "
                + str(e["msg"]).removeprefix("Value error, ")
                for e in exc.errors()
            )
        ) from exc


def serve(config: Config) -> None:  # pragma: no cover - runs until interrupted
    """``supplymeter console serve``: the console on ``[console] host:port``."""
    import uvicorn

    c = config.console
    loopback = c.host in ("127.0.0.1", "::1", "localhost")
    if not loopback and not c.secure:
        raise ConfigError(
            [
                f"{config.path}: console.host {c.host!r} is not a loopback address: "
                "serve over TLS (tls_certfile, tls_keyfile) or set "
                "behind_tls_proxy when a proxy terminates TLS"
            ]
        )
    ops = Operations.from_config(config)
    app = create_app(Console(config, Store.from_config(config), ops))
    log.info("console on %s://%s:%d", "https" if c.tls_certfile else "http", c.host, c.port)
    uvicorn.run(
        app,
        host=c.host,
        port=c.port,
        log_level="warning",
        ssl_certfile=str(config.resolve(c.tls_certfile)) if c.tls_certfile else None,
        ssl_keyfile=str(config.resolve(c.tls_keyfile)) if c.tls_keyfile else None,
        proxy_headers=c.behind_tls_proxy,
    )
