"""Local-only ops and fields over the real HTTPS API: a write token is refused them, in
single and multi-job submissions and in jobs its jobs spawn; root over the socket is not.

The classification itself is tested in tests/engine/ops/test_exposure.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from herd.client import Client
from herd.errors import ForbiddenError
from herd.ops import base, exposure
from herd.ops.base import Op, OpContext
from herd.ops.params import Param
from tests.engine.api.https_master import HTTPSMaster, start_https_master

SECRET = "5e" * 32
#: (op, the field the refusal names); each is something the review did with a write token.
LOCAL_ONLY = [
    ({"op": "config.restore", "data": {}}, "op"),
    ({"op": "cluster.modify", "allow_cipher_bypassing": True}, "allow_cipher_bypassing"),
    ({"op": "cluster.modify", "domain_secret": SECRET}, "domain_secret"),
    ({"op": "cluster.modify", "hvparams": {"kvm": {"kernel_path": "/etc/shadow"}}},
     "hvparams.kvm.kernel_path"),
    ({"op": "instance.add", "name": "i1", "disk_template": "file", "hypervisor": "kvm",
      "hvparams": {"initrd_path": "/etc/shadow"}}, "hvparams.initrd_path"),
    ({"op": "instance.move", "name": "i1", "dest_cluster": "/run/herd/other.sock"},
     "dest_cluster"),
    ({"op": "node.add", "name": "n3", "primary_ip": "127.0.0.1", "ssh_port": 1}, "op"),
]  # fmt: skip
IDS = [f"{op['op']}:{field}" for op, field in LOCAL_ONLY]


@pytest.fixture
def https(tmp_path: Path) -> Iterator[HTTPSMaster]:
    started = start_https_master(tmp_path)
    yield started
    started.running.stop()


def write_client(https: HTTPSMaster) -> Client:
    return https.client(token=https.running.api.create_token("awx"))


def assert_refused(err: ForbiddenError, op: dict[str, Any], field: str) -> None:
    assert err.details == {"field": field, "op": op["op"]}
    assert (f"op '{op['op']}'" if field.endswith(".op") else f"field '{field}'") in err.message
    assert "as root on the master, over the local socket" in err.message
    assert SECRET not in err.message


@pytest.mark.parametrize(("op", "field"), LOCAL_ONLY, ids=IDS)
def test_write_token_is_refused_local_only_ops_and_fields(
    https: HTTPSMaster, op: dict[str, Any], field: str
) -> None:
    with write_client(https) as remote:
        with pytest.raises(ForbiddenError) as single:
            remote.submit([{"op": "debug.delay"}, op])
        assert_refused(single.value, op, f"ops[1].{field}")
        with pytest.raises(ForbiddenError) as many:
            remote.submit_many([{"ops": [{"op": "debug.delay"}]}, {"ops": [op]}])
        assert_refused(many.value, op, f"jobs[1].ops[0].{field}")
    assert https.running.api.jobs() == [], "a refused submission must queue nothing"


def test_write_token_keeps_the_remote_fields_of_the_same_ops(https: HTTPSMaster) -> None:
    modify = {"op": "cluster.modify", "tags": ["remote"], "hvparams": {"kvm": {"acpi": False}}}
    with write_client(https) as remote:
        assert remote.run([modify], timeout=30)["changed"] is True
    cluster = https.running.master.store.list("cluster")[0]
    assert cluster.tags == ["remote"] and cluster.hvparams["kvm"] == {"acpi": False}


def test_root_over_the_socket_may_do_all_of_it(https: HTTPSMaster) -> None:
    root = https.running.api
    dump = https.running.master.store.dump()
    assert root.run([{"op": "config.restore", "data": dump}], timeout=30)["changed"] is True
    trust = {
        "op": "cluster.modify",
        "allow_cipher_bypassing": True,
        "domain_secret": SECRET,
        "hvparams": {"kvm": {"kernel_path": "/boot/vmlinuz"}},
    }
    assert root.run([trust], timeout=30)["changed"] is True
    cluster = https.running.master.store.list("cluster")[0]
    assert cluster.allow_cipher_bypassing is True
    assert cluster.hvparams["kvm"]["kernel_path"] == "/boot/vmlinuz"
    # These need real nodes and instances to succeed; here it is enough that root's
    # submissions are accepted and fail for another reason than who sent them.
    ids = root.submit_many([{"ops": [op]} for op, _ in LOCAL_ONLY[4:]])
    for job_id in ids:
        doc = root.wait(job_id, timeout=60)
        assert (doc["error"] or {}).get("type") != "ForbiddenError", doc["error"]


class SpawnJobs(Op):
    """Test-only op submitting the jobs it is given, the way node.evacuate submits moves."""

    OP_ID = "test.spawn_jobs"
    PARAMS: ClassVar[tuple[Param, ...]] = (Param("jobs", list, required=True),)

    def run(self, ctx: OpContext) -> Any:
        return {"spawned": ctx.submit_jobs(self.params["jobs"])}


@pytest.fixture
def spawning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HTTPSMaster]:
    """A master that knows SpawnJobs, classified as remote like any spawning op."""
    monkeypatch.setitem(base._REGISTRY, SpawnJobs.OP_ID, SpawnJobs)
    monkeypatch.setitem(exposure.REMOTE_OPS, SpawnJobs.OP_ID, {})
    started = start_https_master(tmp_path)
    yield started
    started.running.stop()


def test_jobs_spawned_by_a_remote_job_inherit_its_origin(spawning: HTTPSMaster) -> None:
    restore = {"ops": [{"op": "config.restore", "data": spawning.running.master.store.dump()}]}
    spawn = {"op": SpawnJobs.OP_ID, "jobs": [{"ops": [{"op": "debug.delay"}]}, restore]}
    with write_client(spawning) as remote:
        parent = remote.wait(remote.submit([spawn]), timeout=60)
    assert parent["status"] == "error"
    assert parent["error"]["type"] == "ForbiddenError"
    assert parent["error"]["details"] == {"field": "jobs[1].ops[0].op", "op": "config.restore"}
    assert len(spawning.running.api.jobs()) == 1, "no spawned job may be queued"
    # The same op submitted by root spawns both.
    spawned = spawning.running.api.run([spawn], timeout=60)["spawned"]
    assert [spawning.running.api.wait(i, timeout=60)["status"] for i in spawned] == [
        "success",
        "success",
    ]
