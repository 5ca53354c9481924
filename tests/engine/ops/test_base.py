"""The op-facing protocols in herd.ops.base, as the type checker sees them."""

from __future__ import annotations

from pathlib import Path

from tests.engine.typecheck import type_errors


def test_the_lock_manager_is_what_ops_take_as_locks(tmp_path: Path) -> None:
    # owned() answers with the modes as Literals; dict is invariant, so a Protocol
    # promising dict[str, dict[str, str]] would refuse the real manager.
    source = (
        "from herd.locking import LockManager\n"
        "from herd.ops.base import Locks\n"
        "locks: Locks = LockManager()\n"
    )
    assert type_errors(source, tmp_path) == []
