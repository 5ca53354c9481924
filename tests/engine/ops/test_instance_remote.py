"""instance.move to another cluster (``herd.ops.instance_remote``) between two loopback
clusters in this process: c1 moves, c2 receives. c2's API is the real router on a real
Unix socket, the two clusters share a domain secret and nothing else (each has its own
CA), and the disks stream from c1's transfer worker to c2's over TLS on 127.0.0.1.

What c2's ``instance.receive`` accepts and refuses is test_instance_receive.py; the lab
version (real SSH, plain disks, killed masters) is test_move_lab.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from herd.api.routes import build_router
from herd.api.server import UnixAPIServer
from herd.auth.store import AuthStore
from herd.crypto.secrets import generate_domain_secret, sign_message
from herd.errors import (
    AuthenticationError,
    ConflictError,
    MasterUnreachableError,
    NodeError,
    PrerequisiteError,
    ValidationError,
)
from herd.ops import instance_remote
from herd.ops.instance_remote import (
    ANSWER_KIND,
    OFFER_KIND,
    READY_LOG_TYPE,
    await_end,
    wait_ready,
)
from herd.ops.undo import handler
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_export import DATA, disk_image, streams
from tests.engine.ops.test_instance_add import add, images


@dataclass
class Clusters:
    """Source c1 and destination c2, and the path of c2's API socket."""

    src: OpEnv
    dst: OpEnv
    api: str


def serve(env: OpEnv, path: Path) -> Callable[[], None]:
    """Serve ``env``'s API on the Unix socket ``path``, as its master would; returns the
    function that stops it."""
    router = build_router(env.store, env.queue, env.locks, AuthStore(path.with_suffix(".auth")))
    server = UnixAPIServer(path, router)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop


def set_cluster(env: OpEnv, **changes: Any) -> None:
    with env.store.transaction() as txn:
        (cluster,) = env.store.list("cluster")
        for key, value in changes.items():
            setattr(cluster, key, value)
        txn.update(cluster)


@pytest.fixture
def clusters(
    make_env: Callable[..., OpEnv], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Clusters]:
    src, dst = make_env(), make_env()
    shared = generate_domain_secret()
    set_cluster(src, domain_secret=shared)
    set_cluster(dst, name="c2", domain_secret=shared)
    streams(src, monkeypatch)
    streams(dst, monkeypatch)
    monkeypatch.setattr(instance_remote, "POLL_SECONDS", 0.01)
    stop = serve(dst, tmp_path / "c2.sock")
    yield Clusters(src, dst, str(tmp_path / "c2.sock"))
    stop()


@pytest.fixture
def web1(clusters: Clusters) -> Clusters:
    """web1 on c1's n2, with DATA at the start of its disk."""
    clusters.src.run(add(disks=["4M"]))
    with disk_image(clusters.src, "web1").open("r+b") as image:
        image.write(DATA)
    return clusters


def move(c: Clusters, **params: Any) -> dict[str, Any]:
    return {"op": "instance.move", "name": "web1", "dest_cluster": c.api, **params}


def running(env: OpEnv, name: str, node: str) -> bool:
    info = env.nodes.call(env.node(node), "instance_info", {"name": name, "hypervisor": "fake"})
    return bool(info["instance"]) and info["instance"]["state"] == "running"


def assert_not_moved(c: Clusters) -> None:
    """web1 still on c1's n2 with its data; nothing of it on c2."""
    assert c.src.instance("web1").primary_node == c.src.node("n2").uuid
    assert disk_image(c.src, "web1").read_bytes()[: len(DATA)] == DATA
    assert c.dst.store.list("instance") == []
    assert images(c.dst, "n1") == [] and images(c.dst, "n2") == []


def test_a_move_to_another_cluster_recreates_the_instance_there_and_forgets_it_here(
    web1: Clusters,
) -> None:
    c = web1
    src_inst = c.src.instance("web1")
    c.src.run({"op": "instance.start", "name": "web1"})
    result = c.src.run(move(c, dest_nodes=["n1"]))
    assert result["changed"] is True and result["kept_source"] is False
    assert (result["dest_instance"], result["dest_primary_node"]) == ("web1", "n1")
    moved = c.dst.instance("web1")
    assert [n.mac for n in moved.nics] == [n.mac for n in src_inst.nics]
    assert moved.admin_state == "up" and running(c.dst, "web1", "n1")
    assert disk_image(c.dst, "web1").read_bytes()[: len(DATA)] == DATA
    assert c.src.store.list("instance") == [] and images(c.src, "n2") == []
    job = c.dst.queue.view(result["dest_job"])
    assert job["ops"][0]["result"]["source_cluster"] == "c1"


