"""Mosquitto identities and access control generated from the supplier registry.

Suppliers are separate companies: a gateway at supplier A must never write (or read) supplier
B's data, nor disturb the collector. ``supplymeter deploy mosquitto`` writes, from the
registry, a configuration for Mosquitto's Dynamic Security plugin (shipped with Mosquitto
2.0; chosen over ``password_file`` + ``acl_file`` because only it binds a client id to a user
and can deny subscriptions):

* ``dynamic-security.json`` (mode 0600) — one client per site gateway
  (``{supplier}.{site}.{gateway}``; ids cannot hold a dot, so names are unambiguous) and one per
  collector process (``collector``, ``collector-1``...), each **bound to its own client id**
  (a gateway's is its user name; a collector's is ``[mqtt] client_id``, ``-N`` per process),
  so nobody can connect with another's client id and take over its persistent session.
  Passwords are hashed as Mosquitto 2 does (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt,
  64-byte key). Roles: a gateway may publish only its own meters' readings topics and its own
  status topic, and **may not subscribe at all** (not ``#``, not ``$share/...``: a gateway in
  the collectors' shared group would swallow half the stream); a collector may subscribe to
  ``energy/v1/#`` (and ``$share/<group>/energy/v1/#``) and publish nothing. Anything not
  allowed is denied.
* ``passwd`` and ``acl`` — the same users and topic rules in the classic files, for a broker
  without the plugin (they cannot bind client ids nor deny subscriptions: see
  docs/security.md);
* ``mosquitto.conf`` — no anonymous access, the plugin, persistence; with TLS configured
  (``[broker]`` certfile/keyfile) the plaintext listener is bound to 127.0.0.1 only.

Passwords come from the secrets file (``[broker] secrets_file``, TOML ``[passwords]``) or are
generated for users that have none and written back to it with mode 0600. They are never
printed or logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path

from supplymeter.config import AUTO_MAX_PROCESSES, Config, Registry, gateway_username
from supplymeter.errors import ConfigError, RequestRejected, SourceUnavailable

PBKDF2_ITERATIONS = 101
"""Mosquitto 2.0's ``mosquitto_passwd`` default for ``$7$`` (PBKDF2-SHA512) hashes."""
SALT_BYTES = 12
KEY_BYTES = 64


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash: ``$7$101$<salt b64>$<key b64>``."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, KEY_BYTES)
    return (
        f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"
    )


def collector_user(config: Config) -> str:
    return config.mqtt.username or "collector"


def collector_identities(config: Config) -> list[tuple[str, str]]:
    """(user, client id) of each collector process, as ``collector.worker_config`` gives
    them: process 0 is the collector's own, process N > 0 ``user-N`` with ``client_id-N``;
    ``processes = "auto"``: as many as it may start (``AUTO_MAX_PROCESSES``)."""
    user, client_id, n = collector_user(config), config.mqtt.client_id, config.collector.processes
    count = AUTO_MAX_PROCESSES if n == "auto" else n
    return [(user, client_id)] + [(f"{user}-{i}", f"{client_id}-{i}") for i in range(1, count)]


def lane_identities(config: Config) -> list[tuple[str, str]]:
    """(user, client id) of each process's per-supplier session
    (``collector.session_per_supplier``): ``user.<supplier>``, ``client_id.<supplier>``."""
    if not config.collector.session_per_supplier:
        return []
    return [(f"{user}.{s.id}", f"{client_id}.{s.id}") for user, client_id in
            collector_identities(config) for s in config.registry.suppliers]  # fmt: skip


def users(config: Config) -> list[str]:
    """Every MQTT user with its own password: the collector (all its processes share it),
    then each site's gateway."""
    names = [collector_user(config)]
    for supplier in config.registry.suppliers:
        names += [gateway_username(supplier.id, site.id, site.gateway) for site in supplier.sites]
    return names


def _dynsec_password(password: str) -> dict[str, object]:
    """The plugin's password fields: the same PBKDF2-SHA512 as :func:`hash_password`."""
    salt = os.urandom(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, KEY_BYTES)
    return {"password": base64.b64encode(key).decode(), "salt": base64.b64encode(salt).decode(),
            "iterations": PBKDF2_ITERATIONS}  # fmt: skip


