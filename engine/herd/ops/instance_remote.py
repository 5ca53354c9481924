"""Moving an instance to another cluster: the source side of ``instance.move``.

Trust between the clusters comes from the shared cluster domain secret alone, as in
Ganeti's inter-cluster design: the source signs an *offer* (the instance description and
its CA certificate) and submits an ``instance.receive`` job to the destination master;
that job checks the signature, creates the disks, starts receivers with certificates of
its own CA and publishes a signed *answer* (ports, transfer ids, its CA certificate) in
its job log. The source checks that signature, streams each disk directly from its node
to the destination node, and waits for the destination job to verify and start the
instance. No key or certificate is copied by hand.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from herd.client import Client
from herd.config.model import Instance
from herd.crypto.ca import ClusterCA
from herd.crypto.secrets import sign_message, verify_message
from herd.errors import ConflictError, HerdError, MasterUnreachableError, ValidationError
from herd.ops import zeroing
from herd.ops.base import OpContext
from herd.ops.common import DISK_TEMPLATES, cluster_of
from herd.ops.instance_base import assemble_disks, shutdown_disks, stop_for_copy
from herd.ops.instance_common import forget_source, identity
from herd.ops.params import Param, check_name
from herd.ops.placement import DEST_IALLOCATOR
from herd.ops.transfer import (
    Endpoint,
    check_digests,
    end_failed,
    report,
    start_sender,
    status,
)
from herd.ops.undo import handler, undo_handler

if TYPE_CHECKING:
    from herd.ops.instance_move import InstanceMove

OFFER_KIND = "herd-move-offer-v1"
ANSWER_KIND = "herd-move-answer-v1"
READY_LOG_TYPE = "transfer-ready"
#: What the destination may store the disks as (not diskless: a move carries disks).
DEST_TEMPLATES = DISK_TEMPLATES
POLL_SECONDS = 0.5

REMOTE_PARAMS = (
    Param(
        "dest_cluster",
        str,
        doc="the destination cluster's master API (its Unix socket "
        "path); the two clusters must share the cluster domain secret",
    ),
    Param("dest_name", str, check=check_name, doc="name at the destination (default: same)"),
    Param(
        "dest_nodes",
        list,
        item_type=str,
        doc="destination primary (and secondary) node; default: the destination's allocator",
    ),
    DEST_IALLOCATOR,
    Param(
        "keep_source",
        bool,
        default=False,
        doc="leave the (stopped) source instance in place after the move",
    ),
)
REMOTE_ONLY = ("dest_name", "dest_nodes", "dest_iallocator")


def refuse_remote_only(params: dict[str, Any]) -> None:
    """Options meaningful only between clusters are refused, not ignored, within one."""
    for name in REMOTE_ONLY:
        if params[name] is not None:
            raise ValidationError(name, params[name], "nothing without dest_cluster")
    if params["keep_source"]:
        raise ValidationError("keep_source", True, "false without dest_cluster")


def remote_client(address: str) -> Client:
    if not address.startswith("/"):
        raise ValidationError(
            "dest_cluster", address, "the absolute path of the destination master's API socket"
        )
    return Client(address, timeout=120)


def check(op: InstanceMove, ctx: OpContext, inst: Instance) -> None:
    p = op.params
    if p["target_node"] is not None:
        raise ValidationError(
            "target_node", p["target_node"], "nothing with dest_cluster: use dest_nodes"
        )
    if p["dest_nodes"] is not None and not 1 <= len(p["dest_nodes"]) <= 2:
        raise ValidationError("dest_nodes", p["dest_nodes"], "one or two node names")
    with remote_client(p["dest_cluster"]) as remote:
        info = remote.info()
    if info.get("cluster") is None:
        raise ValidationError(
            "dest_cluster", p["dest_cluster"], "the API of an initialised cluster"
        )
    if info["cluster"] == cluster_of(ctx).name:
        raise ValidationError(
            "dest_cluster", p["dest_cluster"], "another cluster's master, not this one"
        )


def describe(ctx: OpContext, op: InstanceMove, inst: Instance, start: bool) -> dict[str, Any]:
    """The instance as the destination should create it: identity and parameters kept."""
    p = op.params
    nodes = p["dest_nodes"] or []
    return {
        **identity(ctx, inst),
        "name": p["dest_name"] or inst.name,
        "disk_template": p["dest_disk_template"] or inst.disk_template,
        "primary_node": nodes[0] if nodes else None,
        "secondary_node": nodes[1] if len(nodes) > 1 else None,
        "iallocator": p["dest_iallocator"],
        "start": start,
    }


def move_to_cluster(op: InstanceMove, ctx: OpContext) -> Any:
    p = op.params
    inst = op.instance(ctx)
    source = op.primary(ctx, inst)
    c = cluster_of(ctx)
    ca = ClusterCA.load(ctx.services.crypto_dir)
    was_running = stop_for_copy(ctx, inst, source, p["shutdown_timeout"])
    if p["zero_free_space"]:
        zeroing.zero_free_space(ctx, inst, source)
    offer = sign_message(
        c.domain_secret,
        {
            "kind": OFFER_KIND,
            "source_cluster": c.name,
            "source_ca_pem": ca.cert_pem.decode(),
            "compression": p["compression"],
            "instance": describe(ctx, op, inst, was_running),
        },
    )
    with remote_client(p["dest_cluster"]) as remote:
        job_id = remote.submit(
            [{"op": "instance.receive", "offer": offer}],
            reason=[["herd:instance.move", f"{inst.name} from cluster {c.name}", time.time()]],
        )
        ctx.log(f"destination job {job_id} submitted on {remote.info()['cluster']}")
        # From here the destination's job decides, even if we die before hearing it: once
        # it succeeded the instance lives there; otherwise our steps so far roll back.
        ctx.replace_undo(
            f"settle the move of {inst.name} by destination job {job_id}",
            "remote.settle",
            address=p["dest_cluster"],
            job_id=job_id,
            uuid=inst.uuid,
            keep_source=p["keep_source"],
            rollback=[
                {"kind": s.kind, "args": s.args, "what": s.what} for _, s in ctx.journal.pending()
            ],
        )
        answer, since = wait_ready(ctx, remote, job_id, c.domain_secret, offer)
        paths = assemble_disks(ctx, inst, source)
        ends = []
        for offer_disk in answer["transfers"]:
            index = offer_disk["index"]
            end = Endpoint(source, paths[index])
            start_sender(
                ctx,
                ca,
                offer_disk["transfer_id"],
                end,
                offer_disk["host"],
                offer_disk["port"],
                p["compression"],
                None,
                p["bandwidth_limit"],
                peer_ca_pem=answer["dest_ca_pem"],
            )
            ends.append((index, offer_disk["transfer_id"], end))
        result = wait_done(ctx, remote, job_id, since, inst.name, ends)
    shutdown_disks(ctx, inst, source)
    ctx.log(f"instance {inst.name} arrived as {result['instance']} on the destination")
    if not p["keep_source"]:
        forget_source(ctx, inst)
    ctx.forget_undo()
    return {
        "changed": True,
        "instance": inst.name,
        "dest_instance": result["instance"],
        "dest_job": job_id,
        "dest_primary_node": result.get("primary_node"),
        "kept_source": p["keep_source"],
    }


def wait_ready(
    ctx: OpContext, remote: Client, job_id: int, secret: str, offer: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """Follow the destination job's log to its signed answer to ``offer``; fail if the
    job ends first."""
    since = 0
    while True:
        ctx.check_cancel()
        doc = remote.request(
            "GET", f"/v1/jobs/{job_id}/wait", query={"log_since": since, "timeout": "5"}
        )
        for entry in doc.get("log", []):
            since = max(since, entry["serial"])
            if entry["type"] == READY_LOG_TYPE:
                envelope = (entry.get("data") or {}).get("answer")
                # A missing answer is refused by verify_message's own shape check, which
                # takes any value; its signature (crypto/secrets.py) still says Mapping.
                answer = verify_message(
                    secret,
                    envelope,  # type: ignore[arg-type]
                    reply_to=offer,
                    replay=ctx.replay,
                )
                if answer.get("kind") != ANSWER_KIND:
                    raise ValidationError("answer.kind", answer.get("kind"), ANSWER_KIND)
                return answer, since
            ctx.log(f"destination: {entry['message']}")
        if doc["status"] in ("success", "error", "canceled"):
            raise remote_failure(job_id, doc)


def wait_done(
    ctx: OpContext,
    remote: Client,
    job_id: int,
    since: int,
    name: str,
    ends: list[tuple[int, str, Endpoint]],
) -> dict[str, Any]:
    """Watch our senders and the destination job together; the job's verdict is final,
    and each disk's digest must match what our sender streamed."""
    last = 0.0
    while True:
        ctx.check_cancel()
        states = {index: status(ctx, end, tid, "send") for index, tid, end in ends}
        for index, st in states.items():
            if st.get("state") == "failed":
                raise end_failed(f"disk {index} of {name}", st)
        doc = remote.request(
            "GET",
            f"/v1/jobs/{job_id}/wait",
            query={"log_since": since, "timeout": f"{POLL_SECONDS}"},
        )
        for entry in doc.get("log", []):
            since = max(since, entry["serial"])
        if doc["status"] in ("error", "canceled"):
            raise remote_failure(job_id, doc)
        if doc["status"] == "success":
            result: dict[str, Any] = doc["ops"][-1]["result"]
            for index, tid, end in ends:
                st = status(ctx, end, tid, "send")
                check_digests(
                    f"disk {index} of {name}", st, {"digest": result["digests"].get(str(index))}
                )
                report(ctx, f"disk {index} of {name}", st, final=True)
            return result
        if time.monotonic() - last >= 3:
            last = time.monotonic()
            for index, st in states.items():
                report(ctx, f"disk {index} of {name}", st)


