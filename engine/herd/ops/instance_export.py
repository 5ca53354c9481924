"""``instance.export``: a backup of an instance as stream files plus a manifest on a node.

Each disk is written in the transfer stream format (zero extents skipped, compressed,
ending with its content digest) by a background worker on the node that keeps the export;
when that is not the primary, the disk first streams there over TLS into a scratch file.
The manifest records the instance's identity (name, MACs, parameters) and every disk's
digest, so ``instance.import`` can recreate it exactly and prove the data is the same.

For a consistent copy the instance is stopped for the export and started again after
(``shutdown``); an export is built in a work directory and published only once complete.
A stopped instance can first have its free space zeroed (``zero_free_space``, see
``herd.ops.zeroing``) so the stream files do not carry data the guest deleted.
"""

from __future__ import annotations

import time
from typing import Any

from herd.config.model import Instance, Node
from herd.crypto.ca import ClusterCA
from herd.errors import ValidationError
from herd.ops import zeroing
from herd.ops.base import OpContext, register
from herd.ops.common import cluster_of, get_node
from herd.ops.export import MANIFEST_VERSION, begin_work, run_file_end
from herd.ops.instance_base import (
    SHUTDOWN_TIMEOUT,
    InstanceOp,
    assemble_disks,
    instance_name_param,
    require_online,
    runtime_state,
    shutdown_disks,
    start_on,
    stop_for_copy,
)
from herd.ops.instance_common import forget_source, identity
from herd.ops.params import Param
from herd.ops.transfer import (
    COMPRESSION,
    STALL_TIMEOUT,
    Endpoint,
    check_compression,
    copy_disk,
)


def manifest(
    ctx: OpContext,
    inst: Instance,
    primary: Node,
    compression: str,
    digests: list[str],
    was_running: bool,
) -> dict[str, Any]:
    """The export's description: ``instance.add`` parameters plus where it came from."""
    described = identity(ctx, inst)
    for disk, digest in zip(described["disks"], digests, strict=True):
        disk["digest"] = digest
    return {
        "version": MANIFEST_VERSION,
        "name": inst.name,
        "instance_uuid": inst.uuid,
        "disk_template": inst.disk_template,
        **described,
        "compression": compression,
        "source_cluster": cluster_of(ctx).name,
        "source_node": primary.name,
        "was_running": was_running,
        "time": time.time(),
    }


