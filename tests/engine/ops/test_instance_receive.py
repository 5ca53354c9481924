"""instance.receive on a loopback cluster: what a signed offer must look like, and what
the destination does with it. The sending side here is the test itself, starting a real
transfer sender on a node with the credentials the answer names (the whole move between
two clusters is test_instance_remote.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from herd.crypto.ca import ClusterCA
from herd.crypto.secrets import generate_domain_secret, sign_message, verify_message
from herd.errors import AuthenticationError, NodeError, TransferError, ValidationError
from herd.jobs import job as J
from herd.ops.instance_receive import InstanceReceive
from herd.ops.instance_remote import ANSWER_KIND, OFFER_KIND, READY_LOG_TYPE
from herd.ops.transfer import Endpoint, start_sender, status, watch
from tests.engine.harness import PATIENCE
from tests.engine.loopback import OpEnv
from tests.engine.ops.test_export import DATA, disk_image, streams
from tests.engine.ops.test_instance_add import images
from tests.engine.ops.test_instance_remote import set_cluster

SECRET = generate_domain_secret()
MAC = "aa:00:00:12:34:56"


@pytest.fixture
def dest(env: OpEnv, monkeypatch: pytest.MonkeyPatch) -> OpEnv:
    """The loopback cluster as the destination, sharing SECRET with the source."""
    streams(env, monkeypatch)
    set_cluster(env, domain_secret=SECRET)
    return env


def described(**changes: Any) -> dict[str, Any]:
    return {
        "name": "web1",
        "disk_template": "file",
        "disks": [{"size": "4M", "mode": "rw"}],
        "nics": [{"mac": MAC}],
        "hypervisor": "fake",
        "primary_node": "n2",
        "start": False,
        **changes,
    }


def offer(env: OpEnv, secret: str = SECRET, **message: Any) -> dict[str, Any]:
    """An offer signed by a source whose CA is the destination's own (one CA is enough
    to show the certificates are checked)."""
    ca = ClusterCA.load(env.nodes.crypto_dir)
    body = {
        "kind": OFFER_KIND,
        "source_cluster": "c0",
        "source_ca_pem": ca.cert_pem.decode(),
        "compression": "none",
        "instance": described(),
        **message,
    }
    return sign_message(secret, body)


def receive(envelope: dict[str, Any]) -> dict[str, Any]:
    return {"op": "instance.receive", "offer": envelope}


def ready_answer(env: OpEnv, job_id: int) -> dict[str, Any]:
    """The signed answer the receiving job publishes in its log (or its end if none)."""
    since, deadline = 0, time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        doc = env.queue.wait(job_id, since, PATIENCE)
        for entry in doc["log"]:
            since = max(since, entry["serial"])
            if entry["type"] == READY_LOG_TYPE:
                return dict(entry["data"]["answer"])
        if doc["status"] in J.FINAL:
            raise AssertionError(f"job {job_id} ended {doc['status']}: {doc.get('error')}")
    raise AssertionError(f"job {job_id} published no answer in {PATIENCE} s")


def send(
    env: OpEnv, answer: dict[str, Any], source: str, ca: ClusterCA | None = None, node: str = "n1"
) -> None:
    """Stream ``source`` (a file on ``node``) to every receiver the answer names, with a
    certificate of ``ca`` (by default the CA the offer named)."""
    ca = ca or ClusterCA.load(env.nodes.crypto_dir)
    for transfer in answer["transfers"]:
        start_sender(
            env.context(),
            ca,
            transfer["transfer_id"],
            Endpoint(env.node(node), source),
            transfer["host"],
            transfer["port"],
            "none",
            None,
            None,
            peer_ca_pem=answer["dest_ca_pem"],
        )


def wait_end(env: OpEnv, job_id: int) -> dict[str, Any]:
    status = None
    while status not in J.FINAL:
        status = env.queue.wait(job_id, 2**62, PATIENCE, status)["status"]
    return env.queue.view(job_id)


def source_disk(env: OpEnv) -> str:
    path = env.node_dir("n1") / "source.img"
    path.write_bytes(DATA + b"\0" * (4 * 2**20 - len(DATA)))
    return str(path)


def assert_nothing_left(env: OpEnv) -> None:
    assert env.store.list("instance") == []
    assert images(env, "n1") == [] and images(env, "n2") == []
    assert not [row for row in env.locks.info() if row["holders"]]


def test_a_received_instance_is_created_from_the_streamed_disk(dest: OpEnv) -> None:
    sent = offer(dest)
    job_id = dest.queue.submit({"ops": [receive(sent)]})
    answer_envelope = ready_answer(dest, job_id)
    answer = verify_message(SECRET, answer_envelope, reply_to=sent, replay=None)
    assert answer["kind"] == ANSWER_KIND
    ((transfer),) = answer["transfers"]
    assert (transfer["index"], transfer["host"]) == (0, "127.0.0.1")
    send(dest, answer, source_disk(dest))
    job = wait_end(dest, job_id)
    assert job["status"] == "success", job.get("error")
    result = job["ops"][0]["result"]
    assert (result["instance"], result["source_cluster"]) == ("web1", "c0")
    assert list(result["digests"]) == ["0"]
    inst = dest.instance("web1")
    assert [n.mac for n in inst.nics] == [MAC] and inst.primary_node == dest.node("n2").uuid
    assert disk_image(dest, "web1").read_bytes()[: len(DATA)] == DATA


@pytest.mark.parametrize(
    ("envelope", "field"),
    [
        ("not an offer", "offer"),
        ({"hmac": "00"}, "offer"),
        ({"msg": "[1, 2]"}, "offer.kind"),
        ({"msg": '{"kind": "herd-move-answer-v1"}'}, "offer.kind"),
        ({"msg": '{"kind": "herd-move-offer-v1", "instance": {"root": true}}'}, "offer.instance"),
        ({"msg": '{"kind": "herd-move-offer-v1", "instance": {"disks": 3}}'}, "offer.instance."),
    ],
)
def test_an_offer_of_the_wrong_shape_is_refused_at_submission(
    dest: OpEnv, envelope: Any, field: str
) -> None:
    with pytest.raises(ValidationError, match=f"field '[^']*{field}"):
        dest.run(receive(envelope))
    assert dest.nodes.calls == []


def test_the_instance_description_is_validated_as_instance_adds_naming_the_field(
    dest: OpEnv,
) -> None:
    with pytest.raises(ValidationError, match=r"field 'ops\[0\]\.offer\.instance\.disk_template'"):
        dest.run(receive(offer(dest, instance=described(disk_template="floppy"))))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda e: offer(e, secret=generate_domain_secret()), "signature mismatch"),
        (lambda e: {**offer(e), "msg": offer(e, instance=described(memory=9999))["msg"]},
         "signature mismatch"),
        (lambda e: sign_message(SECRET, {"kind": OFFER_KIND, "instance": described()},
                              now=time.time() - 86400),
         "signed message expired"),
        (lambda e: sign_message(SECRET, {"kind": OFFER_KIND, "instance": described()},
                                reply_to=offer(e)), "is an answer, where a request"),
    ],
)  # fmt: skip
def test_an_offer_not_signed_for_this_cluster_is_refused_before_anything_is_made(
    dest: OpEnv, make: Any, message: str
) -> None:
    with pytest.raises(AuthenticationError, match=message):
        dest.run(receive(make(dest)))
    assert_nothing_left(dest)
    assert not [c for c in dest.nodes.calls if c[1] == "disk_create"]


def test_an_offer_is_accepted_once_and_only_by_the_job_that_holds_it(dest: OpEnv) -> None:
    """A job checking its own offer again (a retry) passes; another job replaying it fails."""
    sent = offer(dest)
    op = InstanceReceive({"offer": sent})
    ctx = dest.context()
    op.check(ctx)
    op.check(ctx)
    other = dest.context()
    other.replay = ctx.replay
    with pytest.raises(AuthenticationError, match="replayed"):
        InstanceReceive({"offer": sent}).check(other)


def test_a_compression_this_cluster_does_not_allow_is_refused(dest: OpEnv) -> None:
    with pytest.raises(ValidationError, match="'herdzip' for field 'compression'"):
        dest.run(receive(offer(dest, compression="herdzip")))
    assert_nothing_left(dest)


@pytest.mark.parametrize("action", ["disk_create", "transfer_receive_start"])
def test_a_node_failure_before_the_answer_leaves_nothing(dest: OpEnv, action: str) -> None:
    dest.nodes.fail(action, NodeError(f"{action} broke"), node="n2")
    with pytest.raises(NodeError, match=f"node n2: {action} broke"):
        dest.run(receive(offer(dest)))
    assert_nothing_left(dest)


def test_a_sender_without_a_certificate_of_the_offered_ca_is_refused(dest: OpEnv) -> None:
    """Only the source cluster named in the signed offer may stream the disk in; an
    impostor reaching the port first is turned away without ending the transfer."""
    sent = offer(dest)
    job_id = dest.queue.submit({"ops": [receive(sent)]})
    answer = verify_message(SECRET, ready_answer(dest, job_id), reply_to=sent, replay=None)
    impostor = dest.node_dir("n2") / "impostor.img"
    impostor.write_bytes(b"evil" * 1024)
    send(dest, answer, str(impostor), ca=ClusterCA.create("c9"), node="n2")
    ((transfer),) = answer["transfers"]
    ctx, end = dest.context(), Endpoint(dest.node("n2"), str(impostor))
    with pytest.raises(TransferError, match="the send end on n2 failed"):
        watch(ctx, "impostor", lambda: [status(ctx, end, transfer["transfer_id"], "send")])
    send(dest, answer, source_disk(dest))
    job = wait_end(dest, job_id)
    assert job["status"] == "success", job.get("error")
    assert disk_image(dest, "web1").read_bytes()[: len(DATA)] == DATA
