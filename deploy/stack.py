"""The local stack: Mosquitto and InfluxDB 1.x as child processes with project-local configs.

``supplymeter stack up`` starts both detached, with configs, data, logs and pid files under
``.stack/`` (``[stack]`` in the config), waits until both answer, and returns;
``stack down`` stops them; ``stack status`` says what runs. Tests and the demo use
:class:`LocalStack` as a context manager, which stops what it started on every exit path.

The binaries come from Debian's ``mosquitto`` and ``influxdb`` packages (``make setup``).
Ports default away from 1883/8086 because installing those packages on a systemd machine
starts system-wide services on the standard ports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import urllib3

from supplymeter.config import Config
from supplymeter.errors import SourceUnavailable, SupplymeterError

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


def find_binary(name: str, package: str) -> str:
    """Path of a server binary, or a clear error naming the package to install."""
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in SBIN_DIRS if (Path(d) / name).exists()), None
    )
    if not found:
        raise SupplymeterError(
            f"{name} not found: run `make setup` (installs the Debian package {package!r})"
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child) still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


class Server:
    """One server process: its config file, log, pid file and readiness check."""

    name = "server"

    def __init__(self, *, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.pidfile = root / f"{self.name}.pid"
        self.logfile = root / f"{self.name}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> None:
        raise NotImplementedError

    def ready(self) -> bool:
        return port_open(self.port)

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def start(self, *, detach: bool, timeout_s: float = 30.0) -> None:
        """Start the process and wait until it answers."""
        if self.pid() is not None:
            raise SupplymeterError(f"{self.name} already runs (pid {self.pid()}): {self.pidfile}")
        if port_open(self.port):
            raise SupplymeterError(f"{self.name}: port 127.0.0.1:{self.port} is already in use")
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_config()
        with self.logfile.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        self.pidfile.write_text(f"{self._proc.pid}\n")
        deadline = time.monotonic() + timeout_s
        while not self.ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.logfile.read_text(errors="replace")[-1500:]
                raise SourceUnavailable(
                    f"{self.name} did not start; end of {self.logfile}:\n{tail}"
                )
            time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; removes the pid file."""
        pid = self._proc.pid if self._proc else self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            if self._proc:
                self._proc.wait(5)
        self._proc = None
        self.pidfile.unlink(missing_ok=True)


class Mosquitto(Server):
    """Mosquitto 2 on 127.0.0.1, anonymous (local development and tests only), persistent."""

    name = "mosquitto"

    def __init__(self, *, root: Path, port: int, max_queued_bytes: int = 536_870_912,
                 max_packet_bytes: int = 1_049_600) -> None:  # fmt: skip
        """``max_queued_bytes``: each session's queue bound; ``max_packet_bytes``: the largest
        packet accepted (1 MiB + 1 KiB: room for tests to send the collector a payload over
        its own 256 KiB limit; ``deploy mosquitto`` sets the collector's limit exactly)."""
        super().__init__(root=root, port=port)
        self.max_queued_bytes = max_queued_bytes
        self.max_packet_bytes = max_packet_bytes

    def argv(self) -> list[str]:
        return [find_binary("mosquitto", "mosquitto"), "-c", str(self.root / "mosquitto.conf")]

    def write_config(self) -> None:
        data = self.root / "mosquitto-data"
        data.mkdir(parents=True, exist_ok=True)
        (self.root / "mosquitto.conf").write_text(
            f"""# written by supplymeter; local development and tests only
listener {self.port} 127.0.0.1
allow_anonymous true
# Mosquitto run as root drops to user 'mosquitto' unless told otherwise; keep the caller's
# user so the data directory stays writable.
user {getpass.getuser()}
persistence true
persistence_location {data}/
autosave_interval 30
# The default 1000 queued messages per client silently drops the rest of a backlog
# (a collector catching up after an outage); bound it by bytes instead — per session, so
# with the collector's session per supplier, per supplier.
max_queued_messages 0
max_queued_bytes {self.max_queued_bytes}
# A publisher sending a larger packet is disconnected: no reading batch needs more.
max_packet_size {self.max_packet_bytes}
# The collector acknowledges a message only after writing it. MQTT 5 clients size this window
# themselves (Receive Maximum); for MQTT 3.1.1 clients it is this setting, and the default 20
# would cap the collector at one 20-message batch per write.
max_inflight_messages 10000
log_dest stderr
log_type error
log_type warning
log_type notice
"""
        )


