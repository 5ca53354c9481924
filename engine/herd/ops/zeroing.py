"""Zeroing an instance's free disk space before its disks are copied (move, export).

Blocks a guest deleted still hold their old data, and a transfer cannot tell them from
live data; zeroed blocks are skipped by the stream's zero-extent detection and cost
(almost) nothing on the wire. The node must not mount an instance's filesystems (a
crafted one can attack the host kernel), so, as Ganeti's move design proposes, the
instance itself boots once into a helper image that zero-fills each filesystem it can
mount (a zero file written until the disk is full, synced, deleted) and powers off.

Unlike Ganeti's proposal the helper needs no temporary extra disk: the image is a kernel
plus initramfs (cluster setting ``zeroing_image``: a directory on every node holding
``vmlinuz`` and ``initrd.img``) that the hypervisor boots directly through a one-off
``boot`` override of ``instance_start``. The instance's configuration is therefore never
changed, so there is nothing to restore in the config; what must always be undone is
the helper boot itself, and that undo is registered before the helper starts. The
helper boots without NICs: it needs no network and must not appear on the instance's
one with the instance's MAC.

The engine only sees the helper power off (or not): it waits up to
``zeroing_timeout_fixed`` + ``zeroing_timeout_per_gib`` per GiB of disk, then forces it
off and carries on, as a zero fill that did not finish only costs transfer size.

Callers (``instance.move``, ``instance.export``) stop the instance first, add
``ZERO_FREE_SPACE`` to their params, call ``check`` in their prerequisites and
``zero_free_space`` between stopping the instance and reading its disks.
"""

from __future__ import annotations

import time
from typing import Any

from herd.config.model import Cluster, Instance, Node
from herd.errors import PrerequisiteError, ValidationError
from herd.ops.base import OpContext
from herd.ops.common import cluster_of
from herd.ops.instance_base import assemble_disks, runtime_state, shutdown_disks
from herd.ops.instance_common import instance_spec
from herd.ops.params import Param
from herd.ops.undo import instance_arg, instance_of, node_arg, node_of, undo_handler

KERNEL = "vmlinuz"
INITRD = "initrd.img"
#: ``herd.helper=zero`` is what makes the image write: booted by mistake without it,
#: the helper only powers off (and the fake hypervisor knows its helpers by this word).
CMDLINE = "console=ttyS0 quiet panic=-1 herd.helper=zero"
POLL_SECONDS = 0.5
#: Seconds a node call to force the helper off may take beyond the stop itself.
STOP_SLACK = 60.0

ZERO_FREE_SPACE = Param(
    "zero_free_space",
    bool,
    default=False,
    doc="before copying, boot the stopped instance once into the cluster's zeroing_image "
    "to zero its filesystems' free space, so deleted data is not sent",
)


def check(c: Cluster, wanted: bool) -> None:
    """Refuse zeroing on a cluster that has no helper image configured."""
    if wanted and not c.zeroing_image:
        raise ValidationError(
            "zero_free_space",
            True,
            "false unless the cluster setting zeroing_image names the helper image",
        )


def boot_override(c: Cluster) -> dict[str, str]:
    image = c.zeroing_image.rstrip("/")
    return {"kernel": f"{image}/{KERNEL}", "initrd": f"{image}/{INITRD}", "cmdline": CMDLINE}


def timeout_for(c: Cluster, inst: Instance) -> float:
    gib = sum(d.size_mib for d in inst.disks) / 1024
    return c.zeroing_timeout_fixed + c.zeroing_timeout_per_gib * gib


def zero_free_space(ctx: OpContext, inst: Instance, node: Node) -> dict[str, Any]:
    """Boot ``inst`` (stopped) once into the zeroing helper on ``node`` and wait for it.

    Returns ``{"method": "poweroff"|"forced", "seconds": …}``. On any failure the helper
    is forced off and the disks released before the error propagates; on success they
    are too, so the caller finds the instance exactly as it left it.
    """
    c = cluster_of(ctx)
    state = runtime_state(ctx, inst, node)
    if state and state.get("state") == "running":
        raise PrerequisiteError(
            f"instance {inst.name} is running on {node.name}: stop it before zeroing",
            instance=inst.name,
        )
    spec = instance_spec(ctx, inst)
    spec["nics"] = []
    limit = timeout_for(c, inst)
    ctx.undo(
        f"force the zeroing helper of {inst.name} off on {node.name}",
        "zeroing.end_helper",
        instance=instance_arg(inst),
        node=node_arg(node),
    )
    paths = assemble_disks(ctx, inst, node)
    started = time.monotonic()
    ctx.services.call(
        node,
        "instance_start",
        {"spec": spec, "disk_paths": paths, "boot": boot_override(c)},
        timeout=600,
    )
    ctx.log(f"zeroing free space of {inst.name} on {node.name} (up to {limit:.0f} s)")
    method = wait_poweroff(ctx, inst, node, limit)
    end_helper(ctx, inst, node)
    seconds = round(time.monotonic() - started, 1)
    if method == "forced":
        ctx.log(
            f"zeroing helper of {inst.name} still ran after {limit:.0f} s: forced off; "
            "the copy may carry some deleted data",
            "warning",
        )
    else:
        ctx.log(f"zeroing of {inst.name} finished in {seconds} s")
    return {"method": method, "seconds": seconds}


def wait_poweroff(ctx: OpContext, inst: Instance, node: Node, limit: float) -> str:
    """``poweroff`` once the helper has stopped by itself, ``forced`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        ctx.check_cancel()
        state = runtime_state(ctx, inst, node)
        if not state or state.get("state") != "running":
            return "poweroff"
        if time.monotonic() >= deadline:
            return "forced"
        time.sleep(POLL_SECONDS)


def end_helper(ctx: OpContext, inst: Instance, node: Node) -> None:
    """Make sure nothing runs under the instance's name and its disks are released.

    Idempotent: the helper may have powered off already, been forced off, or never
    started; the node forgets its one-off boot in every case.
    """
    ctx.services.call(
        node,
        "instance_stop",
        {"name": inst.name, "hypervisor": inst.hypervisor, "timeout": 0, "force": True},
        timeout=STOP_SLACK,
    )
    shutdown_disks(ctx, inst, node)


@undo_handler("zeroing.end_helper")
def _end_helper(ctx: OpContext, args: dict[str, Any]) -> None:
    end_helper(ctx, instance_of(args), node_of(args))
