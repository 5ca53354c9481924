"""A node's error never brings back the secrets its call carried (issue 10, hole 3).

The master's services run here over scripted agent sessions (the real NodeClient, no lab).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from herd.config import Node
from herd.errors import NodeError
from herd.master.services import MasterServices
from herd.redact import REDACTED
from tests.engine.rpc.scripted_agent import ScriptedChannel, scripted_client

SECRET = "drbd-shared-secret-1"
ARGS = {"disk": {"uuid": "d1", "params": {"port": 11000, "secret": SECRET}}}
NODE = Node(name="n1", primary_ip="192.0.2.1", host_key="ssh-ed25519 AAAA")
#: What an agent that does not clean drbdadm's output answers with.
QUOTING = NodeError(
    f"drbdadm up failed: Command 'drbdsetup connect --shared-secret={SECRET}' terminated",
    stderr=f"--shared-secret={SECRET}",
)
FAILED = {"id": 1, "ok": False, "error": QUOTING.to_dict()}


def services(tmp_path: Path, *channels: ScriptedChannel) -> MasterServices:
    return MasterServices(state_dir=tmp_path, _client=scripted_client(*channels))


def test_the_agents_error_is_cleaned_of_the_calls_secrets(tmp_path: Path) -> None:
    with pytest.raises(NodeError) as err:
        services(tmp_path, ScriptedChannel([FAILED])).call(NODE, "disk_attach_net", ARGS)
    assert SECRET not in json.dumps(err.value.to_dict()) + str(err.value)
    assert f"--shared-secret={REDACTED}' terminated" in err.value.message
    assert err.value.details["node"] == "n1"


def test_a_broken_sessions_stderr_tail_is_cleaned_of_the_calls_secrets(tmp_path: Path) -> None:
    channel = ScriptedChannel([b"not json"], stderr=f"Traceback: {SECRET}\n".encode())
    with pytest.raises(NodeError) as err:
        services(tmp_path, channel).call(NODE, "disk_attach_net", ARGS)
    assert "garbled frame" in err.value.message
    assert SECRET not in json.dumps(err.value.to_dict())
    assert err.value.details["stderr"] == f"Traceback: {REDACTED}"


def test_call_many_reports_cleaned_errors(tmp_path: Path) -> None:
    answers = services(tmp_path, ScriptedChannel([FAILED])).call_many([NODE], "x", ARGS)
    assert answers["n1"].error is not None
    assert SECRET not in json.dumps(answers["n1"].error.to_dict())
