"""The inventory action: every Herd-managed thing that exists on this node, config or not.

A node never knows the config, so it cannot tell an orphan from a disk in use; it only
lists, and ``cluster.verify`` compares.  Each backend lists its own things with a small
function beside its code; this action only collects them.  One lister failing does not
hide what the others found: its error is reported under ``errors`` by kind, so the
master can say "could not list" instead of implying "nothing there".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from herd.errors import HerdError
from herd.node import proc
from herd.node.actions import export
from herd.node.actions.registry import NodeContext, action
from herd.node.hv import fake, kvm
from herd.node.storage import drbd, file, plain
from herd.node.transfer import worker


def _listers(ctx: NodeContext, vgs: list[str]) -> dict[str, Callable[[], Any]]:
    return {
        "files": lambda: file.list_images(ctx),
        "lvs": lambda: plain.list_volumes(vgs),
        "drbd": drbd.list_drbd,
        "processes": lambda: [*fake.list_processes(ctx), *kvm.list_processes(ctx)],
        "transfers": lambda: worker.list_ends(ctx.root),
        "exports": lambda: export.list_work_dirs(ctx),
        "ports": lambda: sorted(proc.local_ports()),
    }


@action("inventory")
def inventory(ctx: NodeContext, vgs: list[str] | None = None) -> dict[str, Any]:
    """What exists here, by kind; ``vgs`` are the volume groups to list LVs of."""
    vgs = [plain.lvm_name(f"vgs[{i}]", vg) for i, vg in enumerate(vgs or [plain.DEFAULT_VG])]
    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for kind, lister in _listers(ctx, vgs).items():
        try:
            found[kind] = lister()
        except (HerdError, OSError, ValueError) as exc:
            errors[kind] = str(exc)
    return {"changed": False, **found, "errors": errors}
