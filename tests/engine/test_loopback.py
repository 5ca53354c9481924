"""The loopback node services answer as a real ``herd-node --serve`` answers over SSH:
same results, same error classes and messages, and the failure paths tests rely on."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from herd.config import Node
from herd.errors import HerdError, NodeError, NotFoundError, PrerequisiteError, ValidationError
from herd.node.actions.registry import NodeContext
from herd.node.agent import serve
from herd.rpc.protocol import result_of
from tests.engine.loopback import LoopbackServices, build_env

#: (action, args): a success, a missing file, a bad argument type, an unknown field,
#: an unknown action, and a path escaping the node's root.
REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("write_file", {"path": "etc/x.conf", "content": "hello\n"}),
    ("read_file", {"path": "etc/x.conf"}),
    ("read_file", {"path": "etc/missing"}),
    ("read_file", {"path": 7}),
    ("remove_file", {"path": "etc/x.conf", "force": True}),
    ("no_such_action", {}),
    ("read_file", {"path": "../../etc/passwd"}),
]


@pytest.fixture
def loop(tmp_path: Path) -> LoopbackServices:
    (tmp_path / "nodes" / "n1").mkdir(parents=True)
    return LoopbackServices(state_dir=tmp_path / "state", nodes_dir=tmp_path / "nodes")


N1 = Node(name="n1", primary_ip="192.0.2.1")
N2 = Node(name="n2", primary_ip="192.0.2.2")


def outcome(call: Any) -> Any:
    """A call's result, or its error as (class, message, details): what callers see."""
    try:
        return call()
    except HerdError as exc:
        return (type(exc).__name__, exc.message, exc.details)


def over_the_wire(root: Path, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """The same requests as byte frames through the agent's own ``--serve`` loop, decoded
    by the function the SSH client decodes with (the process around the loop is
    tests/engine/node/test_agent.py's subject)."""
    frames = "".join(
        json.dumps({"id": i, "action": a, "args": args}) + "\n"
        for i, (a, args) in enumerate(requests, 1)
    )
    out = io.BytesIO()
    serve(NodeContext(root), io.BytesIO(frames.encode()), out)
    answered = out.getvalue().decode().splitlines()[1:]
    return [outcome(lambda line=line: result_of(json.loads(line), "n1")) for line in answered]


def test_answers_and_errors_are_those_of_a_real_agent(
    loop: LoopbackServices, tmp_path: Path
) -> None:
    wire_root = tmp_path / "wire"
    wire_root.mkdir()
    expected = over_the_wire(wire_root, REQUESTS)
    got = [outcome(lambda r=r: loop.call(N1, *r)) for r in REQUESTS]
    # The only difference allowed: each side's own root in the paths it reports.
    assert json.loads(json.dumps(got).replace(str(loop.root("n1")), str(wire_root))) == (
        json.loads(json.dumps(expected))
    )
    assert [g[0] if isinstance(g, tuple) else "ok" for g in got] == [
        "ok", "ok", "NotFoundError", "ValidationError", "ValidationError", "NotFoundError",
        "ValidationError",
    ]  # fmt: skip


def test_an_agent_error_is_raised_as_its_own_class_naming_the_node(
    loop: LoopbackServices,
) -> None:
    with pytest.raises(NotFoundError) as missing:
        loop.call(N1, "read_file", {"path": "nothing"})
    assert missing.value.details["node"] == "n1"


def test_an_offline_node_is_a_node_error_and_its_action_never_runs(
    loop: LoopbackServices,
) -> None:
    loop.offline.add("n1")
    with pytest.raises(NodeError, match=r"node n1 \(192\.0\.2\.1\): call write_file failed"):
        loop.call(N1, "write_file", {"path": "x", "content": "y"})
    assert not (loop.root("n1") / "x").exists()
    assert loop.calls == [("n1", "write_file")]


def test_call_many_reports_each_node_and_one_failing_stops_none(loop: LoopbackServices) -> None:
    (loop.root("n2")).mkdir()
    loop.offline.add("n2")
    answers = loop.call_many([N1, N2], "node_info")
    assert (answers["n1"].result or {})["storage_dir"] == str(loop.root("n1"))
    assert isinstance(answers["n2"].error, NodeError) and answers["n2"].result is None


def test_an_armed_failure_hits_only_its_node_and_action_until_healed(
    loop: LoopbackServices,
) -> None:
    (loop.root("n2")).mkdir()
    loop.fail("write_file", PrerequisiteError("disk full", path="x"), node="n2")
    loop.call(N1, "write_file", {"path": "x", "content": "y"})
    with pytest.raises(PrerequisiteError, match="disk full") as refused:
        loop.call(N2, "write_file", {"path": "x", "content": "y"})
    assert refused.value.details == {"path": "x", "node": "n2"}
    assert not (loop.root("n2") / "x").exists()
    loop.heal()
    assert loop.call(N2, "write_file", {"path": "x", "content": "y"})["changed"] is True


def test_a_failure_armed_without_a_node_is_a_node_error_on_every_node(
    loop: LoopbackServices,
) -> None:
    loop.fail("node_info")
    with pytest.raises(NodeError, match="node n1: injected failure of node_info"):
        loop.call(N1, "node_info")


def test_arguments_that_are_not_json_are_refused_as_by_the_ssh_client(
    loop: LoopbackServices,
) -> None:
    with pytest.raises(TypeError):
        loop.call(N1, "write_file", {"path": "x", "content": object()})


def test_a_job_error_is_raised_as_the_client_raises_it(tmp_path: Path) -> None:
    env = build_env(tmp_path)
    try:
        with pytest.raises(ValidationError, match=r"ops\[0\]\.name"):
            env.run({"op": "instance.start", "name": 5})
        with pytest.raises(ValidationError, match="ghost"):
            env.run({"op": "instance.start", "name": "ghost"})
        assert env.run({"op": "debug.delay", "duration": 0}) is not None
    finally:
        env.close()


def test_templates_whose_backends_act_on_this_machine_are_refused(tmp_path: Path) -> None:
    """plain and DRBD would run lvcreate and drbdsetup on the test host itself."""
    env = build_env(tmp_path)
    try:
        with pytest.raises(ValidationError, match="an enabled disk template"):
            env.run(
                {"op": "instance.add", "name": "web1", "disk_template": "plain", "disks": ["4M"],
                 "install": False}
            )  # fmt: skip
        assert env.nodes.calls == []
    finally:
        env.close()