class InfluxDB(Server):
    """InfluxDB 1.x (Debian's influxdb) on 127.0.0.1 with data under the stack directory."""

    name = "influxd"

    def __init__(self, *, root: Path, port: int, rpc_port: int, auth: bool = False) -> None:
        """``auth``: HTTP authentication on (a first admin user is then created through the
        API, as on a production server)."""
        super().__init__(root=root, port=port)
        self.rpc_port = rpc_port
        self.auth = auth

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [find_binary("influxd", "influxdb"), "-config", str(self.root / "influxdb.conf")]

    def ready(self) -> bool:
        try:
            resp = urllib3.request("GET", f"{self.url}/ping", timeout=1.0, retries=False)
        except urllib3.exceptions.HTTPError:
            return False
        return resp.status == 204

    def write_config(self) -> None:
        data = self.root / "influxdb"
        (self.root / "influxdb.conf").write_text(
            f"""# written by supplymeter; local development and tests only
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"
[meta]
  dir = "{data}/meta"
  logging-enabled = false
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
  index-version = "inmem"
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  max-row-limit = 0
  max-body-size = 0
[continuous_queries]
  enabled = false
"""
        )


@dataclass(frozen=True)
class StackStatus:
    name: str
    pid: int | None
    port: int
    answering: bool

    def __str__(self) -> str:
        state = "running" if self.pid and self.answering else "stopped"
        if self.pid and not self.answering:
            state = "not answering"
        return f"{self.name:<10} {state:<14} pid={self.pid or '-'} port=127.0.0.1:{self.port}"


class LocalStack:
    """Mosquitto + InfluxDB under one directory. A context manager: stops on every exit."""

    def __init__(
        self, *, root: Path, mqtt_port: int, influxdb_port: int, influxdb_rpc_port: int
    ) -> None:
        self.root = Path(root)
        self.mosquitto = Mosquitto(root=self.root, port=mqtt_port)
        self.influxdb = InfluxDB(root=self.root, port=influxdb_port, rpc_port=influxdb_rpc_port)

    @classmethod
    def on_free_ports(cls, root: Path) -> LocalStack:
        return cls(
            root=root,
            mqtt_port=free_port(),
            influxdb_port=free_port(),
            influxdb_rpc_port=free_port(),
        )

    def __enter__(self) -> LocalStack:
        self.up(detach=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self, *, detach: bool) -> None:
        """Start whichever of the two is not running; wait until both answer."""
        servers = (self.influxdb, self.mosquitto)
        try:
            for server in servers:
                if server.pid() is None:
                    server.start(detach=detach)
        except BaseException:
            for server in servers:
                server.stop()
            raise

    def down(self) -> None:
        for server in (self.mosquitto, self.influxdb):
            server.stop()

    def status(self) -> list[StackStatus]:
        return [
            StackStatus(s.name, s.pid(), s.port, s.ready()) for s in (self.mosquitto, self.influxdb)
        ]

    def running(self) -> bool:
        return all(s.pid is not None and s.answering for s in self.status())


def configure_for(config: Config, stack: LocalStack, client_id: str | None = None) -> Config:
    """``config`` with its MQTT and InfluxDB settings pointing at ``stack``, for a collector
    embedded in a short-lived process (the demo, benchmarks): no metrics server, whose port
    would clash with a ``supplymeter collect`` running beside it, and its own ``client_id``
    when given (a shared one would take over the other collector's persistent session)."""
    mqtt = {"host": "127.0.0.1", "port": stack.mosquitto.port}
    if client_id is not None:
        mqtt["client_id"] = client_id
    services = config.services.model_copy(
        update={
            "mqtt": config.mqtt.model_copy(update=mqtt),
            "influxdb": config.influxdb.model_copy(update={"url": stack.influxdb.url}),
            "collector": config.collector.model_copy(update={"metrics_port": 0}),
        }
    )
    return dataclasses.replace(config, services=services)


def stack_from_config(config: Config) -> LocalStack:
    """The local stack that ``[stack]`` describes."""
    settings = config.stack
    return LocalStack(
        root=config.resolve(settings.dir),
        mqtt_port=settings.mqtt_port,
        influxdb_port=settings.influxdb_port,
        influxdb_rpc_port=settings.influxdb_rpc_port,
    )
