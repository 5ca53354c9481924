"""QMPClient against a real Unix-socket server speaking QMP as qemu does.

A real qemu is exercised in test_kvm.py; here a scripted peer makes the awkward cases
(events interleaved with replies, stale replies, errors, silence, hang-ups) happen on
demand.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.node.hv.qmp import QMPClient, QMPError

GREETING = {"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}
Script = Callable[[dict[str, Any]], list[dict[str, Any]] | None]


class FakeQemu:
    """Answers each request with whatever ``script`` returns (None: hang up)."""

    def __init__(self, path: Path, script: Script) -> None:
        self.received: list[dict[str, Any]] = []
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen()
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        with conn, conn.makefile("rwb") as f:
            f.write(json.dumps(GREETING).encode() + b"\r\n")
            f.flush()
            for line in f:
                request = json.loads(line)
                self.received.append(request)
                if request["execute"] == "qmp_capabilities":
                    answers: list[dict[str, Any]] | None = [{"return": {}, "id": request["id"]}]
                else:
                    answers = self.script(request)
                if answers is None:
                    return
                for answer in answers:
                    f.write(json.dumps(answer).encode() + b"\r\n")
                f.flush()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Script], str]]:
    servers: list[FakeQemu] = []

    def start(script: Script) -> str:
        path = tmp_path / f"q{len(servers)}.sock"
        servers.append(FakeQemu(path, script))
        return str(path)

    yield start
    for server in servers:
        server.close()


def test_replies_match_ids_and_events_are_queued(serve: Callable[[Script], str]) -> None:
    def script(req: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"event": "POWERDOWN", "timestamp": {}},
            {"return": "stale", "id": "someone-else"},
            {"event": "SHUTDOWN", "timestamp": {}},
            {"return": {"status": "running"}, "id": req["id"]},
        ]

    with QMPClient(serve(script), timeout=5) as qmp:
        assert qmp.greeting["version"]["qemu"]["major"] == 7
        assert qmp.execute("query-status") == {"status": "running"}
        assert [e["event"] for e in qmp.events] == ["POWERDOWN", "SHUTDOWN"]
        assert qmp.wait_event({"SHUTDOWN"}, timeout=1)["event"] == "SHUTDOWN"
        assert [e["event"] for e in qmp.events] == ["POWERDOWN"]


def test_arguments_are_sent_and_errors_carry_qemus_message(
    serve: Callable[[Script], str],
) -> None:
    sent: list[dict[str, Any]] = []

    def script(req: dict[str, Any]) -> list[dict[str, Any]]:
        sent.append(req)
        err = {"class": "GenericError", "desc": "Parameter 'uri' is missing"}
        return [{"error": err, "id": req["id"]}]

    with QMPClient(serve(script), timeout=5) as qmp, pytest.raises(QMPError) as failed:
        qmp.execute("migrate", {"detach": True})
    assert sent[0]["arguments"] == {"detach": True}
    assert "Parameter 'uri' is missing" in failed.value.message
    assert failed.value.details["command"] == "migrate"
    assert failed.value.details["error_class"] == "GenericError"


def test_silence_times_out_and_hangup_is_reported(serve: Callable[[Script], str]) -> None:
    with QMPClient(serve(lambda req: []), timeout=5) as qmp:
        with pytest.raises(QMPError) as slow:
            qmp.execute("query-status", timeout=0.2)
        assert slow.value.details["reason"] == "timeout"
        assert qmp.wait_event({"SHUTDOWN"}, timeout=0.2) is None
    with QMPClient(serve(lambda req: None), timeout=5) as qmp, pytest.raises(QMPError) as gone:
        qmp.execute("quit")
    assert gone.value.details["reason"] == "closed"


def test_missing_socket_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(QMPError) as missing:
        QMPClient(str(tmp_path / "nope.sock")).connect()
    assert str(tmp_path / "nope.sock") in missing.value.message
