from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deploy.stack import LocalStack, Mosquitto, free_port, port_open
from supplymeter.errors import SupplymeterError


def test_stack_starts_answers_and_stops_cleanly(tmp_path: Path) -> None:
    with LocalStack.on_free_ports(tmp_path) as stack:
        statuses = stack.status()
        assert stack.running() and all(s.answering and s.pid for s in statuses)
        pids = [s.pid for s in statuses]
        assert (tmp_path / "mosquitto.conf").exists() and (tmp_path / "influxdb.conf").exists()
    assert not any(port_open(p) for p in (stack.mosquitto.port, stack.influxdb.port))
    assert not (tmp_path / "mosquitto.pid").exists() and not (tmp_path / "influxd.pid").exists()
    assert all(s.pid is None for s in stack.status()) and pids


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        server = Mosquitto(root=tmp_path, port=sock.getsockname()[1])
        with pytest.raises(SupplymeterError, match=r"port 127.0.0.1:\d+ is already in use"):
            server.start(detach=False)


def test_server_that_fails_to_start_shows_its_log(tmp_path: Path) -> None:
    class Broken(Mosquitto):
        def write_config(self) -> None:
            (self.root / "mosquitto.conf").write_text("no_such_option 1\n")

    with pytest.raises(SupplymeterError, match="did not start"):
        Broken(root=tmp_path, port=free_port()).start(detach=False, timeout_s=10)