def test_keep_source_leaves_the_stopped_source_and_dest_name_renames(web1: Clusters) -> None:
    c = web1
    result = c.src.run(move(c, keep_source=True, dest_name="web9"))
    assert result["kept_source"] is True and result["dest_instance"] == "web9"
    assert c.src.instance("web1").admin_state == "down"
    assert disk_image(c.src, "web1").read_bytes()[: len(DATA)] == DATA
    assert disk_image(c.dst, "web9").read_bytes()[: len(DATA)] == DATA


def test_clusters_without_a_shared_secret_refuse_the_move_and_nothing_changes(
    web1: Clusters,
) -> None:
    c = web1
    set_cluster(c.dst, domain_secret=generate_domain_secret())
    c.src.run({"op": "instance.start", "name": "web1"})
    with pytest.raises(AuthenticationError, match=r"destination job \d+ failed: signature mis"):
        c.src.run(move(c))
    assert_not_moved(c)
    assert running(c.src, "web1", "n2"), "started again where it ran"


@pytest.mark.parametrize("action", ["disk_create", "transfer_receive_start"])
def test_a_destination_node_failure_rolls_both_sides_back(web1: Clusters, action: str) -> None:
    c = web1
    c.dst.nodes.fail(action, NodeError(f"{action} broke"))
    with pytest.raises(NodeError, match=rf"destination job \d+ failed: node n\d: {action} broke"):
        c.src.run(move(c))
    assert_not_moved(c)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dest_cluster": "c2"}, "'c2' for field 'dest_cluster': allowed the absolute path"),
        ({"target_node": "n1"}, "'n1' for field 'target_node': allowed nothing with dest_c"),
        ({"dest_nodes": ["n1", "n2", "n1"]}, "field 'dest_nodes': allowed one or two node"),
        ({"stall_timeout": 5}, "'stall_timeout': allowed nothing for a move between"),
        ({"ciphers": ["AES128-SHA"]}, "moves between clusters always use the strong"),
    ],
)
def test_a_bad_remote_move_is_refused_naming_the_field(
    web1: Clusters, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        web1.src.run(move(web1, **params))
    assert_not_moved(web1)


def test_a_destination_that_is_this_cluster_is_refused(web1: Clusters, tmp_path: Path) -> None:
    stop = serve(web1.src, tmp_path / "c1.sock")
    try:
        with pytest.raises(ValidationError, match="allowed another cluster's master, not this"):
            web1.src.run(move(web1, dest_cluster=str(tmp_path / "c1.sock")))
    finally:
        stop()


def test_a_destination_not_initialised_is_refused(web1: Clusters, tmp_path: Path) -> None:
    with web1.dst.store.transaction() as txn:
        txn.delete(txn.get("cluster", "c2"))
    with pytest.raises(ValidationError, match="allowed the API of an initialised cluster"):
        web1.src.run(move(web1))


def test_an_unreachable_destination_is_refused_before_the_instance_stops(
    web1: Clusters, tmp_path: Path
) -> None:
    web1.src.run({"op": "instance.start", "name": "web1"})
    with pytest.raises(MasterUnreachableError):
        web1.src.run(move(web1, dest_cluster=str(tmp_path / "none.sock")))
    assert running(web1.src, "web1", "n2")


@dataclass
class ScriptedRemote:
    """A destination answering each job wait with the next of ``docs``."""

    docs: list[dict[str, Any]]
    asked: list[dict[str, Any]] = field(default_factory=list)

    def request(self, method: str, path: str, query: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(query)
        return self.docs.pop(0)


def ready(answer: Any) -> dict[str, Any]:
    """A job wait answer carrying ``answer`` as the destination's ready line."""
    entry = {"serial": 3, "type": READY_LOG_TYPE, "message": "ready", "data": {"answer": answer}}
    return {"status": "running", "log": [entry]}


SECRET = generate_domain_secret()


def offer() -> dict[str, Any]:
    return sign_message(SECRET, {"kind": OFFER_KIND, "instance": {}})


def test_the_signed_answer_to_the_offer_is_accepted_once(env: OpEnv) -> None:
    sent = offer()
    answer = sign_message(SECRET, {"kind": ANSWER_KIND, "transfers": []}, reply_to=sent)
    line = {"serial": 1, "type": "message", "message": "creating disks"}
    remote = ScriptedRemote([{"status": "running", "log": [line]}, ready(answer)])
    ctx = env.context()
    got, since = wait_ready(ctx, remote, 7, SECRET, sent)  # type: ignore[arg-type]
    assert (got["kind"], since) == (ANSWER_KIND, 3)
    assert [q["log_since"] for q in remote.asked] == [0, 1]
    with pytest.raises(AuthenticationError, match="replayed"):
        wait_ready(ctx, ScriptedRemote([ready(answer)]), 7, SECRET, sent)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (lambda o: sign_message(generate_domain_secret(), {}, reply_to=o), AuthenticationError,
         "signature mismatch"),
        (lambda o: sign_message(SECRET, {"kind": ANSWER_KIND}, reply_to=offer()),
         AuthenticationError, "does not answer this offer"),
        (lambda o: sign_message(SECRET, {"kind": ANSWER_KIND}), AuthenticationError,
         "does not answer this offer"),
        (lambda o: sign_message(SECRET, {"kind": OFFER_KIND}, reply_to=o), ValidationError,
         "'herd-move-offer-v1' for field 'answer.kind'"),
        (lambda o: None, ValidationError, "field 'envelope'"),
    ],
)  # fmt: skip
def test_an_answer_not_signed_for_this_offer_is_refused(
    env: OpEnv, answer: Callable[[dict[str, Any]], Any], error: type, message: str
) -> None:
    sent = offer()
    remote = ScriptedRemote([ready(answer(sent))])
    with pytest.raises(error, match=message):
        wait_ready(env.context(), remote, 7, SECRET, sent)  # type: ignore[arg-type]


