"""``config.restore``: replace the whole state from a ``herd config dump``.

It runs as a job holding every lock exclusively, so no op can be half way through
reading a state that is swapped under it.
"""

from __future__ import annotations

from typing import Any

from herd.config.store import parse_dump
from herd.ops.base import ALL_LOCKS, LockSpec, Op, OpContext, register
from herd.ops.params import Param

RESTORED_LEVELS = ("nodegroup", "instance", "node", "node-res")


@register
class ConfigRestore(Op):
    OP_ID = "config.restore"
    SUMMARY = "Replace the whole cluster state with a dump"
    CLUSTER_LOCK_SHARED = False
    PARAMS = (
        Param(
            "data",
            dict,
            required=True,
            secret=True,
            doc="the output of 'herd config dump --with-secrets'",
        ),
    )

    def declare_locks(self, level: str, ctx: OpContext) -> LockSpec | None:
        if level in RESTORED_LEVELS:
            return LockSpec(ALL_LOCKS)
        return super().declare_locks(level, ctx)

    def check(self, ctx: OpContext) -> None:
        parse_dump(self.params["data"])

    def run(self, ctx: OpContext) -> Any:
        before = {
            kind: {o.uuid for o in ctx.store.list(kind)}
            for kind in ("nodegroup", "instance", "node")
        }
        ctx.store.restore(self.params["data"])
        after = {
            kind: {o.uuid for o in ctx.store.list(kind)}
            for kind in ("nodegroup", "instance", "node")
        }
        for level in RESTORED_LEVELS:
            kind = "node" if level == "node-res" else level
            gone, new = before[kind] - after[kind], after[kind] - before[kind]
            if gone:
                ctx.locks.unregister(level, sorted(gone), owner=ctx.owner)
            if new:
                ctx.locks.register(level, sorted(new), owner=ctx.owner)
        ctx.services.reset_rpc()
        counts = {kind: len(uuids) for kind, uuids in after.items()}
        ctx.log("state restored: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
        return {"changed": True, "objects": counts}
