"""How long NodeClient waits for a new agent's banner, without SSH (a scripted channel)."""

from __future__ import annotations

from herd.rpc.client import AGENT_START_TIMEOUT
from tests.engine.rpc.scripted_agent import NODE, ScriptedChannel, ScriptedPool, scripted_client


def test_a_new_agent_gets_longer_than_a_connect_to_say_hello() -> None:
    # A software-emulated guest on a loaded machine took over 10 s (the connect bound) to
    # start herd-node, and every op on it failed "no answer before the timeout".
    channel = ScriptedChannel([{"id": 1, "ok": True, "result": {}}])
    client = scripted_client(channel)
    client.call(NODE, "ping", {})
    assert channel.timeouts[0] == AGENT_START_TIMEOUT > ScriptedPool.connect_timeout * 2
