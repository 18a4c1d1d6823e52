"""Peers of the collector for the side-by-side benchmark: a Node-RED flow, installed by
``make bench-peers`` (npm) into ``bench/.peers``.

The flow is the one a user would build: ``mqtt in`` (QoS 1, persistent session, JSON) → a
function turning a reading into a point → ``join`` (1,000 messages or 0.25 s) → ``influxdb
batch`` (node-red-contrib-influxdb, InfluxDB 1.x). Node-RED acknowledges a message when it
receives it, before anything is stored.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "bench" / ".peers"
NODE_RED = PEERS / "node_modules" / "node-red" / "red.js"

TO_POINT = """
const p = msg.topic.split('/');
const r = msg.payload;
const fields = {};
for (const k of ['energy_kwh', 'power_kw', 'volume_m3']) {
  if (typeof r[k] === 'number') fields[k] = r[k];
}
msg.payload = {measurement: 'reading', tags: {supplier: p[2], site: p[3], meter: p[4]},
               fields: fields, timestamp: new Date(r.ts)};
return msg;
"""


def installed() -> bool:
    return NODE_RED.exists()


class NodeRed:
    """A Node-RED process running the batching flow against one broker and database."""

    def __init__(self, root: Path, mqtt_port: int, influx_url: str, database: str,
                 protocol: str = "3.1.1", batching: bool = True) -> None:  # fmt: skip
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        host, port = re.match(r"https?://([^:/]+):(\d+)", influx_url).groups()  # type: ignore[union-attr]
        version = "4" if protocol == "3.1.1" else "5"
        nodes: list[dict[str, object]] = [
            {"id": "f1a0", "type": "tab", "label": "bench"},
            {"id": "b10c", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(mqtt_port),
             "clientid": f"nodered-{database}", "usetls": False, "protocolVersion": version,
             "keepalive": "60", "cleansession": False, "autoConnect": True,
             "sessionExpiry": "3600" if version == "5" else ""},
            {"id": "a001", "type": "mqtt in", "z": "f1a0", "topic": "energy/v1/+/+/+/readings",
             "qos": "1", "datatype": "json", "broker": "b10c", "nl": False, "rap": True,
             "rh": 0, "inputs": 0, "wires": [["a002"]]},
            {"id": "a002", "type": "function", "z": "f1a0", "func": TO_POINT, "outputs": 1,
             "wires": [["a003" if batching else "a005"]]},
            {"id": "d100", "type": "influxdb", "hostname": host, "port": port, "protocol": "http",
             "database": database, "name": "", "usetls": False, "influxdbVersion": "1.x"},
        ]  # fmt: skip
        if batching:
            nodes += [
                {"id": "a003", "type": "join", "z": "f1a0", "mode": "custom", "build": "array",
                 "property": "payload", "propertyType": "msg", "key": "topic",
                 "joiner": "\\n", "joinerType": "str", "accumulate": False, "timeout": "0.25",
                 "count": "1000", "reduceRight": False, "wires": [["a004"]]},
                {"id": "a004", "type": "influxdb batch", "z": "f1a0", "influxdb": "d100",
                 "precision": "ms", "retentionPolicy": "", "wires": []},
            ]  # fmt: skip
        else:
            nodes.append({"id": "a005", "type": "influxdb batch", "z": "f1a0", "influxdb": "d100",
                          "precision": "ms", "retentionPolicy": "", "wires": []})  # fmt: skip
        (self.root / "flows.json").write_text(json.dumps(nodes))
        (self.root / "settings.js").write_text(
            "module.exports = {uiPort: 0, httpAdminRoot: false, httpNodeRoot: false, "
            "flowFile: 'flows.json', credentialSecret: false, "
            "logging: {console: {level: 'warn', metrics: false, audit: false}}};\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["node", str(NODE_RED), "--userDir", str(self.root), "--settings",
             str(self.root / "settings.js"), str(self.root / "flows.json")],
            stdout=(self.root / "node-red.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def peak_rss_mb(self) -> float:
        assert self.proc
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]

    def kill(self) -> None:
        """SIGKILL: what an OOM kill or a power cut does."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def away(self) -> None:
        """Gone while a backlog queues: SIGKILL, because a graceful stop makes the ``mqtt in``
        node unsubscribe, and the broker then queues nothing for the session."""
        self.kill()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
