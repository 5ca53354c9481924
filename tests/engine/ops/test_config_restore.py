"""config.restore on a loopback cluster: a dump taken with its secrets brings the whole
state back (and the lock names with it); a redacted or malformed dump is refused naming
the first bad field, and the running config is then left exactly as it was.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from herd.config import Node
from herd.config.store import NEEDS_SECRETS, redact_dump
from herd.crypto.secrets import generate_domain_secret
from herd.errors import ValidationError
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_instance_add import add
from tests.engine.ops.test_instance_remote import set_cluster


def restore(data: Any) -> dict[str, Any]:
    return {"op": "config.restore", "data": data}


def lock_names(env: OpEnv, level: str) -> set[str]:
    return {row["name"] for row in env.locks.info() if row["level"] == level}


def add_node(env: OpEnv, name: str) -> Node:
    """A node in the config and the lock manager, as node.add leaves one."""
    node = Node(name=name, primary_ip="192.0.2.9", group=env.node("n1").group)
    with env.store.transaction() as txn:
        txn.add(node)
    for level in ("node", "node-res"):
        env.locks.register(level, [node.uuid])
    return node


@pytest.fixture
def dumped(env: OpEnv) -> dict[str, Any]:
    """The state with web1 on n2 and a domain secret, as 'herd config dump --with-secrets'."""
    set_cluster(env, domain_secret=generate_domain_secret())
    env.run(add())
    return env.store.dump()


def test_a_restore_brings_back_the_dumped_state_and_its_lock_names(
    env: OpEnv, dumped: dict[str, Any]
) -> None:
    web1 = env.instance("web1").uuid
    env.run({"op": "instance.remove", "name": "web1"})
    env.run(add(name="web2"))
    web2 = env.instance("web2").uuid
    n3 = add_node(env, "n3")
    result = env.run(restore(dumped))
    assert result == {"changed": True, "objects": {"nodegroup": 1, "instance": 1, "node": 2}}
    assert env.store.dump() == dumped
    assert web1 in lock_names(env, "instance") and web2 not in lock_names(env, "instance")
    assert n3.uuid not in lock_names(env, "node") | lock_names(env, "node-res")
    # The restored instance's lock is usable: an op on it runs.
    env.run({"op": "instance.stop", "name": "web1"})


def test_restoring_the_same_dump_again_gives_the_same_state(
    env: OpEnv, dumped: dict[str, Any]
) -> None:
    env.run(restore(dumped))
    env.run(restore(dumped))
    assert env.store.dump() == dumped
    assert env.instance("web1").uuid in lock_names(env, "instance")


def test_a_redacted_dump_is_refused_and_the_config_kept(env: OpEnv, dumped: dict[str, Any]) -> None:
    env.run(add(name="web2"))
    before = env.store.dump()
    with pytest.raises(ValidationError, match=r"field 'cluster\[c1\]\.domain_secret'") as refused:
        env.run(restore(redact_dump(dumped)))
    assert NEEDS_SECRETS in str(refused.value)
    assert env.store.dump() == before


def test_the_dump_is_not_kept_in_the_job_queue(env: OpEnv, dumped: dict[str, Any]) -> None:
    """The data parameter is secret: the job record must not hold the domain secret."""
    env.run(restore(dumped))
    (secret,) = {c["domain_secret"] for c in dumped["objects"]["cluster"]}
    for path in env.nodes.state_dir.glob("jobs.db*"):
        assert secret.encode() not in path.read_bytes(), path.name


def broken(dumped: dict[str, Any], change: str) -> Any:
    """``dumped`` with one thing wrong, by name."""
    data = copy.deepcopy(dumped)
    objects = data["objects"]
    if change == "not a dump":
        return ["format", "objects"]
    if change == "extra key":
        data["comment"] = "x"
    elif change == "format":
        data["format"] = 2
    elif change == "objects":
        data["objects"] = []
    elif change == "kind":
        objects["printer"] = []
    elif change == "kind list":
        objects["node"] = {"n1": {}}
    elif change == "object":
        objects["node"][0] = "n1"
    elif change == "field":
        objects["node"][0]["master_candidate"] = "yes"
    elif change == "serial":
        objects["node"][0]["serial"] = 0
    elif change == "uuid":
        objects["node"][1]["uuid"] = objects["node"][0]["uuid"]
    elif change == "name":
        objects["instance"].append({**objects["instance"][0], "uuid": str(uuid.uuid4())})
    return data


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ("not a dump", "'ops[0].data'|'dump'"),
        ("extra key", "'dump'"),
        ("format", "'format'"),
        ("objects", "'objects'"),
        ("kind", "printer"),
        ("kind list", "'objects.node'"),
        ("object", "'node[0]'"),
        ("field", "'node[n1].master_candidate'"),
        ("serial", "'node[n1].serial'"),
        ("uuid", "'node[n2].uuid'"),
        ("name", "'instance[web1].name'"),
    ],
)
def test_a_bad_dump_is_refused_naming_the_field_and_nothing_changes(
    env: OpEnv, dumped: dict[str, Any], change: str, field: str
) -> None:
    before = env.store.dump()
    locks = env.locks.info()
    with pytest.raises(ValidationError) as refused:
        env.run(restore(broken(dumped, change)))
    assert any(f in str(refused.value) for f in field.split("|")), str(refused.value)
    assert env.store.dump() == before
    assert env.locks.info() == locks
