"""``instance.import``: recreate an instance from an export kept on a node (restore).

It is ``instance.add`` with its parameters taken from the export's manifest (name, MACs,
sizes, OS and hypervisor parameters) and one step replaced: the new disks are filled from
the export's stream files, each verified against the digest the manifest recorded. When
the new primary is not the node holding the export, each disk is restored into a scratch
file there first and then streamed to the primary over TLS (digests compared again).

Only ``name``, ``disk_template``, the placement and ``start`` may differ from the export:
anything else would no longer be a restore.
"""

from __future__ import annotations

import time
from typing import Any

from herd.config.model import Instance, Node
from herd.crypto.ca import ClusterCA
from herd.errors import PrerequisiteError, TransferError, ValidationError
from herd.ops.base import ALL_LOCKS, LockSpec, OpContext, register
from herd.ops.common import INSTANCE_DISK_TEMPLATES, cluster_of, get_node
from herd.ops.export import MANIFEST_VERSION, begin_work, read_manifest, run_file_end
from herd.ops.instance_add import InstanceAdd
from herd.ops.instance_base import assemble_disks, require_online, shutdown_disks
from herd.ops.params import Param, check_name, validate_params
from herd.ops.placement import IALLOCATOR
from herd.ops.transfer import Endpoint, check_compression, copy_disk

#: Manifest keys that are ``instance.add`` parameters as they stand.
IDENTITY = ("nics", "os", "hypervisor", "hvparams", "memory", "vcpus", "osparams", "tags")
#: This op's own parameters that override the manifest when given.
OVERRIDES = ("name", "disk_template", "primary_node", "secondary_node", "iallocator", "start")


@register
class InstanceImport(InstanceAdd):
    OP_ID = "instance.import"
    SUMMARY = "Create an instance from an export kept on a node (restore a backup)"
    PARAMS = (
        Param("src_node", str, required=True, doc="node holding the export"),
        Param(
            "src_name",
            str,
            required=True,
            check=check_name,
            cli_positional=True,
            doc="name of the export (the exported instance's name)",
        ),
        Param("name", str, check=check_name, doc="name of the new instance (default: src_name)"),
        Param(
            "disk_template",
            str,
            choices=INSTANCE_DISK_TEMPLATES,
            doc="disk template (default: the exported instance's)",
        ),
        Param("primary_node", str, doc="place here instead of asking the allocator"),
        Param("secondary_node", str, doc="DRBD secondary (with primary_node)"),
        IALLOCATOR,
        Param(
            "start",
            bool,
            doc="start the instance once created (default: if it ran when it was exported)",
        ),
    )

    def __init__(self, params: dict[str, Any]) -> None:
        # The job stores these parameters; the instance.add ones are derived from the
        # manifest once the node can be asked (``load``), and again whenever the job runs.
        self.request = validate_params(self.PARAMS, params, op_id=self.OP_ID)
        self.params = self.request
        self.started = time.time()
        self.manifest: dict[str, Any] | None = None

    def load(self, ctx: OpContext) -> dict[str, Any]:
        """Read the manifest and derive the instance.add parameters from it (once)."""
        if self.manifest is not None:
            return self.manifest
        req = self.request
        self.src = get_node(ctx, req["src_node"], "src_node")
        require_online(self.src, "read its exports")
        manifest = read_manifest(ctx, self.src, req["src_name"])
        if manifest.get("version") != MANIFEST_VERSION:
            raise ValidationError(
                "src_name", req["src_name"], f"an export with manifest version {MANIFEST_VERSION}"
            )
        described = {k: manifest.get(k) for k in IDENTITY}
        described["disks"] = [
            {"size": d["size"], "mode": d["mode"], "name": d.get("name")} for d in manifest["disks"]
        ]
        described["name"] = manifest["name"]
        described["disk_template"] = manifest["disk_template"]
        described["start"] = bool(manifest.get("was_running"))
        for key in OVERRIDES:
            if req[key] is not None:
                described[key] = req[key]
        derived = validate_params(
            InstanceAdd.PARAMS, {**described, "install": False}, prefix="export.", op_id=self.OP_ID
        )
        self.params = {**derived, "src_node": req["src_node"], "src_name": req["src_name"]}
        self.manifest = manifest
        return manifest

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        self.load(ctx)
        spec = super().declare_locks(level, ctx)
        if level == "node" and spec is not None and spec.names != ALL_LOCKS:
            return LockSpec(tuple(sorted({*spec.names, self.src.uuid})), shared=spec.shared)
        return spec

    def check(self, ctx: OpContext) -> None:
        planned = self.load(ctx)
        current = read_manifest(ctx, self.src, self.request["src_name"])
        if current != planned:
            raise PrerequisiteError(
                f"export {self.request['src_name']} on {self.src.name} changed while the "
                "job waited for its locks",
                field="src_name",
            )
        check_compression(cluster_of(ctx), planned["compression"])
        super().check(ctx)

    def fill_disks(self, ctx: OpContext, inst: Instance, primary: Node) -> None:
        manifest = self.load(ctx)
        self.undo_assembly(ctx, inst, primary)
        paths = assemble_disks(ctx, inst, primary)
        local = self.src.uuid == primary.uuid
        if not local:
            token, work = begin_work(ctx, self.src)
            ca = ClusterCA.load(ctx.services.crypto_dir)
        for index, disk in enumerate(inst.disks):
            label = f"disk {index} of {inst.name}"
            dest = paths[index] if local else f"{work}/scratch{index}.img"
            done = run_file_end(
                ctx,
                self.src,
                "import_disk_start",
                {
                    "name": self.request["src_name"],
                    "index": index,
                    "dest_path": dest,
                    "size_mib": disk.size_mib,
                    "compression": manifest["compression"],
                },
                "import",
                f"restoring {label}",
            )
            expected = manifest["disks"][index].get("digest")
            if done.get("digest") != expected:
                raise TransferError(
                    f"{label}: the export's stream does not match its manifest",
                    manifest=expected,
                    stream=done.get("digest"),
                )
            if not local:
                copy_disk(
                    ctx,
                    ca,
                    Endpoint(self.src, dest),
                    Endpoint(primary, paths[index]),
                    disk.size_mib,
                    manifest["compression"],
                    None,
                    None,
                    f"copying {label} to {primary.name}",
                )
        if not local:
            ctx.services.call(self.src, "export_discard", {"token": token})
        shutdown_disks(ctx, inst, primary)

    def run(self, ctx: OpContext) -> Any:
        result = super().run(ctx)
        return {
            **result,
            "src_node": self.src.name,
            "src_name": self.request["src_name"],
            "digests": [d.get("digest") for d in self.load(ctx)["disks"]],
        }
