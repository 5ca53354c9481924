"""instance.remove when a node refuses to clean up: the instance stays unless told."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from herd.config import SQLiteStore
from herd.errors import PrerequisiteError
from herd.rpc.services import Services
from tests.engine.harness import PATIENCE, ThreadMaster, start_thread_master
from tests.engine.ops.test_params import seed


@pytest.fixture
def refusing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadMaster]:
    """web1 on an online n2 whose every node call is refused as a prerequisite."""
    seed(tmp_path / "state")
    store = SQLiteStore(tmp_path / "state" / "config.db")
    try:
        with store.transaction() as txn:
            n2 = txn.get("node", "n2")
            n2.offline = False
            txn.update(n2)
    finally:
        store.close()

    def refuse(self: Services, node: Any, action: str, *args: Any, **kwargs: Any) -> Any:
        raise PrerequisiteError(f"disk of web1 is in use on {node.name}", node=node.name)

    monkeypatch.setattr(Services, "call", refuse)
    tm = start_thread_master(tmp_path)
    yield tm
    tm.stop()


def test_remove_surfaces_a_node_refusal_unless_failures_are_ignored(
    refusing: ThreadMaster,
) -> None:
    with pytest.raises(PrerequisiteError) as refused:
        refusing.api.run([{"op": "instance.remove", "name": "web1"}], timeout=PATIENCE)
    assert "in use on n2" in refused.value.message
    assert [i["name"] for i in refusing.api.query("instances")] == ["web1"]
    forced = refusing.api.run(
        [{"op": "instance.remove", "name": "web1", "ignore_failures": True}], timeout=PATIENCE
    )
    assert forced["cleanup_problems"] == ["disk of web1 is in use on n2"]
    assert refusing.api.query("instances") == []