ADMIN_USER = "supplymeter-admin"
"""The client that applies registry changes to a running broker through the plugin's control
API (``$CONTROL/dynamic-security/v1``): it may use that API and nothing else."""
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"


@dataclass(frozen=True)
class Identity:
    username: str
    clientid: str
    textname: str
    role: str
    password_of: str
    """Whose password it uses (collector processes and sessions share the collector's)."""


def identities(config: Config) -> tuple[list[Identity], list[dict[str, object]]]:
    """Every client the broker must know, and every role, from the registry."""
    roles: list[dict[str, object]] = []
    collector_acls = [{"acltype": "subscribePattern", "topic": "energy/v1/#", "allow": True}]
    if config.mqtt.shared_group:
        shared = f"$share/{config.mqtt.shared_group}/energy/v1/#"
        collector_acls.append({"acltype": "subscribePattern", "topic": shared, "allow": True})
    roles.append({"rolename": "collector", "acls": collector_acls})
    roles.append({"rolename": "dynsec-admin", "acls": [
        {"acltype": kind, "topic": f"{CONTROL_TOPIC}/#", "allow": True}
        for kind in ("publishClientSend", "publishClientReceive", "subscribePattern")
    ]})  # fmt: skip
    clients = [Identity(ADMIN_USER, ADMIN_USER, "supplymeter admin", "dynsec-admin", ADMIN_USER)]
    shared_pw = collector_user(config)
    for user, client_id in collector_identities(config) + lane_identities(config):
        clients.append(Identity(user, client_id, "collector", "collector", shared_pw))
    for supplier in config.registry.suppliers:
        for site in supplier.sites:
            user = gateway_username(supplier.id, site.id, site.gateway)
            prefix = f"energy/v1/{supplier.id}/{site.id}"
            topics = [f"{prefix}/{m.id}/readings" for m in site.meters]
            topics.append(f"{prefix}/gateway/{site.gateway}/status")
            roles.append({"rolename": f"gateway:{user}", "acls": [
                {"acltype": "publishClientSend", "topic": t, "allow": True} for t in topics
            ]})  # fmt: skip
            clients.append(Identity(user, user, "site gateway", f"gateway:{user}", user))
    return clients, roles


def dynsec_config(config: Config, passwords: dict[str, str]) -> dict[str, object]:
    """The Dynamic Security plugin's configuration: clients bound to client ids, roles."""
    clients, roles = identities(config)
    return {
        "clients": [
            {
                "username": c.username,
                "clientid": c.clientid,
                "textName": c.textname,
                "roles": [{"rolename": c.role}],
                **_dynsec_password(passwords[c.password_of]),
            }
            for c in clients
        ],
        "roles": roles,
        "groups": [],
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
    }


def _managed(username: str, config: Config) -> bool:
    """Clients this project creates (and so may delete): gateways ``supplier.site.gateway``,
    the collector's processes and sessions."""
    collector = collector_user(config)
    return username.count(".") == 2 or username == collector or username.startswith(
        (f"{collector}.", f"{collector}-"))  # fmt: skip


