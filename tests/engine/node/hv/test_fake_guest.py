"""The incoming side of a fake migration ignores streams that are not its instance's."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from herd.node.hv.fake_guest import INCOMING_TIMEOUT


def status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def wait_phase(path: Path, phase: str) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = status(path)
        if got.get("phase") == phase:
            return got
        time.sleep(0.01)
    raise AssertionError(f"guest never reached {phase}: {status(path)}")


def send(port: int, header: dict, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(json.dumps(header).encode() + b"\n" + payload)
        return conn.makefile("rb").readline()


def test_foreign_and_corrupt_streams_are_refused_then_a_good_one_lands(tmp_path: Path) -> None:
    assert INCOMING_TIMEOUT > 10
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    state = tmp_path / "g.json"
    argv = [sys.executable, "-m", "herd.node.hv.fake_guest", "--name", "vm1"]
    argv += ["--status", str(state), "--interval", "0.05", "--incoming-fd", str(listener.fileno())]
    proc = subprocess.Popen(argv, pass_fds=[listener.fileno()])
    listener.close()
    try:
        wait_phase(state, "incoming")
        payload = b"m" * 4096
        digest = hashlib.sha256(payload).hexdigest()
        assert send(port, {"name": "other", "image_bytes": 4096, "sha256": digest}, payload) == b""
        bad = json.loads(send(port, {"name": "vm1", "image_bytes": 4096, "sha256": "0"}, payload))
        assert bad["ok"] is False and status(state)["phase"] == "incoming"
        header = {"name": "vm1", "image_bytes": 4096, "sha256": digest, "boots": 3}
        assert json.loads(send(port, header, payload)) == {
            "ok": True,
            "sha256": digest,
            "bytes": 4096,
        }
        # Already recorded when the sender has its answer (no wait): the sender goes on to
        # ask for the resume, which reads it. Written after the answer, a loaded machine
        # failed live migrations with "no complete migration arrived".
        got = status(state)
        assert (
            got["phase"] == "received"
            and got["boots"] == 3
            and got["migration"]["sha256"] == digest
        )
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