def test_a_destination_job_ending_without_an_answer_fails_with_its_error(env: OpEnv) -> None:
    failed = {
        "status": "error",
        "log": [],
        "error": {"type": "PrerequisiteError", "message": "no room", "details": {}},
    }
    with pytest.raises(PrerequisiteError, match="destination job 7 failed: no room"):
        wait_ready(env.context(), ScriptedRemote([failed]), 7, SECRET, offer())  # type: ignore[arg-type]


def test_settling_after_a_destination_success_finishes_the_move_forward(
    web1: Clusters,
) -> None:
    """The destination job's outcome decides, as after a master restart mid-move."""
    c = web1
    job = c.dst.queue.submit({"ops": [{"op": "export.list"}]})
    ctx = c.src.context()
    settle = {"address": c.api, "job_id": job, "uuid": c.src.instance("web1").uuid}
    handler("remote.settle")(ctx, {**settle, "keep_source": False, "rollback": []})
    assert c.src.store.list("instance") == [] and images(c.src, "n2") == []


def test_settling_after_a_destination_failure_runs_the_rollback_steps(web1: Clusters) -> None:
    c = web1
    job = c.dst.queue.submit({"ops": [{"op": "export.list", "nodes": ["n9"]}]})
    ctx = c.src.context()
    c.src.nodes.calls.clear()
    step = {
        "kind": "instance.start",
        "what": "start web1 again on n2",
        "args": {"instance": c.src.instance("web1").to_dict(), "node": c.src.node("n2").to_dict()},
    }
    settle = {"address": c.api, "job_id": job, "uuid": c.src.instance("web1").uuid}
    handler("remote.settle")(ctx, {**settle, "keep_source": False, "rollback": [step]})
    assert running(c.src, "web1", "n2")
    assert c.src.instance("web1").primary_node == c.src.node("n2").uuid


@dataclass
class StartingJob:
    """A destination whose job is still waiting when asked, but has started by the time
    the cancel arrives, and then succeeds."""

    canceled: list[int] = field(default_factory=list)

    def __enter__(self) -> StartingJob:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def job(self, job_id: int) -> dict[str, Any]:
        return {"status": "waiting"}

    def cancel(self, job_id: int) -> dict[str, Any]:
        self.canceled.append(job_id)
        raise ConflictError(f"job {job_id} is running and can no longer be canceled")

    def wait(self, job_id: int, timeout: float) -> dict[str, Any]:
        return {"id": job_id, "status": "success"}


def test_a_destination_job_starting_while_it_is_canceled_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race is real: the job leaves "waiting" between the look and the cancel. The
    settle step must then wait for its verdict, not fail with the cancel's conflict."""
    remote = StartingJob()
    monkeypatch.setattr(instance_remote, "remote_client", lambda address: remote)
    assert await_end("/c2.sock", 7)["status"] == "success"
    assert remote.canceled == [7]