@register
class InstanceExport(InstanceOp):
    OP_ID = "instance.export"
    SUMMARY = "Export an instance's disks and description to files on a node (backup)"
    PARAMS = (
        instance_name_param(),
        Param("target_node", str, doc="node to keep the export on (default: the primary)"),
        COMPRESSION,
        Param(
            "shutdown",
            bool,
            default=True,
            doc="stop the instance for a consistent copy and start it again after",
        ),
        Param(
            "remove_instance",
            bool,
            default=False,
            doc="remove the instance once the export is complete (needs shutdown)",
        ),
        Param(
            "skip_unchanged",
            bool,
            default=False,
            doc="first compare the disks' content digests with the existing export on the "
            "target node, and keep that export when they all match",
        ),
        Param(
            "dry_run",
            bool,
            default=False,
            doc="only answer whether an export would be written (after the digest "
            "comparison when skip_unchanged is set); nothing is stopped or written",
        ),
        SHUTDOWN_TIMEOUT,
        zeroing.ZERO_FREE_SPACE,
        STALL_TIMEOUT,
    )

    def target(self, ctx: OpContext, inst: Instance) -> Node:
        if self.params["target_node"] is None:
            return self.primary(ctx, inst)
        return get_node(ctx, self.params["target_node"], "target_node")

    def extra_nodes(self, ctx: OpContext, inst: Instance) -> list[str]:
        return [self.target(ctx, inst).uuid]

    def check(self, ctx: OpContext) -> None:
        p = self.params
        inst = self.instance(ctx)
        check_compression(cluster_of(ctx), p["compression"])
        zeroing.check(cluster_of(ctx), p["zero_free_space"])
        if p["remove_instance"] and not p["shutdown"]:
            raise ValidationError(
                "remove_instance",
                True,
                "false unless shutdown is true: a running instance is not removed",
            )
        if p["zero_free_space"] and not p["shutdown"]:
            raise ValidationError(
                "zero_free_space",
                True,
                "false unless shutdown is true: the helper boots the stopped instance",
            )
        require_online(self.primary(ctx, inst), "read its disks")
        require_online(self.target(ctx, inst), "keep exports")

    def run(self, ctx: OpContext) -> Any:
        p = self.params
        inst = self.instance(ctx)
        primary, target = self.primary(ctx, inst), self.target(ctx, inst)
        running = (runtime_state(ctx, inst, primary) or {}).get("state") == "running"
        unchanged = p["skip_unchanged"] and self.matches_export(ctx, inst, primary, target)
        if p["skip_unchanged"] and not running:
            shutdown_disks(ctx, inst, primary)
        if p["dry_run"]:
            return {"changed": False, "instance": inst.name, "would_export": not unchanged}
        if unchanged:
            ctx.log(f"export of {inst.name} on {target.name} kept: its digests match the disks")
            if p["remove_instance"]:
                self.remove(ctx, inst, primary)
            return {
                "changed": p["remove_instance"],
                "instance": inst.name,
                "target_node": target.name,
                "exported": False,
                "removed_instance": p["remove_instance"],
            }
        was_running = False
        if p["shutdown"]:
            was_running = stop_for_copy(ctx, inst, primary, p["shutdown_timeout"])
            if p["zero_free_space"]:
                zeroing.zero_free_space(ctx, inst, primary)
        elif running:
            ctx.log(f"exporting {inst.name} while it runs: the copy may be inconsistent", "warning")
        digests, stream_bytes = self.write_export(ctx, inst, primary, target)
        if not (running and not p["shutdown"]):
            shutdown_disks(ctx, inst, primary)
        described = manifest(ctx, inst, primary, p["compression"], digests, was_running)
        ctx.services.call(
            target,
            "export_commit",
            {"token": self.token, "name": inst.name, "manifest": described},
        )
        ctx.forget_undo()
        ctx.log(f"export of {inst.name} complete on {target.name}: {stream_bytes:,} bytes")
        if p["remove_instance"]:
            forget_source(ctx, inst)
        elif was_running:
            start_on(ctx, inst, primary)
            ctx.log(f"instance {inst.name} started again on {primary.name}")
        return {
            "changed": True,
            "instance": inst.name,
            "target_node": target.name,
            "exported": True,
            "digests": digests,
            "stream_bytes": stream_bytes,
            "removed_instance": p["remove_instance"],
        }

    def write_export(
        self, ctx: OpContext, inst: Instance, primary: Node, target: Node
    ) -> tuple[list[str], int]:
        """Every disk's stream file in a fresh work directory on ``target``."""
        p = self.params
        self.token, work = begin_work(ctx, target)
        ca = ClusterCA.load(ctx.services.crypto_dir) if target.uuid != primary.uuid else None
        paths = assemble_disks(ctx, inst, primary)
        digests, stream_bytes = [], 0
        for index, disk in enumerate(inst.disks):
            label = f"disk {index} of {inst.name}"
            source = paths[index]
            if ca is not None:
                source = f"{work}/scratch{index}.img"
                copy_disk(
                    ctx,
                    ca,
                    Endpoint(primary, paths[index]),
                    Endpoint(target, source),
                    disk.size_mib,
                    p["compression"],
                    None,
                    None,
                    f"copying {label} to {target.name}",
                    stall_timeout=p["stall_timeout"],
                )
            done = run_file_end(
                ctx,
                target,
                "export_disk_start",
                {
                    "token": self.token,
                    "index": index,
                    "source_path": source,
                    "compression": p["compression"],
                },
                "export",
                f"exporting {label}",
            )
            digests.append(done["digest"])
            stream_bytes += int(done.get("wire_bytes") or 0)
        return digests, stream_bytes

    def matches_export(self, ctx: OpContext, inst: Instance, primary: Node, target: Node) -> bool:
        """Whether the export on ``target`` already holds exactly these disks.

        Only the content digests prove it; they are computed on the primary by reading
        the disks' data (holes are skipped), never by trusting sizes, times or uuids (a
        restored instance has a new uuid and the same disks).
        """
        found = ctx.services.call(target, "export_list", {"names": [inst.name]})["exports"]
        if not found:
            return False
        existing = found[0]
        wanted = [d["size"] for d in identity(ctx, inst)["disks"]]
        if (
            existing.get("compression") != self.params["compression"]
            or [d.get("size") for d in existing.get("disks") or []] != wanted
        ):
            return False
        paths = assemble_disks(ctx, inst, primary)
        for index, path in enumerate(paths):
            done = run_file_end(
                ctx,
                primary,
                "disk_digest_start",
                {"source_path": path},
                "digest",
                f"digest of disk {index} of {inst.name}",
            )
            if done["digest"] != existing["disks"][index].get("digest"):
                return False
        return True

    def remove(self, ctx: OpContext, inst: Instance, primary: Node) -> None:
        """The export is current; removing the instance is all that is left to do."""
        stop_for_copy(ctx, inst, primary, self.params["shutdown_timeout"])
        shutdown_disks(ctx, inst, primary)
        ctx.forget_undo()
        forget_source(ctx, inst)