def plan_dynsec(config: Config, passwords: dict[str, str], current: dict[str, list]
                ) -> list[dict[str, object]]:  # fmt: skip
    """The control-API commands that turn the broker's ``current`` clients and roles (as
    ``listClients`` / ``listRoles`` verbose answer) into what the registry says. Existing
    clients keep their passwords; new ones get theirs from the secrets file."""
    clients, roles = identities(config)
    commands: list[dict[str, object]] = []
    have_roles = {r["rolename"]: r for r in current.get("roles", [])}
    for role in roles:
        name = role["rolename"]
        want = {(a["acltype"], a["topic"], a["allow"]) for a in role["acls"]}  # type: ignore[attr-defined]
        if name not in have_roles:
            commands.append({"command": "createRole", "rolename": name})
            got: set[tuple[str, str, bool]] = set()
        else:
            got = {(a["acltype"], a["topic"], a.get("allow", False))
                   for a in have_roles[name].get("acls", [])}  # fmt: skip
        for kind, topic, _ in sorted(got - want):
            commands.append({"command": "removeRoleACL", "rolename": name, "acltype": kind,
                             "topic": topic})  # fmt: skip
        for kind, topic, allow in sorted(want - got):
            commands.append({"command": "addRoleACL", "rolename": name, "acltype": kind,
                             "topic": topic, "allow": allow, "priority": 0})  # fmt: skip
    have = {c["username"]: c for c in current.get("clients", [])}
    for c in clients:
        roles_ = [{"rolename": c.role}]
        if c.username not in have:
            commands.append({"command": "createClient", "username": c.username,
                             "password": passwords[c.password_of], "clientid": c.clientid,
                             "textname": c.textname, "roles": roles_})  # fmt: skip
            continue
        old = have[c.username]
        if old.get("clientid") != c.clientid or [r.get("rolename") for r in old.get(
                "roles", [])] != [c.role]:  # fmt: skip
            commands.append({"command": "modifyClient", "username": c.username,
                             "clientid": c.clientid, "roles": roles_})  # fmt: skip
    wanted = {c.username for c in clients}
    for username in sorted(set(have) - wanted):
        if _managed(username, config):
            commands.append({"command": "deleteClient", "username": username})
    wanted_roles = {r["rolename"] for r in roles}
    for name in sorted(set(have_roles) - wanted_roles):
        if str(name).startswith("gateway:"):
            commands.append({"command": "deleteRole", "rolename": name})
    return commands


