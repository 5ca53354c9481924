"""``instance.receive``: the destination side of a move between clusters.

It is ``instance.add`` with one step replaced: the new disks are filled from streams sent
by the source cluster's nodes instead of by the OS create script. The offer is trusted
only if it is signed with this cluster's domain secret; the answer (ports, transfer ids,
our CA) is signed the same way and published in the job log for the source to read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from herd.config.model import Instance, Node
from herd.crypto.ca import ClusterCA
from herd.crypto.secrets import sign_message, verify_message
from herd.errors import ValidationError
from herd.ops.base import OpContext, register
from herd.ops.common import cluster_of
from herd.ops.instance_add import InstanceAdd
from herd.ops.instance_base import assemble_disks, shutdown_disks
from herd.ops.instance_remote import ANSWER_KIND, OFFER_KIND, READY_LOG_TYPE
from herd.ops.params import Param, validate_params
from herd.ops.transfer import (
    Endpoint,
    check_compression,
    new_transfer_id,
    report,
    start_receiver,
    status,
    watch,
)

#: What an offer's instance description may set: everything else stays the default.
OFFERED = (
    "name",
    "disk_template",
    "disks",
    "nics",
    "os",
    "hypervisor",
    "hvparams",
    "memory",
    "vcpus",
    "osparams",
    "tags",
    "primary_node",
    "secondary_node",
    "iallocator",
    "start",
)


def unverified_offer(offer: Any) -> dict[str, Any]:
    """The offer's content, parsed only to plan locks; ``check`` verifies the signature."""
    try:
        msg = json.loads(offer["msg"])
    except (KeyError, TypeError, ValueError):
        raise ValidationError("offer", "…", "an offer signed by the source cluster") from None
    if not isinstance(msg, dict) or msg.get("kind") != OFFER_KIND:
        raise ValidationError(
            "offer.kind", msg.get("kind") if isinstance(msg, dict) else msg, OFFER_KIND
        )
    return msg


@register
class InstanceReceive(InstanceAdd):
    OP_ID = "instance.receive"
    SUMMARY = "Create an instance whose disks stream in from another cluster (move target)"
    PARAMS = (
        Param(
            "offer",
            dict,
            required=True,
            secret=True,
            doc="the source cluster's signed offer (submitted by its instance.move)",
        ),
    )

    def __init__(self, params: dict[str, Any]) -> None:
        # Only the offer is this op's parameter; the instance.add parameters are derived
        # from it (and validated as instance.add's, under "offer.instance."), so a stored
        # job re-created from its params derives exactly the same ones again.
        offer = params.get("offer")
        if not isinstance(offer, dict):
            raise ValidationError("offer", offer, "the source cluster's signed offer")
        msg = unverified_offer(offer)
        described = msg.get("instance")
        if not isinstance(described, dict) or set(described) - set(OFFERED):
            raise ValidationError(
                "offer.instance",
                described,
                "an instance description with keys " + ", ".join(OFFERED),
            )
        derived = validate_params(
            InstanceAdd.PARAMS,
            {**described, "install": False},
            prefix="offer.instance.",
            op_id=self.OP_ID,
        )
        self.params = {**derived, "offer": offer}
        self.started = time.time()
        self.offer = offer
        self.compression = str(msg.get("compression", "none"))

    def check(self, ctx: OpContext) -> None:
        # The job may check again when retried or resumed; anyone else using the same
        # offer is a replay.
        msg = verify_message(
            cluster_of(ctx).domain_secret, self.offer, replay=ctx.replay, holder=ctx.owner
        )
        self.source_cluster = msg["source_cluster"]
        self.source_ca_pem = msg["source_ca_pem"]
        check_compression(cluster_of(ctx), self.compression)
        super().check(ctx)

    def fill_disks(self, ctx: OpContext, inst: Instance, primary: Node) -> None:
        ca = ClusterCA.load(ctx.services.crypto_dir)
        self.undo_assembly(ctx, inst, primary)
        paths = assemble_disks(ctx, inst, primary)
        offers, ends = [], []
        for index, disk in enumerate(inst.disks):
            tid = new_transfer_id()
            end = Endpoint(primary, paths[index])
            port = start_receiver(
                ctx,
                ca,
                tid,
                end,
                disk.size_mib,
                self.compression,
                None,
                peer_ca_pem=self.source_ca_pem,
            )
            offers.append(
                {"index": index, "transfer_id": tid, "host": primary.secondary_ip, "port": port}
            )
            ends.append((index, tid, end))
        answer = sign_message(
            cluster_of(ctx).domain_secret,
            {"kind": ANSWER_KIND, "transfers": offers, "dest_ca_pem": ca.cert_pem.decode()},
            reply_to=self.offer,
        )
        ctx.log(
            f"receivers ready for {len(offers)} disk(s) from cluster {self.source_cluster}",
            READY_LOG_TYPE,
            {"answer": answer},
        )
        self.digests = {}
        for index, tid, end in ends:
            (done,) = watch(
                ctx,
                f"disk {index} of {inst.name}",
                _receiving(ctx, end, tid),
            )
            report(ctx, f"disk {index} of {inst.name}", done, final=True)
            self.digests[str(index)] = done["digest"]
        shutdown_disks(ctx, inst, primary)

    def run(self, ctx: OpContext) -> Any:
        result = super().run(ctx)
        return {**result, "digests": self.digests, "source_cluster": self.source_cluster}


def _receiving(ctx: OpContext, end: Endpoint, tid: str) -> Callable[[], list[dict[str, Any]]]:
    """The poll for ``watch`` of one receiving end, bound to that end, not to a loop's."""
    return lambda: [status(ctx, end, tid, "receive")]
