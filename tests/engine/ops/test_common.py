"""The helpers every op shares (``herd.ops.common``), and that ops take them from there
rather than from another op's module — against a real SQLite store, no nodes needed."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import pytest

import herd.ops
from herd.config.model import Cluster, Node, NodeGroup
from herd.config.store import SQLiteStore
from herd.errors import PrerequisiteError, ValidationError
from herd.locking import LockManager
from herd.ops.base import OpContext
from herd.ops.common import (
    MAX_OSPARAM_LEN,
    MAX_OSPARAMS,
    check_osparams,
    cluster_of,
    get_node,
    validate_group_ref,
)

OPS_DIR = Path(herd.ops.__file__).parent


def context(store: SQLiteStore) -> OpContext:
    return OpContext(
        store=store,
        locks=LockManager(),
        owner="t",
        log_fn=lambda *a: None,
        cancel=threading.Event(),
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "config.db")


def test_cluster_of_refuses_an_uninitialised_cluster(store: SQLiteStore) -> None:
    with pytest.raises(PrerequisiteError, match="herd cluster init"):
        cluster_of(context(store))
    with store.transaction() as txn:
        txn.add(Cluster(name="c"))
    assert cluster_of(context(store)).name == "c"


def test_lookups_name_the_field_and_list_what_exists(store: SQLiteStore) -> None:
    group = NodeGroup(name="default")
    with store.transaction() as txn:
        txn.add(group)
        txn.add(Node(name="n1", primary_ip="10.0.0.1", group=group.uuid))
    ctx = context(store)
    assert get_node(ctx, "n1", "target_node").name == "n1"
    assert validate_group_ref(ctx, "default").uuid == group.uuid
    with pytest.raises(ValidationError) as node:
        get_node(ctx, "n9", "target_node")
    assert node.value.details["field"] == "target_node"
    assert node.value.details["allowed"] == "an existing node: n1"
    with pytest.raises(ValidationError) as grp:
        validate_group_ref(ctx, "g9", "target_group")
    assert grp.value.details["field"] == "target_group"
    assert grp.value.details["allowed"] == "an existing node group: default"


def imported_names(module: str) -> dict[str, set[str]]:
    """``{op module: names it imports from module}`` over every module of herd.ops."""
    found: dict[str, set[str]] = {}
    for path in sorted(OPS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == module:
                found.setdefault(path.stem, set()).update(a.name for a in node.names)
    return found


def test_ops_take_shared_helpers_from_common_not_from_other_ops() -> None:
    """Only the catalog reaches the cluster ops' module; an export borrows nothing of moves."""
    assert imported_names("herd.ops.cluster") == {}
    assert "instance_export" not in imported_names("herd.ops.instance_remote")
    helpers = imported_names("herd.ops.instance_common")
    assert not any({"cluster", "get_node"} & names for names in helpers.values())


@pytest.mark.parametrize(
    ("osparams", "field", "rule"),
    [
        ({"root-password": "x"}, "osparams.root-password", "letters, digits and '_'"),
        ({"a" * 65: "x"}, "osparams." + "a" * 65, "1-64"),
        ({"": "x"}, "osparams.", "1-64"),
        ({"suite": "x", "SUITE": "y"}, "osparams.SUITE", "OSP_SUITE"),
        ({"motd": "hi\nthere"}, "osparams.motd", "line breaks"),
        ({"motd": "hi\rthere"}, "osparams.motd", "line breaks"),
        ({"motd": "a\0b"}, "osparams.motd", "NUL"),
        ({"motd": "x" * (MAX_OSPARAM_LEN + 1)}, "osparams.motd", str(MAX_OSPARAM_LEN)),
        ({"pkgs": ["vim"]}, "osparams.pkgs", "a number or a boolean"),
        ({"pkgs": {"a": 1}}, "osparams.pkgs", "a number or a boolean"),
        ({"pkgs": None}, "osparams.pkgs", "a number or a boolean"),
        ({f"p{i}": "x" for i in range(MAX_OSPARAMS + 1)}, "osparams", f"{MAX_OSPARAMS}"),
    ],
)
def test_osparams_must_be_usable_as_osp_variables(
    osparams: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as err:
        check_osparams(osparams, "osparams")
    assert err.value.details["field"] == field
    assert rule in err.value.details["allowed"]
    assert field in err.value.message


def test_osparams_numbers_and_booleans_are_stored_as_the_text_scripts_get() -> None:
    given = {"suite": "bookworm", "disk_gib": 8, "ratio": 1.5, "dhcp": True, "ipv6": False}
    assert check_osparams(given, "osparams") == {
        "suite": "bookworm",
        "disk_gib": "8",
        "ratio": "1.5",
        "dhcp": "true",
        "ipv6": "false",
    }
    assert check_osparams({f"p{i}": "x" * MAX_OSPARAM_LEN for i in range(MAX_OSPARAMS)}, "o")
