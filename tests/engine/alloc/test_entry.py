"""allocate(): one entry point, temporarily infeasible versus infeasible, both allocators."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from herd.alloc import allocate, iallocator
from herd.alloc.model import Snapshot
from herd.errors import PrerequisiteError, TemporarilyInfeasibleError, ValidationError
from tests.engine.alloc.strategies import cluster, drbd, node, plain


def busy() -> Snapshot:
    """a and b are small; c is the only node with room for 8 GiB."""
    return cluster(node("a", free=2048), node("b", free=2048), node("c", free=30000))


def test_builtin_placement() -> None:
    placed = allocate(busy(), plain("i1", memory=8192))
    assert placed.primary == "c" and placed.allocator == "builtin"


def test_locked_nodes_too_small_but_cluster_has_room_is_temporary() -> None:
    with pytest.raises(TemporarilyInfeasibleError) as err:
        allocate(busy(), plain("i1", memory=8192), only_nodes={"a", "b"})
    assert err.value.details["would_use"] == ["c"]
    assert err.value.details["only_nodes"] == ["a", "b"]


def test_fits_nowhere_is_a_prerequisite_error_even_with_locked_nodes() -> None:
    with pytest.raises(PrerequisiteError) as err:
        allocate(busy(), plain("i1", memory=64000), only_nodes={"a", "b"})
    assert not isinstance(err.value, TemporarilyInfeasibleError)
    assert set(err.value.details["reasons"]) == {"a", "b"}


def test_unknown_locked_node_is_bad_input() -> None:
    with pytest.raises(ValidationError):
        allocate(busy(), plain("i1"), only_nodes={"zz"})


def write_allocator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A real allocator, installed as ``emptiest``: the emptiest allowed nodes, refusing
    when none has the memory."""
    monkeypatch.setattr(iallocator, "SEARCH_PATH", (tmp_path,))
    script = tmp_path / "emptiest"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "msg = json.load(open(sys.argv[1]))\n"
        "req = msg['request']\n"
        "allowed = req.get('restrict-to-nodes') or list(msg['nodes'])\n"
        "fit = [n for n in allowed if msg['nodes'][n].get('free_memory', 0) >= req['memory']]\n"
        "fit.sort(key=lambda n: -msg['nodes'][n]['free_memory'])\n"
        "ok = len(fit) >= req['required_nodes']\n"
        "print(json.dumps({'success': ok, 'info': 'emptiest' if ok else 'no room',\n"
        "                  'result': fit[: req['required_nodes']] if ok else []}))\n"
    )
    script.chmod(0o755)
    return script.name


def test_external_allocator_placement_and_infeasibility(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = write_allocator(tmp_path, monkeypatch)
    snap = cluster(node("a", free=2048), node("b", free=20000), node("c", free=30000))
    placed = allocate(snap, drbd("i1", memory=1024), allocator=script)
    assert placed.nodes == ("c", "b")
    assert placed.allocator == "emptiest"
    assert placed.reasons == ("iallocator emptiest: emptiest",)
    assert 0 < placed.score <= 1
    with pytest.raises(TemporarilyInfeasibleError):
        allocate(snap, plain("i2", memory=8192), allocator=script, only_nodes={"a"})
    with pytest.raises(PrerequisiteError, match="iallocator emptiest found no placement"):
        allocate(snap, plain("i3", memory=64000), allocator=script, only_nodes={"a"})
