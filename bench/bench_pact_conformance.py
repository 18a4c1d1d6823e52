"""The WBCSD PACT conformance service's V3.0 test cases against ``supplymeter pact serve``.

The service is public (https://github.com/wbcsd/pact-conformance-service) and runs its test
cases from a command line (``src/scripts/run-tests-cli.ts``); its dependencies come from the
npm registry. Nothing of it is copied into this repository: give a checkout with ``--suite
DIR`` (or ``PACT_CONFORMANCE_DIR``), else it is cloned into ``bench/.peers/`` (needs git and
network access to GitHub). The runner is given:

* our host over HTTPS on 127.0.0.1 with a throw-away CA (``deploy/make-test-ca.sh``;
  ``NODE_EXTRA_CA_CERTS`` makes Node trust it), so the "through HTTP" cases meet a TLS port;
* five footprints (copies of ``docs/sample-product-footprint.json``, the demo's), a page size
  of 2 so that ListFootprints paginates;
* a client whose callback is a local recipient, so asynchronous requests are answered (the
  CLI cannot receive callbacks: cases 13 and 14.B show as pending there).

Prints the runner's summary and exits with its status (0: every mandatory case passed).
``make bench-pact-conformance``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from app.pact import hash_secret
from deploy.stack import free_port, port_open
from processing.accounting.footprints import FootprintLog

ROOT = Path(__file__).resolve().parents[1]
SUITE_GIT = "https://github.com/wbcsd/pact-conformance-service"
SECRET = "conformance-secret-0123456789"


def suite_dir(given: str | None) -> Path:
    """A checkout of the conformance service with its npm dependencies installed."""
    path = Path(given or os.environ.get("PACT_CONFORMANCE_DIR") or ROOT / "bench/.peers/pact-cts")
    if not (path / "package.json").exists():
        subprocess.run(["git", "clone", "--depth", "1", SUITE_GIT, str(path)], check=True)
    if not (path / "node_modules").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=path, check=True)
    return path


def footprints(log: FootprintLog, n: int = 5) -> None:
    sample = json.loads((ROOT / "docs/sample-product-footprint.json").read_text())
    contents = []
    for k in range(n):
        pf = copy.deepcopy(sample)
        for key in ("id", "created", "status", "precedingPfIds"):
            pf.pop(key, None)
        pf["productIds"] = [f"{pid}-{k}" for pid in pf["productIds"]]
        contents.append(("conformance", f"p{k}", f"conformance/p{k}/{uuid.uuid4()}", pf))
    log.publish(contents)


def recipient(received: list[dict]) -> tuple[uvicorn.Server, int]:  # type: ignore[type-arg]
    """The conformance client's Events endpoint (ours: the CLI cannot receive callbacks)."""
    app = FastAPI()

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        return JSONResponse({"access_token": "t", "token_type": "Bearer"})

    @app.post("/3/events")
    async def events(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(status_code=200)

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, port


def verdict(output: str, received: list[dict]) -> int:  # type: ignore[type-arg]
    """0 when no case failed and the two callback cases the CLI leaves pending (13: a
    RequestFulfilledEvent for case 12's request, 14.B: a RequestRejectedEvent with an error
    code and message for case 14.A's) arrived at the client's Events endpoint."""
    failed = [row for row in output.splitlines() if "\u2717 Failed:" in row or "✗ Failed:" in row]
    none_failed = bool(failed) and all(row.strip().endswith(": 0") for row in failed)
    # The only asynchronous requests of the run are case 12's (a product that exists) and
    # case 14.A's (urn:pact:null): one answer each.
    fulfilled = [e for e in received if e["type"].endswith("RequestFulfilledEvent.3")
                 and e["data"].get("pfs")]  # fmt: skip
    rejected = [e for e in received if e["type"].endswith("RequestRejectedEvent.3")
                and e["data"].get("error", {}).get("code")
                and e["data"]["error"].get("message")]  # fmt: skip
    print(f"case 13 (callback): {'passed' if fulfilled else 'NOT received'}; "
          f"case 14.B (callback): {'passed' if rejected else 'NOT received'}; "
          f"failed cases: {'none' if none_failed else 'some (see above)'}")  # fmt: skip
    return 0 if none_failed and fulfilled and rejected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--suite", help="checkout of wbcsd/pact-conformance-service")
    parser.add_argument("--test-cases", default="", help="e.g. 1-8,37,40 (default: all)")
    args = parser.parse_args()
    suite = suite_dir(args.suite)
    received: list[dict] = []  # type: ignore[type-arg]
    _, cb_port = recipient(received)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        subprocess.run(["bash", str(ROOT / "deploy/make-test-ca.sh"), str(tmp / "tls")],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        footprints(FootprintLog(tmp / "pf.jsonl"))
        port = free_port()
        (tmp / "suppliers.toml").write_text(
            '[[suppliers]]\nid = "conformance"\nkind = "other"\n'
            'allocation = { method = "dedicated", share = 1.0 }\n'
            '  [[suppliers.sites]]\n  id = "s"\n  gateway = "g"\n'
            '    [[suppliers.sites.meters]]\n    id = "m"\n    carrier = "electricity"\n'
        )
        (tmp / "supplymeter.toml").write_text(
            f'registry = "suppliers.toml"\n[pact]\nport = {port}\npage_size = 2\n'
            f'public_url = "https://127.0.0.1:{port}"\n'
            f'tls_certfile = "{tmp / "tls/server.crt"}"\ntls_keyfile = "{tmp / "tls/server.key"}"\n'
            f'footprints_file = "{tmp / "pf.jsonl"}"\nevents_file = "{tmp / "events.jsonl"}"\n'
            f'[[pact.clients]]\nid = "conformance"\nsecret_hash = "{hash_secret(SECRET, 10_000)}"\n'
            f'suppliers = ["*"]\ncallback = {{ events_url = "http://127.0.0.1:{cb_port}/3/events", '
            'client_id = "x", secret_env = "CONFORMANCE_CB_SECRET" }\n'
        )
        env = {**os.environ, "CONFORMANCE_CB_SECRET": "x"}
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--config", str(tmp / "supplymeter.toml"), "pact",
             "serve"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while not port_open(port):
                time.sleep(0.05)
            argv = ["npx", "ts-node", "src/scripts/run-tests-cli.ts",
                    "--baseUrl", f"https://127.0.0.1:{port}", "--clientId", "conformance",
                    "--clientSecret", SECRET, "--version", "V3.0",
                    "--organizationName", "supplymeter"]  # fmt: skip
            if args.test_cases:
                argv += ["--testCases", args.test_cases]
            run_env = {
                **os.environ, "NODE_EXTRA_CA_CERTS": str(tmp / "tls/ca.crt"),
                # what the service's config asks for; the CLI uses no database
                "NODE_ENV": "test", "PORT": "0", "DB_CONNECTION_STRING": "unused",
                "CONFORMANCE_API": "http://127.0.0.1:9/unused", "LOG_OUTPUT": "console",
            }  # fmt: skip
            print(f"PACT conformance V3.0 ({suite}) against https://127.0.0.1:{port}", flush=True)
            run = subprocess.run(argv, cwd=suite, env=run_env, timeout=900, text=True,
                                 stdout=subprocess.PIPE)  # fmt: skip
            print(run.stdout)
            time.sleep(3.0)  # the answers to cases 12 and 14.A on their way
            return verdict(run.stdout, received)
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
