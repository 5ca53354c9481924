"""Agent framing and error handling, without SSH: in-memory streams and a real subprocess."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

from herd.errors import HerdError, NodeError, NotFoundError, ValidationError
from herd.node.actions import load_all
from herd.node.actions.registry import NodeContext
from herd.node.agent import PROTOCOL, handle, handle_line, serve

load_all()


def frames(ctx: NodeContext, *lines: bytes) -> list[dict]:
    out = io.BytesIO()
    serve(ctx, io.BytesIO(b"".join(lines)), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def error_of(answer: dict) -> HerdError:
    assert answer["ok"] is False
    return HerdError.from_dict(answer["error"])


def test_serve_writes_banner_then_one_answer_per_request_in_order(tmp_path: Path) -> None:
    ctx = NodeContext(tmp_path)
    answers = frames(
        ctx,
        b'{"id": 7, "action": "ping"}\n',
        b"\n",
        b'{"id": "x", "action": "write_file", "args": {"path": "a", "content": "1"}}\n',
        b'{"id": 9, "action": "check_files", "args": {"paths": ["a"]}}\n',
    )
    banner, *rest = answers
    assert banner["agent"] == "herd-node" and banner["protocol"] == PROTOCOL
    assert "write_file" in banner["actions"]
    assert [a["id"] for a in rest] == [7, "x", 9]
    assert all(a["ok"] for a in rest)
    assert rest[1]["result"]["changed"] is True
    assert rest[2]["result"]["files"]["a"] == rest[1]["result"]["sha256"]


def test_garbled_line_gets_an_error_and_the_session_goes_on(tmp_path: Path) -> None:
    _, bad, good = frames(NodeContext(tmp_path), b"{not json\n", b'{"id": 2, "action": "ping"}\n')
    err = error_of(bad)
    assert isinstance(err, ValidationError) and err.details["field"] == "request"
    assert bad["id"] is None
    assert good["ok"] and good["id"] == 2


def test_non_object_request_and_args_are_validation_errors(tmp_path: Path) -> None:
    ctx = NodeContext(tmp_path)
    assert error_of(handle(ctx, [1, 2])).details["field"] == "request"
    answer = handle(ctx, {"id": 1, "action": "ping", "args": [1]})
    assert answer["id"] == 1 and error_of(answer).details["field"] == "args"


def test_unknown_action_is_not_found(tmp_path: Path) -> None:
    err = error_of(handle_line(NodeContext(tmp_path), b'{"id": 1, "action": "format_disk"}'))
    assert isinstance(err, NotFoundError) and err.details["field"] == "action"


def test_unexpected_failure_becomes_node_error_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "root-is-a-file"
    blocker.write_text("")
    request = {"id": 1, "action": "write_file", "args": {"path": "d/f", "content": "x"}}
    err = error_of(handle(NodeContext(blocker), request))
    assert isinstance(err, NodeError)
    assert err.details["action"] == "write_file" and err.details["exception"]


def run_agent(tmp_path: Path, *args: str, stdin: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "HERD_NODE_ROOT": str(tmp_path)}
    return subprocess.run(
        ["herd-node", *args], input=stdin, capture_output=True, env=env, timeout=60
    )


def test_one_shot_mode_answers_once_with_exit_status(tmp_path: Path) -> None:
    ok = run_agent(
        tmp_path,
        stdin=b'{"id": 1, "action": "write_file", "args": {"path": "f", "content": "hi"}}',
    )
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["result"]["changed"] is True
    assert (tmp_path / "f").read_text() == "hi"
    bad = run_agent(tmp_path, stdin=b'{"id": 1, "action": "read_file", "args": {"path": "g"}}')
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["error"]["type"] == "NotFoundError"


def test_serve_process_exits_cleanly_at_eof(tmp_path: Path) -> None:
    done = run_agent(tmp_path, "--serve", stdin=b'{"id": 1, "action": "node_info"}\n')
    banner, answer = (json.loads(line) for line in done.stdout.splitlines())
    assert done.returncode == 0 and banner["agent"] == "herd-node"
    assert answer["result"]["storage_dir"] == str(tmp_path)