def await_end(address: str, job_id: int, timeout: float = 180.0) -> dict[str, Any]:
    """The destination job once it has ended. Once our senders are aborted its receivers
    fail and it undoes what it made, so a failed move returns only when both sides are
    clean; its master may be restarting meanwhile, so an unreachable one is waited for."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with remote_client(address) as remote:
                if remote.job(job_id)["status"] in ("queued", "waiting"):
                    # It may start (or end) before the cancel arrives: then it is waited for.
                    with contextlib.suppress(ConflictError):
                        remote.cancel(job_id)
                return remote.wait(job_id, timeout=max(1.0, deadline - time.monotonic()))
        except MasterUnreachableError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(POLL_SECONDS)


@undo_handler("remote.settle")
def _settle(ctx: OpContext, args: dict[str, Any]) -> None:
    """Rolling back is safe only if the destination job failed: had it succeeded, the
    instance would then exist (and maybe run) on both clusters. So its outcome decides:
    succeeded, the move is finished forward; failed, the steps before it are undone."""
    if await_end(args["address"], args["job_id"])["status"] == "success":
        ctx.log(f"destination job {args['job_id']} succeeded: finishing the move forward")
        inst = ctx.store.find("instance", args["uuid"])
        if inst is not None and not args["keep_source"]:
            forget_source(ctx, inst)
        return
    for step in reversed(args["rollback"]):
        ctx.log(f"rollback: {step['what']}")
        handler(step["kind"])(ctx, step["args"])


def remote_failure(job_id: int, doc: dict[str, Any]) -> HerdError:
    err = doc.get("error") or {"message": f"ended as {doc['status']}"}
    # Built with the full message, so str() and the job's error document both carry it.
    return HerdError.from_dict(
        {**err, "message": f"destination job {job_id} failed: {err.get('message', '')}"}
    )
