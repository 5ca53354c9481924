"""The client library against a real master: results, errors rebuilt, reconnects."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.client import Client
from herd.errors import HerdError, MasterUnreachableError, NotFoundError, ValidationError
from tests.engine.harness import ThreadMaster


def test_no_master_is_reported_with_the_socket_path(tmp_path: Path) -> None:
    path = str(tmp_path / "none.sock")
    with pytest.raises(MasterUnreachableError) as err:
        Client(path).info()
    assert path in err.value.message


def test_run_returns_the_result_and_feeds_the_log(herd_master: ThreadMaster) -> None:
    seen: list[dict[str, Any]] = []
    result = herd_master.client().run(
        [{"op": "debug.delay", "log_messages": 3}], on_log=seen.append, priority=-10
    )
    assert result == {"slept": 0.0, "locked_nodes": [], "spawned": []}
    assert [e["message"] for e in seen] == [f"delay step {i}/3" for i in (1, 2, 3)]


def test_run_raises_the_jobs_error(herd_master: ThreadMaster) -> None:
    with pytest.raises(HerdError, match="failed on request"):
        herd_master.client().run([{"op": "debug.delay", "fail": True}])


def test_wait_timeout_names_the_status(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    job_id = c.submit([{"op": "debug.delay", "duration": 60}])
    with pytest.raises(HerdError) as err:
        c.wait(job_id, timeout=0.2)
    assert err.value.details["job_id"] == job_id
    assert err.value.details["status"] in ("queued", "waiting", "running")


def test_validation_errors_come_back_as_validation_errors(herd_master: ThreadMaster) -> None:
    with pytest.raises(ValidationError) as err:
        herd_master.client().submit([{"op": "debug.delay", "duration": "long"}])
    assert err.value.details == {
        "field": "ops[0].duration",
        "value": "long",
        "allowed": "a number from 0 to 86400",
    }
    assert "ops[0].duration" in err.value.message


def test_job_listing_and_filters(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    ids = [c.submit([{"op": "debug.delay"}]) for _ in range(3)]
    for job_id in ids:
        herd_master.wait_status(job_id, "success")
    assert [j["id"] for j in c.jobs()] == ids[::-1]
    assert [j["id"] for j in c.jobs(limit=2)] == ids[:0:-1]
    assert c.jobs(status="error") == []
    with pytest.raises(ValidationError) as err:
        c.jobs(status="done")
    assert err.value.details["field"] == "status"
    with pytest.raises(NotFoundError):
        c.job(999)


def test_state_queries(herd_master: ThreadMaster) -> None:
    c = herd_master.client()
    assert [n["name"] for n in c.query("nodes")] == ["n1", "n2"]
    assert [n["name"] for n in c.query("nodes", ["n2"])] == ["n2"]
    with pytest.raises(NotFoundError) as err:
        c.query("nodes", ["n2", "zz"])
    assert err.value.details["names"] == ["zz"]
    with pytest.raises(NotFoundError):
        c.query("cluster")
    assert c.info()["cluster"] is None
    assert [n["name"] for n in c.dump()["objects"]["node"]] == ["n1", "n2"]
    delay = next(o for o in c.ops() if o["op"] == "debug.delay")
    assert "duration" in [p["name"] for p in delay["params"]]


def test_a_kept_alive_client_survives_a_master_restart(
    master_factory: Callable[..., ThreadMaster],
) -> None:
    first = master_factory()
    c = Client(str(first.socket))
    c.info()
    first.stop()
    with pytest.raises(MasterUnreachableError):
        c.info()
    master_factory()
    assert c.info()["api"] == 1
    c.close()


def test_a_socket_client_loads_neither_tls_nor_http_client(herd_master: ThreadMaster) -> None:
    """Every CLI command pays for what this module imports; only HTTPS needs these."""
    code = (
        "import json, sys; from herd.client import Client;"
        f"Client({str(herd_master.socket)!r}).info();"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] in ("ssl", "_ssl", "http", "email")] == []


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class ScriptedMaster:
    """A Unix socket answering with canned bytes: ``script`` holds one list of answers per
    connection, each sent once a request's head has arrived; the connection closes after
    its last one. Counts the connections the client opened."""

    def __init__(self, path: Path, script: list[list[bytes]]) -> None:
        self.path = str(path)
        self.connections = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen()
        self._listener.settimeout(60)  # a safety net: the client connects at once
        self._thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self._thread.start()

    def _serve(self, script: list[list[bytes]]) -> None:
        for answers in script:
            conn, _ = self._listener.accept()
            self.connections += 1
            with conn, conn.makefile("rb") as reader:
                for answer in answers:
                    while reader.readline() not in (b"\r\n", b""):
                        pass
                    conn.sendall(answer)

    def close(self) -> None:
        self._thread.join(60)
        self._listener.close()


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[Callable[[list[list[bytes]]], ScriptedMaster]]:
    started: list[ScriptedMaster] = []

    def start(script: list[list[bytes]]) -> ScriptedMaster:
        started.append(ScriptedMaster(tmp_path / "m.sock", script))
        return started[-1]

    yield start
    for master in started:
        master.close()


def test_one_connection_carries_every_request(scripted: Callable[..., ScriptedMaster]) -> None:
    master = scripted([[OK, OK, OK]])
    with Client(master.path) as c:
        assert [c.request("GET", "/v1/info") for _ in range(3)] == [{}, {}, {}]
    assert master.connections == 1


def test_connection_close_and_a_dropped_connection_are_reconnected(
    scripted: Callable[..., ScriptedMaster],
) -> None:
    closing = OK.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    master = scripted([[closing], [OK], [OK]])
    with Client(master.path) as c:
        assert [c.request("GET", "/v1/info") for _ in range(3)] == [{}, {}, {}]
    assert master.connections == 3


@pytest.mark.parametrize(
    "answer",
    [
        b"",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
    ],
    ids=["nothing", "no length", "cut short", "odd length", "cut in the headers", "not http"],
)
def test_a_garbled_answer_is_a_lost_connection(
    scripted: Callable[..., ScriptedMaster], answer: bytes
) -> None:
    master = scripted([[answer]])
    with Client(master.path) as c, pytest.raises(MasterUnreachableError) as err:
        c.request("GET", "/v1/info")
    assert err.value.message.startswith(f"lost the connection to the master at {master.path}")