def control(config: Config, password: str, commands: list[dict[str, object]],
            timeout_s: float = 15.0) -> list[dict[str, object]]:  # fmt: skip
    """Send commands to the broker's Dynamic Security control API as :data:`ADMIN_USER`;
    their responses, in order. Raises :class:`SourceUnavailable` when the broker cannot be
    reached or does not answer, :class:`RequestRejected` when it refuses the login."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    m = config.mqtt
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=ADMIN_USER,
                         protocol=paho.MQTTv5 if m.protocol == "5" else paho.MQTTv311)  # fmt: skip
    client.username_pw_set(ADMIN_USER, password)
    if m.tls_ca_file is not None:
        client.tls_set(ca_certs=str(m.tls_ca_file))
    connected, subscribed, answered = threading.Event(), threading.Event(), threading.Event()
    refused: list[str] = []
    answers: list[dict[str, object]] = []

    def on_connect(c, u, flags, reason, props) -> None:  # type: ignore[no-untyped-def]
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    def on_message(c, u, msg) -> None:  # type: ignore[no-untyped-def]
        answers.extend(json.loads(msg.payload).get("responses", []))
        if len(answers) >= len(commands):
            answered.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = on_message
    try:
        client.connect(m.host, m.port, 30)
    except OSError as exc:
        raise SourceUnavailable(f"MQTT broker {m.host}:{m.port}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise SourceUnavailable(f"MQTT broker {m.host}:{m.port} did not answer")
        if refused:
            raise RequestRejected(f"the broker refused {ADMIN_USER} ({refused[0]}): was the "
                                  "broker started with files from this version of `deploy "
                                  "mosquitto`?")  # fmt: skip
        client.subscribe(f"{CONTROL_TOPIC}/response", qos=1)
        if not subscribed.wait(timeout_s):
            raise SourceUnavailable("the broker did not confirm the control subscription")
        client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        if not answered.wait(timeout_s):
            raise SourceUnavailable(f"no answer from the Dynamic Security plugin in {timeout_s:g} "
                                    "s (is it loaded?)")  # fmt: skip
    finally:
        client.disconnect()
        client.loop_stop()
    return answers


def apply_dynsec(config: Config, passwords: dict[str, str]) -> list[str]:
    """Bring a running broker's clients and roles in line with the registry, without a
    restart; returns what changed (``createClient forge-a.plant-2.gw1``...). Raises
    :class:`RequestRejected` listing any command the broker refused."""
    listed = control(config, passwords[ADMIN_USER], [
        {"command": "listClients", "verbose": True},
        {"command": "listRoles", "verbose": True},
    ])  # fmt: skip
    current: dict[str, list] = {"clients": [], "roles": []}
    for answer in listed:
        data = answer.get("data") or {}
        if isinstance(data, dict):
            current["clients"] += data.get("clients", [])
            current["roles"] += data.get("roles", [])
    commands = plan_dynsec(config, passwords, current)
    if not commands:
        return []
    answers = control(config, passwords[ADMIN_USER], commands)
    failed = [f"{a.get('command')}: {a['error']}" for a in answers if a.get("error")]
    if failed:
        raise RequestRejected("the broker refused: " + "; ".join(failed))
    created = {c["username"] for c in commands if c["command"] == "createClient"}
    for user, client_id in lane_identities(config):
        if user in created:
            prime_session(config, user, client_id, passwords[collector_user(config)])
    return [f"{c['command']} {c.get('username') or c.get('rolename')}"
            + (f" {c['topic']}" if "topic" in c else "") for c in commands]  # fmt: skip


def prime_session(config: Config, user: str, client_id: str, password: str,
                  timeout_s: float = 15.0) -> None:  # fmt: skip
    """Create a new supplier's collector session on the broker before its gateway can
    publish: subscribed and persistent, so the broker queues the first readings until the
    collector, which takes the registry edit within seconds, connects as that session."""
    import threading

    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    m = config.mqtt
    supplier = client_id.rsplit(".", 1)[1]
    topic = f"energy/v1/{supplier}/#"  # the collector's filter of one supplier's session
    if m.shared_group:
        topic = f"$share/{m.shared_group}/{topic}"
    v5 = m.protocol == "5"
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
                         clean_session=None if v5 else False)  # fmt: skip
    client.username_pw_set(user, password)
    if m.tls_ca_file is not None:
        client.tls_set(ca_certs=str(m.tls_ca_file))
    connected, subscribed = threading.Event(), threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.on_subscribe = lambda *a: subscribed.set()
    props, kwargs = None, {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = m.session_expiry_s
        kwargs["clean_start"] = False
    client.connect(m.host, m.port, 30, properties=props, **kwargs)
    client.loop_start()
    try:
        if not connected.wait(timeout_s):
            raise SourceUnavailable(f"could not open the session {client_id!r} on the broker")
        client.subscribe(topic, qos=m.qos)
        if not subscribed.wait(timeout_s):
            raise SourceUnavailable(f"the broker did not confirm {client_id!r}'s subscription")
    finally:
        client.disconnect()
        client.loop_stop()


def acl_text(registry: Registry, collector: str, also: list[str] | None = None) -> str:
    """The ACL: exact topics per gateway, read-only for the collector (and ``also``: its
    other processes' and sessions' users), nothing for others."""
    out = ["# written by `supplymeter deploy mosquitto` from the supplier registry; do not edit"]
    for user in [collector, *(also or [])]:
        out += [f"user {user}", "topic read energy/v1/#", ""]
    for supplier in registry.suppliers:
        for site in supplier.sites:
            prefix = f"energy/v1/{supplier.id}/{site.id}"
            out.append(f"user {gateway_username(supplier.id, site.id, site.gateway)}")
            out += [f"topic write {prefix}/{meter.id}/readings" for meter in site.meters]
            out += [f"topic write {prefix}/gateway/{site.gateway}/status", ""]
    return "\n".join(out)


def load_passwords(path: Path) -> dict[str, str]:
    """The ``[passwords]`` table of the secrets file ({} when the file does not exist)."""
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    table = data.get("passwords", {})
    bad = [k for k, v in table.items() if not isinstance(v, str) or len(v) < 12]
    if bad:
        raise ConfigError([f"{path}: passwords.{k}: must be text of 12 or more characters"
                           for k in bad])  # fmt: skip
    return dict(table)


def ensure_passwords(path: Path, names: list[str]) -> dict[str, str]:
    """Passwords for ``names``: existing ones kept, missing ones generated and saved (0600)."""
    passwords = load_passwords(path)
    missing = [n for n in names if n not in passwords]
    if missing:
        for name in missing:
            passwords[name] = secrets.token_urlsafe(24)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "# MQTT passwords, generated by supplymeter; keep this file secret\n[passwords]\n"
        # JSON string escaping is valid TOML basic-string escaping: a password holding a quote
        # or a backslash stays one string.
        body += "".join(f"{json.dumps(name)} = {json.dumps(pw)}\n"
                        for name, pw in sorted(passwords.items()))  # fmt: skip
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        os.chmod(path, 0o600)
    return {n: passwords[n] for n in names}


@dataclass(frozen=True)
class MosquittoFiles:
    conf: Path
    passwd: Path
    acl: Path
    users: list[str]
    generated: list[str]


PACKET_OVERHEAD_BYTES = 1024
"""Room for the fixed header, topic (ids are at most 64 characters each) and MQTT 5 properties
above the collector's payload limit."""


def max_packet_bytes(config: Config) -> int:
    """The broker's ``max_packet_size``: the collector's ``max_payload_bytes`` plus
    :data:`PACKET_OVERHEAD_BYTES` — a reading batch never needs more than the collector
    accepts, so nothing larger reaches (or fills) a queue."""
    return config.collector.max_payload_bytes + PACKET_OVERHEAD_BYTES


def conf_text(config: Config, runtime_dir: Path) -> str:
    """mosquitto.conf with auth, ACL, persistence and (when configured) a TLS listener.

    ``runtime_dir`` is where passwd and acl are when Mosquitto runs (inside a container,
    the mount point; on a host, where they were written).
    """
    broker = config.services.broker
    tls = bool(broker.certfile and broker.keyfile)
    lines = [
        "# written by `supplymeter deploy mosquitto`; do not edit",
        "per_listener_settings false",
        "allow_anonymous false",
        f"user {broker.run_as_user}",
        "# client ids bound to users, no subscriptions for gateways: deploy/mosquitto.py",
        f"plugin {broker.dynsec_plugin}",
        f"plugin_opt_config_file {runtime_dir / 'dynamic-security.json'}",
        "persistence true",
        f"persistence_location {broker.persistence_dir}/",
        "max_queued_messages 0",
        "# per session: with collector.session_per_supplier each supplier's own (security.md)",
        f"max_queued_bytes {broker.max_queued_bytes}",
        "# no packet larger than the collector accepts (its payload limit + topic and header);",
        "# a gateway sending one is disconnected by the broker",
        f"max_packet_size {max_packet_bytes(config)}",
        "# the collector acknowledges after writing: see README (in-flight window)",
        "max_inflight_messages 10000",
        # With TLS configured, plaintext only on loopback (local tools and health checks).
        f"listener {broker.port} "
        f"{broker.plaintext_bind_address or ('127.0.0.1' if tls else broker.bind_address)}",
    ]
    if tls:
        lines += [
            f"listener {broker.tls_port} {broker.bind_address}",
            f"certfile {config.resolve(broker.certfile)}",
            f"keyfile {config.resolve(broker.keyfile)}",
        ]
        if broker.cafile:
            lines.append(f"cafile {config.resolve(broker.cafile)}")
        lines.append("tls_version tlsv1.2")
    return "\n".join(lines) + "\n"


def write_mosquitto(
    config: Config, out_dir: Path, runtime_dir: Path | None = None
) -> MosquittoFiles:
    """Write passwd, acl and mosquitto.conf under ``out_dir``; passwords never printed.

    ``runtime_dir``: where Mosquitto will find the files (default: ``out_dir`` itself).
    """
    names = users(config)
    secrets_path = config.resolve(config.services.broker.secrets_file)
    before = set(load_passwords(secrets_path))
    passwords = ensure_passwords(secrets_path, [*names, ADMIN_USER])
    out_dir.mkdir(parents=True, exist_ok=True)
    passwd = out_dir / "passwd"
    # Every collector identity (processes, per-supplier sessions) shares the collector's
    # password; the classic files cannot bind client ids (docs/security.md).
    shared = collector_user(config)
    extra = [u for u, _ in collector_identities(config) + lane_identities(config) if u != shared]
    fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.writelines(f"{name}:{hash_password(passwords[name])}\n" for name in names)
        fh.writelines(f"{name}:{hash_password(passwords[shared])}\n" for name in extra)
    acl = out_dir / "acl"
    acl.write_text(acl_text(config.registry, collector_user(config), extra))
    dynsec = out_dir / "dynamic-security.json"
    fd = os.open(dynsec, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(dynsec_config(config, passwords), fh, indent=2)
    conf = out_dir / "mosquitto.conf"
    conf.write_text(conf_text(config, runtime_dir or out_dir.resolve()))
    return MosquittoFiles(conf, passwd, acl, names, [n for n in names if n not in before])
